"""Turn one Synapse event into one archive row (pure; no I/O).

Defensive by design: event JSON comes from other servers and bridges, so every
field is read with its type checked, and anything odd is recorded in
`archive_problem` instead of failing the batch (DESIGN.md invariant 4).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

CONTENT_NOT_OBJECT = "content is not an object"
MEDIA_MSGTYPES = frozenset({"m.image", "m.video", "m.audio", "m.file"})
NUL_ESCAPE = "\\u0000"


@dataclass(frozen=True)
class MediaRef:
    kind: str  # "file" or "thumbnail"
    matrix_url: str
    media_type: str  # m.image, m.video, m.audio, m.file, m.sticker
    encrypted_file: dict[str, Any] | None
    original_filename: str | None
    mime_type: str | None
    declared_size: int | None


def parse_event_json(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """(event, problem). JSONB rejects \\u0000 and lone surrogates, so those keep the raw text."""
    try:
        event = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc}"
    if not isinstance(event, dict):
        return None, f"event JSON is {type(event).__name__}, not an object"
    # The escape text alone is not proof: a user may have typed a backslash before "u0000".
    if NUL_ESCAPE in text and _has_nul(event):
        return event, "contains \\u0000, which JSONB cannot store; exact text kept in event_raw"
    return event, None


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def build_row(source: dict[str, Any], *, thumbnails: bool = True) -> dict[str, Any]:
    """Like classify_event, but an unforeseen failure on one event yields a raw row, never an exception."""
    try:
        return classify_event(source, thumbnails=thumbnails)
    except Exception as exc:  # noqa: BLE001 - one hostile event must not stall the stream
        return fallback_row(source, f"could not classify: {type(exc).__name__}: {exc}")


def fallback_row(source: dict[str, Any], problem: str) -> dict[str, Any]:
    """The event's columns from Synapse's events table, and its JSON as exact text."""
    row: dict[str, Any] = {key: None for key in ("thread_id", "reply_to_event_id", "relation_type", "relates_to_event_id",
                                 "reaction_key", "event", "original_content")}
    row.update({key: source[key] for key in ("event_id", "room_id", "state_key", "stream_ordering",
                                               "topological_ordering")})
    row.update(sender=source["sender"] or "", timestamp=_timestamp(source, None), message_type=source["type"],
               event_type=source["type"], encrypted=source["type"] == "m.room.encrypted", content={},
               event_raw=source["json"], archive_problem=problem, media=[], redacts=source.get("redacts"),
               redaction_recheck=source.get("redaction_recheck"))
    return row


def classify_event(source: dict[str, Any], *, thumbnails: bool = True) -> dict[str, Any]:
    """The archived_messages row (plus media refs) for one event from the poller.

    A decrypted Megolm event (bot mode: `source["decrypted"]`, the plaintext's type
    and content) is classified by its plaintext; `event` keeps the ciphertext.
    """
    event, problem = parse_event_json(source["json"])
    content = _dict(event.get("content")) if event else {}
    if event is not None and not isinstance(event.get("content"), dict):
        problem = problem or CONTENT_NOT_OBJECT
    event_type = source["type"]
    plaintext = _dict(source.get("decrypted"))
    if plaintext and isinstance(plaintext.get("content"), dict) and _str(plaintext.get("type")):
        event_type, content = plaintext["type"], plaintext["content"]
    relates = _dict(content.get("m.relates_to"))
    relation_type = _str(relates.get("rel_type"))
    row = {
        "event_id": source["event_id"],
        "room_id": source["room_id"],
        "sender": source["sender"] or _str(event.get("sender") if event else None) or "",
        "timestamp": _timestamp(source, event),
        "message_type": message_type(event_type, content),
        "event_type": event_type,
        "state_key": source["state_key"],
        "stream_ordering": source["stream_ordering"],
        "topological_ordering": source["topological_ordering"],
        "thread_id": _str(relates.get("event_id")) if relation_type == "m.thread" else None,
        "reply_to_event_id": _str(_dict(relates.get("m.in_reply_to")).get("event_id")),
        "relation_type": relation_type,
        "relates_to_event_id": _str(relates.get("event_id")) if relation_type else None,
        "reaction_key": _str(relates.get("key")) if relation_type == "m.annotation" else None,
        "redacts": source.get("redacts") or (redacts(event_type, event, source.get("room_version")) if event else None),
        "redaction_recheck": source.get("redaction_recheck"),
        "encrypted": source["type"] == "m.room.encrypted",
        "archive_problem": problem,
        # Still ciphertext: why, and which session it waits for (archive/batches.py lists it).
        "pending_decryption": source.get("undecrypted") if event_type == "m.room.encrypted" else None,
        "decrypted": bool(plaintext) and event_type != "m.room.encrypted",
        "media": [ref.__dict__ for ref in media_refs(event_type, content) if thumbnails or ref.kind == "file"],
    }
    if event is not None and problem in (None, CONTENT_NOT_OBJECT):
        # A decrypted row's own content (before edits) is its plaintext, not event.content.
        row.update(event=event, event_raw=None, content=content,
                   original_content=content if row["decrypted"] else None)
        return row
    # Lossless: the exact text in event_raw, and every other field readable with
    # NULs replaced (PostgreSQL text cannot hold them either).
    row = strip_nul({**row, "event": None, "content": content, "original_content": content})
    row["event_raw"] = source["json"]
    return row


def message_type(event_type: str, content: dict[str, Any]) -> str:
    if event_type == "m.room.message":
        return _str(content.get("msgtype")) or "m.unknown"
    return event_type


# Room versions whose redaction events carry `redacts` at the top level (before v11).
TOP_LEVEL_REDACTS = frozenset({"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"})


def redacts(event_type: str, event: dict[str, Any], room_version: str | None = None) -> str | None:
    """The target when Synapse's redactions table did not say (synapse-bridge-facts.md §3).

    Before room v11 only the top-level `redacts` counts: a `content.redacts` there is
    whatever the client put in the /redact body, and must not redact someone else.
    """
    if event_type != "m.room.redaction":
        return None
    if room_version in TOP_LEVEL_REDACTS:
        return _str(event.get("redacts"))
    return _str(_dict(event.get("content")).get("redacts")) or (None if room_version else _str(event.get("redacts")))


def media_refs(event_type: str, content: dict[str, Any]) -> list[MediaRef]:
    """Attachments of m.image/video/audio/file and m.sticker, also inside an edit's m.new_content."""
    refs = _refs_of(event_type, content)
    new_content = content.get("m.new_content")
    if isinstance(new_content, dict):
        refs += _refs_of(event_type, new_content)
    return refs


def _refs_of(event_type: str, content: dict[str, Any]) -> list[MediaRef]:
    if event_type == "m.sticker":
        media_type = "m.sticker"
    elif event_type == "m.room.message" and _str(content.get("msgtype")) in MEDIA_MSGTYPES:
        media_type = content["msgtype"]
    else:
        return []
    info = _dict(content.get("info"))
    name = _str(content.get("filename")) or _str(content.get("body"))
    refs = []
    main = _ref("file", media_type, content.get("url"), content.get("file"), name, info)
    thumb_info = _dict(info.get("thumbnail_info"))
    thumb = _ref("thumbnail", media_type, info.get("thumbnail_url"), info.get("thumbnail_file"), None, thumb_info)
    for ref in (main, thumb):
        if ref is not None:
            refs.append(ref)
    return refs


def _ref(kind: str, media_type: str, url: Any, file: Any, name: str | None, info: dict[str, Any]) -> MediaRef | None:
    encrypted = file if isinstance(file, dict) and isinstance(file.get("url"), str) else None
    matrix_url = encrypted["url"] if encrypted else _str(url)
    if not matrix_url:
        return None
    size = info.get("size")
    plausible = isinstance(size, int) and not isinstance(size, bool) and 0 <= size < 2**63
    return MediaRef(kind, matrix_url, media_type, encrypted, name, _str(info.get("mimetype")),
                    size if plausible else None)


def strip_nul(value: Any) -> Any:
    """Replace NUL characters (which PostgreSQL text and JSONB cannot hold) with U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {strip_nul(k): strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_nul(v) for v in value]
    return value


def _timestamp(source: dict[str, Any], event: dict[str, Any] | None) -> int:
    ts = source.get("origin_server_ts")
    if isinstance(ts, int):
        return ts
    ts = event.get("origin_server_ts") if event else None
    return ts if isinstance(ts, int) and not isinstance(ts, bool) and -(2**63) <= ts < 2**63 else 0


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
