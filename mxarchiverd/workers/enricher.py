"""Enricher stage: raw events -> classified archive rows with names and WhatsApp ids.

Lookups are batched per batch (one query per kind, never per message) and cached.
"""
from __future__ import annotations

import time

from mxarchiverd.archive.batches import encoded
from mxarchiverd.archive.connection import open_archive
from mxarchiverd.classify import build_row
from mxarchiverd.db import connect_source
from mxarchiverd.enrich import enrich_row, room_summary
from mxarchiverd.pipeline.messages import ArchiveRow, EventBatch, RoomSummary, RowBatch
from mxarchiverd.sources.bridge_db import BridgedMessage, BridgeReader
from mxarchiverd.sources.matrix_sync.room_state import ArchivedRoomState
from mxarchiverd.sources.room_state import RoomStateCache
from mxarchiverd.sources.synapse_db.reader import SynapseReader
from mxarchiverd.workers.stage import Message, TransformStage, opened


class Enricher(TransformStage):
    role = "enricher"

    def open(self) -> None:
        source = self.config.source
        deadline = time.monotonic() + self.config.daemon.startup_timeout
        self.state = self._room_state(deadline)
        self.bridge: BridgeReader | None = None
        if source.bridge_db_url is not None:
            bconn = connect_source(source.bridge_db_url.value, purpose="enricher bridge", deadline=deadline,
                                   statement_timeout=source.statement_timeout)
            self.bridge = BridgeReader(bconn, source.bridge_id, source.statement_timeout)
        self.events_seen = 0

    def _room_state(self, deadline: float) -> RoomStateCache | ArchivedRoomState:
        """Names from Synapse's database, or in bot mode from the state events archived so far."""
        source = self.config.source
        if source.mode == "matrix_sync":
            return ArchivedRoomState(open_archive(self.config, purpose="enricher", deadline=deadline,
                                                  autocommit=True))
        assert source.synapse_db_url is not None
        conn = connect_source(source.synapse_db_url.value, purpose="enricher synapse", deadline=deadline,
                              statement_timeout=source.statement_timeout)
        return RoomStateCache(SynapseReader(conn))

    def close(self) -> None:
        for state in opened(self, "state"):
            state.close()
        for bridge in opened(self, "bridge"):
            bridge.conn.close()

    def handle(self, message: Message) -> list[Message]:
        assert isinstance(message, EventBatch)
        events = message.events
        self.state.invalidate(message.context + events)
        thumbnails = self.config.processing.media_thumbnails
        rows = [build_row(event, thumbnails=thumbnails) for event in events]
        rooms = self._rooms(rows)
        names = self.state.display_names([(row["room_id"], row["sender"], self.state.ordering(row)) for row in rows])
        bridged = self._bridged(rows, rooms)
        for row, name in zip(rows, names, strict=True):
            enrich_row(row, rooms[row["room_id"]], name, bridged.get(row["event_id"]) or bridged.get(row["sender"]))
        self.events_seen += len(rows)
        return [encoded(RowBatch(message.cursor, rows, list(rooms.values())))]

    def stats(self) -> dict[str, float]:
        return {"enriched": float(self.events_seen)}

    def _rooms(self, rows: list[ArchiveRow]) -> dict[str, RoomSummary]:
        room_ids = {row["room_id"] for row in rows}
        infos = self.state.room_info(room_ids)
        # Messages (non-state events) are what the bridge sends once it saved the portal.
        with_messages = {row["room_id"] for row in rows if row["state_key"] is None}
        portals = self.bridge.portals(room_ids, with_messages) if self.bridge else {}
        kind = self.config.source.bridge_type
        return {r: room_summary(r, infos[r], portals.get(r), kind) for r in room_ids}

    def _bridged(self, rows: list[ArchiveRow], rooms: dict[str, RoomSummary]) -> dict[str, BridgedMessage]:
        """Bridge rows for events in portal rooms, keyed by event id, else by sender mxid."""
        if self.bridge is None:
            return {}
        in_portals = [r for r in rows if rooms[r["room_id"]]["whatsapp_id"]]
        if not in_portals:
            return {}
        found: dict[str, BridgedMessage] = dict(self.bridge.messages([r["event_id"] for r in in_portals]))
        senders = {r["sender"] for r in in_portals if r["event_id"] not in found}
        found.update(self.bridge.ghosts_by_mxid(senders))
        return found
