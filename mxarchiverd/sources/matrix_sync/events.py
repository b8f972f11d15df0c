"""A client-format event (from /sync or /messages) -> the pipeline's raw-event dict (pure).

The dict has the keys the DB source yields (pipeline/messages.py RAW_EVENT_KEYS),
so the enricher and classifier treat both modes alike. What differs, and why:

- `stream_ordering` and `topological_ordering` are None: the client API does not
  expose Synapse's positions; order within a room comes from the /sync timeline
  and /messages pages, time from `origin_server_ts`.
- `json` is the event re-serialised from the response (compact, UTF-8), not
  Synapse's stored text; it includes the client-only `unsigned` block (age,
  prev_content, redacted_because) and lacks federation fields (auth_events,
  hashes, signatures). An event whose strings cannot be UTF-8 (lone surrogates)
  is written with ASCII escapes instead, so that the text always survives the
  queues and the classifier can set it aside as it does in DB mode.
- `redacts` follows Synapse's rule, not the client's claim: before room v11 the
  top-level `redacts` is the target and a `content.redacts` is ignored (anyone can
  put it in a /redact body); from v11 it is `content.redacts`.
- `soft_failed` is False and `redaction_recheck` false for redactions (None for
  other events): the server already hid soft-failed events and applied its
  recheck before showing the event.

Client-format events from /sync carry no `room_id`; the caller says which room
the event came from. An event that cannot be keyed (no event id, room id or
type) is returned as an EventProblem with its text, never raised.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mxarchiverd.classify import TOP_LEVEL_REDACTS

DEFAULT_ROOM_VERSION = "1"  # spec: m.room.create without room_version means "1"
# Unstable Synapse versions built on v10 keep the pre-v11 redaction rules.
LEGACY_REDACTION_VERSIONS = TOP_LEVEL_REDACTS | frozenset({
    "org.matrix.msc1767.10", "org.matrix.msc3389.10", "org.matrix.msc3757.10",
})
INT64 = 2**63
MAX_ID_LENGTH = 65536


@dataclass(frozen=True)
class EventProblem:
    """An event the archive cannot key; `json` keeps what arrived, for quarantine."""

    room_id: str | None
    event_id: str | None
    reason: str
    json: str


def room_version_of(create_content: Any) -> str:
    """The room version an m.room.create content declares."""
    if isinstance(create_content, dict):
        version = create_content.get("room_version")
        if isinstance(version, str) and version:
            return version
    return DEFAULT_ROOM_VERSION


def event_text(event: Any) -> str:
    """Compact JSON text that always encodes as UTF-8 (and so passes orjson and PostgreSQL text)."""
    text = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(event, ensure_ascii=True, separators=(",", ":"))
    return text


def redaction_target(event: dict[str, Any], room_version: str | None) -> str | None:
    """The event a redaction redacts under the room version's rules (None if not a redaction)."""
    if event.get("type") != "m.room.redaction":
        return None
    if room_version in LEGACY_REDACTION_VERSIONS:
        return _id(event.get("redacts"))
    content = event.get("content")
    in_content = _id(content.get("redacts")) if isinstance(content, dict) else None
    if in_content is not None or room_version is not None:
        return in_content
    return _id(event.get("redacts"))  # version unknown: take the field every version sets


def normalise(event: Any, room_id: str, room_version: str | None) -> dict[str, Any] | EventProblem:
    """The raw-event dict for one client-format event seen in `room_id`."""
    if not isinstance(event, dict):
        return EventProblem(room_id, None, f"event is {type(event).__name__}, not an object",
                            event_text(event))
    problem = _key_problem(event, room_id)
    if problem is not None:
        return EventProblem(room_id, _id(event.get("event_id")), problem, event_text(event))
    return {
        "stream_ordering": None, "topological_ordering": None,
        "event_id": event["event_id"], "room_id": room_id, "type": event["type"],
        "state_key": _safe_str(event.get("state_key")),
        "sender": _safe_str(event.get("sender")),
        "origin_server_ts": _timestamp(event.get("origin_server_ts")),
        "json": event_text(event),
        "soft_failed": False,
        "redacts": redaction_target(event, room_version),
        # Synapse serves a redaction only once it passed its checks (DB mode's recheck is false then).
        "redaction_recheck": False if event["type"] == "m.room.redaction" else None,
        "room_version": room_version,
    }


def _key_problem(event: dict[str, Any], room_id: str) -> str | None:
    for key in ("event_id", "type"):
        if _id(event.get(key)) is None:
            return f"{key} missing or not a usable string"
    claimed = event.get("room_id")
    if claimed is not None and claimed != room_id:
        return f"room_id {_shown(claimed)} differs from the room it was delivered in"
    if _id(room_id) is None:
        return "room_id missing or not a usable string"
    return None


def normalise_all(events: Iterable[Any], room_id: str, room_version: str | None
                  ) -> tuple[list[dict[str, Any]], list[EventProblem]]:
    """(raw events, problems) for a batch, in the given order."""
    good: list[dict[str, Any]] = []
    bad: list[EventProblem] = []
    for event in events:
        result = normalise(event, room_id, room_version)
        (bad if isinstance(result, EventProblem) else good).append(result)  # type: ignore[arg-type]
    return good, bad


def _id(value: Any) -> str | None:
    """A string usable as a key: non-empty, bounded, UTF-8, no NUL (PostgreSQL text)."""
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH or "\x00" in value:
        return None
    return value if _utf8(value) else None


def _safe_str(value: Any) -> str | None:
    """A readable string for a column; the exact value stays in `json`."""
    if not isinstance(value, str):
        return None
    if not _utf8(value):
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value.replace("\x00", "\\u0000")


def _utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _timestamp(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not -INT64 <= value < INT64:
        return None
    return value


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True)[:80]
