"""Operator subcommands beyond run/migrate/check-config: status, verify, backfill, media-retry."""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from mxarchiverd.config import Config
from mxarchiverd.exitcodes import ExitCode

if TYPE_CHECKING:
    import psycopg


def register(sub: argparse._SubParsersAction, add: Callable[..., argparse.ArgumentParser]) -> None:
    status = add(sub, "status", cmd_status, "show how far the archive is behind Synapse (from the databases)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    check = add(sub, "verify", cmd_verify, "prove the archive complete: events, redactions, edits, holes, media")
    check.add_argument("--room", action="append", default=[], metavar="ROOM_ID",
                       help="only this room (repeatable; default: every archived room)")
    check.add_argument("--since", metavar="WHEN", help="only events sent since a date, a time or an age (7d)")
    check.add_argument("--media", action="store_true",
                       help="also read every stored media object back and compare its size and sha256")
    check.add_argument("--repair", action="store_true",
                       help="re-archive what is missing or wrong, queue broken media again, and say what was done")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    backfill = add(sub, "backfill", cmd_backfill, "read one room's whole history again (resumable)")
    backfill.add_argument("--room", required=True, metavar="ROOM_ID", help="the room to read again")
    retry = add(sub, "media-retry", cmd_media_retry, "send dead-lettered media jobs back to the uploader")
    retry.add_argument("--wait", action="store_true",
                       help="follow the jobs until the uploader (the running daemon's) has finished them")
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
    from mxarchiverd.sinks.storage import StorageError
    from mxarchiverd.verification.problems import Scope, parse_since
    from mxarchiverd.verification.render import as_json, render_text
    from mxarchiverd.verification.run import UnknownRoom, run_verify

    try:
        since = parse_since(args.since, time.time()) if args.since else None
    except ValueError as exc:
        print(f"mxarchiverd verify: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    started = time.monotonic()
    try:
        outcome = run_verify(config, Scope(tuple(args.room), since, args.media), repair=args.repair)
    except UnknownRoom as exc:
        print(f"mxarchiverd verify: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except StorageError as exc:
        print(f"mxarchiverd verify: media storage cannot be read: {exc}", file=sys.stderr)
        return ExitCode.UNAVAILABLE
    print(json.dumps(as_json(outcome), indent=2) if args.json else render_text(outcome, time.monotonic() - started))
    return outcome.exit_code


def cmd_backfill(config: Config, args: argparse.Namespace) -> int:
    from mxarchiverd.backfill import NotMonitored, backfill_room, queue_bot_history

    try:
        if config.source.mode == "matrix_sync":
            job, queued = queue_bot_history(config, args.room)
            print(f"{args.room}: history pagination job {job} {'queued' if queued else 'already pending'};"
                  " the daemon's poller pages it back to the room's creation at its next start"
                  " (systemctl restart mxarchiverd)")
            return ExitCode.OK
        result = backfill_room(config, args.room)
    except NotMonitored as exc:
        print(f"mxarchiverd backfill: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    again = " (resumed)" if result.resumed else ""
    print(f"{result.room_id}: history read again{again}: {result.read} event(s) read, {result.inserted} new")
    return ExitCode.OK


def cmd_media_retry(config: Config, args: argparse.Namespace) -> int:
    from mxarchiverd.archive.connection import open_archive
    from mxarchiverd.archive.media_queue import retry_dead_jobs

    with open_archive(config, purpose="media-retry", autocommit=True) as conn:
        revived = retry_dead_jobs(conn)
        print(f"{len(revived)} dead media job(s) queued again", flush=True)
        if not args.wait or not revived:
            return ExitCode.OK
        states = follow_jobs(conn, revived)
    print(", ".join(f"{state} {count}" for state, count in sorted(states.items())))
    return ExitCode.OK if not states.get("dead") else ExitCode.VERIFY_MISMATCH


def follow_jobs(conn: psycopg.Connection, job_ids: list[int], interval: float = 1.0) -> dict[str, int]:
    """Wait (with a progress bar) until none of the jobs is pending; their final states."""
    from mxarchiverd.archive.audit import job_states
    from mxarchiverd.progress import progress

    with progress("media-retry", total=len(job_ids), unit="file") as bar:
        while True:
            states = job_states(conn, job_ids)
            finished = len(job_ids) - states.get("pending", 0)
            bar.update(finished - bar.done)
            if not states.get("pending"):
                return states
            time.sleep(interval)


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
