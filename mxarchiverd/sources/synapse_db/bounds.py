"""The commit-safe bounds of Synapse's event streams (pure).

Synapse allocates stream orderings before commit and commits rooms concurrently,
so a higher id can be visible while a lower one is still in flight. Each event
writer records in stream_positions the position up to which everything it
allocated has finished; the minimum over all writers' rows is safe to read up to
(synapse-bridge-facts.md §2.4, §2.6). A configured writer without a row yet holds the bound.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class StreamBounds:
    # Highest stream ordering safe to read on the forward stream; None = hold.
    forward: int | None
    # Lowest (most negative) ordering safe to read on the federation-backfill stream.
    backfill: int | None


def compute_bounds(rows: Iterable[tuple[str, str, int]], writers: tuple[str, ...]) -> StreamBounds:
    """rows are (stream_name, instance_name, stream_id) from stream_positions."""
    forward: dict[str, int] = {}
    backfill: dict[str, int] = {}
    for stream, instance, position in rows:
        if stream == "events":
            forward[instance] = position
        elif stream == "backfill":
            backfill[instance] = position
    return StreamBounds(_forward_bound(forward, writers), _backfill_bound(backfill))


def _forward_bound(positions: dict[str, int], writers: tuple[str, ...]) -> int | None:
    # Every row counts, listed writer or not: Synapse deletes the rows of instances
    # that stop being writers, so a row means a writer that may have ids in flight.
    if not positions or any(w not in positions for w in writers):
        return None
    return min(positions.values())


def _backfill_bound(positions: dict[str, int]) -> int | None:
    # Backfill orderings count down from -1; the writer that has progressed least
    # (the value closest to zero) bounds what is safe.
    if not positions:
        return None
    return max(positions.values())
