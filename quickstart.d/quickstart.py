"""./quickstart's Python part: a private PostgreSQL, a real Synapse, a sample
conversation, `mxarchiverd run` until it has caught up, and what it archived.

Run it through ./quickstart, which installs PostgreSQL and .venv first. Not part
of the installed package: it reuses the test helpers in tests/support/.
Only the standard library is imported before the arguments are parsed, so that
--help works on a machine where nothing is installed yet.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DATA_DIR = REPO / "quickstart-data"
DEFAULT_TIMEOUT_S = 180.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="./quickstart",
        description="Start a private PostgreSQL and a real Synapse on loopback, send a sample conversation, "
                    "archive it with `mxarchiverd run` (archive database on that PostgreSQL, media in a local "
                    "directory) and print what was archived. Everything it starts is stopped at the end, "
                    "unless --keep. Each run starts from an empty data directory.")
    parser.add_argument("--bot", action="store_true",
                        help="archive as a bot user through the client API (source.mode matrix_sync: /sync and "
                             "/messages) instead of reading Synapse's database")
    parser.add_argument("--keep", action="store_true",
                        help="leave PostgreSQL, Synapse and mxarchiverd running (stop them with --stop)")
    parser.add_argument("--stop", action="store_true", help="only stop what an earlier --keep run left running")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="where everything goes; wiped at the start of each run (default: %(default)s)")
    parser.add_argument("--pg-port", type=int, default=0, metavar="N",
                        help="PostgreSQL's port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--synapse-port", type=int, default=0, metavar="N",
                        help="Synapse's client port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                        help="how long mxarchiverd may take to catch up (default: %(default).0f)")
    args = parser.parse_args(argv)
    if args.keep and args.stop:
        parser.error("--keep and --stop exclude each other")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # The tables hold emoji and "…"; a terminal in a non-UTF-8 locale must not end the run.
    sys.stdout.reconfigure(errors="replace")  # type: ignore[union-attr]
    # quickstart.d holds the qs_* modules; the repository root holds tests.support.
    sys.path[:0] = [str(HERE), str(REPO)]
    from qs_procs import QuickstartError
    from qs_session import fail, run
    from tests.support.postgres import PostgresError

    try:
        return run(args)
    except (QuickstartError, PostgresError) as exc:
        return fail(exc, args.data_dir)
    except BrokenPipeError:
        # Output piped into `head` or a closed terminal; clean-up has run already.
        # Point stdout at /dev/null so that the final flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("\nquickstart: interrupted; everything it started has been stopped", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - show the traceback, but after the clean-up ran
        traceback.print_exc()
        return fail(exc, args.data_dir)


if __name__ == "__main__":
    sys.exit(main())
