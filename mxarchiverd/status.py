"""`mxarchiverd status`: how far the archive is behind its source, from the databases alone.

Needs no connection to the running daemon, so it also works while the daemon is
stopped, and it reports the durable state (what would survive a crash).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from mxarchiverd.archive.leadership import leadership_facts
from mxarchiverd.config import Config
from mxarchiverd.db import connect
from mxarchiverd.migrate import applied_versions, available_migrations
from mxarchiverd.sources.synapse_db.bounds import compute_bounds


@dataclass
class Status:
    schema_version: int
    schema_expected: int
    cursors: dict[str, int]
    source_bound: int | None
    source_backfill_bound: int | None
    rooms_enabled: int
    rooms_disabled: int
    rooms_history_pending: int
    messages: int
    redacted: int
    quarantined: int
    media: dict[str, int] = field(default_factory=dict)
    newest_archived_ts: int | None = None
    newest_source_ts: int | None = None
    # daemon.ha: leader (holder, since, expires, token, valid) and the standbys; None without the table.
    leadership: dict[str, Any] | None = None

    @property
    def lag_positions(self) -> int:
        if self.source_bound is None:
            return 0
        return max(0, self.source_bound - self.cursors.get("events", 0))

    @property
    def caught_up(self) -> bool:
        media_busy = self.media.get("pending", 0) + self.media.get("purge", 0)
        return self.lag_positions == 0 and self.rooms_history_pending == 0 and media_busy == 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lag_positions": self.lag_positions, "caught_up": self.caught_up}


def collect(config: Config) -> Status:
    assert config.archive_dsn is not None and config.source.synapse_db_url is not None
    with connect(config.archive_dsn, purpose="status", autocommit=True) as archive:
        found = _archive_facts(archive)
        found["leadership"] = leadership_facts(archive)
    with connect(config.source.synapse_db_url.value, purpose="status synapse", autocommit=True,
                 read_only_timeout=config.source.statement_timeout) as source:
        rows = source.execute("SELECT stream_name, instance_name, stream_id FROM stream_positions"
                              " WHERE stream_name IN ('events', 'backfill')").fetchall()
        bounds = compute_bounds(rows, config.source.event_writers)
        newest = source.execute("SELECT origin_server_ts FROM events WHERE stream_ordering <= %s"
                                " ORDER BY stream_ordering DESC LIMIT 1", (bounds.forward or 0,)).fetchone()
    return Status(source_bound=bounds.forward, source_backfill_bound=bounds.backfill,
                  newest_source_ts=newest[0] if newest else None, **found)


def _archive_facts(conn: psycopg.Connection) -> dict[str, Any]:
    one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731 - a local shorthand
    rooms = conn.execute("""SELECT count(*) FILTER (WHERE enabled), count(*) FILTER (WHERE NOT enabled),
                                   count(*) FILTER (WHERE enabled AND NOT history_done) FROM monitored_rooms""").fetchone()
    return {
        "schema_version": max(applied_versions(conn), default=0),
        "schema_expected": available_migrations()[-1].version,
        "cursors": dict(conn.execute("SELECT stream, position FROM archive_cursors").fetchall()),
        "rooms_enabled": rooms[0], "rooms_disabled": rooms[1], "rooms_history_pending": rooms[2],
        "messages": one("SELECT count(*) FROM archived_messages"),
        "redacted": one("SELECT count(*) FROM archived_messages WHERE redacted"),
        "quarantined": one("SELECT count(*) FROM quarantined_events"),
        "media": dict(conn.execute("SELECT state, count(*) FROM media_jobs GROUP BY state").fetchall()),
        "newest_archived_ts": one("SELECT max(timestamp) FROM archived_messages"),
    }


def render(status: Status) -> str:
    media = ", ".join(f"{k} {v}" for k, v in sorted(status.media.items())) or "none"
    cursor = status.cursors.get("events", 0)
    lines = [
        f"caught up:      {'yes' if status.caught_up else 'no'}",
        f"source stream:  archived up to {cursor} of {status.source_bound if status.source_bound is not None else '-'}"
        f" (behind by {status.lag_positions} positions)",
        f"backfill:       cursor {status.cursors.get('backfill', 0)}, source {status.source_backfill_bound or '-'}",
        f"messages:       {status.messages} archived, {status.redacted} redacted, {status.quarantined} quarantined",
        f"rooms:          {status.rooms_enabled} enabled, {status.rooms_disabled} disabled,"
        f" {status.rooms_history_pending} reading history",
        f"media jobs:     {media}",
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
