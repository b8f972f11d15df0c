"""Which uploader may delete a storage object, and which object a job writes.

Objects are keyed by mxc, so a forward shares the original's object; only a
purged job gives its object up, and only when nothing else still uses it.
"""
from __future__ import annotations

import pytest

from mxarchiverd.media.jobs import Job, should_delete_object


def job(kind: str = "file", url: str = "mxc://example.org/AbCdEfGhIjKl") -> Job:
    return Job(1, "$event", kind, url, None, "m.image", None, None, None, "pending", 0)


@pytest.mark.parametrize("state", ["purge", "purged", None])
def test_a_purged_or_vanished_job_gives_its_object_up_when_nothing_else_uses_it(state: str | None) -> None:
    assert should_delete_object(state, live_reference=False)
    assert not should_delete_object(state, live_reference=True)


@pytest.mark.parametrize("state", ["pending", "done", "refused", "dead"])
def test_a_job_not_purged_keeps_its_object(state: str) -> None:
    # "done": another uploader claimed it after our lease ran out and finished first.
    assert not should_delete_object(state, live_reference=False)


def test_jobs_of_the_same_mxc_and_kind_share_an_object_and_kinds_do_not() -> None:
    assert job().object_path == "example.org/AbCdEfGhIjKl"
    assert job("thumbnail").object_path == "example.org/AbCdEfGhIjKl@thumbnail"

