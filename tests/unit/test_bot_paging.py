"""When a /messages page is the last one, and what a page reports to resume from."""
from __future__ import annotations

import pytest

from mxarchiverd.sources.matrix_sync.paging import (
    END, STALLED, STOP_EVENT, PageJob, PagingError, gap_job, history_job, hole_job, pages, read_page,
)


def ev(event_id: str, type_: str = "m.room.message", ts: int = 1, **extra) -> dict:
    return {"event_id": event_id, "type": type_, "origin_server_ts": ts, "content": {}, **extra}


CREATE = ev("$create", "m.room.create", state_key="")


def test_an_empty_chunk_with_an_end_is_not_the_end() -> None:
    page = read_page(history_job("!r", "t0"), {"chunk": [], "start": "t0", "end": "t1"})
    assert not page.done and page.resume_from == "t1" and page.next_job.from_token == "t1"


def test_a_missing_end_is_the_end() -> None:
    page = read_page(history_job("!r", "t0"), {"chunk": [ev("$1")], "start": "t0"})
    assert page.done and page.reason == END and page.resume_from is None and page.next_job is None
    assert not page.complete and page.lowest_event_id == "$1"


@pytest.mark.parametrize("end", [None, "", 5, ["t"]])
def test_an_unusable_end_counts_as_missing(end) -> None:
    assert read_page(history_job("!r", "t0"), {"chunk": [], "end": end}).reason == END


def test_a_server_that_hands_back_the_same_token_with_nothing_is_stalled() -> None:
    page = read_page(history_job("!r", "t0"), {"chunk": [], "end": "t0"})
    assert page.done and page.reason == STALLED
    assert not read_page(history_job("!r", "t0"), {"chunk": [ev("$1")], "end": "t0"}).done


def test_history_is_complete_only_at_creation() -> None:
    job = history_job("!r", None)
    first = read_page(job, {"chunk": [ev("$3", ts=3), ev("$2", ts=2)], "end": "t1"})
    second = read_page(first.next_job, {"chunk": [ev("$1", ts=1), CREATE], "end": "t2"})
    last = read_page(second.next_job, {"chunk": [], "start": "t2"})
    assert (first.create_seen, second.create_seen, last.create_seen) == (False, True, True)
    assert last.complete and last.lowest_event_id == "$create"
    assert (first.lowest_event_id, first.lowest_ts) == ("$2", 2)


def test_a_restricting_visibility_on_the_way_means_not_known_complete() -> None:
    vis = ev("$vis", "m.room.history_visibility", state_key="", content={"history_visibility": "joined"})
    page = read_page(history_job("!r", "t0"), {"chunk": [ev("$1"), vis, CREATE]})
    assert page.create_seen and page.restricted_by == "$vis" and not page.complete
    shared = ev("$vis", "m.room.history_visibility", state_key="", content={"history_visibility": "shared"})
    assert read_page(history_job("!r", "t0"), {"chunk": [shared, CREATE]}).complete


def test_a_known_event_stops_the_job_and_is_left_out() -> None:
    job = gap_job("!r", "prev", "since", stop_event_ids=frozenset({"$known"}))
    page = read_page(job, {"chunk": [ev("$new2"), ev("$new1"), ev("$known"), ev("$older")], "end": "t1"})
    assert page.done and page.reason == STOP_EVENT
    assert [e["event_id"] for e in page.events] == ["$new2", "$new1"]
    assert page.lowest_event_id == "$new1"


def test_hole_job_stops_at_the_hole_start() -> None:
    job = hole_job("!r", "$kick")
    assert job.from_token is None and job.stop_event_ids == {"$kick"}
    page = read_page(job, {"chunk": [ev("$h2"), ev("$h1"), ev("$kick", "m.room.member")], "end": "t1"})
    assert page.reason == STOP_EVENT and [e["event_id"] for e in page.events] == ["$h2", "$h1"]


@pytest.mark.parametrize("body", [None, [], "junk"])
def test_a_non_object_answer_is_an_error_naming_the_room(body) -> None:
    with pytest.raises(PagingError, match="!r"):
        read_page(history_job("!r", "t0"), body)


def test_odd_chunks_do_not_crash() -> None:
    page = read_page(history_job("!r", "t0"), {"chunk": "junk", "end": "t1", "state": {"x": 1}})
    assert page.events == () and page.state == () and not page.done
    page = read_page(history_job("!r", "t0"), {"chunk": [None, 3, {"type": "x"}], "end": "t1"})
    assert len(page.events) == 3 and page.lowest_event_id is None


def test_pages_follow_the_tokens_and_can_resume() -> None:
    answers = {None: {"chunk": [ev("$3")], "end": "a"}, "a": {"chunk": [], "end": "b"},
               "b": {"chunk": [ev("$2"), ev("$1")], "end": "c"}, "c": {"chunk": []}}
    asked: list = []

    def fetch(job: PageJob) -> dict:
        asked.append(job.from_token)
        return answers[job.from_token]
    got = list(pages(fetch, history_job("!r", None, limit=2)))
    assert asked == [None, "a", "b", "c"] and [p.resume_from for p in got] == ["a", "b", "c", None]
    resumed = list(pages(fetch, got[1].next_job))
    assert [p.resume_from for p in resumed] == ["c", None] and resumed[-1].lowest_event_id == "$1"


def test_a_failing_fetch_stops_iteration_and_leaves_the_resume_point() -> None:
    def fetch(job: PageJob) -> dict:
        if job.from_token == "a":
            raise TimeoutError("homeserver down")
        return {"chunk": [ev("$3")], "end": "a"}
    it = pages(fetch, history_job("!r", None))
    first = next(it)
    with pytest.raises(TimeoutError):
        next(it)
    assert first.next_job.from_token == "a"


@pytest.mark.parametrize("kwargs, message", [
    ({"direction": "x"}, "direction"), ({"limit": 0}, "limit"), ({"limit": 1001}, "limit"),
])
def test_bad_jobs_are_refused(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        PageJob("!r", None, **kwargs)
