"""Lease keeper stage (daemon.ha): holds, renews or waits for the leadership lease.

It runs on every daemon, leader or standby, and publishes what it holds in its
heartbeat slot (stats: lease_until, fence); the supervisor starts the pipeline
only while that says so (supervisor/fleet.py). The decisions are in
mxarchiverd/leadership.py, the SQL in archive/leadership.py; this is the shell.
"""
from __future__ import annotations

import logging
import os
import socket
import time

import psycopg

from mxarchiverd.archive import leadership as lease_store
from mxarchiverd.archive.connection import open_archive
from mxarchiverd.db import DatabaseUnavailable, first_line
from mxarchiverd.exitcodes import BootError, ExitCode
from mxarchiverd.leadership import Act, Standing, Timing, after_acquire, after_error, after_renew, next_act, round_delay
from mxarchiverd.workers.stage import Message, SourceStage

log = logging.getLogger(__name__)


class LeaseKeeper(SourceStage):
    role = "lease"

    def open(self) -> None:
        deadline = time.monotonic() + self.config.daemon.startup_timeout
        self.conn: psycopg.Connection | None = open_archive(self.config, purpose="lease", deadline=deadline,
                                                            autocommit=True)
        self.holder = self.config.daemon.ha.holder
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.standing = Standing()
        self.was_leading = False
        other = lease_store.holder_elsewhere(self.conn, self.holder, self.host, 2 * self.timing.duration)
        if other is not None:
            raise BootError(f"daemon.ha.holder {self.holder!r} is in use by the daemon on {other}: "
                            "give each daemon its own name (or leave it unset: hostname:pid)", ExitCode.CONFIG)

    @property
    def timing(self) -> Timing:
        ha = self.config.daemon.ha
        return Timing(ha.lease_duration, ha.renew_interval)

    def produce(self) -> tuple[list[Message], float]:
        now = time.monotonic()
        if now >= self.standing.next_round:
            self._round(now)
        self._report_change(time.monotonic())
        return [], round_delay(self.standing, time.monotonic())

    def _round(self, now: float) -> None:
        try:
            conn = self._connection()
            if next_act(self.standing, now) is Act.RENEW:
                assert self.standing.token is not None
                renewed = lease_store.renew(conn, self.holder, self.standing.token, self.timing.duration)
                self.standing = after_renew(self.standing, renewed, now, self.timing)
            else:
                token = lease_store.acquire(conn, self.holder, self.timing.duration)
                self.standing = after_acquire(self.standing, token, now, self.timing)
            lease_store.register(conn, self.holder, self.host, self.pid, self.standing.leading(now),
                                 self.timing.duration)
        except (psycopg.Error, DatabaseUnavailable) as exc:
            log.warning("lease: the archive database did not answer: %s", first_line(exc))
            self._drop_connection()
            self.standing = after_error(self.standing, time.monotonic(), self.timing)

    def _connection(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            self.conn = open_archive(self.config, purpose="lease", autocommit=True)
        return self.conn

    def _drop_connection(self) -> None:
        if self.conn is not None and self.conn.broken:
            self.conn.close()
            self.conn = None

    def _report_change(self, now: float) -> None:
        leading = self.standing.leading(now)
        if leading and not self.was_leading:
            log.info("lease: %s leads now (fencing token %s)", self.holder, self.standing.token)
        elif self.was_leading and not leading:
            log.warning("lease: %s no longer leads (lease lost or not renewed in time); standing by", self.holder)
        self.was_leading = leading

    def stats(self) -> dict[str, float]:
        now = time.monotonic()
        if not self.standing.leading(now):
            return {"lease_until": 0.0, "fence": 0.0}
        return {"lease_until": self.standing.valid_until, "fence": float(self.standing.token or 0)}

    def close(self) -> None:
        """On the way out, hand the lease over at once rather than after it expires."""
        conn = getattr(self, "conn", None)
        if conn is None or conn.closed:
            return
        try:
            if self.standing.leading(time.monotonic()) and self.standing.token is not None:
                lease_store.release(conn, self.holder, self.standing.token)
                log.info("lease: released by %s", self.holder)
            lease_store.leave(conn, self.holder)
        except psycopg.Error as exc:
            log.warning("lease: could not release the lease (it expires by itself): %s", first_line(exc))
        finally:
            conn.close()
