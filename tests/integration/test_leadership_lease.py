"""The leadership lease and its fencing against a real PostgreSQL (archive/leadership.py):
one holder at a time, a new token on every takeover, and a batch under an old token
writes nothing."""
from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from mxarchiverd.archive import leadership as lease
from mxarchiverd.archive.batches import write_batch
from mxarchiverd.archive.leadership import Fence, Fenced, check_fence
from mxarchiverd.archive.migrations import migrate
from mxarchiverd.pipeline.cursors import StreamCursor
from mxarchiverd.pipeline.messages import RowBatch
from tests.support.waiting import wait_for

SHORT = 0.5  # seconds; the waits below are on conditions, this only bounds them


@pytest.fixture
def archive(fresh_db: str) -> Iterator[str]:
    with psycopg.connect(fresh_db, autocommit=True, prepare_threshold=None) as conn:
        migrate(conn)
    yield fresh_db


def connect(dsn: str, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(dsn, autocommit=autocommit, prepare_threshold=None)


def cursor_position(dsn: str) -> int | None:
    with connect(dsn) as conn:
        row = conn.execute("SELECT position FROM archive_cursors WHERE stream = 'events'").fetchone()
    return row[0] if row else None


def empty_batch(position: int) -> RowBatch:
    return RowBatch(StreamCursor("events", position))


def test_one_holder_at_a_time_and_every_takeover_a_new_token(archive: str) -> None:
    with connect(archive) as a, connect(archive) as b:
        first = lease.acquire(a, "host-a:1", 60)
        assert first == 1
        assert lease.acquire(b, "host-b:1", 60) is None, "a valid lease is not taken"
        assert lease.renew(a, "host-a:1", first, 60)
        assert lease.acquire(a, "host-a:1", 60) == 2, "the holder itself takes it anew with a new token"
        assert lease.renew(a, "host-a:1", 2, SHORT)
        second = wait_for(lambda: lease.acquire(b, "host-b:1", 60), 10, "the lease to run out and be taken")
        assert second == 3
        assert not lease.renew(a, "host-a:1", 2, 60), "the old holder cannot renew after a takeover"
        current = lease.read_lease(a)
        assert current is not None and current.holder == "host-b:1" and current.token == 3 and current.valid


def test_release_lets_a_standby_take_over_at_once(archive: str) -> None:
    with connect(archive) as a, connect(archive) as b:
        token = lease.acquire(a, "host-a:1", 3600)
        assert token is not None and lease.acquire(b, "host-b:1", 3600) is None
        lease.release(a, "host-a:1", token)
        assert lease.acquire(b, "host-b:1", 3600) == token + 1


@pytest.mark.parametrize("one_round_trip", [True, False], ids=["dbwriter's pipeline", "inside a transaction"])
def test_a_batch_under_an_old_token_writes_nothing(archive: str, one_round_trip: bool) -> None:
    with connect(archive) as a, connect(archive) as b, connect(archive, autocommit=one_round_trip) as writer:
        old = lease.acquire(a, "host-a:1", SHORT)
        assert old is not None
        write_batch(writer, empty_batch(10), purge=False, fence=Fence(old, 5.0))
        assert cursor_position(archive) == 10
        wait_for(lambda: lease.acquire(b, "host-b:1", 60), 10, "a takeover")
        with pytest.raises(Fenced):
            write_batch(writer, empty_batch(20), purge=False, fence=Fence(old, 5.0))
        assert cursor_position(archive) == 10


def test_a_takeover_waits_for_the_batch_in_flight_and_renewals_never_do(archive: str) -> None:
    with connect(archive) as a, connect(archive) as b, connect(archive, autocommit=False) as writer:
        old = lease.acquire(a, "host-a:1", 60)
        assert old is not None
        with writer.transaction():
            check_fence(writer, Fence(old, 30.0))
            assert lease.renew(a, "host-a:1", old, SHORT), "a renewal does not wait for the batch"
            wait_for(lambda: not lease.read_lease(b).valid, 10, "the lease to run out")  # type: ignore[union-attr]
            assert lease.acquire(b, "host-b:1", 60) is None, "the takeover waits while the batch is open"
        assert lease.acquire(b, "host-b:1", 60) == old + 1


def test_a_leader_frozen_inside_a_batch_does_not_block_a_takeover_for_long(archive: str) -> None:
    with connect(archive) as a, connect(archive) as b, connect(archive, autocommit=False) as frozen:
        old = lease.acquire(a, "host-a:1", SHORT)
        assert old is not None
        frozen.execute("BEGIN")  # and then nothing more, like a process stopped mid-batch
        check_fence(frozen, Fence(old, 1.0))
        token = wait_for(lambda: lease.acquire(b, "host-b:1", 60), 20, "the server to end the idle transaction")
        assert token == old + 1
        with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
            frozen.execute("SELECT 1")


def test_status_lists_the_leader_and_the_standbys(archive: str) -> None:
    with connect(archive) as conn:
        token = lease.acquire(conn, "host-a:1", 60)
        assert token is not None
        lease.register(conn, "host-a:1", "host-a", 1, True, 60)
        lease.register(conn, "host-b:2", "host-b", 2, False, 60)
        members = {m.holder: m.leading for m in lease.read_members(conn)}
        assert members == {"host-a:1": True, "host-b:2": False}
        lease.leave(conn, "host-b:2")
        assert [m.holder for m in lease.read_members(conn)] == ["host-a:1"]


def test_status_shows_who_leads_since_when_and_the_standbys(archive: str, tmp_path) -> None:
    from mxarchiverd.status import _leadership_lines, leadership_facts  # type: ignore[attr-defined]
    with connect(archive) as conn:
        assert leadership_facts(conn)["holder"] is None  # type: ignore[index]
        assert _leadership_lines(leadership_facts(conn)) == []
        token = lease.acquire(conn, "host-a:1", 60)
        lease.register(conn, "host-a:1", "host-a", 1, True, 60)
        lease.register(conn, "host-b:2", "host-b", 2, False, 60)
        facts = leadership_facts(conn)
    assert facts is not None and facts["holder"] == "host-a:1" and facts["token"] == token and facts["since"]
    assert [m["holder"] for m in facts["standbys"]] == ["host-b:2"]
    lines = _leadership_lines(facts)
    assert lines[0].startswith("leader:         host-a:1 since ") and f"fencing token {token}" in lines[0]
    assert lines[1].startswith("standbys:       host-b:2 (seen ")


def test_a_holder_name_in_use_on_another_host_is_found(archive: str) -> None:
    with connect(archive) as conn:
        lease.register(conn, "shared-name", "host-a", 1, True, 60)
        assert lease.holder_elsewhere(conn, "shared-name", "host-b", 12) == "host-a"
        assert lease.holder_elsewhere(conn, "shared-name", "host-a", 12) is None  # a restart on the same host
        assert lease.holder_elsewhere(conn, "other-name", "host-b", 12) is None


def keeper_config(tmp_path, archive: str, holder: str):  # type: ignore[no-untyped-def]
    from tests.support.pipeline import write_config
    return write_config(tmp_path / holder, "postgresql:///unused", archive,
                        f"daemon:\n  ha:\n    enabled: true\n    lease_duration: 2s\n    renew_interval: 500ms\n"
                        f"    holder: {holder}\n")


def test_two_lease_keepers_one_leads_and_the_other_follows_on_release(archive: str, tmp_path) -> None:
    from mxarchiverd.workers.lease_keeper import LeaseKeeper

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = LeaseKeeper(keeper_config(tmp_path, archive, "a"), lambda: None)
    b = LeaseKeeper(keeper_config(tmp_path, archive, "b"), lambda: None)
    a.open()
    b.open()
    try:
        def turn(keeper: LeaseKeeper) -> float:
            keeper.produce()
            return keeper.stats()["fence"]
        first = wait_for(lambda: turn(a), 10, "keeper a to lead")
        for _ in range(3):
            assert turn(b) == 0.0, "b stands by while a renews"
            until = a.standing.valid_until
            wait_for(lambda: turn(a) == first and a.standing.valid_until > until, 5, "a to renew its lease")
        a.close()
        assert wait_for(lambda: turn(b), 10, "keeper b to take over after a released") == first + 1
        assert not [m for m in lease.read_members(b.conn) if m.holder == "a"]  # type: ignore[arg-type]
    finally:
        b.close()
