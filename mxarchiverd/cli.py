"""The `mxarchiverd` command: run, migrate, check-config, status, verify.

Each subcommand is a small function returning an exit code from exitcodes.py.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence

from mxarchiverd import __version__
from mxarchiverd.config import Config, ConfigError, load_config
from mxarchiverd.config.exposure import exposure_warnings
from mxarchiverd.config.reference import keys_without_effect
from mxarchiverd.config.render import render_yaml
from mxarchiverd.db import DatabaseUnavailable, connect_with_retry
from mxarchiverd.exitcodes import ExitCode
from mxarchiverd.migrate import SchemaMismatch, migrate

log = logging.getLogger("mxarchiverd")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return ExitCode.CONFIG
    logging.getLogger().setLevel(config.logging.level)
    command: Callable[[Config, argparse.Namespace], int] = args.command
    try:
        return command(config, args)
    except (DatabaseUnavailable, SchemaMismatch) as exc:
        log.error("%s", exc)
        return exc.exit_code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mxarchiverd", description="Archive Matrix messages and media into Supabase.")
    parser.add_argument("--version", action="version", version=f"mxarchiverd {__version__}")
    parser.add_argument("--config", "-c", help="YAML config (default: $MXARCHIVER_CONFIG or /etc/mxarchiver/config.yaml)")
    sub = parser.add_subparsers(dest="name", required=True, metavar="COMMAND")
    _add(sub, "run", cmd_run, "run the daemon (supervisor and workers) in the foreground")
    _add(sub, "migrate", cmd_migrate, "apply pending archive schema migrations")
    _add(sub, "check-config", cmd_check_config, "validate the config and print it with secrets masked")
    _add_more(sub)
    return parser


def _add(sub: argparse._SubParsersAction, name: str, func: Callable[..., int], help_text: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(command=func)
    return parser


def _add_more(sub: argparse._SubParsersAction) -> None:
    """Subcommands whose code lives in their own modules (status, verify, media)."""
    from mxarchiverd import commands

    commands.register(sub, _add)


def cmd_check_config(config: Config, args: argparse.Namespace) -> int:
    print(f"# configuration is valid ({config.path or 'no file; environment only'})")
    if config.source.mode == "matrix_sync":
        print("# warning: source.mode matrix_sync is not available in this release; `run` will refuse it")
    for warning in exposure_warnings(config.path):
        print(f"# warning: {warning}")
    idle = keys_without_effect(config)
    if idle:
        print(f"# warning: these keys have no effect with source.mode {config.source.mode}: {', '.join(idle)}")
    print(render_yaml(config), end="")
    return ExitCode.OK


def cmd_migrate(config: Config, args: argparse.Namespace) -> int:
    assert config.archive_dsn is not None  # validation guarantees it
    deadline = time.monotonic() + config.daemon.startup_timeout
    with connect_with_retry(config.archive_dsn, purpose="migrate", deadline=deadline, autocommit=True) as conn:
        applied = migrate(conn)
    names = ", ".join(f"{m.version:03d}_{m.name}" for m in applied) or "none (already current)"
    print(f"applied migrations: {names}")
    return ExitCode.OK


def cmd_run(config: Config, args: argparse.Namespace) -> int:
    if config.source.mode == "matrix_sync":
        print("source.mode: matrix_sync is not available in this release; use synapse_db", file=sys.stderr)
        return ExitCode.CONFIG
    from mxarchiverd.preflight import preflight
    from mxarchiverd.supervisor.supervisor import run_supervisor

    for warning in exposure_warnings(config.path):
        log.warning("%s", warning)
    preflight(config)
    return run_supervisor(config)
