"""Event -> archive row classification (pure)."""
from __future__ import annotations

from typing import Any

import orjson

from mxarchiverd.classify import build_row, media_refs, parse_event_json, redacts


def source(content: Any, event_type: str = "m.room.message", json_text: str | None = None,
           **top: Any) -> dict[str, Any]:
    event = {"type": event_type, "content": content, "sender": "@a:x", "origin_server_ts": 5, **top}
    return {"event_id": "$e", "room_id": "!r", "type": event_type, "state_key": None, "sender": "@a:x",
            "origin_server_ts": 5, "stream_ordering": 10, "topological_ordering": 3,
            "json": json_text if json_text is not None else orjson.dumps(event).decode(), "soft_failed": False}


def test_text_reply_in_thread() -> None:
    row = build_row(source({"msgtype": "m.text", "body": "hi", "m.relates_to": {
        "rel_type": "m.thread", "event_id": "$root", "m.in_reply_to": {"event_id": "$prev"}}}))
    assert (row["message_type"], row["thread_id"], row["reply_to_event_id"]) == ("m.text", "$root", "$prev")
    assert row["relation_type"] == "m.thread" and row["relates_to_event_id"] == "$root"
    assert row["event"]["content"]["body"] == "hi" and row["event_raw"] is None


def test_reaction_and_edit_relations() -> None:
    reaction = build_row(source({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$t", "key": "👍"}}, "m.reaction"))
    assert (reaction["message_type"], reaction["reaction_key"], reaction["relates_to_event_id"]) == ("m.reaction", "👍", "$t")
    edit = build_row(source({"msgtype": "m.text", "body": "* x", "m.new_content": {"body": "x"},
                             "m.relates_to": {"rel_type": "m.replace", "event_id": "$o"}}))
    assert edit["relation_type"] == "m.replace" and edit["reaction_key"] is None


def test_redacts_in_both_room_version_layouts() -> None:
    assert redacts("m.room.redaction", {"content": {"redacts": "$new"}}) == "$new"
    assert redacts("m.room.redaction", {"content": {}, "redacts": "$old"}) == "$old"
    assert redacts("m.room.redaction", {"content": {"redacts": "$forged"}, "redacts": "$real"}, "10") == "$real"
    assert redacts("m.room.redaction", {"content": {"redacts": "$new"}, "redacts": "$x"}, "11") == "$new"
    assert redacts("m.room.message", {"content": {"redacts": "$x"}}) is None


def test_encrypted_event_is_flagged_and_unknown_types_are_kept() -> None:
    row = build_row(source({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "abc"}, "m.room.encrypted"))
    assert row["encrypted"] and row["message_type"] == "m.room.encrypted" and row["content"]["ciphertext"] == "abc"
    custom = build_row(source({"x": 1}, "com.example.thing"))
    assert custom["message_type"] == "com.example.thing" and custom["content"] == {"x": 1}


def test_media_refs_for_plain_and_encrypted_attachments_and_thumbnails() -> None:
    refs = media_refs("m.room.message", {"msgtype": "m.image", "body": "cat.png", "url": "mxc://s/abc",
                                         "info": {"mimetype": "image/png", "size": 12, "thumbnail_url": "mxc://s/th"}})
    assert [(r.kind, r.matrix_url, r.mime_type, r.declared_size) for r in refs] == [
        ("file", "mxc://s/abc", "image/png", 12), ("thumbnail", "mxc://s/th", None, None)]
    encrypted = media_refs("m.room.message", {"msgtype": "m.file", "body": "a.pdf",
                                              "file": {"url": "mxc://s/enc", "key": {}, "iv": "x", "hashes": {}}})
    assert encrypted[0].encrypted_file is not None and encrypted[0].matrix_url == "mxc://s/enc"
    assert media_refs("m.sticker", {"body": "s", "url": "mxc://s/st"})[0].media_type == "m.sticker"
    assert media_refs("m.room.message", {"msgtype": "m.text", "body": "mxc://s/not-media"}) == []


def test_wrong_types_never_raise() -> None:
    row = build_row(source({"msgtype": ["m.text"], "body": 3, "m.relates_to": {"rel_type": 5, "event_id": []},
                            "info": "nope", "url": {"x": 1}}))
    assert row["message_type"] == "m.unknown" and row["relation_type"] is None and row["media"] == []
    not_object = build_row(source("a string"))
    assert not_object["content"] == {} and not_object["archive_problem"] == "content is not an object"
    assert not_object["event"]["content"] == "a string"


def test_nul_escape_keeps_exact_text_and_strips_nul_from_every_field() -> None:
    text = ('{"type":"m.room.message","content":{"msgtype":"m.text","body":"a\\u0000b",'
            '"m.relates_to":{"m.in_reply_to":{"event_id":"$x\\u0000"}}}}')
    row = build_row(source(None, json_text=text))
    assert row["event"] is None and row["event_raw"] == text
    assert row["content"]["body"] == "a\ufffdb" and row["reply_to_event_id"] == "$x\ufffd"
    assert "\x00" not in orjson.dumps({k: v for k, v in row.items() if k != "event_raw"}).decode()


def test_invalid_json_and_non_object_json() -> None:
    broken = build_row(source(None, json_text="{nope"))
    assert broken["event_raw"] == "{nope" and broken["archive_problem"].startswith("invalid JSON")
    assert broken["message_type"] == "m.unknown" and broken["content"] == {}
    listed = build_row(source(None, json_text="[1, 2]"))
    assert listed["archive_problem"] == "event JSON is list, not an object"


def test_an_unforeseen_failure_yields_a_raw_row(monkeypatch: object) -> None:
    import mxarchiverd.classify as classify

    def explode(*_: object) -> None:
        raise RecursionError("too deep")

    monkeypatch.setattr(classify, "media_refs", explode)  # type: ignore[attr-defined]
    row = build_row(source({"msgtype": "m.text", "body": "x"}))
    assert row["archive_problem"] == "could not classify: RecursionError: too deep"
    assert row["event_raw"].startswith("{") and row["message_type"] == "m.room.message"


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


def test_a_decrypted_event_is_classified_by_its_plaintext_and_keeps_its_ciphertext() -> None:
    cipher = {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgA", "session_id": "s1",
              "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"}}
    plaintext = {"msgtype": "m.image", "body": "map.png", "file": {"url": "mxc://hs/abc", "key": {}, "iv": "x",
                                                                   "hashes": {"sha256": "y"}, "v": "v2"},
                 "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"}}
    event = {**source(cipher, "m.room.encrypted"), "decrypted": {"type": "m.room.message", "content": plaintext}}
    row = build_row(event)
    assert (row["event_type"], row["message_type"], row["encrypted"], row["decrypted"]) == (
        "m.room.message", "m.image", True, True)
    assert row["content"] == row["original_content"] == plaintext and row["event"]["content"] == cipher
    assert row["relation_type"] == "m.replace" and row["relates_to_event_id"] == "$orig"
    assert [ref["matrix_url"] for ref in row["media"]] == ["mxc://hs/abc"] and row["pending_decryption"] is None


def test_ciphertext_without_its_key_waits_with_its_reason() -> None:
    waiting = {"session_id": "s1", "reason": "unknown_session", "withheld_code": None}
    row = build_row({**source({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgA"}, "m.room.encrypted"),
                     "undecrypted": waiting})
    assert (row["event_type"], row["decrypted"], row["pending_decryption"]) == ("m.room.encrypted", False, waiting)
