"""How many media jobs the uploader claims: a queued job behind each running one,
topped up in batches (workers/uploader.py, claim_count)."""
from __future__ import annotations

import pytest

from mxarchiverd.workers.uploader import HELD_PER_SLOT, claim_count


def test_an_empty_uploader_claims_a_running_and_a_queued_job_per_slot() -> None:
    assert HELD_PER_SLOT == 2
    assert claim_count(5, 0) == 10
    assert claim_count(1, 0) == 2


@pytest.mark.parametrize("held", [8, 9, 10])
def test_no_claim_while_more_than_half_the_queued_jobs_wait(held: int) -> None:
    assert claim_count(5, held) == 0


def test_the_top_up_fills_the_queue_again_in_one_claim() -> None:
    assert claim_count(5, 7) == 3
    assert claim_count(5, 5) == 5


def test_one_slot_tops_up_as_soon_as_its_queued_job_starts() -> None:
    assert claim_count(1, 2) == 0
    assert claim_count(1, 1) == 1
