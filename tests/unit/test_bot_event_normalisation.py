"""Client-format events -> the pipeline's raw-event dicts, hostile ones included."""
from __future__ import annotations

import json

import orjson
import pytest

from mxarchiverd.classify import build_row
from mxarchiverd.sources.matrix_sync.events import (
    EventProblem, event_text, normalise, normalise_all, redaction_target, room_version_of,
)
from mxarchiverd.pipeline.messages import RAW_EVENT_KEYS
from mxarchiverd.sources.synapse_db.reader import row_to_event

ROOM = "!room:example.org"
KEYS = set(RAW_EVENT_KEYS)


def message(**extra) -> dict:
    event = {"type": "m.room.message", "event_id": "$e1", "sender": "@a:example.org",
             "origin_server_ts": 1700000000000, "content": {"msgtype": "m.text", "body": "hi"},
             "unsigned": {"age": 5}}
    event.update(extra)
    return event


def test_same_keys_as_the_db_source() -> None:
    raw = normalise(message(), ROOM, "10")
    assert set(raw) == KEYS == set(row_to_event([None] * 13))
    assert raw["room_id"] == ROOM and raw["stream_ordering"] is None and raw["topological_ordering"] is None
    assert raw["soft_failed"] is False and raw["redaction_recheck"] is None and raw["room_version"] == "10"
    assert json.loads(raw["json"]) == message()
    row = build_row(raw)
    assert row["content"]["body"] == "hi" and row["archive_problem"] is None


def test_state_key_and_room_id_from_the_event_when_present() -> None:
    raw = normalise(message(type="m.room.name", state_key="", room_id=ROOM, content={"name": "n"}), ROOM, "11")
    assert raw["state_key"] == "" and raw["type"] == "m.room.name"


@pytest.mark.parametrize("version, event, target", [
    ("10", {"redacts": "$real", "content": {"redacts": "$forged"}}, "$real"),
    ("1", {"content": {"redacts": "$forged"}}, None),
    ("org.matrix.msc3757.10", {"redacts": "$real", "content": {"redacts": "$forged"}}, "$real"),
    ("11", {"redacts": "$compat", "content": {"redacts": "$real"}}, "$real"),
    ("12", {"content": {}}, None),
    ("11", {"content": {"redacts": 5}}, None),
    (None, {"redacts": "$top"}, "$top"),
    (None, {"redacts": "$top", "content": {"redacts": "$content"}}, "$content"),
])
def test_redaction_target_follows_the_room_version(version, event, target) -> None:
    assert redaction_target({"type": "m.room.redaction", **event}, version) == target
    assert redaction_target({"type": "m.room.message", **event}, version) is None


@pytest.mark.parametrize("content, version", [
    ({"room_version": "11", "creator": "@a:b"}, "11"), ({"creator": "@a:b"}, "1"),
    ({"room_version": 11}, "1"), ({"room_version": ""}, "1"), ("junk", "1"), (None, "1"),
])
def test_room_version_of_the_create_event(content, version) -> None:
    assert room_version_of(content) == version


@pytest.mark.parametrize("event, reason", [
    ("a string", "not an object"),
    ([1, 2], "not an object"),
    ({"type": "m.room.message"}, "event_id missing"),
    ({"event_id": "", "type": "m.x"}, "event_id missing"),
    ({"event_id": 5, "type": "m.x"}, "event_id missing"),
    ({"event_id": "$e"}, "type missing"),
    ({"event_id": "$e", "type": ["m.x"]}, "type missing"),
    ({"event_id": "$e\x00", "type": "m.x"}, "event_id missing"),
    ({"event_id": "$e\ud800", "type": "m.x"}, "event_id missing"),
    ({"event_id": "$e", "type": "m.x", "room_id": "!other:example.org"}, "differs"),
])
def test_unkeyable_events_are_reported_not_raised(event, reason) -> None:
    problem = normalise(event, ROOM, "10")
    assert isinstance(problem, EventProblem) and reason in problem.reason
    assert problem.room_id == ROOM
    orjson.dumps(problem.__dict__)  # reportable through the queues as it is


HOSTILE = [
    message(content={"msgtype": "m.text", "body": "nul \x00 inside"}),
    message(content={"msgtype": "m.text", "body": "lone \ud800 surrogate"}),
    message(content="not an object"),
    message(content=None),
    message(origin_server_ts=2**70),
    message(origin_server_ts=True),
    message(origin_server_ts="yesterday"),
    message(sender={"not": "a string"}),
    message(sender="@evil\ud83d:example.org"),
    message(state_key="\x00"),
    message(content={"msgtype": "m.text", "body": "x", "deep": [[[[[[[[[[{}]]]]]]]]]]}),
    message(content={"n": float("nan"), "big": 10**40}),
    message(type="m.room.redaction", redacts=["$x"], content={"redacts": {"$y": 1}}),
]


@pytest.mark.parametrize("event", HOSTILE)
def test_hostile_events_pass_the_queue_and_the_classifier(event) -> None:
    raw = normalise(event, ROOM, "10")
    assert isinstance(raw, dict)
    orjson.dumps(raw)          # the stage queues are orjson envelopes
    raw["json"].encode("utf-8")  # PostgreSQL text (event_raw) takes it
    assert isinstance(raw["origin_server_ts"], (int, type(None)))
    row = build_row(raw)
    assert row["event_id"] == "$e1"
    orjson.dumps({k: v for k, v in row.items() if k != "media"})


def test_lone_surrogates_fall_back_to_ascii_escapes() -> None:
    text = event_text({"body": "a\ud800b", "ok": "é"})
    assert "\\ud800" in text and "\\u00e9" in text
    assert event_text({"ok": "é"}) == '{"ok":"é"}'


def test_a_batch_keeps_order_and_separates_problems() -> None:
    good, bad = normalise_all([message(event_id="$1"), "junk", message(event_id="$2")], ROOM, "11")
    assert [e["event_id"] for e in good] == ["$1", "$2"] and len(bad) == 1
