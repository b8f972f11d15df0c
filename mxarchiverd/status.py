"""`mxarchiverd status`: how far the archive is behind its source, from the databases alone.

Needs no connection to the running daemon, so it also works while the daemon is
stopped, and it reports the durable state (what would survive a crash).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from mxarchiverd.archive.connection import open_archive
from mxarchiverd.archive.leadership import leadership_facts
from mxarchiverd.archive.reports import ArchiveFacts, BotCoverage, archive_facts, bot_coverage, encrypted_rooms
from mxarchiverd.config import Config
from mxarchiverd.db import DatabaseMisconfigured, DatabaseUnavailable, first_line
from mxarchiverd.exitcodes import ExitCode
from mxarchiverd.sources.base import SourceState


@dataclass(frozen=True)
class Status(ArchiveFacts):
    """The archive's facts (archive/reports.py) and the source's side of the story."""

    source_bound: int | None = None
    source_backfill_bound: int | None = None
    newest_source_ts: int | None = None
    mode: str = "synapse_db"
    # Every followed stream: cursor, bound, positions behind (sources/base.py StreamState).
    streams: list[dict[str, Any]] = field(default_factory=list)
    # Bot mode: memberships, holes and pagination (archive/reports.py BotCoverage).
    bot: dict[str, Any] | None = None
    # Rooms with encrypted events: decrypted, still ciphertext, and why (archive/reports.py).
    encrypted_rooms: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # daemon.ha: leader (holder, since, expires, token, valid) and the standbys; None without the table.
    leadership: dict[str, Any] | None = None

    @property
    def lag_positions(self) -> int:
        return sum(int(stream["behind"]) for stream in self.streams)

    @property
    def caught_up(self) -> bool:
        media_busy = self.media.get("pending", 0) + self.media.get("purge", 0)
        pages = self.bot["pending_pagination"] if self.bot else 0
        # A bot with no /sync committed yet has no stream that could lag: it has simply read nothing.
        never_synced = self.bot is not None and not self.bot["accounts"]
        return (self.lag_positions == 0 and self.rooms_history_pending == 0 and media_busy == 0 and pages == 0
                and not never_synced)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lag_positions": self.lag_positions, "caught_up": self.caught_up}


class StatusFailed(Exception):
    """A database could not be read; the message names which one, never its password."""

    def __init__(self, database: str, message: str, exit_code: ExitCode) -> None:
        super().__init__(message)
        self.database = database
        self.exit_code = exit_code

    def as_dict(self) -> dict[str, Any]:
        return {"error": str(self), "database": self.database, "exit_code": int(self.exit_code)}


DATABASE_NAMES = {"archive": "archive database", "synapse": "Synapse database", "homeserver": "homeserver"}


@contextmanager
def reading(database: str) -> Iterator[None]:
    """Whatever goes wrong reading `database` becomes one StatusFailed naming it.

    libpq's first line says what happened (refused, timed out, password authentication
    failed) and never holds the password; the connection string is never shown.
    """
    name = DATABASE_NAMES[database]
    try:
        yield
    except psycopg.errors.UndefinedTable as exc:
        if database == "archive":
            raise StatusFailed(database, f"{name} is not migrated ({first_line(exc)}): run `mxarchiverd migrate`",
                               ExitCode.SCHEMA_MISMATCH) from None
        raise StatusFailed(database, f"{name} lacks a table of Synapse's: {first_line(exc)}",
                           ExitCode.UNAVAILABLE) from None
    except psycopg.Error as exc:
        raise StatusFailed(database, f"{name}: {first_line(exc)}", ExitCode.UNAVAILABLE) from None
    except (DatabaseUnavailable, DatabaseMisconfigured) as exc:
        raise StatusFailed(database, f"{name}: {exc}", exc.exit_code) from None


def collect(config: Config) -> Status:
    """Raises StatusFailed when a database cannot be read."""
    with reading("archive"), open_archive(config, purpose="status", autocommit=True) as archive:
        facts = archive_facts(archive)
        bot = bot_coverage(archive) if config.source.mode == "matrix_sync" else None
        leadership = leadership_facts(archive)
        encrypted = encrypted_rooms(archive)
    with reading("synapse" if config.source.mode == "synapse_db" else "homeserver"):
        state = source_report(config, facts)
    live = state.stream("events")
    backfill = state.stream("backfill")
    return Status(**facts.__dict__, source_bound=_int(live.bound) if live else None,
                  source_backfill_bound=_int(backfill.bound) if backfill else None,
                  newest_source_ts=state.newest_source_ts, mode=state.mode,
                  streams=[stream.__dict__ for stream in state.streams],
                  bot=_bot_dict(bot) if bot else None, problems=list(state.problems), encrypted_rooms=encrypted,
                  leadership=leadership)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _bot_dict(bot: BotCoverage) -> dict[str, Any]:
    return {"accounts": bot.accounts, "rooms": bot.rooms, "holes": bot.holes, "pagination": bot.pagination,
            "unfilled_holes": len(bot.unfilled_holes), "pending_pagination": bot.pending_pagination}


def source_report(config: Config, facts: ArchiveFacts) -> SourceState:
    if config.source.mode == "matrix_sync":
        from mxarchiverd.sources.matrix_sync.report import source_state as bot_state

        return bot_state(config, facts)
    from mxarchiverd.sources.synapse_db.report import source_state

    return source_state(config, facts)


def render(status: Status) -> str:
    media = ", ".join(f"{k} {v}" for k, v in sorted(status.media.items())) or "none"
    lines = [
        f"caught up:      {'yes' if status.caught_up else 'no'}",
        f"source:         {status.mode}",
        *_stream_lines(status),
        *_bot_lines(status),
        *_encryption_lines(status),
        *(f"problem:        {problem}" for problem in status.problems),
        f"messages:       {status.messages} archived, {status.redacted} redacted, {status.quarantined} quarantined",
        f"rooms:          {status.rooms_enabled} enabled, {status.rooms_disabled} disabled,"
        f" {status.rooms_history_pending} reading history",
        f"media jobs:     {media}",
        *_dead_lines(status),
        f"schema:         version {status.schema_version} (this code: {status.schema_expected})",
    ]
    return "\n".join(lines + _leadership_lines(status.leadership))


def _leadership_lines(facts: dict[str, Any] | None) -> list[str]:
    """daemon.ha: nothing until a daemon has taken part."""
    if not facts or (facts["holder"] is None and not facts["standbys"]):
        return []
    if facts["holder"] is None or not facts["valid"]:
        leader = "none (the lease is free or has run out)"
    else:
        leader = f"{facts['holder']} since {facts['since']} (fencing token {facts['token']}, lease until {facts['expires']})"
    standbys = ", ".join(f"{m['holder']} (seen {m['seen_at']})" for m in facts["standbys"]) or "none"
    return [f"leader:         {leader}", f"standbys:       {standbys}"]


def _dead_lines(status: Status) -> list[str]:
    dead = status.media.get("dead", 0)
    if not dead:
        return []
    return [f"media dead:     {dead}, the newest because: {status.media_dead_last_error or '-'}",
            "                (fix the cause, then `mxarchiverd media-retry` queues them again)"]


def _stream_lines(status: Status) -> list[str]:
    return [f"stream {s['name']:<14}{s['cursor']} of {s['bound'] if s['bound'] is not None else '-'}"
            f" (behind by {s['behind']} positions)" for s in status.streams]


def _bot_lines(status: Status) -> list[str]:
    if not status.bot:
        return []
    bot = status.bot
    lines = []
    for room in bot["rooms"]:
        if room["membership"] != "join":
            lines.append(f"room {room['room_id']}: bot is {room['membership']}"
                         f" ({room['reason'] or 'no reason'}, by {room['by'] or '-'})")
        if room["history_complete"] is False:
            lines.append(f"room {room['room_id']}: history known down to {room['lower_bound_event']}")
    for hole in bot["holes"]:
        if hole["state"] != "filled":
            lines.append(f"hole {hole['room_id']}: {hole['state']}, after {hole['after_event_id']}"
                         f" until {hole['before_event_id'] or 'rejoined'} ({hole['kind']}: {hole['reason'] or '-'})")
    jobs = ", ".join(f"{p['kind']} {p['state']} {p['jobs']}" for p in bot["pagination"]) or "none"
    lines.append(f"pagination:     {jobs}")
    return lines


def _encryption_lines(status: Status) -> list[str]:
    lines = []
    for room in status.encrypted_rooms:
        waiting = ", ".join(f"{why} {count}" for why, count in room["waiting"].items())
        lines.append(f"encrypted {room['room_id']}: {room['decrypted']} decrypted, {room['encrypted']} still"
                     f" ciphertext" + (f" (waiting: {waiting})" if waiting else ""))
    return lines
