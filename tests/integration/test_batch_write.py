"""One batch, one transaction, one round trip (archive/batches.py) against a real PostgreSQL.

The archive is Supabase, across a network, so the dbwriter sends a batch's
statements in one pipeline. What one statement must know of another's effect
(an edit's redaction, what a purge clears) is read back in SQL; these tests show
it still is, that a failure anywhere leaves nothing of the batch, and count the
round trips through a loopback proxy.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import psycopg
import pytest

from mxarchiverd.archive.batches import encoded, write_batch
from mxarchiverd.archive.migrations import migrate
from mxarchiverd.classify import build_row
from mxarchiverd.pipeline.cursors import StreamCursor
from mxarchiverd.pipeline.channels import decode, encode
from mxarchiverd.pipeline.messages import RowBatch, from_wire, to_wire
from tests.support.tcp_proxy import TcpProxy

ROOM, ALICE = "!room:x", "@alice:x"


@pytest.fixture
def archive(fresh_db: str) -> Iterator[str]:
    with psycopg.connect(fresh_db, autocommit=True, prepare_threshold=None) as conn:
        migrate(conn)
    yield fresh_db


def connect(dsn: str) -> psycopg.Connection:
    # The dbwriter's connection: autocommit, write_batch sends BEGIN ... COMMIT itself.
    return psycopg.connect(dsn, autocommit=True, prepare_threshold=None)


class Events:
    """Source events as the poller hands them on, with increasing stream orderings."""

    def __init__(self) -> None:
        self.ordering = 0

    def make(self, event_id: str, event_type: str, content: dict[str, Any], **top: Any) -> dict[str, Any]:
        self.ordering += 1
        event = {"type": event_type, "content": content, "sender": ALICE, "origin_server_ts": self.ordering,
                 "room_id": ROOM, "event_id": event_id, **top}
        return {"event_id": event_id, "room_id": ROOM, "type": event_type, "state_key": None, "sender": ALICE,
                "origin_server_ts": self.ordering, "stream_ordering": self.ordering, "topological_ordering": 1,
                "json": orjson.dumps(event).decode(), "soft_failed": False, "redacts": top.get("redacts")}

    def text(self, event_id: str, body: str) -> dict[str, Any]:
        return self.make(event_id, "m.room.message", {"msgtype": "m.text", "body": body})

    def image(self, event_id: str) -> dict[str, Any]:
        return self.make(event_id, "m.room.message", {"msgtype": "m.image", "body": "cat.png",
                                                      "url": "mxc://x/cat", "info": {"size": 3}})

    def edit(self, event_id: str, target: str, body: str) -> dict[str, Any]:
        return self.make(event_id, "m.room.message", {
            "msgtype": "m.text", "body": f"* {body}", "m.new_content": {"msgtype": "m.text", "body": body},
            "m.relates_to": {"rel_type": "m.replace", "event_id": target}})

    def redaction(self, event_id: str, target: str) -> dict[str, Any]:
        return self.make(event_id, "m.room.redaction", {"redacts": target}, redacts=target)

    def batch(self, *events: dict[str, Any], position: int | None = None) -> RowBatch:
        return RowBatch(StreamCursor("events", self.ordering if position is None else position),
                        [build_row(e) for e in events])


def message(conn: psycopg.Connection, event_id: str) -> tuple[Any, ...]:
    row = conn.execute("SELECT content ->> 'body', redacted, edited_at IS NOT NULL FROM archived_messages"
                       " WHERE event_id = %s", (event_id,)).fetchone()
    assert row is not None, f"{event_id} is not archived"
    return tuple(row)


def cursor(conn: psycopg.Connection) -> int | None:
    row = conn.execute("SELECT position FROM archive_cursors WHERE stream = 'events'").fetchone()
    return None if row is None else int(row[0])


def test_a_batch_is_one_round_trip(archive: str) -> None:
    events, proxy = Events(), TcpProxy.start_for(archive)
    try:
        with connect(proxy.dsn_for(archive)) as conn:
            before = proxy.round_trips
            # As the dbwriter gets it: encoded by the enricher, through the queue's codec.
            batch = encoded(events.batch(events.text("$a", "hello"), events.image("$b"),
                                         events.edit("$c", "$a", "hello!"), events.redaction("$d", "$b")))
            result = write_batch(conn, from_wire(decode(encode(to_wire(batch)))), purge=True)
            trips = proxy.round_trips - before
            assert (result.inserted, result.redacted) == (4, 1)
            assert message(conn, "$a") == ("hello!", False, True) and cursor(conn) == 4
            jobs = conn.execute("SELECT matrix_url, state FROM media_jobs").fetchall()
            assert jobs == [("mxc://x/cat", "purged")], "the redacted image's job is dropped"
    finally:
        proxy.stop()
    assert trips == 1, f"a batch took {trips} round trips"


def test_an_edit_redacted_by_a_later_batch_gives_the_original_its_own_text_back(archive: str) -> None:
    events = Events()
    with connect(archive) as conn:
        write_batch(conn, events.batch(events.text("$a", "first"), events.edit("$e", "$a", "second")), purge=False)
        assert message(conn, "$a") == ("second", False, True)
        write_batch(conn, events.batch(events.redaction("$r", "$e")), purge=False)
        assert message(conn, "$a") == ("first", False, False), "no valid edit left: not edited"
        assert message(conn, "$e")[1] is True


def test_purge_clears_what_this_batch_redacts_and_what_it_brings_that_was_redacted_before(archive: str) -> None:
    events = Events()
    with connect(archive) as conn:
        write_batch(conn, events.batch(events.image("$img"), events.edit("$e", "$img", "renamed")), purge=True)
        conn.execute("UPDATE media_jobs SET state = 'done'")
        write_batch(conn, events.batch(events.redaction("$r", "$img")), purge=True)
        assert message(conn, "$img")[:2] == (None, True), "the redacted image's content is cleared"
        assert message(conn, "$e")[:2] == (None, False), "and so is its edit's (same sender)"
        jobs = conn.execute("SELECT state FROM media_jobs").fetchall()
        assert jobs == [("purge",)], "its uploaded object is queued for deletion"
        # A redaction archived before its target (the target arrives in a later batch).
        write_batch(conn, events.batch(events.redaction("$r2", "$late")), purge=True)
        write_batch(conn, events.batch(events.text("$late", "secret")), purge=True)
        assert message(conn, "$late")[:2] == (None, True)


def test_a_failure_in_the_last_statement_leaves_nothing_of_the_batch(archive: str) -> None:
    events = Events()
    with connect(archive) as conn:
        write_batch(conn, events.batch(events.text("$kept", "kept")), purge=False)
        # A position beyond bigint: the cursor's statement, sent last, fails on the server.
        bad = events.batch(events.text("$lost", "lost"), events.redaction("$r", "$kept"), position=2**63)
        with pytest.raises(psycopg.errors.NumericValueOutOfRange):
            write_batch(conn, bad, purge=True)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        count = conn.execute("SELECT count(*) FROM archived_messages WHERE event_id IN ('$lost', '$r')").fetchone()
        assert count == (0,) and message(conn, "$kept") == ("kept", False, False) and cursor(conn) == 1
        write_batch(conn, events.batch(events.text("$next", "next")), purge=False)
        assert message(conn, "$next") == ("next", False, False) and cursor(conn) == 4
