"""The bot kicked from a room: the kick is reported, the hole has bounds, the admin API fills it."""
from __future__ import annotations

from pathlib import Path

import pytest

from mxarchiverd.sources.matrix_sync.client import ClientSettings, MatrixSyncClient
from mxarchiverd.sources.matrix_sync.membership import fillable_by_member, track_holes
from mxarchiverd.sources.matrix_sync.paging import STOP_EVENT, hole_job, pages
from mxarchiverd.sources.matrix_sync.session import Credentials
from tests.integration.test_bot_gaps_and_history import (  # noqa: F401 - fixtures
    alice, bot, ids, room_with_bot, sync_plan,
)
from tests.support.nio_driver import NioDriver, register_bot, unique
from tests.support.synapse import SynapseServer

pytestmark = pytest.mark.synapse
BRIDGE_REASON = "User is not in remote chat"


def admin_bot(synapse: SynapseServer, state_dir: Path) -> MatrixSyncClient:
    user_id, password = register_bot(synapse, unique("adminbot"), admin=True)
    settings = ClientSettings(Credentials(synapse.base_url, user_id, password), state_dir,
                              pickle_key="pickle-" + "a" * 24, request_timeout_s=20)
    return MatrixSyncClient.open(settings)


def kick_and_return(alice: NioDriver, bot: MatrixSyncClient, visibility: str) -> dict:
    """Kick the bot, send while it is out, invite and rejoin; what each sync planned."""
    room = room_with_bot(alice, bot, history_visibility=visibility)
    first = sync_plan(bot, None, 1, set())
    known = {room}
    before = alice.send_text(room, "seen before the kick")
    seen = sync_plan(bot, first.next_batch, 10, known)
    alice.kick(room, bot.user_id, BRIDGE_REASON)
    hidden = alice.send_many(room, 5, prefix="while the bot is out")
    alice.invite(room, bot.user_id)
    out = sync_plan(bot, seen.next_batch, 10, known)
    bot.join(room)
    back = sync_plan(bot, out.next_batch, 10, known)
    return {"room": room, "before": before, "hidden": hidden, "seen": seen, "out": out, "back": back}


def test_kick_is_reported_with_reason_and_the_hole_with_bounds(alice: NioDriver,
                                                              bot: MatrixSyncClient) -> None:
    run = kick_and_return(alice, bot, "joined")
    room, out, back = run["room"], run["out"], run["back"]
    assert run["before"] in ids(run["seen"].room(room).events)
    (kick,) = out.memberships
    assert (kick.kind, kick.sender, kick.reason, kick.room_id) == ("kicked", alice.user_id, BRIDGE_REASON, room)
    assert kick.loses_access and out.room(room).section == "leave"
    assert [(i.room_id, i.inviter) for i in out.invites] == [(room, alice.user_id)]
    opened = track_holes({}, out.memberships)
    assert [h.after_event_id for h in opened.opened] == [kick.event_id]
    assert opened.open_now[room].is_open
    closed = track_holes(opened.open_now, back.memberships)
    (hole,) = closed.closed
    join = next(e for e in back.room(room).events if e["event_id"] == hole.before_event_id)
    assert join["type"] == "m.room.member" and join["state_key"] == bot.user_id
    assert hole.after_ts <= hole.before_ts and not closed.open_now
    # Under "joined" visibility the bot's own pages over the hole hold nothing sent
    # while it was out: empty chunks that still carry an `end`, then the kick.
    job = hole_job(room, hole.after_event_id, limit=2)  # from now back to the kick
    paged = list(pages(bot.fetcher(), job))
    assert paged[-1].reason == STOP_EVENT
    assert not set(run["hidden"]) & {e["event_id"] for p in paged for e in p.events}
    assert any(not p.events and not p.done for p in paged), "expected an empty page that is not the end"
    assert not fillable_by_member("joined")
    assert bot.is_server_admin() is False


def test_shared_history_hole_is_filled_by_the_bot_itself_after_rejoining(
        alice: NioDriver, bot: MatrixSyncClient) -> None:
    run = kick_and_return(alice, bot, "shared")
    hole = track_holes(track_holes({}, run["out"].memberships).open_now,
                       run["back"].memberships).closed[0]
    paged = list(pages(bot.fetcher(), hole_job(run["room"], hole.after_event_id, limit=2)))
    filled = [e["event_id"] for p in paged for e in p.events]
    assert paged[-1].reason == STOP_EVENT and fillable_by_member("shared")
    assert set(run["hidden"]) <= set(filled) and len(filled) == len(set(filled))


def test_admin_messages_fill_the_hole(synapse: SynapseServer, alice: NioDriver, tmp_path: Path) -> None:
    with admin_bot(synapse, tmp_path / "admin-state") as bot:
        assert bot.is_server_admin() is True
        run = kick_and_return(alice, bot, "joined")
        room = run["room"]
        hole = track_holes(track_holes({}, run["out"].memberships).open_now,
                           run["back"].memberships).closed[0]
        job = hole_job(room, hole.after_event_id, limit=2)
        paged = list(pages(bot.fetcher(admin=True), job))
        filled = [e["event_id"] for p in paged for e in p.events]
        assert paged[-1].reason == STOP_EVENT
        assert set(run["hidden"]) <= set(filled)
        assert hole.after_event_id not in filled and len(filled) == len(set(filled))
