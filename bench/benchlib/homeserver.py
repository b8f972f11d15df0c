"""A real Synapse for the bot-mode benchmark: its users, rooms, paced senders, and an archive row watcher.

Synapse is the `matrix-synapse` of the project's .venv (tests/support/synapse.py,
rate limits off), on the benchmark's PostgreSQL. Messages go in through the client
API as a user's client sends them (PUT /send), from one thread per sender, each
sender its own user with its own connection.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from benchlib import procs
from benchlib.live import ArchivePolling
from tests.support.daemon import Daemon
from tests.support.matrix_client import MatrixClient
from tests.support.postgres import PgServer
from tests.support.synapse import SynapseServer, running_synapse


def start_synapse(stack: procs.Cleanup, server: PgServer, workdir: Path) -> SynapseServer:
    """Synapse on a free loopback port with its own database; stopped (by PID) on clean-up."""
    workdir.mkdir(parents=True, exist_ok=True)
    contexts = ExitStack()
    synapse = contexts.enter_context(running_synapse(server, workdir))
    stack.callback(contexts.close, label="stop Synapse")
    return synapse


@dataclass(frozen=True)
class Sent:
    event_id: str
    started: float  # time.time() just before the request
    answered: float  # time.time() when Synapse answered with the event id


@dataclass
class Senders:
    """`count` users in one room, each with its own client: a message is one PUT /send."""

    synapse: SynapseServer
    room_id: str
    clients: list[MatrixClient] = field(default_factory=list)

    @classmethod
    def create(cls, synapse: SynapseServer, name: str, count: int, *, invite: tuple[str, ...] = ()) -> Senders:
        owner = synapse.register(f"{name}_0")
        room = owner.create_room(name=name, invite=list(invite))
        senders = cls(synapse, room, [owner])
        for i in range(1, count):
            member = synapse.register(f"{name}_{i}")
            owner.invite(room, member.user_id)
            member.join(room)
            senders.clients.append(member)
        return senders

    def invite(self, user_id: str) -> None:
        self.clients[0].invite(self.room_id, user_id)

    def send(self, client: MatrixClient, body: str) -> Sent:
        started = time.time()
        event_id = client.send_text(self.room_id, body)
        return Sent(event_id, started, time.time())

    def flood(self, total: int, prefix: str, progress: Callable[[int], None] | None = None) -> list[Sent]:
        """`total` messages as fast as the senders go (each sender one at a time, all at once)."""
        done: list[Sent] = []
        lock = threading.Lock()

        def run(index: int) -> None:
            client = self.clients[index]
            for n in range(index, total, len(self.clients)):
                sent = self.send(client, f"{prefix} {n}")
                with lock:
                    done.append(sent)
                    if progress and len(done) % 1000 == 0:
                        progress(len(done))

        self._all(run)
        return done

    def paced(self, rate: float, seconds: float, prefix: str) -> list[Sent]:
        """Messages at `rate` per second for `seconds`, spread over the senders on a shared schedule.

        Each send starts at its scheduled time; a sender still waiting for Synapse's
        answer starts late, so the achieved rate shows when Synapse cannot keep up.
        """
        count = max(1, int(rate * seconds))
        begin = time.monotonic() + 0.2
        done: list[Sent] = []
        lock = threading.Lock()

        def run(index: int) -> None:
            client = self.clients[index]
            for n in range(index, count, len(self.clients)):
                delay = begin + n / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                sent = self.send(client, f"{prefix} {n}")
                with lock:
                    done.append(sent)

        self._all(run)
        return done

    def _all(self, run: Callable[[int], None]) -> None:
        with ThreadPoolExecutor(len(self.clients)) as pool:
            for future in [pool.submit(run, i) for i in range(len(self.clients))]:
                future.result()

    def close(self) -> None:
        for client in self.clients:
            client.close()


class RowWatcher(ArchivePolling):
    """A thread that notes when each archived_messages row first becomes visible (polled every 5 ms).

    Rows are committed by the one dbwriter in id order, so each poll reads only the
    rows past the highest id seen. The first poll that sees a row is, within one
    interval, the moment its transaction committed: the same moment in both modes.
    """

    thread_name = "row-watcher"

    def __init__(self, archive_dsn: str, interval_s: float = 0.005) -> None:
        super().__init__(archive_dsn, interval_s)
        self.seen: dict[str, float] = {}
        self.polls = 0
        self.last_id = 0

    def poll(self, conn: psycopg.Connection) -> None:
        rows = conn.execute("SELECT id, event_id FROM archived_messages WHERE id > %s ORDER BY id",
                            (self.last_id,)).fetchall()
        now = time.time()
        for row_id, event_id in rows:
            self.seen.setdefault(event_id, now)
            self.last_id = max(self.last_id, row_id)
        self.polls += 1

    def wait(self, event_ids: list[str], timeout_s: float, daemon: Daemon) -> None:
        """Until every one of `event_ids` was seen; raises (with the daemon's log) if it died or timed out."""
        deadline = time.monotonic() + timeout_s
        while not all(e in self.seen for e in event_ids):
            daemon.check_running()
            if time.monotonic() > deadline:
                missing = sum(e not in self.seen for e in event_ids)
                raise TimeoutError(f"{missing} of {len(event_ids)} sent messages not archived after {timeout_s:.0f}s;"
                                   f" log:\n{daemon.tail()}")
            time.sleep(0.02)
