"""Decrypt archived Megolm events with nio's Olm machine, and learn which keys just arrived.

Takes the event JSON the archive holds (from /sync, /messages or Synapse's DB),
not nio event objects, so ciphertext archived by either source mode goes the
same way. The store is checked for the session before nio is asked: nio logs a
warning and queues key requests for every miss, which a re-scan of thousands of
archived events must not set off.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mxarchiverd.e2ee.ciphertext import (
    Decrypted, NotMegolmEvent, Outcome, Reason, SessionRef, Undecrypted, megolm_ref,
)
from mxarchiverd.e2ee.room_keys import WITHHELD_TYPE, WithheldParseError, WithheldRecord, parse_withheld

if TYPE_CHECKING:
    from nio import AsyncClient
    from nio.crypto import Olm

JsonDict = dict[str, Any]
# What nio's EncryptionError messages say, mapped to reasons (nio 0.26, vodozemac 0.10).
_ERROR_REASONS = (
    ("unknown message index", Reason.UNKNOWN_INDEX),
    ("Duplicate message index", Reason.REPLAYED_INDEX),
    ("Device keys mismatch", Reason.BAD_CIPHERTEXT),
    ("Error parsing payload", Reason.BAD_PLAINTEXT),
    ("no session found", Reason.UNKNOWN_SESSION),
)


@dataclass(frozen=True)
class KeyNews:
    """What one batch of to-device events changed about Megolm keys."""

    arrived: list[SessionRef] = field(default_factory=list)   # now held by the store
    withheld: list[WithheldRecord] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)        # withheld events we could not read


def _olm(client: AsyncClient) -> Olm:
    if client.olm is None:
        raise RuntimeError("the client has no crypto store loaded (restore_session first)")
    return client.olm


def find_session(client: AsyncClient, ref: SessionRef) -> Any | None:
    """The inbound session for ``ref`` whatever its sender key, or None."""
    for sessions in _olm(client).inbound_group_store[ref.room_id].values():
        if ref.session_id in sessions:
            return sessions[ref.session_id]
    return None


def held(client: AsyncClient, refs: Iterable[SessionRef]) -> list[SessionRef]:
    """The refs the store has a key for, in order, once each."""
    return [ref for ref in dict.fromkeys(refs) if find_session(client, ref) is not None]


def decrypt_archived(client: AsyncClient, event: Mapping[str, Any], *, event_id: str | None = None,
                     withheld: Mapping[SessionRef, WithheldRecord] | None = None) -> Outcome:
    """Try to decrypt one archived ``m.room.encrypted`` event; never raises for bad input.

    ``event_id`` fills in an id the stored JSON lacks (Synapse's event_json of
    room v3+). ``withheld`` maps sessions to refusals, so an unknown session that
    a sender withheld says so.
    """
    try:
        ref = megolm_ref(event)
    except NotMegolmEvent as exc:
        return Undecrypted(None, Reason.MALFORMED, str(exc))
    session = find_session(client, ref)
    if session is None:
        return _missing(ref, withheld)
    return _decrypt_with(client, _as_nio_event(event, event_id, session.sender_key), ref)


def _missing(ref: SessionRef, withheld: Mapping[SessionRef, WithheldRecord] | None) -> Undecrypted:
    record = withheld.get(ref) if withheld else None
    if record is not None:
        return Undecrypted(ref, Reason.WITHHELD, f"withheld by {record.sender}: {record.code}",
                           withheld_code=record.code)
    return Undecrypted(ref, Reason.UNKNOWN_SESSION, f"no key yet for session {ref.session_id}")


def _as_nio_event(event: Mapping[str, Any], event_id: str | None, sender_key: str) -> JsonDict:
    # nio's schema wants sender_key and device_id, which v1.3+ senders may leave out
    # (deprecated); the held session knows the sender key.
    content = dict(event["content"])
    content.setdefault("sender_key", sender_key)
    content.setdefault("device_id", "")
    shaped = dict(event, content=content)
    if event_id is not None:
        shaped["event_id"] = event_id
    shaped.setdefault("origin_server_ts", 0)
    return shaped


def _decrypt_with(client: AsyncClient, shaped: JsonDict, ref: SessionRef) -> Outcome:
    from nio import MegolmEvent
    from nio.exceptions import EncryptionError

    parsed = MegolmEvent.from_dict(shaped)
    if not isinstance(parsed, MegolmEvent):
        return Undecrypted(ref, Reason.MALFORMED, f"nio refused the event: {type(parsed).__name__}")
    try:
        clear = _olm(client).decrypt_megolm_event(parsed, ref.room_id)
    except EncryptionError as exc:
        return Undecrypted(ref, _reason_of(str(exc)), str(exc)[:300])
    return _decrypted(clear, ref)


def _reason_of(message: str) -> Reason:
    for marker, reason in _ERROR_REASONS:
        if marker in message:
            return reason
    return Reason.BAD_CIPHERTEXT


def _decrypted(clear: Any, ref: SessionRef) -> Outcome:
    source = getattr(clear, "source", None)
    if not isinstance(source, dict) or not isinstance(source.get("content"), dict):
        return Undecrypted(ref, Reason.BAD_PLAINTEXT, f"plaintext is {type(clear).__name__}")
    named_room = source.get("room_id")
    if named_room is not None and named_room != ref.room_id:
        return Undecrypted(ref, Reason.ROOM_MISMATCH, f"plaintext names room {named_room}")
    return Decrypted(ref, str(source.get("type", "")), source["content"],
                     bool(getattr(clear, "verified", False)), str(getattr(clear, "sender_key", "")))


def key_news(client: AsyncClient, to_device_events: Iterable[Any]) -> KeyNews:
    """Read a sync's ``to_device_events`` (after nio decrypted them) for key arrivals and refusals.

    A room key or forwarded key counts only once the store holds its session:
    nio hands back the event even when it dropped the key (a bad session id, an
    unrequested forward).
    """
    from nio import RoomKeyEvent, UnknownToDeviceEvent

    news = KeyNews()
    for event in to_device_events:
        if isinstance(event, RoomKeyEvent):  # ForwardedRoomKeyEvent is a subclass
            news.arrived.append(SessionRef(event.room_id, event.session_id))
        elif isinstance(event, UnknownToDeviceEvent) and event.type == WITHHELD_TYPE:
            _add_withheld(news, event.source)
    return KeyNews(held(client, news.arrived), news.withheld, news.malformed)


def _add_withheld(news: KeyNews, source: Mapping[str, Any]) -> None:
    try:
        news.withheld.append(parse_withheld(source))
    except WithheldParseError as exc:
        news.malformed.append(f"m.room_key.withheld from {source.get('sender')!r}: {exc}")
