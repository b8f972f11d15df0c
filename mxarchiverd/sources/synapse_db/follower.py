"""Follow Synapse's event streams up to their commit-safe bounds (the synapse_db source).

One round reads every stream of streams.STREAMS once, between its cursor and
its bound, and then the history of one room added after the streams had passed
it. Each read becomes a batch carrying the cursor position it covers; the
dbwriter stores the cursor with the rows. Positions are kept in memory and start
from the durable cursors, so a pipeline restart re-reads whatever was in flight.
"""
from __future__ import annotations

import logging
import time

from mxarchiverd.archive import rooms as registry_store
from mxarchiverd.archive.bridge_ids import BridgeIds, fill_late_bridge_ids
from mxarchiverd.archive.connection import open_archive
from mxarchiverd.archive.cursors import load_stream_cursors
from mxarchiverd.archive.rooms import MIN_ORDERING, Registry
from mxarchiverd.config import Config
from mxarchiverd.db import connect_source
from mxarchiverd.pipeline.cursors import RoomHistoryCursor, StreamCursor
from mxarchiverd.pipeline.messages import EventBatch, RawEvent
from mxarchiverd.sources.base import Poll, Source
from mxarchiverd.sources.bridge_db import BridgeReader
from mxarchiverd.sources.synapse_db.bounds import StreamBounds
from mxarchiverd.sources.synapse_db.reader import SynapseReader
from mxarchiverd.sources.synapse_db.streams import BACKFILL, LIVE, READ_WINDOW, STREAMS, Stream

log = logging.getLogger(__name__)
BRIDGE_DISCOVERY_INTERVAL = 60.0
LATE_FILL_INTERVAL = 2.0
REGISTRY_MAX_AGE = 2.0


class SynapseFollower(Source):
    synapse: SynapseReader | None = None
    bridge: BridgeReader | None = None

    def open(self, deadline: float) -> None:
        source = self.config.source
        assert source.synapse_db_url is not None
        self.synapse = SynapseReader(connect_source(source.synapse_db_url.value, purpose="poller synapse",
                                                    deadline=deadline, statement_timeout=source.statement_timeout))
        self.archive = open_archive(self.config, purpose="poller", deadline=deadline, autocommit=True)
        self.bridge = self._open_bridge(deadline)
        durable = load_stream_cursors(self.archive)
        self.cursors = {stream.name: durable.get(stream.name, 0) for stream in STREAMS}
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
        conn = connect_source(source.bridge_db_url.value, purpose="poller bridge", deadline=deadline,
                              statement_timeout=source.statement_timeout)
        return BridgeReader(conn, source.bridge_id, source.statement_timeout)

    def close(self) -> None:
        for conn in (self.synapse.conn if self.synapse else None, getattr(self, "archive", None),
                     self.bridge.conn if self.bridge else None):
            if conn is not None:
                conn.close()

    def reconfigure(self, config: Config) -> None:
        super().reconfigure(config)
        self._register_rooms()
        self.registry = None

    def stats(self) -> dict[str, float]:
        bound = LIVE.bound(self.bounds)
        lag = LIVE.direction.behind(self.cursors[LIVE.name], bound) if bound is not None else 0
        return {"lag": float(lag), "polled": float(self.emitted)}

    def poll(self) -> Poll:
        assert self.synapse is not None
        bounds = self.synapse.bounds(self.config.source.event_writers)
        moved, self.bounds = bounds != self.bounds, bounds
        self._maybe_discover()
        self._maybe_fill_late_bridge_ids()
        registry = self._current_registry(refresh=moved)
        reads = [self._follow(stream, registry) for stream in STREAMS if stream.followed(self.config.source)]
        reads.append(self._room_history(registry))
        done = [read for read in reads if read is not None]
        return Poll([batch for batch, _ in done], busy=any(more for _, more in done))

    def _current_registry(self, refresh: bool) -> Registry:
        """The room registry, re-read before any new event is read (so an operator's
        flip of `enabled` counts from the next event on), while history is being
        read, and at least every REGISTRY_MAX_AGE seconds; an idle round reads nothing."""
        stale = self.registry is None or time.monotonic() >= self.registry_read_at + REGISTRY_MAX_AGE
        if refresh or stale or (self.registry is not None and self.registry.pending_history()):
            registry = registry_store.load_registry(self.archive, self.config.rooms, self._auto_discover)
            self.registry = self._note_newly_archived(registry)
            self.registry_read_at = time.monotonic()
        assert self.registry is not None
        return self.registry

    # --- reading -----------------------------------------------------------

    def _follow(self, stream: Stream, registry: Registry) -> tuple[EventBatch, bool] | None:
        """One batch of a stream between its cursor and its bound, and whether more is waiting."""
        assert self.synapse is not None
        cursor, bound = self.cursors[stream.name], stream.bound(self.bounds)
        if bound is None or stream.direction.reached(cursor, bound):
            return None
        limit = self.config.processing.batch_size
        window = stream.direction.window(cursor, bound, READ_WINDOW)
        found = stream.read(self.synapse, cursor, window, registry.sql_room_filter(), limit)
        full = len(found) >= limit
        position = stream.direction.advance(cursor, window, found[-1][0] if found else None, full)
        self.cursors[stream.name] = position
        events = [event for at, event in found if registry.should_archive(event["room_id"], at)]
        return self._batch(StreamCursor(stream.name, position, stream.direction), events), full or window != bound

    def _room_history(self, registry: Registry) -> tuple[EventBatch, bool] | None:
        assert self.synapse is not None
        pending = registry.pending_history()
        if not pending:
            return None
        room = pending[0]
        cursor = room.history_cursor if room.history_cursor is not None else MIN_ORDERING
        limit = self.config.processing.batch_size
        events = self.synapse.room_history(room.room_id, cursor, room.history_upto, limit)
        full = len(events) >= limit
        position = events[-1]["stream_ordering"] if events else room.history_upto
        return self._batch(RoomHistoryCursor(room.room_id, position, done=not full), events), full

    def _batch(self, cursor: StreamCursor | RoomHistoryCursor, found: list[RawEvent]) -> EventBatch:
        events = [event for event in found if not event["soft_failed"]]
        self.emitted += len(events)
        return EventBatch(cursor, events)

    # --- rooms -------------------------------------------------------------

    def _register_rooms(self) -> None:
        assert self.synapse is not None
        bound = LIVE.bound(self.synapse.bounds(self.config.source.event_writers))
        cursor, backfill_cursor = self.cursors[LIVE.name], self.cursors[BACKFILL.name]
        added_at = bound if bound is not None else cursor
        registry_store.register_config_rooms(self.archive, self.config.rooms, added_at=added_at, cursor=cursor,
                                             backfill_cursor=backfill_cursor)
        if not self.config.rooms:
            rooms = [{"room_id": r, "room_name": None, "whatsapp_id": None, "bridge_type": None}
                     for r in self.synapse.all_room_ids()]
            registry_store.register_discovered_rooms(self.archive, rooms, discovered_by="synapse", cursor=cursor,
                                                     backfill_cursor=backfill_cursor)

    @property
    def _auto_discover(self) -> bool:
        return self.bridge is not None and self.config.source.auto_discover_bridged_rooms

    def _maybe_discover(self) -> None:
        """Seed 001 phase 3: every bridged portal room becomes a monitored room."""
        if self.bridge is None or not self._auto_discover or time.monotonic() < self.next_discovery:
            return
        self.next_discovery = time.monotonic() + BRIDGE_DISCOVERY_INTERVAL
        rooms = [{"room_id": p.room_id, "room_name": p.name, "whatsapp_id": p.chat_id,
                  "bridge_type": self.config.source.bridge_type} for p in self.bridge.all_portals()]
        registry_store.register_discovered_rooms(
            self.archive, rooms, discovered_by="bridge", cursor=self.cursors[LIVE.name],
            backfill_cursor=self.cursors[BACKFILL.name], selects=bool(self.config.rooms))

    def _note_newly_archived(self, registry: Registry) -> Registry:
        """Rooms archived from this round on whose history read must cover batches
        already emitted without them (in memory, past the durable cursor)."""
        now = registry.archived_rooms()
        newly = sorted(now - self.archived_before) if self.archived_before is not None else []
        self.archived_before = now
        pending = [r for r in newly if not registry.rooms[r].history_done]
        if not pending:
            return registry
        registry_store.extend_history(self.archive, pending, self.cursors[LIVE.name])
        return registry_store.load_registry(self.archive, self.config.rooms, self._auto_discover)

    # --- late bridge ids ---------------------------------------------------

    def _maybe_fill_late_bridge_ids(self) -> None:
        if self.bridge is None or time.monotonic() < self.next_late_fill:
            return
        self.next_late_fill = time.monotonic() + LATE_FILL_INTERVAL
        filled = fill_late_bridge_ids(self.archive, self._bridge_ids)
        if filled:
            log.info("filled in WhatsApp ids of %d message(s) the bridge recorded late", filled)

    def _bridge_ids(self, event_ids: list[str]) -> dict[str, BridgeIds]:
        assert self.bridge is not None
        return {event_id: BridgeIds(m.message_id, m.sender_id, m.sender_phone)
                for event_id, m in self.bridge.messages(event_ids).items()}
