"""Archived Megolm events decrypt once their key is held, and say why when they cannot.

Real vodozemac sessions and a real nio Olm machine; no homeserver.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mxarchiverd.e2ee.ciphertext import Decrypted, Reason, SessionRef, Undecrypted
from mxarchiverd.e2ee.key_import import import_sessions
from mxarchiverd.e2ee.megolm import decrypt_archived, held
from mxarchiverd.e2ee.pending import PendingIndex
from mxarchiverd.e2ee.room_keys import WithheldRecord
from tests.support.megolm_sender import MegolmSender, offline_bot

TEXT = {"msgtype": "m.text", "body": "hello from the past"}


def test_ciphertext_waits_then_decrypts_after_an_import(tmp_path: Path) -> None:
    sender, bot = MegolmSender(), offline_bot(tmp_path)
    event = sender.encrypt(TEXT)
    first = decrypt_archived(bot, event)
    assert isinstance(first, Undecrypted) and first.reason is Reason.UNKNOWN_SESSION
    assert first.ref == sender.ref
    pending = PendingIndex()
    pending.add(event["event_id"], first.ref)
    refs = import_sessions(bot, [sender.export_entry()]).decryptable
    [(ref, waiting)] = pending.waiting_for(refs)
    assert waiting == [event["event_id"]]
    later = decrypt_archived(bot, event)
    assert isinstance(later, Decrypted)
    assert (later.event_type, later.content, later.ref) == ("m.room.message", TEXT, sender.ref)
    assert later.sender_key == sender.curve25519 and later.verified is False


def test_the_cleartext_relation_joins_the_decrypted_content(tmp_path: Path) -> None:
    sender, bot = MegolmSender(), offline_bot(tmp_path)
    relation = {"rel_type": "m.replace", "event_id": "$original"}
    event = sender.encrypt({"msgtype": "m.text", "body": "* fixed"})
    event["content"]["m.relates_to"] = relation
    import_sessions(bot, [sender.export_entry()])
    outcome = decrypt_archived(bot, event)
    assert isinstance(outcome, Decrypted) and outcome.content["m.relates_to"] == relation


def test_a_key_from_a_later_index_says_unknown_index(tmp_path: Path) -> None:
    sender, bot = MegolmSender(), offline_bot(tmp_path)
    early = sender.encrypt({"msgtype": "m.text", "body": "0"})
    late = sender.encrypt({"msgtype": "m.text", "body": "1"})
    import_sessions(bot, [sender.export_entry(index=1)])
    outcome = decrypt_archived(bot, early)
    assert isinstance(outcome, Undecrypted) and outcome.reason is Reason.UNKNOWN_INDEX
    assert not outcome.reason.final
    assert isinstance(decrypt_archived(bot, late), Decrypted)


def test_a_withheld_session_says_so_with_the_code(tmp_path: Path) -> None:
    sender, bot = MegolmSender(), offline_bot(tmp_path)
    record = WithheldRecord(sender="@alice:archive.test", sender_key=sender.curve25519,
                            code="m.unverified", reason="not verified", ref=sender.ref)
    outcome = decrypt_archived(bot, sender.encrypt(TEXT), withheld={sender.ref: record})
    assert isinstance(outcome, Undecrypted)
    assert (outcome.reason, outcome.withheld_code) == (Reason.WITHHELD, "m.unverified")
    # A key that arrives anyway wins over the refusal.
    import_sessions(bot, [sender.export_entry()])
    assert isinstance(decrypt_archived(bot, sender.encrypt(TEXT), withheld={sender.ref: record}),
                      Decrypted)


def test_events_from_senders_that_omit_the_deprecated_fields_decrypt(tmp_path: Path) -> None:
    sender, bot = MegolmSender(), offline_bot(tmp_path)
    event = sender.encrypt(TEXT, sender_key=None, device_id=None)
    assert "sender_key" not in event["content"]
    import_sessions(bot, [sender.export_entry()])
    assert isinstance(decrypt_archived(bot, event), Decrypted)


def test_an_event_id_missing_from_stored_json_can_be_supplied(tmp_path: Path) -> None:
    sender, bot = MegolmSender(), offline_bot(tmp_path)
    event = sender.encrypt(TEXT)
    event.pop("event_id")  # Synapse's event_json for room v3+ has none
    import_sessions(bot, [sender.export_entry()])
    assert isinstance(decrypt_archived(bot, event, event_id="$fromthecolumn"), Decrypted)


def test_plaintext_that_names_another_room_is_refused(tmp_path: Path) -> None:
    sender, bot = MegolmSender(), offline_bot(tmp_path)
    import_sessions(bot, [sender.export_entry()])
    outcome = decrypt_archived(bot, sender.encrypt(TEXT, payload_room="!elsewhere:archive.test"))
    assert isinstance(outcome, Undecrypted) and outcome.reason is Reason.ROOM_MISMATCH
    assert outcome.reason.final


def test_a_reused_message_index_under_another_event_id_is_refused(tmp_path: Path) -> None:
    sender, bot = MegolmSender(), offline_bot(tmp_path)
    import_sessions(bot, [sender.export_entry()])
    event = sender.encrypt(TEXT)
    assert isinstance(decrypt_archived(bot, event), Decrypted)
    assert isinstance(decrypt_archived(bot, event), Decrypted), "the same event again is fine"
    replay = {**event, "event_id": "$replayed"}
    outcome = decrypt_archived(bot, replay)
    assert isinstance(outcome, Undecrypted) and outcome.reason is Reason.REPLAYED_INDEX


def test_tampered_ciphertext_is_bad_ciphertext(tmp_path: Path) -> None:
    sender, bot = MegolmSender(), offline_bot(tmp_path)
    import_sessions(bot, [sender.export_entry()])
    event = sender.encrypt(TEXT)
    body = event["content"]["ciphertext"]
    event["content"]["ciphertext"] = body[:20] + ("A" if body[20] != "A" else "B") + body[21:]
    outcome = decrypt_archived(bot, event)
    assert isinstance(outcome, Undecrypted) and outcome.reason is Reason.BAD_CIPHERTEXT


@pytest.mark.parametrize("event", [
    {"type": "m.room.message", "content": {}},
    {"type": "m.room.encrypted", "room_id": "!r:x", "content": {"algorithm": "m.olm.v1"}},
    {},
])
def test_input_that_is_not_megolm_is_an_outcome_not_an_exception(tmp_path: Path,
                                                                 event: dict) -> None:
    outcome = decrypt_archived(offline_bot(tmp_path), event)
    assert isinstance(outcome, Undecrypted) and outcome.reason is Reason.MALFORMED
    assert outcome.ref is None and outcome.detail


def test_held_filters_refs_to_those_with_a_key(tmp_path: Path) -> None:
    known, unknown = MegolmSender(), MegolmSender()
    bot = offline_bot(tmp_path)
    import_sessions(bot, [known.export_entry()])
    assert held(bot, [unknown.ref, known.ref, known.ref]) == [known.ref]
    assert held(bot, [SessionRef("!other:x", known.session_id)]) == []


def test_unknown_sessions_are_not_passed_to_nio_so_a_rescan_logs_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sender, bot = MegolmSender(), offline_bot(tmp_path)
    events = [sender.encrypt(TEXT) for _ in range(20)]
    with caplog.at_level(logging.DEBUG):
        outcomes = [decrypt_archived(bot, event) for event in events]
    assert {o.reason for o in outcomes if isinstance(o, Undecrypted)} == {Reason.UNKNOWN_SESSION}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not bot.olm.outgoing_to_device_messages, "no key requests were queued"


def test_at_start_pending_events_whose_key_is_already_held_are_retried(tmp_path: Path) -> None:
    # A key stored by nio just before a crash, with the retry never run.
    from mxarchiverd.e2ee.housekeeping import retry_at_start
    known, unknown = MegolmSender(), MegolmSender()
    bot = offline_bot(tmp_path)
    import_sessions(bot, [known.export_entry()])
    pending = PendingIndex()
    pending.add("$known", known.ref)
    pending.add("$unknown", unknown.ref)
    assert retry_at_start(bot, pending) == [(known.ref, ["$known"])]
