"""The /sync filters the bot uses, and the ids the server gave them (pure apart from one file).

Load is the point: lazy-loaded members (only the senders of timeline events, not
every member of every room), a bounded timeline (a longer gap is closed through
/messages, spec §2.1), and nothing the archive does not keep (presence, typing,
receipts, account data). The first sync, which has no `since`, takes a timeline
of one event per room: enough for each room's `prev_batch`, the anchor from which
history and gaps are paged, without every room's recent history in one response.

Filters are uploaded once (POST /user/{userId}/filter) and the id is reused by
content hash, also across restarts; a server that forgot an id gets the filter
again (client.py does that on errors.is_unknown_filter).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mxarchiverd.sources.matrix_sync.session import write_private_file

FILTERS_FILE = "filters.json"
# Synapse caps the timeline at filter_timeline_limit (100 by default) anyway.
MAX_TIMELINE_LIMIT = 1000
FIRST_SYNC_TIMELINE_LIMIT = 1
NOTHING = {"not_types": ["*"]}


def check_timeline_limit(limit: Any, key: str = "timeline_limit") -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_TIMELINE_LIMIT:
        raise ValueError(f"{key}: expected an integer from 1 to {MAX_TIMELINE_LIMIT}, got {limit!r}")
    return limit


def sync_filter(timeline_limit: int) -> dict[str, Any]:
    """The filter of every incremental sync."""
    check_timeline_limit(timeline_limit)
    return {
        "presence": NOTHING,
        "account_data": NOTHING,
        "room": {
            "timeline": {"limit": timeline_limit, "lazy_load_members": True},
            "state": {"lazy_load_members": True},
            "ephemeral": NOTHING,
            "account_data": NOTHING,
            # Rooms the bot was kicked from or left since the last sync still
            # come under rooms.leave; older ones need not be listed again.
            "include_leave": False,
        },
    }


def first_sync_filter() -> dict[str, Any]:
    """The filter of a sync without `since`: one timeline event per room, members lazy."""
    return sync_filter(FIRST_SYNC_TIMELINE_LIMIT)


def messages_filter() -> dict[str, Any]:
    """RoomEventFilter for /messages: members of the page's senders only."""
    return {"lazy_load_members": True}


def canonical(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def filter_key(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(body).encode()).hexdigest()


class FilterIds:
    """Filter ids by (user, content hash), remembered in the state directory."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._ids: dict[str, dict[str, str]] = _load(path) if path else {}

    def get(self, user_id: str, body: dict[str, Any]) -> str | None:
        return self._ids.get(user_id, {}).get(filter_key(body))

    def remember(self, user_id: str, body: dict[str, Any], filter_id: str) -> None:
        self._ids.setdefault(user_id, {})[filter_key(body)] = filter_id
        self._save()

    def forget(self, user_id: str, body: dict[str, Any]) -> None:
        if self._ids.get(user_id, {}).pop(filter_key(body), None) is not None:
            self._save()

    def ensure(self, user_id: str, body: dict[str, Any], upload: Callable[[dict[str, Any]], str]) -> str:
        known = self.get(user_id, body)
        if known is not None:
            return known
        filter_id = upload(body)
        self.remember(user_id, body, filter_id)
        return filter_id

    def _save(self) -> None:
        if self.path is not None:
            write_private_file(self.path, json.dumps(self._ids, indent=2, sort_keys=True) + "\n")


def _load(path: Path) -> dict[str, dict[str, str]]:
    """A missing or damaged file only costs an upload, so it is never an error."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {user: {k: v for k, v in ids.items() if isinstance(k, str) and isinstance(v, str)}
            for user, ids in data.items() if isinstance(user, str) and isinstance(ids, dict)}
