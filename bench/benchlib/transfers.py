"""Transfers in flight at the Storage double, from the (kind, start, end) spans of its requests.

Pure functions: the media benchmark hands them the double's spans and the
window to look at. The double sees a request from its headers to its answer;
the client sees it one one-way delay earlier and later, so each span is widened
by that to count what the uploader has open (`widen`).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Span = tuple[str, float, float]  # (kind, start, end), seconds on one clock

# Requests that move a file's bytes or steer its upload (TUS create, status).
TRANSFER_KINDS = frozenset({"object_post", "object_put", "tus_create", "tus_patch", "tus_head"})
# The first request of each file: after the last of them starts, no job waits.
FILE_START_KINDS = frozenset({"object_post", "object_put", "tus_create"})


@dataclass(frozen=True)
class InFlight:
    peak: int
    mean: float  # time-weighted over the window
    window_s: float


def transfer_spans(spans: Iterable[Span], since: float, until: float) -> list[Span]:
    """The transfer requests that started in [since, until]."""
    return [s for s in spans if s[0] in TRANSFER_KINDS and since <= s[1] <= until]


def waiting_window(spans: Sequence[Span]) -> tuple[float, float] | None:
    """From the first transfer request to the start of the last file: jobs were waiting all along."""
    starts = [s[1] for s in spans if s[0] in FILE_START_KINDS]
    if not spans or not starts:
        return None
    return min(s[1] for s in spans), max(starts)


def in_flight(spans: Iterable[Span], start: float, end: float, widen: float = 0.0) -> InFlight:
    """Peak and time-weighted mean of requests open at once within [start, end].

    A request spanning the window's edge counts for its part inside it.
    """
    steps: list[tuple[float, int]] = []
    for _, s, e in spans:
        lo, hi = max(s - widen, start), min(e + widen, end)
        if hi > lo:
            steps += [(lo, 1), (hi, -1)]
    steps.sort(key=lambda step: (step[0], step[1]))  # an end before a start at the same instant
    length = end - start
    if length <= 0:
        return InFlight(0, 0.0, 0.0)
    open_now, peak, area, last = 0, 0, 0.0, start
    for t, delta in steps:
        area += open_now * (t - last)
        open_now += delta
        peak = max(peak, open_now)
        last = t
    return InFlight(peak, area / length, length)


def files_per_s_bound(slots: int, rtt_s: float, mean_bytes: float, bytes_per_s: float | None) -> float:
    """What `slots` transfers kept busy can reach: each file costs at least one round
    trip plus its bytes over one connection's link (nothing when unlimited)."""
    per_file = rtt_s + (mean_bytes / bytes_per_s if bytes_per_s else 0.0)
    return slots / per_file if per_file > 0 else float("inf")
