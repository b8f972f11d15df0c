"""Review: classification of event JSON (pure)."""
from __future__ import annotations

import orjson

from mxarchiverd.classify import build_row, parse_event_json


def test_a_literal_backslash_u0000_typed_by_a_user_is_not_a_nul() -> None:
    text = orjson.dumps({"type": "m.room.message", "content": {"msgtype": "m.text",
                                                                "body": "in JSON, NUL is written \\u0000"}}).decode()
    assert "\\\\u0000" in text  # the JSON holds an escaped backslash, then the letters u0000
    event, problem = parse_event_json(text)
    assert event is not None and problem is None
    row = build_row({"event_id": "$e", "room_id": "!r:x", "type": "m.room.message", "state_key": None,
                     "sender": "@a:x", "origin_server_ts": 1, "stream_ordering": 1, "topological_ordering": 1,
                     "json": text, "soft_failed": False})
    assert row["event"] is not None and row["archive_problem"] is None


def test_control_a_real_nul_escape_is_still_detected() -> None:
    text = orjson.dumps({"type": "m.room.message", "content": {"body": "a\x00b"}}).decode()
    assert "\\u0000" in text
    assert parse_event_json(text)[1] is not None
