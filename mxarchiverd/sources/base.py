"""What a source is: a follower of a homeserver's events, run by the poller stage.

A source yields EventBatches: raw events (pipeline/messages.py RawEvent) with the
typed cursor position reading them took it to (pipeline/cursors.py). The
dbwriter stores that cursor in the transaction that stores the batch's rows
(archive/cursors.py), so a source never stores its own position: it starts from
the durable cursors at open(), keeps its position in memory, and after any crash
reads again whatever had not been committed.

Two sources implement it:

| mode        | package               | cursor                                      |
|-------------|-----------------------|---------------------------------------------|
| synapse_db  | sources/synapse_db/   | a StreamCursor per Synapse stream; RoomHistoryCursor per added room |
| matrix_sync | sources/matrix_sync/  | the /sync token; per-room pagination tokens |

Besides following, each source answers for `status` (how far behind it is, per
stream) and `verify` (what the archive lacks compared with the source); the
registry of sources is sources/__init__.py.
"""
from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field

from mxarchiverd.config import Config
from mxarchiverd.pipeline.messages import EventBatch


@dataclass(frozen=True)
class Poll:
    """One round of a source."""

    batches: list[EventBatch] = field(default_factory=list)
    # More is waiting to be read right now (so the next round starts at once).
    busy: bool = False
    # Seconds until the next round, when the source knows better than poll_interval
    # (a rate limit's Retry-After, an outage's backoff).
    wait: float | None = None


# While events arrive, rounds come this much more often than processing.poll_interval:
# live traffic then waits for a quarter of it, not all of it, to be read (issue 15:
# p99 at 2,000 events/s), and an idle source still polls at the configured pace.
ACTIVE_POLL_DIVISOR = 4


def round_delay(poll: Poll, poll_interval: float) -> float:
    """Seconds until the source's next round, after `poll`."""
    if poll.wait is not None:
        return poll.wait
    if poll.busy:
        return 0.0
    if any(batch.events for batch in poll.batches):
        return poll_interval / ACTIVE_POLL_DIVISOR
    return poll_interval


class Source(abc.ABC):
    """Follows one homeserver. Every method runs on the poller's main loop.

    `beat` proves progress during long work (a long catch-up read), as Stage.beat.
    """

    def __init__(self, config: Config, beat: Callable[[], None]) -> None:
        self.config = config
        self.beat = beat

    @abc.abstractmethod
    def open(self, deadline: float) -> None:
        """Connect and load the durable cursors; wait for databases until `deadline` (monotonic)."""

    @abc.abstractmethod
    def poll(self) -> Poll:
        """Read what is new (one bounded round; never blocks past a few seconds)."""

    def reconfigure(self, config: Config) -> None:
        """A reloaded config's hot settings (rooms, batch size)."""
        self.config = config

    def close(self) -> None:
        """Release connections; safe after a failed or partial open()."""

    def stats(self) -> dict[str, float]:
        """For the STATUS= line: "lag" (positions behind) and "polled" (events emitted)."""
        return {}


@dataclass(frozen=True)
class StreamState:
    """How far one of a source's streams is, for `status`."""

    name: str
    direction: str
    cursor: int | str | None
    bound: int | str | None
    behind: int


@dataclass(frozen=True)
class SourceState:
    """What a source reports to `status`."""

    mode: str
    streams: tuple[StreamState, ...]
    newest_source_ts: int | None = None
    # Conditions an operator should know of, in words (a kicked bot, an unreachable homeserver).
    problems: tuple[str, ...] = ()

    @property
    def lag_positions(self) -> int:
        return sum(stream.behind for stream in self.streams)

    def stream(self, name: str) -> StreamState | None:
        return next((s for s in self.streams if s.name == name), None)
