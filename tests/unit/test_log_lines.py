"""Log records reach journald as one line each, in text or JSON, with no secret in them."""
from __future__ import annotations

import json
import logging
import sys

from mxarchiverd.logs import batch_context, fold, formatter, ids
from mxarchiverd.pipeline.cursors import RepairCursor
from mxarchiverd.pipeline.messages import EventBatch

SECRET = "s3cret-service-key"


def record(message: str, *args: object, exc: bool = False, **extra: str) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise RuntimeError(f"boom with {SECRET}\nsecond line")
        except RuntimeError:
            info = sys.exc_info()
    made = logging.LogRecord("mxarchiverd.test", logging.ERROR, __file__, 1, message, args, info)
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_text_folds_a_traceback_into_one_line_and_masks_secrets() -> None:
    line = formatter("text", "uploader", [SECRET]).format(record("upload to %s failed", "https://x", exc=True))
    assert "\n" not in line and "\\n" in line
    assert line.startswith("ERROR mxarchiverd uploader[") and "upload to https://x failed" in line
    assert "RuntimeError: boom with ***" in line and SECRET not in line


def test_text_masks_a_url_password_without_being_told_it() -> None:
    line = formatter("text", None).format(record("cannot reach %s", "postgresql://u:hunter22@db/x"))
    assert line == "ERROR mxarchiverd.test: cannot reach postgresql://u:***@db/x"


def test_json_is_one_object_per_line_with_ids_and_the_traceback() -> None:
    line = formatter("json", "dbwriter", [SECRET]).format(
        record("event %s failed", "$e", exc=True, **ids("!room:x", "$e")))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["role"] == "dbwriter" and entry["message"] == "event $e failed"
    assert entry["room_id"] == "!room:x" and entry["event_id"] == "$e"
    assert "second line" in entry["exception"] and SECRET not in entry["exception"]
    assert entry["time"].endswith("Z")


def test_fold_turns_every_line_break_into_the_two_characters() -> None:
    assert fold("a\r\nb\rc\nd") == "a\\nb\\nc\\nd"


def test_a_failed_batch_is_named_by_its_events_and_rooms() -> None:
    events = [{"event_id": f"$e{i}", "room_id": "!b:x" if i else "!a:x"} for i in range(3)]
    what, extra = batch_context(EventBatch(RepairCursor(), events))
    assert what == "3 event(s) $e0 .. $e2 in !a:x, !b:x"
    assert extra == {"room_id": "!a:x", "event_id": "$e0"}
    assert batch_context(EventBatch(RepairCursor(), [])) == ("an empty batch", {})
