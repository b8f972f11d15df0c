"""Review: the poller's bridge auto-discovery must stay cheap against a remote archive.

The archive is Supabase, reached over the internet (tens of milliseconds per round
trip), and the poller proves it is alive only between rounds: the supervisor kills
it after daemon.heartbeat_timeout (60 s) of silence. Discovery runs every 60 s
and sends one INSERT ... ON CONFLICT per portal, without a heartbeat in between,
so with ~1000 WhatsApp chats at 60 ms the poller is killed in every discovery and
the pipeline restarts forever. Counted here in round trips, not timed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.bridge import add_portal
from tests.support.pipeline import pipeline, write_config
from tests.support.synth import add_room, insert_event, set_position

pytestmark = pytest.mark.synapse
PORTALS = 300


class CountingConnection:
    """The poller's real archive connection, counting the statements sent through it."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.statements = 0

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        self.statements += 1
        return self.conn.execute(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def test_bridge_discovery_round_trips_do_not_grow_with_the_number_of_portals(
        synapse_schema_db: str, fresh_db: str, bridge_db: str, tmp_path: Path) -> None:
    with psycopg.connect(synapse_schema_db, autocommit=True) as source:
        add_room(source, "!review-listed:synth.test")
        _, position = insert_event(source, "!review-listed:synth.test", "m.room.message",
                                   {"msgtype": "m.text", "body": "hi"})
        set_position(source, position)
    with psycopg.connect(bridge_db, autocommit=True) as conn, conn.transaction():
        for n in range(PORTALS):
            add_portal(conn, f"1203630000000{n:05d}@g.us", f"!portal{n}:synth.test", f"chat {n}")
    config = write_config(tmp_path, synapse_schema_db, fresh_db, "rooms:\n  - room_id: '!review-listed:synth.test'\n",
                          f"  bridge_db_url: '{bridge_db}'\n  auto_discover_bridged_rooms: true\n")
    beats = []
    with pipeline(config) as p:
        p.follower.beat = lambda: beats.append(1)
        counting = CountingConnection(p.follower.archive)
        p.follower.archive = counting
        p.follower.next_discovery = 0.0
        p.follower._maybe_discover()
        p.follower.archive = counting.conn
        with psycopg.connect(fresh_db) as conn:
            registered = conn.execute("SELECT count(*) FROM monitored_rooms WHERE discovered_by = 'bridge'").fetchone()
    assert registered == (PORTALS,), "control: discovery did register every portal"
    assert counting.statements <= 10 or len(beats) >= PORTALS // 100, (
        f"{counting.statements} archive round trips and {len(beats)} heartbeats for {PORTALS} portals")
