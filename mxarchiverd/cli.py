"""The `mxarchiverd` command: run, migrate, check-config, status, verify.

Each subcommand is a small function returning an exit code from exitcodes.py.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence

import psycopg

from mxarchiverd import __version__
from mxarchiverd.archive.connection import open_archive
from mxarchiverd.config import Config, ConfigError, load_config
from mxarchiverd.config.exposure import exposure_warnings
from mxarchiverd.config.reference import keys_without_effect
from mxarchiverd.config.render import render_yaml
from mxarchiverd.db import DatabaseMisconfigured, DatabaseUnavailable
from mxarchiverd.exitcodes import ExitCode
from mxarchiverd.logs import configure as configure_logs
from mxarchiverd.media.store_check import KEY as MEDIA_STORE_KEY
from mxarchiverd.media.store_check import Verdict, check_media_store
from mxarchiverd.redaction import secret_values
from mxarchiverd.archive.migrations import SchemaMismatch, migrate
from mxarchiverd.archive.privileges import ArchivePrivilegeError

log = logging.getLogger("mxarchiverd")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return ExitCode.CONFIG
    configure_logs(None, config.logging.level, config.logging.format, secret_values(config))
    command: Callable[[Config, argparse.Namespace], int] = args.command
    try:
        return command(config, args)
    except ConfigError as exc:  # found only by looking at the system (source.media_store_path)
        print(exc.render(), file=sys.stderr)
        return ExitCode.CONFIG
    except (DatabaseUnavailable, DatabaseMisconfigured, SchemaMismatch, ArchivePrivilegeError) as exc:
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
    # Bot mode reads no media store: every file comes over the media API.
    verdict, note = _media_store_verdict(config) if config.source.mode == "synapse_db" else (Verdict(), None)
    if verdict.problem:
        raise ConfigError([(MEDIA_STORE_KEY, verdict.problem)], str(config.path or "the environment"))
    print(f"# configuration is valid ({config.path or 'no file; environment only'})")
    if note:
        print(f"# note: {note}")
    if verdict.warning:
        print(f"# warning: {MEDIA_STORE_KEY}: {verdict.warning}")
    for warning in exposure_warnings(config.path):
        print(f"# warning: {warning}")
    idle = keys_without_effect(config)
    if idle:
        print("# no effect in this configuration (accepted, but nothing reads it here):")
        print("".join(f"#   {key}: {why}\n" for key, why in idle), end="")
    print(render_yaml(config), end="")
    return ExitCode.OK


def _media_store_verdict(config: Config) -> tuple[Verdict, str | None]:
    """check-config looks at the media store as run would; a Synapse database it cannot
    reach (check-config may run anywhere) leaves the store unchecked, and says so."""
    from mxarchiverd.db import connect, first_line

    assert config.source.synapse_db_url is not None
    try:
        with connect(config.source.synapse_db_url.value, purpose="check-config synapse", autocommit=True,
                     connect_timeout=5, read_only_timeout=config.source.statement_timeout) as conn:
            return check_media_store(config, conn), None
    except (psycopg.Error, DatabaseUnavailable, DatabaseMisconfigured) as exc:
        reason = first_line(exc) if isinstance(exc, psycopg.Error) else str(exc)
        return Verdict(), f"{MEDIA_STORE_KEY} not checked against Synapse's database: {reason}"


def cmd_migrate(config: Config, args: argparse.Namespace) -> int:
    deadline = time.monotonic() + config.daemon.startup_timeout
    with open_archive(config, purpose="migrate", deadline=deadline, autocommit=True) as conn:
        applied = migrate(conn)
    names = ", ".join(f"{m.version:03d}_{m.name}" for m in applied) or "none (already current)"
    print(f"applied migrations: {names}")
    return ExitCode.OK


def cmd_run(config: Config, args: argparse.Namespace) -> int:
    from mxarchiverd.preflight import preflight
    from mxarchiverd.supervisor.supervisor import run_supervisor

    for warning in exposure_warnings(config.path):
        log.warning("%s", warning)
    for key, why in keys_without_effect(config):
        log.warning("config: %s has no effect: %s", key, why)
    preflight(config)
    return run_supervisor(config)
