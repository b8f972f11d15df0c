"""The media benchmark's figures: transfers in flight from the double's request spans,
the files/s bound, and the delay proxy's link timing (bench/benchlib)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from benchlib.netdelay import link_times  # noqa: E402
from benchlib.transfers import files_per_s_bound, in_flight, transfer_spans, waiting_window  # noqa: E402


def test_in_flight_weights_each_count_by_its_time() -> None:
    spans = [("object_post", 0.0, 2.0), ("object_post", 1.0, 2.0), ("object_post", 1.0, 3.0)]
    busy = in_flight(spans, 0.0, 4.0)
    assert busy.peak == 3 and busy.mean == pytest.approx((1 * 1 + 3 * 1 + 1 * 1) / 4)


def test_in_flight_counts_only_the_part_inside_the_window_and_widens_spans() -> None:
    spans = [("tus_patch", 1.0, 2.0)]
    assert in_flight(spans, 1.5, 2.0).mean == pytest.approx(1.0)
    assert in_flight(spans, 0.0, 4.0, widen=0.5).mean == pytest.approx(2.0 / 4)


def test_back_to_back_requests_are_not_counted_twice() -> None:
    assert in_flight([("object_post", 0.0, 1.0), ("object_post", 1.0, 2.0)], 0.0, 2.0).peak == 1


def test_jobs_wait_until_the_last_file_starts() -> None:
    spans = [("tus_create", 0.0, 0.1), ("tus_patch", 0.1, 3.0), ("object_post", 2.0, 2.5), ("tus_patch", 3.0, 4.0)]
    assert waiting_window(spans) == (0.0, 2.0)
    assert waiting_window([]) is None


def test_transfer_spans_leave_out_other_requests_and_other_times() -> None:
    spans = [("bucket_get", 1.0, 1.1), ("object_post", 1.0, 1.5), ("object_post", 5.0, 5.5)]
    assert transfer_spans(spans, 0.0, 2.0) == [("object_post", 1.0, 1.5)]


def test_bound_is_slots_over_one_round_trip_plus_the_bytes_on_one_link() -> None:
    assert files_per_s_bound(5, 0.02, 0, None) == pytest.approx(250)
    assert files_per_s_bound(5, 0.02, 25_000, 2_500_000) == pytest.approx(5 / 0.03)


def test_link_sends_chunks_one_after_another_then_adds_the_delay() -> None:
    free, due = link_times(10.0, 0.0, 1000, 1000.0, 0.5)
    assert (free, due) == (11.0, 11.5)
    assert link_times(10.2, free, 500, 1000.0, 0.5) == (11.5, 12.0)  # waits for the chunk ahead
    assert link_times(10.0, 0.0, 1000, None, 0.5) == (10.0, 10.5)  # unlimited: the delay only
