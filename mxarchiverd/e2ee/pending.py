"""Which archived ciphertext waits for which Megolm session, so a new key finds its events.

The archive database is the durable record (the lead's pending table); this
index is the in-memory view a stage rebuilds from it at start and keeps
current, so that a burst of room keys costs dictionary lookups, not queries.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from mxarchiverd.e2ee.ciphertext import SessionRef


class PendingIndex:
    def __init__(self) -> None:
        self._by_session: defaultdict[SessionRef, set[str]] = defaultdict(set)
        self._session_of: dict[str, SessionRef] = {}

    def __len__(self) -> int:
        return len(self._session_of)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._session_of

    def add(self, event_id: str, ref: SessionRef) -> None:
        """Record that ``event_id`` waits for ``ref`` (idempotent; a new ref moves it)."""
        self.discard(event_id)
        self._by_session[ref].add(event_id)
        self._session_of[event_id] = ref

    def discard(self, event_id: str) -> None:
        """Forget ``event_id`` (decrypted, or given up); unknown ids are ignored."""
        ref = self._session_of.pop(event_id, None)
        if ref is None:
            return
        waiting = self._by_session[ref]
        waiting.discard(event_id)
        if not waiting:
            del self._by_session[ref]

    def waiting_for(self, refs: Iterable[SessionRef]) -> list[tuple[SessionRef, list[str]]]:
        """For each ref with waiting events (in the order given, once each): its event ids, sorted."""
        seen: set[SessionRef] = set()
        found = []
        for ref in refs:
            if ref in seen or ref not in self._by_session:
                continue
            seen.add(ref)
            found.append((ref, sorted(self._by_session[ref])))
        return found

    def sessions(self) -> list[SessionRef]:
        return sorted(self._by_session)

    def counts_by_room(self) -> dict[str, int]:
        """Pending events per room, for status."""
        counts: Counter[str] = Counter()
        for ref, events in self._by_session.items():
            counts[ref.room_id] += len(events)
        return dict(counts)
