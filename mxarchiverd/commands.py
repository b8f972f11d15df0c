"""Operator subcommands beyond run/migrate/check-config: status, verify."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable


from mxarchiverd.config import Config
from mxarchiverd.exitcodes import ExitCode


def register(sub: argparse._SubParsersAction, add: Callable[..., argparse.ArgumentParser]) -> None:
    status = add(sub, "status", cmd_status, "show how far the archive is behind Synapse (from the databases)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    add(sub, "verify", cmd_verify, "compare source and archive event ids per monitored room")
    add(sub, "media-retry", cmd_media_retry, "send dead-lettered media jobs back to the uploader")
    keys = add(sub, "keys", cmd_keys, "end-to-end encryption keys (import an Element key export)")
    actions = keys.add_subparsers(dest="keys_action", required=True, metavar="ACTION")
    importing = actions.add_parser("import", help="import a key export and decrypt every matching archived event")
    importing.add_argument("file", help="an Element key export (\"-----BEGIN MEGOLM SESSION DATA-----\")")
    importing.add_argument("--passphrase-file", help="a file holding the export's passphrase (default: ask)")
    restoring = actions.add_parser("restore-backup", help="restore the bot's server-side key backup, then decrypt")
    restoring.add_argument("--recovery-key-file", help="a file holding the bot user's recovery key (default: ask)")


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    from mxarchiverd import status

    try:
        found = status.collect(config)
    except status.StatusFailed as exc:
        if args.json:
            print(json.dumps(exc.as_dict(), indent=2))
        else:
            print(f"mxarchiverd status: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(found.as_dict(), indent=2) if args.json else status.render(found))
    return ExitCode.OK


def cmd_verify(config: Config, args: argparse.Namespace) -> int:
    from mxarchiverd import verify

    reports = verify.verify(config)
    print(verify.render(reports))
    return ExitCode.OK if all(r.complete for r in reports) else ExitCode.VERIFY_MISMATCH


def cmd_media_retry(config: Config, args: argparse.Namespace) -> int:
    from mxarchiverd.archive.connection import open_archive
    from mxarchiverd.archive.media_queue import retry_dead

    with open_archive(config, purpose="media-retry", autocommit=True) as conn:
        revived = retry_dead(conn)
    print(f"{revived} dead media job(s) queued again")
    return ExitCode.OK


def cmd_keys(config: Config, args: argparse.Namespace) -> int:
    from pathlib import Path

    from mxarchiverd import keys

    try:
        if args.keys_action == "restore-backup":
            recovery_key = keys.read_secret_file(args.recovery_key_file, "--recovery-key-file")
            report = keys.restore_backup(config, recovery_key, progress=sys.stderr.isatty())
        else:
            passphrase = keys.read_passphrase(args.passphrase_file)
            report = keys.import_keys(config, Path(args.file), passphrase, progress=sys.stderr.isatty())
    except keys.KeysCommandError as exc:
        print(f"mxarchiverd keys {args.keys_action}: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    for skipped in report.skipped_entries:
        print(f"skipped: {skipped}", file=sys.stderr)
    print(f"{report.sessions_in_file} session(s) in the file, {report.sessions_imported} new to the store; "
          f"{report.events_decrypted} archived event(s) decrypted, {report.events_still_encrypted} still encrypted")
    return ExitCode.OK
