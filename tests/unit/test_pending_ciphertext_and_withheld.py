"""Pending ciphertext by session, the session an event needs, and withheld-key records."""
from __future__ import annotations

import pytest

from mxarchiverd.e2ee.ciphertext import NotMegolmEvent, Reason, SessionRef, megolm_ref
from mxarchiverd.e2ee.pending import PendingIndex
from mxarchiverd.e2ee.room_keys import WithheldParseError, WithheldRecord, parse_withheld

ROOM, OTHER_ROOM = "!room:archive.test", "!other:archive.test"
A, B, C = SessionRef(ROOM, "sA"), SessionRef(ROOM, "sB"), SessionRef(OTHER_ROOM, "sA")


def encrypted(**changes: object) -> dict:
    event = {"type": "m.room.encrypted", "room_id": ROOM, "event_id": "$e", "sender": "@a:x",
             "content": {"algorithm": "m.megolm.v1.aes-sha2", "session_id": "sA",
                         "ciphertext": "AwgA...", "sender_key": "k", "device_id": "D"}}
    for key, value in changes.items():
        if key.startswith("content_"):
            name = key.removeprefix("content_")
            if value is None:
                event["content"].pop(name)
            else:
                event["content"][name] = value
        elif value is None:
            event.pop(key)
        else:
            event[key] = value
    return event


def test_an_encrypted_event_names_its_room_and_session() -> None:
    assert megolm_ref(encrypted()) == A
    # sender_key and device_id are deprecated (v1.3): their absence is fine.
    assert megolm_ref(encrypted(content_sender_key=None, content_device_id=None)) == A


@pytest.mark.parametrize("changes,field", [
    ({"type": "m.room.message"}, "type"),
    ({"content": "x"}, "content"),
    ({"content_algorithm": "m.olm.v1.curve25519-aes-sha2"}, "content.algorithm"),
    ({"content_session_id": None}, "content.session_id"),
    ({"content_ciphertext": 5}, "content.ciphertext"),
    ({"room_id": None}, "room_id"),
])
def test_events_that_are_not_megolm_name_the_field(changes: dict, field: str) -> None:
    with pytest.raises(NotMegolmEvent) as refused:
        megolm_ref(encrypted(**changes))
    assert str(refused.value).startswith(f"{field}: ")


def test_final_reasons_are_the_ones_no_key_can_fix() -> None:
    assert not Reason.UNKNOWN_SESSION.final and not Reason.UNKNOWN_INDEX.final
    assert not Reason.WITHHELD.final  # the code decides; a later key still decrypts
    assert Reason.MALFORMED.final and Reason.REPLAYED_INDEX.final and Reason.ROOM_MISMATCH.final


def test_the_index_finds_the_events_a_new_key_unlocks() -> None:
    index = PendingIndex()
    index.add("$2", A)
    index.add("$1", A)
    index.add("$3", B)
    index.add("$4", C)
    assert len(index) == 4 and "$3" in index
    assert index.waiting_for([B, SessionRef(ROOM, "unknown"), A, B]) == [(B, ["$3"]), (A, ["$1", "$2"])]
    assert index.counts_by_room() == {ROOM: 3, OTHER_ROOM: 1}
    assert index.sessions() == sorted([A, B, C])


def test_decrypted_events_leave_the_index_and_empty_sessions_vanish() -> None:
    index = PendingIndex()
    index.add("$1", A)
    index.add("$2", B)
    index.discard("$1")
    index.discard("$never-added")
    assert index.waiting_for([A]) == [] and index.sessions() == [B]
    index.add("$2", B)  # idempotent
    index.add("$2", C)  # and a changed ref moves the event
    assert index.waiting_for([B, C]) == [(C, ["$2"])] and len(index) == 1


def withheld(**content: object) -> dict:
    base = {"algorithm": "m.megolm.v1.aes-sha2", "room_id": ROOM, "session_id": "sA",
            "sender_key": "curveKey", "code": "m.unverified", "reason": "Device not verified"}
    base.update(content)
    return {"type": "m.room_key.withheld", "sender": "@alice:archive.test",
            "content": {k: v for k, v in base.items() if v is not None}}


def test_a_withheld_key_becomes_a_record_with_its_code() -> None:
    assert parse_withheld(withheld()) == WithheldRecord(
        sender="@alice:archive.test", sender_key="curveKey", code="m.unverified",
        reason="Device not verified", ref=A)
    assert parse_withheld(withheld()).final
    assert not parse_withheld(withheld(code="m.unavailable")).final


def test_no_olm_covers_every_session_so_it_has_no_ref() -> None:
    record = parse_withheld(withheld(code="m.no_olm", room_id=None, session_id=None, reason=None))
    assert record.ref is None and record.reason is None and not record.final


def test_a_long_reason_is_cut_short() -> None:
    assert len(parse_withheld(withheld(reason="x" * 5000)).reason or "") == 500


@pytest.mark.parametrize("event,field", [
    ({**withheld(), "type": "m.room_key"}, "type"),
    (withheld(code=None), "content.code"),
    (withheld(sender_key=None), "content.sender_key"),
    (withheld(session_id=None), "content.session_id"),
    (withheld(algorithm="m.megolm.v2"), "content.algorithm"),
    ({**withheld(), "sender": 3}, "sender"),
    ({**withheld(), "content": []}, "content"),
])
def test_withheld_events_missing_a_required_field_name_it(event: dict, field: str) -> None:
    with pytest.raises(WithheldParseError) as refused:
        parse_withheld(event)
    assert str(refused.value).startswith(f"{field}: ")


def test_importing_any_e2ee_module_does_not_import_nio() -> None:
    # DB mode imports status and the CLI, which may name these modules; nio loads only on use.
    import subprocess
    import sys
    code = ("import sys, importlib, pkgutil, mxarchiverd.e2ee as p\n"
            "for m in pkgutil.iter_modules(p.__path__):\n"
            "    importlib.import_module('mxarchiverd.e2ee.' + m.name)\n"
            "print(sorted(n for n in ('nio', 'vodozemac', 'aiohttp', 'peewee') if n in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"
