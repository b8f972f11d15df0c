"""Archived Megolm ciphertext as data: which session it needs, and what trying it gave.

Pure (no nio): the archive side and ``status`` use these types without the bot extra.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

JsonDict = dict[str, Any]
MEGOLM_V1 = "m.megolm.v1.aes-sha2"


class NotMegolmEvent(ValueError):
    """The event is not Megolm ciphertext that could ever be decrypted; says which field."""


@dataclass(frozen=True, order=True)
class SessionRef:
    """A Megolm session as senders and key events name it."""

    room_id: str
    session_id: str


class Reason(enum.Enum):
    """Why an event stays ciphertext. ``final`` reasons will not change with a new key."""

    UNKNOWN_SESSION = "unknown_session"  # no key for the session yet
    UNKNOWN_INDEX = "unknown_index"      # key known from a later message index only
    WITHHELD = "withheld"                # the sender said it will not share (see code)
    MALFORMED = "malformed"              # not decryptable Megolm (field missing, wrong algorithm)
    BAD_CIPHERTEXT = "bad_ciphertext"    # MAC or encoding wrong for the session we hold
    REPLAYED_INDEX = "replayed_index"    # index already used by another event: refused
    ROOM_MISMATCH = "room_mismatch"      # the plaintext names another room: refused
    BAD_PLAINTEXT = "bad_plaintext"      # decrypted, but not an event payload

    @property
    def final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset({Reason.MALFORMED, Reason.REPLAYED_INDEX, Reason.ROOM_MISMATCH,
                    Reason.BAD_PLAINTEXT})


@dataclass(frozen=True)
class Decrypted:
    """The clear event: ``event_type`` and ``content`` replace the ciphertext's in the archive.

    ``content`` carries the cleartext ``m.relates_to`` when the plaintext had none
    (relations of encrypted events are sent unencrypted). ``verified`` is nio's
    verdict: the sending device is verified and the key was not forwarded.
    """

    ref: SessionRef
    event_type: str
    content: JsonDict = field(repr=False)
    verified: bool
    sender_key: str


@dataclass(frozen=True)
class Undecrypted:
    ref: SessionRef | None  # None when the event does not even name a session
    reason: Reason
    detail: str
    withheld_code: str | None = None


Outcome = Decrypted | Undecrypted


def megolm_ref(event: Mapping[str, Any]) -> SessionRef:
    """The session an ``m.room.encrypted`` room event needs; :class:`NotMegolmEvent` if none."""
    if event.get("type") != "m.room.encrypted":
        raise NotMegolmEvent(f"type: expected 'm.room.encrypted', got {event.get('type')!r}")
    content = event.get("content")
    if not isinstance(content, Mapping):
        raise NotMegolmEvent("content: missing or not an object")
    if content.get("algorithm") != MEGOLM_V1:
        raise NotMegolmEvent(f"content.algorithm: expected {MEGOLM_V1!r}, "
                             f"got {content.get('algorithm')!r}")
    for name in ("session_id", "ciphertext"):
        if not isinstance(content.get(name), str) or not content.get(name):
            raise NotMegolmEvent(f"content.{name}: missing or not a string")
    room_id = event.get("room_id")
    if not isinstance(room_id, str) or not room_id:
        raise NotMegolmEvent("room_id: missing or not a string")
    return SessionRef(room_id, content["session_id"])
