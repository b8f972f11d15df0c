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
