"""Synapse's event streams that the follower reads: each declared once, here.

The follower reads them, the dbwriter stores their cursors (by the direction
the cursor carries), `status` shows how far behind each is and `verify` bounds
its comparison by them: all from this one table.

| stream               | direction | positions                                   | bound      |
|----------------------|-----------|---------------------------------------------|------------|
| events               | up        | stream_ordering of live events              | forward    |
| ex_outlier           | up        | ex_outlier_stream position of de-outliered  | forward    |
| backfill             | down      | negative stream_ordering (federation backfill) | backfill |
| ex_outlier_backfill  | down      | ex_outlier_stream positions below 0         | backfill   |

De-outliered events keep their old stream ordering, which the events stream
has long passed; ex_outlier_stream gives them a new position. Events
de-outliered while Synapse backfilled get negative positions there.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mxarchiverd.config import SourceConfig
from mxarchiverd.pipeline.cursors import Direction
from mxarchiverd.sources.synapse_db.bounds import StreamBounds
from mxarchiverd.sources.synapse_db.reader import Positioned, SynapseReader

# (reader, cursor, bound of this read, rooms or None for all, limit) -> (position, event) pairs
StreamRead = Callable[[SynapseReader, int, int, Sequence[str] | None, int], list[Positioned]]

# At most this many stream positions per read: in explicit-rooms mode a query that
# filters a few rooms out of a busy server would otherwise scan the whole gap after
# an outage in one statement and could hit statement_timeout on every retry.
READ_WINDOW = 100_000


@dataclass(frozen=True)
class Stream:
    name: str                                   # archive_cursors.stream
    direction: Direction
    read: StreamRead
    bound: Callable[[StreamBounds], int | None]
    # Followed only with source.follow_backfill (federation backfill).
    backfill: bool

    def followed(self, source: SourceConfig) -> bool:
        return source.follow_backfill or not self.backfill


def _forward_bound(bounds: StreamBounds) -> int | None:
    return bounds.forward


def _backfill_bound(bounds: StreamBounds) -> int | None:
    return bounds.backfill


STREAMS: tuple[Stream, ...] = (
    Stream("events", Direction.UP, SynapseReader.forward, _forward_bound, backfill=False),
    Stream("ex_outlier", Direction.UP, SynapseReader.ex_outliers, _forward_bound, backfill=False),
    Stream("backfill", Direction.DOWN, SynapseReader.backfill, _backfill_bound, backfill=True),
    Stream("ex_outlier_backfill", Direction.DOWN, SynapseReader.ex_outliers_backfill, _backfill_bound, backfill=True),
)
BY_NAME: dict[str, Stream] = {stream.name: stream for stream in STREAMS}
# The live stream: its lag is the archiver's lag, and rooms are added at its position.
LIVE = BY_NAME["events"]
# The downward stream whose position decides whether a room added now has history to read.
BACKFILL = BY_NAME["backfill"]
