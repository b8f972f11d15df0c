"""The bot kicked from a room: the kick is reported, the hole has bounds, the admin API fills it."""
from __future__ import annotations

from pathlib import Path

import pytest

from mxarchiverd.sources.matrix_sync.client import MatrixSyncClient
from mxarchiverd.sources.matrix_sync.membership import fillable_by_member, track_holes
from mxarchiverd.sources.matrix_sync.paging import STOP_EVENT, hole_job, pages
from tests.support.nio_driver import (
    NioDriver, bot_settings, ids, register_bot, room_with_bot, sync_plan, unique,
)
from tests.support.synapse import SynapseServer

pytestmark = pytest.mark.synapse
BRIDGE_REASON = "User is not in remote chat"


def admin_bot(synapse: SynapseServer, state_dir: Path) -> MatrixSyncClient:
    user_id, password = register_bot(synapse, unique("adminbot"), admin=True)
    return MatrixSyncClient.open(bot_settings(synapse, user_id, password, state_dir))


def kick_and_return(nio_alice: NioDriver, bot_client: MatrixSyncClient, visibility: str) -> dict:
    """Kick the bot, send while it is out, invite and rejoin; what each sync planned."""
    room = room_with_bot(nio_alice, bot_client, history_visibility=visibility)
    first = sync_plan(bot_client, None, 1, set())
    known = {room}
    before = nio_alice.send_text(room, "seen before the kick")
    seen = sync_plan(bot_client, first.next_batch, 10, known)
    nio_alice.kick(room, bot_client.user_id, BRIDGE_REASON)
    hidden = nio_alice.send_many(room, 5, prefix="while the bot is out")
    nio_alice.invite(room, bot_client.user_id)
    out = sync_plan(bot_client, seen.next_batch, 10, known)
    bot_client.join(room)
    back = sync_plan(bot_client, out.next_batch, 10, known)
    return {"room": room, "before": before, "hidden": hidden, "seen": seen, "out": out, "back": back}


def test_kick_is_reported_with_reason_and_the_hole_with_bounds(nio_alice: NioDriver,
                                                              bot_client: MatrixSyncClient) -> None:
    run = kick_and_return(nio_alice, bot_client, "joined")
    room, out, back = run["room"], run["out"], run["back"]
    assert run["before"] in ids(run["seen"].room(room).events)
    (kick,) = out.memberships
    assert (kick.kind, kick.sender, kick.reason, kick.room_id) == (
        "kicked", nio_alice.user_id, BRIDGE_REASON, room)
    assert kick.loses_access and out.room(room).section == "leave"
    assert [(i.room_id, i.inviter) for i in out.invites] == [(room, nio_alice.user_id)]
    opened = track_holes({}, out.memberships)
    assert [h.after_event_id for h in opened.opened] == [kick.event_id]
    assert opened.open_now[room].is_open
    closed = track_holes(opened.open_now, back.memberships)
    (hole,) = closed.closed
    join = next(e for e in back.room(room).events if e["event_id"] == hole.before_event_id)
    assert join["type"] == "m.room.member" and join["state_key"] == bot_client.user_id
    assert hole.after_ts <= hole.before_ts and not closed.open_now
    # Under "joined" visibility the bot's own pages over the hole hold nothing sent
    # while it was out: empty chunks that still carry an `end`, then the kick.
    job = hole_job(room, hole.after_event_id, limit=2)  # from now back to the kick
    paged = list(pages(bot_client.fetcher(), job))
    assert paged[-1].reason == STOP_EVENT
    assert not set(run["hidden"]) & {e["event_id"] for p in paged for e in p.events}
    assert any(not p.events and not p.done for p in paged), "expected an empty page that is not the end"
    assert not fillable_by_member("joined")
    assert bot_client.is_server_admin() is False


def test_shared_history_hole_is_filled_by_the_bot_itself_after_rejoining(
        nio_alice: NioDriver, bot_client: MatrixSyncClient) -> None:
    run = kick_and_return(nio_alice, bot_client, "shared")
    hole = track_holes(track_holes({}, run["out"].memberships).open_now,
                       run["back"].memberships).closed[0]
    paged = list(pages(bot_client.fetcher(), hole_job(run["room"], hole.after_event_id, limit=2)))
    filled = [e["event_id"] for p in paged for e in p.events]
    assert paged[-1].reason == STOP_EVENT and fillable_by_member("shared")
    assert set(run["hidden"]) <= set(filled) and len(filled) == len(set(filled))


def test_admin_messages_fill_the_hole(synapse: SynapseServer, nio_alice: NioDriver, tmp_path: Path) -> None:
    with admin_bot(synapse, tmp_path / "admin-state") as bot_client:
        assert bot_client.is_server_admin() is True
        run = kick_and_return(nio_alice, bot_client, "joined")
        room = run["room"]
        hole = track_holes(track_holes({}, run["out"].memberships).open_now,
                           run["back"].memberships).closed[0]
        job = hole_job(room, hole.after_event_id, limit=2)
        paged = list(pages(bot_client.fetcher(admin=True), job))
        filled = [e["event_id"] for p in paged for e in p.events]
        assert paged[-1].reason == STOP_EVENT
        assert set(run["hidden"]) <= set(filled)
        assert hole.after_event_id not in filled and len(filled) == len(set(filled))
