"""Reading a stage's upstream queue ahead of it, on a thread (the dbwriter's).

A batch crosses a multiprocessing queue through a 64 KiB pipe, about a megabyte
at a time, written by the producer's feeder thread only as fast as the consumer
reads: received in the stage's own loop, every batch costs the dbwriter its
transfer and decoding while PostgreSQL sits idle, and the next batch is hardly
ever waiting whole when the last transaction ends, so few batches merge
(pipeline/merging.py). Received on a thread they arrive while the dbwriter waits
for PostgreSQL (psycopg releases the GIL while it waits), decoded, ready to merge.

Nothing here is durable and nothing needs to be: a prefetched batch lost with
its process is read again from the durable cursor, as one lost in the queue is.
"""
from __future__ import annotations

import queue
import threading
from multiprocessing.queues import Queue
from typing import Any

from mxarchiverd.pipeline.channels import EnvelopeError, decode, is_end

Envelope = dict[str, Any]


class Prefetcher:
    """The upstream queue's envelopes, decoded, in order; at most `depth` held ahead.

    `get` and `get_nowait` behave as the queue's (queue.Empty when nothing is
    ready); an envelope that cannot be decoded is raised by them, in order, as it
    would have been without the thread. The thread ends after the end-of-stream
    marker; it is a daemon, so a stage that exits earlier does not wait for it."""

    def __init__(self, inbox: Queue[bytes], depth: int) -> None:
        self.inbox = inbox
        self.ready: queue.Queue[Envelope | EnvelopeError] = queue.Queue(depth)
        self.thread = threading.Thread(target=self._receive, name="prefetch", daemon=True)

    def start(self) -> Prefetcher:
        self.thread.start()
        return self

    def get(self, timeout: float) -> Envelope:
        return _raised(self.ready.get(timeout=timeout))

    def get_nowait(self) -> Envelope:
        return _raised(self.ready.get_nowait())

    def _receive(self) -> None:
        while True:
            try:
                envelope: Envelope | EnvelopeError = decode(self.inbox.get())
            except EnvelopeError as exc:
                envelope = exc
            except (OSError, EOFError, ValueError):
                return  # the queue was closed under us: the process is ending
            self.ready.put(envelope)
            if isinstance(envelope, dict) and is_end(envelope):
                return


def _raised(item: Envelope | EnvelopeError) -> Envelope:
    if isinstance(item, EnvelopeError):
        raise item
    return item
