"""BridgeReader.portals against the bridge schema: a room becomes a portal after it was first seen."""
from __future__ import annotations

import psycopg

from mxarchiverd.sources.bridge_db import MISS_TTL, BridgeReader
from tests.support.bridge import BRIDGE_ID, add_portal

ROOM = "!later-portal:synth.test"
CHAT = "120363022222222222@g.us"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_miss_expires_and_a_room_with_messages_is_asked_again(bridge_db: str) -> None:
    clock = FakeClock()
    with psycopg.connect(bridge_db, autocommit=True) as conn:
        reader = BridgeReader(conn, BRIDGE_ID, 10.0, clock=clock)
        assert reader.portals({ROOM}) == {ROOM: None}
        add_portal(conn, CHAT, ROOM, "Familie")
        assert reader.portals({ROOM}) == {ROOM: None}, "state events only: the miss is kept for a while"
        clock.now += MISS_TTL
        portal = reader.portals({ROOM})[ROOM]
        assert portal is not None and portal.chat_id == CHAT


def test_messages_in_a_room_recheck_a_fresh_miss(bridge_db: str) -> None:
    with psycopg.connect(bridge_db, autocommit=True) as conn:
        reader = BridgeReader(conn, BRIDGE_ID, 10.0, clock=FakeClock())
        assert reader.portals({ROOM}, with_messages={ROOM}) == {ROOM: None}
        add_portal(conn, CHAT, ROOM, "Familie")
        portal = reader.portals({ROOM}, with_messages={ROOM})[ROOM]
        assert portal is not None and portal.chat_id == CHAT
