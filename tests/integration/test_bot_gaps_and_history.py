"""Bot mode reading a real Synapse: limited gaps closed exactly once, history to creation."""
from __future__ import annotations

from collections import Counter

import pytest

from mxarchiverd.sources.matrix_sync.client import MatrixSyncClient
from mxarchiverd.sources.matrix_sync.paging import END, gap_job, history_job, pages
from tests.support.nio_driver import NioDriver, ids, room_with_bot, sync_plan

pytestmark = pytest.mark.synapse


def test_limited_timeline_gap_is_closed_exactly_once(nio_alice: NioDriver,
                                                     bot_client: MatrixSyncClient) -> None:
    rooms = [room_with_bot(nio_alice, bot_client) for _ in range(2)]
    first = sync_plan(bot_client, None, 1, set())
    assert {r.room_id for r in first.rooms} >= set(rooms)
    sent = {room: nio_alice.send_many(room, 40, prefix=f"gap {room}") for room in rooms}  # bot "stopped"
    plan = sync_plan(bot_client, first.next_batch, 2, set(rooms))
    for room in rooms:
        room_plan = plan.room(room)
        assert room_plan.limited and room_plan.gap is not None
        assert room_plan.gap.to_token == first.next_batch and room_plan.history is None
        job = gap_job(room, room_plan.gap.from_token, room_plan.gap.to_token, limit=7)
        paged = [e for page in pages(bot_client.fetcher(), job) for e in page.events]
        seen = Counter(ids(room_plan.events) + ids(paged))
        messages = [i for i, n in seen.items() if i in set(sent[room])]
        assert sorted(messages) == sorted(sent[room])
        assert all(n == 1 for n in seen.values()), "an event came twice"
        assert set(ids(paged)) <= set(sent[room]), "the gap reached back past the previous since"
        # Besides the messages, only the state block's lazy-loaded members (current state).
        extra = [e for e in room_plan.events if e["event_id"] not in set(sent[room])]
        assert all(e["type"] == "m.room.member" for e in extra)


def test_history_pages_to_room_creation(nio_alice: NioDriver, bot_client: MatrixSyncClient) -> None:
    room = nio_alice.create_room(name="history")
    before = nio_alice.send_many(room, 30, prefix="old")
    nio_alice.invite(room, bot_client.user_id)
    bot_client.join(room)
    plan = sync_plan(bot_client, None, 1, set(), backfill=True)
    room_plan = plan.room(room)
    assert room_plan.new and room_plan.history is not None and not room_plan.history_complete
    paged = list(pages(bot_client.fetcher(), history_job(room, room_plan.history.from_token, limit=8)))
    last = paged[-1]
    assert last.done and last.reason == END and last.complete
    assert all(not p.done for p in paged[:-1]) and all(p.resume_from for p in paged[:-1])
    events = [e for p in paged for e in p.events]
    assert set(before) <= set(ids(events))
    assert Counter(ids(events)).most_common(1)[0][1] == 1
    assert events[-1]["type"] == "m.room.create" and last.lowest_event_id == events[-1]["event_id"]
    # After a restart only the committed token is left: paging from it gives the rest, the same.
    token = paged[1].resume_from
    rest = [e for p in pages(bot_client.fetcher(), history_job(room, token, limit=8)) for e in p.events]
    assert ids(rest) == ids([e for p in paged[2:] for e in p.events])


def test_history_not_visible_to_the_bot_reports_its_lower_bound(nio_alice: NioDriver,
                                                                bot_client: MatrixSyncClient) -> None:
    room = nio_alice.create_room(history_visibility="joined")
    hidden = nio_alice.send_many(room, 5, prefix="before the bot")
    nio_alice.invite(room, bot_client.user_id)
    bot_client.join(room)
    visible = nio_alice.send_many(room, 3, prefix="after the join")
    plan = sync_plan(bot_client, None, 1, set(), backfill=True)
    job = history_job(room, plan.room(room).history.from_token, limit=2)
    paged = list(pages(bot_client.fetcher(), job))
    events = [e for p in paged for e in p.events]
    assert not set(hidden) & set(ids(events))
    assert set(visible[:-1]) <= set(ids(events))  # the last one came in the sync's timeline
    last = paged[-1]
    # Creation state is visible (sent under the default "shared"), the messages are not.
    assert last.reason == END and last.create_seen and last.restricted_by and not last.complete
    bot_join = next(e for e in events if e["type"] == "m.room.member"
                    and e["state_key"] == bot_client.user_id and e["content"]["membership"] == "join")
    assert last.lowest_event_id == ids(events)[-1]
    older = events[ids(events).index(bot_join["event_id"]) + 1:]
    assert older and all("state_key" in e for e in older), "only state from before the join is shown"


def test_a_sync_repeated_from_the_same_since_delivers_the_same_events(
        nio_alice: NioDriver, bot_client: MatrixSyncClient) -> None:
    """A crash before the commit means the same `since` again: nothing is skipped."""
    room = room_with_bot(nio_alice, bot_client)
    since = sync_plan(bot_client, None, 1, set()).next_batch
    sent = nio_alice.send_many(room, 4, prefix="replayed")
    once = sync_plan(bot_client, since, 10, {room})
    again = sync_plan(bot_client, since, 10, {room})
    assert ids(once.room(room).events) == ids(again.room(room).events)
    assert set(sent) <= set(ids(once.room(room).events))
