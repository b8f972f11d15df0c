"""Poller stage: follow Synapse's event streams up to their commit-safe bounds.

Four readers share one round: the forward stream (live), de-outliered events,
federation backfill (negative orderings, read downward) and per-room history
for rooms added after the stream had passed them. Each emits batches that carry
the cursor position they cover; the dbwriter stores the cursor with the rows.
The poller's own positions are in memory and start from the durable cursors, so
a pipeline restart re-reads whatever was in flight.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from mxarchiverd.db import connect_source, connect_with_retry
from mxarchiverd.sinks.late_bridge_ids import fill_late_bridge_ids
from mxarchiverd.sources.bounds import StreamBounds, next_backfill_cursor, next_forward_cursor, windowed_bound
from mxarchiverd.sources.bridge_db import BridgeReader
from mxarchiverd.sources.rooms import (
    MIN_ORDERING, Registry, extend_history, load_registry, register_config_rooms, register_discovered_rooms,
)
from mxarchiverd.sources.synapse_db import SynapseReader
from mxarchiverd.workers.stage import Message, SourceStage, opened

log = logging.getLogger(__name__)
BRIDGE_DISCOVERY_INTERVAL = 60.0
LATE_FILL_INTERVAL = 2.0
REGISTRY_MAX_AGE = 2.0
# The durable cursors, in archive_cursors; the *backfill ones move downward from 0.
STREAMS = ("events", "ex_outlier", "backfill", "ex_outlier_backfill")


class Poller(SourceStage):
    role = "poller"

    def open(self) -> None:
        deadline = time.monotonic() + self.config.daemon.startup_timeout
        source = self.config.source
        assert source.synapse_db_url is not None and self.config.archive_dsn is not None
        self.synapse = SynapseReader(connect_source(source.synapse_db_url.value, purpose="poller synapse",
                                                    deadline=deadline, statement_timeout=source.statement_timeout))
        self.archive = connect_with_retry(self.config.archive_dsn, purpose="poller", deadline=deadline, autocommit=True)
        self.bridge = self._open_bridge(deadline)
        self.cursors = self._durable_cursors()
        self.bounds = StreamBounds(None, None)
        self.emitted = 0
        self.next_discovery = 0.0
        self.next_late_fill = 0.0
        self.registry: Registry | None = None
        self.registry_read_at = 0.0
        self.archived_before: set[str] | None = None
        self._register_rooms()

    def _open_bridge(self, deadline: float) -> BridgeReader | None:
        """For auto-discovery of portals and for WhatsApp ids the bridge stored late."""
        source = self.config.source
        if source.bridge_db_url is None:
            return None
        conn = connect_with_retry(source.bridge_db_url.value, purpose="poller bridge", deadline=deadline, autocommit=True)
        return BridgeReader(conn, source.bridge_id, source.statement_timeout)

    def close(self) -> None:
        for conn in [reader.conn for reader in opened(self, "synapse", "bridge")] + opened(self, "archive"):
            conn.close()

    def reconfigure(self, config: Any) -> None:
        self.config = config
        self._register_rooms()
        self.registry = None

    def stats(self) -> dict[str, float]:
        lag = (self.bounds.forward - self.cursors["events"]) if self.bounds.forward is not None else 0
        return {"lag": float(max(lag, 0)), "polled": float(self.emitted)}

    def produce(self) -> tuple[list[Message], float]:
        bounds = self.synapse.bounds(self.config.source.event_writers)
        moved, self.bounds = bounds != self.bounds, bounds
        self._maybe_discover()
        self._maybe_fill_late_bridge_ids()
        registry = self._current_registry(refresh=moved)
        batches = [b for b in (self._forward(registry), self._ex_outliers(registry), self._backfill(registry),
                               self._ex_outliers_backfill(registry), self._room_history(registry)) if b]
        busy = any(b.pop("full") for b in batches)
        return batches, 0.0 if busy else self.config.processing.poll_interval

    def _current_registry(self, refresh: bool) -> Registry:
        """The room registry, re-read before any new event is read (so an operator's
        flip of `enabled` counts from the next event on), while history is being
        read, and at least every REGISTRY_MAX_AGE seconds; an idle round reads nothing."""
        stale = self.registry is None or time.monotonic() >= self.registry_read_at + REGISTRY_MAX_AGE
        if refresh or stale or (self.registry is not None and self.registry.pending_history()):
            registry = load_registry(self.archive, self.config.rooms, self._auto_discover)
            self.registry = self._note_newly_archived(registry)
            self.registry_read_at = time.monotonic()
        assert self.registry is not None
        return self.registry

    # --- the four readers -------------------------------------------------

    def _forward(self, registry: Registry) -> Message | None:
        return self._follow("events", self.bounds.forward, by_ordering(self.synapse.forward),
                            next_forward_cursor, registry)

    def _backfill(self, registry: Registry) -> Message | None:
        if not self.config.source.follow_backfill:
            return None
        return self._follow("backfill", self.bounds.backfill, by_ordering(self.synapse.backfill),
                            next_backfill_cursor, registry)

    def _ex_outliers(self, registry: Registry) -> Message | None:
        return self._follow("ex_outlier", self.bounds.forward, self.synapse.ex_outliers, next_forward_cursor, registry)

    def _ex_outliers_backfill(self, registry: Registry) -> Message | None:
        """Events de-outliered while Synapse backfilled get negative ex_outlier positions."""
        if not self.config.source.follow_backfill:
            return None
        return self._follow("ex_outlier_backfill", self.bounds.backfill, self.synapse.ex_outliers_backfill,
                            next_backfill_cursor, registry)

    def _follow(self, stream: str, bound: int | None, read: Callable[..., list[tuple[int, dict[str, Any]]]],
                advance: Callable[[int, int, int | None, bool], int], registry: Registry) -> Message | None:
        """One batch of a stream between its cursor and its bound (upward or downward).

        `read` returns (stream position, event) pairs; the position is what the
        cursor follows and what the room rules compare with.
        """
        cursor = self.cursors[stream]
        if bound is None or advance(cursor, bound, None, False) == cursor:
            return None
        limit = self.config.processing.batch_size
        window = windowed_bound(cursor, bound, downward=advance is next_backfill_cursor)
        found = read(cursor, window, registry.sql_room_filter(), limit)
        full = len(found) >= limit
        self.cursors[stream] = advance(cursor, window, found[-1][0] if found else None, full)
        rows = [event for position, event in found if registry.should_archive(event["room_id"], position)]
        return self._message(stream, self.cursors[stream], rows, full or window != bound)

    def _room_history(self, registry: Registry) -> Message | None:
        pending = registry.pending_history()
        if not pending:
            return None
        room = pending[0]
        cursor = room.history_cursor if room.history_cursor is not None else MIN_ORDERING
        limit = self.config.processing.batch_size
        rows = self.synapse.room_history(room.room_id, cursor, room.history_upto, limit)
        full = len(rows) >= limit
        position = rows[-1]["stream_ordering"] if rows else room.history_upto
        message = self._message("room_history", position, rows, full)
        message.update(room_id=room.room_id, done=not full)
        return message

    # --- helpers ----------------------------------------------------------

    def _message(self, stream: str, position: int, rows: list[dict[str, Any]], full: bool) -> Message:
        events = [r for r in rows if not r["soft_failed"]]
        self.emitted += len(events)
        return {"kind": "events", "stream": stream, "position": position, "events": events, "full": full}

    def _durable_cursors(self) -> dict[str, int]:
        found: dict[str, int] = dict(self.archive.execute("SELECT stream, position FROM archive_cursors").fetchall())
        return {stream: int(found.get(stream, 0)) for stream in STREAMS}

    def _register_rooms(self) -> None:
        bound = self.synapse.bounds(self.config.source.event_writers).forward
        cursor, backfill_cursor = self.cursors["events"], self.cursors["backfill"]
        added_at = bound if bound is not None else cursor
        register_config_rooms(self.archive, self.config.rooms, added_at=added_at, cursor=cursor,
                              backfill_cursor=backfill_cursor)
        if not self.config.rooms:
            rooms = [{"room_id": r, "room_name": None, "whatsapp_id": None, "bridge_type": None}
                     for r in self.synapse.all_room_ids()]
            register_discovered_rooms(self.archive, rooms, discovered_by="synapse", cursor=cursor,
                                      backfill_cursor=backfill_cursor)

    @property
    def _auto_discover(self) -> bool:
        return self.bridge is not None and self.config.source.auto_discover_bridged_rooms

    def _maybe_fill_late_bridge_ids(self) -> None:
        if self.bridge is None or time.monotonic() < self.next_late_fill:
            return
        self.next_late_fill = time.monotonic() + LATE_FILL_INTERVAL
        filled = fill_late_bridge_ids(self.archive, self.bridge)
        if filled:
            log.info("filled in WhatsApp ids of %d message(s) the bridge recorded late", filled)

    def _maybe_discover(self) -> None:
        """Seed 001 phase 3: every bridged portal room becomes a monitored room."""
        if self.bridge is None or not self._auto_discover or time.monotonic() < self.next_discovery:
            return
        self.next_discovery = time.monotonic() + BRIDGE_DISCOVERY_INTERVAL
        rooms = [{"room_id": p.room_id, "room_name": p.name, "whatsapp_id": p.chat_id,
                  "bridge_type": self.config.source.bridge_type} for p in self.bridge.all_portals()]
        register_discovered_rooms(self.archive, rooms, discovered_by="bridge", cursor=self.cursors["events"],
                                  backfill_cursor=self.cursors["backfill"], selects=bool(self.config.rooms))

    def _note_newly_archived(self, registry: Registry) -> Registry:
        """Rooms archived from this round on whose history read must cover batches
        already emitted without them (in memory, past the durable cursor)."""
        now = registry.archived_rooms()
        newly = sorted(now - self.archived_before) if self.archived_before is not None else []
        self.archived_before = now
        pending = [r for r in newly if not registry.rooms[r].history_done]
        if not pending:
            return registry
        extend_history(self.archive, pending, self.cursors["events"])
        return load_registry(self.archive, self.config.rooms, self._auto_discover)


def by_ordering(read: Callable[..., list[dict[str, Any]]]) -> Callable[..., list[tuple[int, dict[str, Any]]]]:
    """A reader of events as (stream ordering, event) pairs."""
    return lambda *args: [(event["stream_ordering"], event) for event in read(*args)]
