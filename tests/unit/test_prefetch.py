"""A stage's input read ahead on a thread (workers/prefetch.py): in order, bounded, errors in their place."""
from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Iterator
from multiprocessing.queues import Queue

import pytest

from mxarchiverd.pipeline.channels import END_OF_STREAM, EnvelopeError, encode
from mxarchiverd.workers.prefetch import Prefetcher
from tests.support.waiting import wait_for

CTX = multiprocessing.get_context("spawn")


@pytest.fixture
def inbox() -> Iterator[Queue[bytes]]:
    q: Queue[bytes] = CTX.Queue(16)
    yield q
    q.close()


def rows(n: int) -> bytes:
    return encode({"kind": "rows", "n": n, "attachment": b'[["$%d"]]' % n})


def test_envelopes_come_decoded_in_order_and_the_thread_ends_after_the_end_marker(inbox: Queue[bytes]) -> None:
    for n in range(5):
        inbox.put(rows(n))
    inbox.put(END_OF_STREAM)
    prefetcher = Prefetcher(inbox, depth=2).start()
    got = [prefetcher.get(timeout=5) for _ in range(6)]
    assert [e.get("n") for e in got] == [0, 1, 2, 3, 4, None] and got[-1] == {"kind": "end"}
    assert got[2]["attachment"] == b'[["$2"]]'
    prefetcher.thread.join(timeout=5)
    assert not prefetcher.thread.is_alive()


def test_nothing_ready_is_queue_empty_as_from_the_queue(inbox: Queue[bytes]) -> None:
    prefetcher = Prefetcher(inbox, depth=2).start()
    with pytest.raises(queue.Empty):
        prefetcher.get_nowait()
    with pytest.raises(queue.Empty):
        prefetcher.get(timeout=0.05)
    inbox.put(rows(7))
    assert prefetcher.get(timeout=5)["n"] == 7


def test_it_holds_at_most_depth_ahead(inbox: Queue[bytes]) -> None:
    for n in range(6):
        inbox.put(rows(n))
    prefetcher = Prefetcher(inbox, depth=2).start()
    wait_for(lambda: prefetcher.ready.full(), 10, "the read-ahead to fill")
    # depth decoded and ready, one more in the thread's hand waiting for room; the rest still queued
    wait_for(lambda: inbox.qsize() == 6 - 3, 10, "the thread to take one more and block")
    assert [prefetcher.get(timeout=5)["n"] for _ in range(6)] == list(range(6))


def test_an_unreadable_envelope_is_raised_in_its_place(inbox: Queue[bytes]) -> None:
    inbox.put(rows(1))
    inbox.put(b'{"v": 9, "kind": "rows"}')
    inbox.put(rows(2))
    prefetcher = Prefetcher(inbox, depth=4).start()
    assert prefetcher.get(timeout=5)["n"] == 1
    with pytest.raises(EnvelopeError, match="unsupported envelope version"):
        prefetcher.get(timeout=5)
    assert prefetcher.get(timeout=5)["n"] == 2
