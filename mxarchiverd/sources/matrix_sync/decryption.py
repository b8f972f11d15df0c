"""Megolm in the follower: decrypt what arrives, and what is archived once its key comes.

Every event is archived as it arrives. A decrypted event carries its plaintext
(`decrypted`: type and content) and is classified by it; one that cannot be
decrypted yet carries why (`undecrypted`: session, reason, withheld code) and is
archived as ciphertext and listed pending (archive/batches.py). When a key
arrives (a to-device room key or forwarded key, a `keys import` into this
store, a key stored before a crash), the pending ciphertext of its session is
read back from the archive, decrypted, and sent down the pipeline again: the
dbwriter decrypts the rows in place (DecryptionCursor).

Runs on the follower's thread, which is nio's loop thread (e2ee/megolm.py needs it).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import orjson
import psycopg

from mxarchiverd.archive import sync_state
from mxarchiverd.e2ee.ciphertext import Decrypted, SessionRef
from mxarchiverd.e2ee.room_keys import WithheldRecord
from mxarchiverd.pipeline.cursors import DecryptionCursor, Withheld
from mxarchiverd.pipeline.messages import EventBatch, RawEvent

log = logging.getLogger(__name__)
ENCRYPTED = "m.room.encrypted"
RETRY_BATCH = 500
# A session whose key arrived is retried for this long: ciphertext of it may still be on
# its way to the archive (in the queues) when the key comes. The store is also checked
# against every pending session now and then (keys_in_store), so nothing waits forever.
RETRY_WINDOW = 20.0


class Decryptor:
    def __init__(self, nio: Any, withheld: Iterable[tuple[str, str, str, str, str | None]] = ()) -> None:
        self.nio = nio
        # The refusals known so far, so that an event of a withheld session says why.
        self.withheld: dict[SessionRef, WithheldRecord] = {
            SessionRef(room, session): WithheldRecord(sender, "", code, reason, SessionRef(room, session))
            for room, session, sender, code, reason in withheld}
        # Sessions whose keys arrived, and until when their archived ciphertext is looked for.
        self.retry: dict[SessionRef, float] = {}
        self.decrypted = 0
        self.pending = 0

    def annotate(self, events: list[RawEvent]) -> None:
        """Give each Megolm event of a batch its plaintext, or the reason it has none yet."""
        from mxarchiverd.e2ee.megolm import decrypt_archived

        for event in events:
            if event["type"] != ENCRYPTED:
                continue
            parsed = _parsed(event["json"])
            parsed.setdefault("room_id", event["room_id"])  # /sync's events do not carry it
            outcome = decrypt_archived(self.nio, parsed, event_id=event["event_id"], withheld=self.withheld)
            if isinstance(outcome, Decrypted):
                event["decrypted"] = {"type": outcome.event_type, "content": outcome.content}
                self.decrypted += 1
            elif outcome.reason.final:
                # No key will help (a redacted event has no ciphertext left, a replayed index
                # is refused): archived as it is, not waited for.
                log.debug("event %s in %s cannot be decrypted: %s", event["event_id"], event["room_id"],
                          outcome.detail)
            else:
                event["undecrypted"] = {"session_id": outcome.ref.session_id if outcome.ref else None,
                                        "reason": outcome.reason.value, "withheld_code": outcome.withheld_code}
                self.pending += 1

    def after_sync(self, nio_response: Any) -> tuple[Withheld, ...]:
        """Keys and refusals a sync's to-device events brought; the refusals to store."""
        from mxarchiverd.e2ee.megolm import key_news

        if nio_response is None:
            return ()
        news = key_news(self.nio, getattr(nio_response, "to_device_events", ()) or ())
        for problem in news.malformed:
            log.warning("%s", problem)
        self._retry(news.arrived)
        stored = []
        for record in news.withheld:
            if record.ref is None:
                continue  # m.no_olm: about a channel, not a session
            self.withheld[record.ref] = record
            stored.append(Withheld(record.ref.room_id, record.ref.session_id, record.sender, record.code,
                                   record.reason))
            log.info("%s withheld the key of session %s in %s: %s", record.sender, record.ref.session_id,
                     record.ref.room_id, record.code)
        return tuple(stored)

    def keys_in_store(self, archive: psycopg.Connection) -> None:
        """Sessions some archived ciphertext waits for that the store holds now (a key stored
        just before a crash, or imported by `mxarchiverd keys import` into this store)."""
        from mxarchiverd.e2ee.key_import import adopt_stored_sessions
        from mxarchiverd.e2ee.megolm import held

        adopt_stored_sessions(self.nio)
        waiting = [SessionRef(room, session) for room, session in sync_state.pending_sessions(archive)]
        self._retry(held(self.nio, waiting))

    def _retry(self, refs: Iterable[SessionRef]) -> None:
        until = time.monotonic() + RETRY_WINDOW
        for ref in refs:
            self.retry[ref] = until

    def retry_batch(self, archive: psycopg.Connection) -> EventBatch | None:
        """Archived ciphertext of sessions whose keys arrived, decrypted, as one batch."""
        now = time.monotonic()
        self.retry = {ref: until for ref, until in self.retry.items() if until > now}
        if not self.retry:
            return None
        refs = sorted(self.retry)
        found = sync_state.pending_ciphertext(archive, [(r.room_id, r.session_id) for r in refs], RETRY_BATCH)
        if not archive.autocommit:
            archive.commit()  # no snapshot outlives the round
        events = [_raw(row) for row in found]
        self.annotate(events)
        decrypted = [e for e in events if "decrypted" in e]
        if not decrypted:
            return None
        log.info("decrypted %d archived event(s) of %d session(s) whose keys arrived", len(decrypted), len(refs))
        return EventBatch(DecryptionCursor(tuple(sorted({r.session_id for r in refs}))), decrypted)


def _parsed(text: str) -> dict[str, Any]:
    try:
        event = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return event if isinstance(event, dict) else {}


def _raw(row: sync_state.Ciphertext) -> RawEvent:
    """An archived ciphertext row as the pipeline's raw event (its columns are kept: only the
    decrypted ones change when it is written again)."""
    return {"event_id": row.event_id, "room_id": row.room_id, "type": ENCRYPTED, "state_key": row.state_key,
            "sender": row.sender, "origin_server_ts": row.timestamp, "json": orjson.dumps(row.event).decode(),
            "stream_ordering": None, "topological_ordering": None, "soft_failed": False, "redacts": None,
            "redaction_recheck": None, "room_version": None}
