"""To-device news about Megolm keys, as plain records: withheld keys and key arrivals.

``m.room_key.withheld`` (spec: event schema ``m.room_key.withheld``) tells the
archive that a key is not coming, and why, so ``status`` can say "never" rather
than "not yet". nio does not parse it: it arrives as an UnknownToDeviceEvent
whose ``source`` is the raw event given to :func:`parse_withheld`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mxarchiverd.e2ee.ciphertext import MEGOLM_V1, SessionRef

WITHHELD_TYPE = "m.room_key.withheld"
NO_OLM = "m.no_olm"
MAX_REASON_CHARS = 500
# Codes after which the same sender will not send the key on its own (m.unavailable
# and m.no_olm are about a request or a channel, so a key may still come).
FINAL_CODES = frozenset({"m.blacklisted", "m.unverified", "m.unauthorised",
                         "m.history_not_shared"})


class WithheldParseError(ValueError):
    """A withheld event without a field the spec requires; the message names it."""


@dataclass(frozen=True)
class WithheldRecord:
    """One sender's refusal. ``ref`` is None for ``m.no_olm``, which covers every session."""

    sender: str
    sender_key: str
    code: str
    reason: str | None
    ref: SessionRef | None

    @property
    def final(self) -> bool:
        return self.code in FINAL_CODES


def parse_withheld(event: Mapping[str, Any]) -> WithheldRecord:
    """A record from a raw ``m.room_key.withheld`` to-device event."""
    if event.get("type") != WITHHELD_TYPE:
        raise WithheldParseError(f"type: expected {WITHHELD_TYPE!r}, got {event.get('type')!r}")
    content = event.get("content")
    if not isinstance(content, Mapping):
        raise WithheldParseError("content: missing or not an object")
    if content.get("algorithm") != MEGOLM_V1:
        raise WithheldParseError(f"content.algorithm: expected {MEGOLM_V1!r}, "
                                 f"got {content.get('algorithm')!r}")
    code = _text(content, "code", "content.code")
    return WithheldRecord(
        sender=_text(event, "sender", "sender"),
        sender_key=_text(content, "sender_key", "content.sender_key"),
        code=code, reason=_reason(content.get("reason")), ref=_ref(content, code))


def _ref(content: Mapping[str, Any], code: str) -> SessionRef | None:
    if code == NO_OLM and "session_id" not in content:
        return None
    return SessionRef(_text(content, "room_id", "content.room_id"),
                      _text(content, "session_id", "content.session_id"))


def _text(source: Mapping[str, Any], key: str, where: str) -> str:
    value = source.get(key)
    if not isinstance(value, str) or not value:
        raise WithheldParseError(f"{where}: missing or not a string")
    return value


def _reason(value: object) -> str | None:
    # Free text from another user: kept short, never required.
    return value[:MAX_REASON_CHARS] if isinstance(value, str) else None
