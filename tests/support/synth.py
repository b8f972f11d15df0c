"""Write events straight into a copy of Synapse's real schema (created by Synapse).

For the edge cases a real client cannot produce on demand: out-of-order commits,
negative (federation backfill) orderings, de-outliered, rejected and soft-failed
events, \\u0000 and megabyte bodies. The copy is made with pg_dump --schema-only
from the database the real Synapse fixture created, so tables, columns, indexes
and sequences are Synapse's own.
"""
from __future__ import annotations

import itertools
import subprocess
from contextlib import contextmanager
from collections.abc import Iterator
from typing import Any

import orjson
import psycopg
import pytest

from tests.support.postgres import PgServer
from tests.support.synapse import SynapseServer

SERVER = "synth.test"
_counter = itertools.count(1)
_schema_sql: dict[str, bytes] = {}


def synapse_schema_sql(synapse: SynapseServer) -> bytes:
    if "sql" not in _schema_sql:
        dump = subprocess.run(
            ["pg_dump", "--schema-only", "--no-owner", "--no-privileges", synapse.db_dsn],
            check=True, capture_output=True, timeout=120).stdout
        # Recent pg_dump emits psql meta-commands (\\restrict); the server cannot run them.
        lines = [line for line in dump.splitlines(keepends=True) if not line.startswith(b"\\")]
        _schema_sql["sql"] = b"".join(lines)
    return _schema_sql["sql"]


@pytest.fixture
def synapse_schema_db(synapse: SynapseServer, pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database with Synapse's schema."""
    dsn = pg_server.create_database("synth", c_locale=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(synapse_schema_sql(synapse))
        conn.execute("SELECT pg_catalog.set_config('search_path', 'public', false)")
    yield dsn


def new_event_id() -> str:
    return f"$synth{next(_counter)}x{id(_counter) % 9973}"


def add_room(conn: psycopg.Connection, room_id: str, room_version: str = "10") -> None:
    conn.execute("INSERT INTO rooms (room_id, is_public, creator, room_version) VALUES (%s, false, %s, %s)"
                 " ON CONFLICT DO NOTHING", (room_id, f"@admin:{SERVER}", room_version))


def next_ordering(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT nextval('events_stream_seq')").fetchone()[0])  # type: ignore[index]


def insert_event(conn: psycopg.Connection, room_id: str, event_type: str, content: Any, *,
                 sender: str = f"@alice:{SERVER}", stream_ordering: int | None = None,
                 event_id: str | None = None, outlier: bool = False, rejected: str | None = None,
                 soft_failed: bool = False, json_text: str | None = None, ts: int = 1_700_000_000_000,
                 state_key: str | None = None, top_level: dict[str, Any] | None = None) -> tuple[str, int]:
    """Insert one event as Synapse's persister would; returns (event_id, stream_ordering)."""
    event_id = event_id or new_event_id()
    ordering = stream_ordering if stream_ordering is not None else next_ordering(conn)
    event = {"type": event_type, "room_id": room_id, "sender": sender, "content": content,
             "origin_server_ts": ts, "depth": abs(ordering), **(top_level or {})}
    if state_key is not None:
        event["state_key"] = state_key
    text = json_text if json_text is not None else orjson.dumps(event).decode()
    metadata = orjson.dumps({"soft_failed": True} if soft_failed else {}).decode()
    conn.execute(
        """INSERT INTO events (topological_ordering, event_id, type, room_id, processed, outlier, depth,
                               origin_server_ts, received_ts, sender, contains_url, instance_name,
                               stream_ordering, state_key, rejection_reason)
           VALUES (%s, %s, %s, %s, true, %s, %s, %s, %s, %s, false, 'master', %s, %s, %s)""",
        (abs(ordering), event_id, event_type, room_id, outlier, abs(ordering), ts, ts, sender,
         ordering, state_key, rejected))
    conn.execute("INSERT INTO event_json (event_id, room_id, internal_metadata, json, format_version)"
                 " VALUES (%s, %s, %s, %s, 3)", (event_id, room_id, metadata, text))
    if rejected:
        conn.execute("INSERT INTO rejections (event_id, reason, last_check) VALUES (%s, %s, '0')",
                     (event_id, rejected))
    return event_id, ordering


def set_position(conn: psycopg.Connection, position: int, stream: str = "events", instance: str = "master") -> None:
    """What Synapse's writer does after a persist: record how far everything has finished."""
    conn.execute("""INSERT INTO stream_positions (stream_name, instance_name, stream_id) VALUES (%s, %s, %s)
                    ON CONFLICT (stream_name, instance_name) DO UPDATE SET stream_id = EXCLUDED.stream_id""",
                 (stream, instance, position))


def insert_redaction(conn: psycopg.Connection, room_id: str, target: str, *, reason: str | None = None,
                     recheck: bool = False, **kwargs: Any) -> tuple[str, int]:
    """A room v11+ redaction plus the redactions row Synapse's persister writes with it."""
    content: dict[str, Any] = {"redacts": target}
    if reason is not None:
        content["reason"] = reason
    event_id, ordering = insert_event(conn, room_id, "m.room.redaction", content, **kwargs)
    conn.execute("INSERT INTO redactions (event_id, redacts, have_censored, received_ts, recheck)"
                 " VALUES (%s, %s, false, 0, %s)", (event_id, target, recheck))
    return event_id, ordering


@contextmanager
def open_source(dsn: str, rooms: dict[str, str]) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a Synapse-schema database with `rooms` (room id -> version) created."""
    conn = psycopg.connect(dsn, autocommit=True)
    try:
        for room_id, version in rooms.items():
            add_room(conn, room_id, room_version=version)
        yield conn
    finally:
        conn.close()


def text(body: str) -> dict[str, str]:
    """The content of a plain m.text message."""
    return {"msgtype": "m.text", "body": body}
