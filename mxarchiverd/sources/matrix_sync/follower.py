"""Follow rooms through /sync as a bot user (the matrix_sync source; seed 000).

One round: a /sync (a short long-poll while pagination work waits, else up to
processing.sync_timeout, capped so that the stage stays responsive), then one
/messages page of the oldest pending pagination job (gaps of limited
timelines, room histories, holes). Each becomes one batch whose cursor the
dbwriter commits with its events (batches.py); nothing here writes the
archive, which the follower only reads when it starts.

A homeserver that is down or rate-limits is waited out with the stage healthy
(its outage shows in status); a hard logout ends the stage with an alarm
(exit NOPERM, which systemd does not loop on).
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import replace
from typing import Any

from mxarchiverd.archive import rooms as registry_store
from mxarchiverd.archive import sync_state
from mxarchiverd.archive.connection import open_archive
from mxarchiverd.archive.rooms import Registry
from mxarchiverd.config import Config
from mxarchiverd.exitcodes import BootError, ExitCode
from mxarchiverd.pipeline.cursors import Pagination
from mxarchiverd.pipeline.messages import EventBatch
from mxarchiverd.sources.base import Poll, Source
from mxarchiverd.sources.matrix_sync.batches import ActiveJob, Coverage, Rules, from_page, from_sync
from mxarchiverd.sources.matrix_sync.decryption import Decryptor
from mxarchiverd.sources.matrix_sync.errors import (
    Forbidden, HomeserverUnavailable, LoggedOut, LoginRejected, MatrixError, RateLimited, RequestFailed,
)
from mxarchiverd.sources.matrix_sync.filters import first_sync_filter, sync_filter
from mxarchiverd.sources.matrix_sync.membership import MEMBER_SEES_PAST, Hole
from mxarchiverd.sources.matrix_sync.paging import PageJob, PagingError, read_page
from mxarchiverd.sources.matrix_sync.plan import PlanInputs, RoomPlan, plan_sync

log = logging.getLogger(__name__)
# The longest a /sync may hold the poller: SIGTERM and reloads are noticed within it.
MAX_LONG_POLL = 10.0
BACKOFF_INITIAL, BACKOFF_MAX = 1.0, 60.0
ADMIN_PROBE_INTERVAL = 600.0
JOIN_RETRY_INTERVAL = 300.0
# How often a room the bot cannot join is read through the admin API (server admins only).
ADMIN_FOLLOW_INTERVAL = 30.0
# How often the crypto store is checked for keys another process imported (`keys import`).
STORE_CHECK_INTERVAL = 60.0


class SyncFollower(Source):
    client: Any = None
    archive: Any = None

    def open(self, deadline: float) -> None:
        from mxarchiverd.sources.matrix_sync.client import MatrixSyncClient

        self.archive = open_archive(self.config, purpose="poller", deadline=deadline, autocommit=True)
        self.client = self._log_in(MatrixSyncClient, deadline)
        self.account = self.client.user_id
        self._bootstrap_cross_signing()
        self.decryptor = Decryptor(self.client.nio, sync_state.load_withheld(self.archive))
        self.decryptor.keys_in_store(self.archive)
        self.store_checked_at = time.monotonic()
        self.coverage = self._load_coverage()
        self.emitted = 0
        self.failures = 0
        self.next_round_at = 0.0
        self.admin, self.admin_probed_at = False, -ADMIN_PROBE_INTERVAL
        self.join_tried: dict[str, float] = {}
        # Configured rooms that refused the bot, and when the admin API last read each.
        self.unjoinable: dict[str, float] = {}
        self.visibility: dict[str, str | None] = {}
        self.last_problem: str | None = None
        self.invites: tuple[Any, Registry] | None = None
        self._register_rooms()

    def _log_in(self, client_type: Any, deadline: float) -> Any:
        """The logged-in client; a homeserver that is down is waited for until `deadline`, as
        the databases are (a homeserver restarting with the host must not stop the archiver)."""
        delay = BACKOFF_INITIAL
        while True:
            try:
                return client_type.open(client_settings(self.config), tick=self._tick)
            except (LoggedOut, LoginRejected) as exc:
                raise BootError(f"bot login: {exc}", ExitCode.PERMISSION) from None
            except (HomeserverUnavailable, RateLimited) as exc:
                if time.monotonic() + delay > deadline:
                    raise BootError(f"homeserver unreachable at start: {exc}", ExitCode.UNAVAILABLE) from None
                log.warning("homeserver not answering yet (%s); trying again in %.0fs", exc, delay)
                end = time.monotonic() + delay
                while time.monotonic() < end:  # beating: waiting is the stage's work now
                    self.beat()
                    time.sleep(min(1.0, max(0.0, end - time.monotonic())))
                delay = min(delay * 2, BACKOFF_MAX)

    def _bootstrap_cross_signing(self) -> None:
        """Publish the bot's cross-signing identity and sign its device (first start only):
        up-to-date Element clients share room keys only with cross-signed devices."""
        from mxarchiverd.e2ee.cross_signing import CrossSigningError, bootstrap_cross_signing

        try:
            result = self.client.runner.run(bootstrap_cross_signing(self.client.nio, self.client.crypto), 60.0,
                                            "cross-signing")
        except CrossSigningError as exc:  # CrossSigningConflict included
            log.error("cross-signing not set up, senders that require it will not share keys: %s", exc)
            return
        if result.plan.upload_keys:
            log.info("cross-signing identity published; device %s signed", self.client.device_id)

    def _load_coverage(self) -> Coverage:
        jobs = tuple(_active(pending) for pending in sync_state.load_pending_jobs(self.archive))
        memberships = sync_state.load_memberships(self.archive)
        holes = {h.room_id: Hole(h.room_id, h.kind, h.by_user, h.reason, h.after_event_id, h.after_ts)
                 for h in sync_state.load_unfilled_holes(self.archive) if h.before_event_id is None}
        return Coverage(self.account, sync_state.load_sync_token(self.archive, self.account),
                        joined=frozenset(r for r, m in memberships.items() if m == "join"),
                        known=frozenset(memberships), holes=holes, jobs=jobs)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.archive is not None:
            self.archive.close()

    def reconfigure(self, config: Config) -> None:
        super().reconfigure(config)
        self._register_rooms()

    def stats(self) -> dict[str, float]:
        return {"lag": float(len(self.coverage.jobs)) if self.client else 0.0, "polled": float(self.emitted),
                "errors": float(self.failures)}

    # -- one round ---------------------------------------------------------------

    def poll(self) -> Poll:
        # What a round made before an error is passed on all the same: the sync's new token
        # is already the in-memory position, so dropping its batch would skip its events.
        batches: list[EventBatch] = []
        try:
            self._round(batches)
        except RateLimited as exc:
            return self._wait(batches, exc.retry_after, f"rate limited by the homeserver for {exc.retry_after:.0f}s")
        except HomeserverUnavailable as exc:
            return self._wait(batches, self._backoff(), f"homeserver unavailable: {exc}")
        except LoggedOut as exc:
            # A hard logout, or a soft one with no password to log in again with.
            raise BootError(f"the homeserver logged the bot out: {exc}", ExitCode.PERMISSION) from None
        except RequestFailed as exc:
            # An answer the bot did not expect (a 4xx): waited out like an outage, and shown,
            # rather than a crash loop that would end the whole daemon.
            return self._wait(batches, self._backoff(), f"the homeserver refused a request: {exc}")
        self.failures, self.last_problem = 0, None
        # The next round starts at once: its /sync long-polls (the wait for new events is the
        # server's), and pagination work, if any, goes on at full speed.
        return Poll(batches, busy=True)

    def _round(self, batches: list[EventBatch]) -> None:
        self._maybe_probe_admin()
        self._join_configured_rooms()
        for step in (self._sync, self._page, self._decrypted_again):
            batch = step()
            if batch is not None:
                batches.append(batch)
                self.emitted += len(batch.events)
        invites, self.invites = self.invites, None
        if invites is not None:
            self._accept_invites(*invites)

    def _decrypted_again(self) -> EventBatch | None:
        self._maybe_check_store()
        return self.decryptor.retry_batch(self.archive)

    def _backoff(self) -> float:
        return min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** min(self.failures, 6))

    def _wait(self, batches: list[EventBatch], seconds: float, why: str) -> Poll:
        self.failures += 1
        if why != self.last_problem:
            log.warning("%s; waiting %.0fs", why, seconds)
        self.last_problem = why
        return Poll(batches, wait=seconds)

    def _sync(self) -> EventBatch:
        processing = self.config.processing
        long_poll = 0.0 if self.coverage.jobs else min(processing.sync_timeout, MAX_LONG_POLL)
        since = self.coverage.since
        body = first_sync_filter() if since is None else sync_filter(self.config.matrix.timeline_limit)
        result = self.client.sync(since, int(long_poll * 1000), body)
        registry = self._registry()
        plan = plan_sync(result.json, PlanInputs(since, self.account, self.coverage.known,
                                                 lambda room: _wants_history(registry, room)))
        for problem in (*plan.problems, *result.housekeeping_problems):
            log.warning("sync: %s", problem)
        rules = self._rules(registry)
        outcome = from_sync(plan, self.coverage, rules)
        outcome = self._with_admin_reads(outcome, rules)
        for event in outcome.problems:
            log.warning("event %s in %s not archived: %s", event.event_id, event.room_id, event.reason)
        for kick in outcome.kicks:
            log.warning("the bot lost %s: %s by %s (%s); the hole is recorded", kick.room_id, kick.kind,
                        kick.sender, kick.reason or "no reason given")
        self.coverage = outcome.coverage
        # Joins come after the batch is handed on (_round): a 429 on a join must not lose it.
        self.invites = (plan.invites, registry)
        self.decryptor.annotate(outcome.batch.events)
        withheld = self.decryptor.after_sync(result.nio_response)
        if withheld:
            return replace(outcome.batch, cursor=replace(outcome.batch.cursor, withheld=withheld))
        return outcome.batch

    def _page(self) -> EventBatch | None:
        if not self.coverage.jobs:
            return None
        job, rest = self.coverage.jobs[0], self.coverage.jobs[1:]
        fetch = self.client.fetcher(admin=job.record.via_admin_api)
        try:
            page = read_page(job.pager, fetch(job.pager))
        except (PagingError, Forbidden) as exc:
            log.warning("pagination of %s (%s) cannot go on: %s", job.record.room_id, job.record.kind, exc)
            page = read_page(job.pager, {"chunk": []})  # no `end`: the job ends where it is
        outcome = from_page(job, page, self._room_version(job.record.room_id), self._rules(self._registry()))
        for event in outcome.problems:
            log.warning("event %s in %s not archived: %s", event.event_id, event.room_id, event.reason)
        # Round robin: a long history does not hold up a gap of another room.
        ahead = (outcome.job,) if outcome.job else ()
        handed = (outcome.then,) if outcome.then else ()
        self.coverage = replace(self.coverage, jobs=rest + ahead + handed)
        if page.done:
            log.info("%s of %s done (%s)", job.record.kind, job.record.room_id, page.reason)
        self.decryptor.annotate(outcome.batch.events)
        return outcome.batch

    # -- rules -------------------------------------------------------------------

    def _registry(self) -> Registry:
        return registry_store.load_registry(self.archive, self.config.rooms, auto_discover=False)

    def _rules(self, registry: Registry) -> Rules:
        return Rules(selected=lambda room: _selected(registry, room), backfill=lambda room: _wants_history(registry, room),
                     room_version=self._plan_version, member_can_fill=self._member_can_fill,
                     admin=self.admin and self.config.matrix.use_admin_api, new_id=lambda: uuid.uuid4().hex,
                     page_limit=max(1, min(1000, self.config.processing.batch_size)))

    def _plan_version(self, room_id: str, room: RoomPlan) -> str | None:
        return room.room_version or self._room_version(room_id)

    def _room_version(self, room_id: str) -> str | None:
        try:
            return self.client.room_version(room_id)  # remembered per room by the client
        except RequestFailed:
            return None

    def _member_can_fill(self, room_id: str) -> bool:
        """Whether history visibility lets the rejoined bot see what it missed."""
        if room_id not in self.visibility:
            try:
                content = self.client.state_event(room_id, "m.room.history_visibility")
            except RequestFailed:
                content = None
            value = content.get("history_visibility") if isinstance(content, dict) else None
            self.visibility[room_id] = value if isinstance(value, str) else None
        return (self.visibility[room_id] or "shared") in MEMBER_SEES_PAST

    # -- rooms -------------------------------------------------------------------

    def _register_rooms(self) -> None:
        registry_store.register_config_rooms(self.archive, self.config.rooms, added_at=0, cursor=0, backfill_cursor=0)
        self.join_tried.clear()

    def _join_configured_rooms(self) -> None:
        """Configured rooms the bot is not in: join (an invite or a public room lets it)."""
        now = time.monotonic()
        for room in self.config.rooms:
            if not room.enabled or room.room_id in self.coverage.joined:
                continue
            if now < self.join_tried.get(room.room_id, -JOIN_RETRY_INTERVAL) + JOIN_RETRY_INTERVAL:
                continue
            self.join_tried[room.room_id] = now
            try:
                self.client.join(room.room_id)
                log.info("joined %s", room.room_id)
                self.unjoinable.pop(room.room_id, None)
            except (Forbidden, RequestFailed) as exc:
                log.warning("cannot join configured room %s: %s%s", room.room_id, exc,
                            "; reading it through the admin API" if self._admin_reads() else "")
                self.unjoinable.setdefault(room.room_id, -ADMIN_FOLLOW_INTERVAL)

    def _admin_reads(self) -> bool:
        return self.admin and self.config.matrix.use_admin_api

    def _with_admin_reads(self, outcome: Any, rules: Rules) -> Any:
        """Rooms the bot cannot join are paged through the admin API now and then: back
        from the live end to the newest event archived (a history job the first time)."""
        if not self._admin_reads():
            return outcome
        now = time.monotonic()
        busy = {job.record.room_id for job in outcome.coverage.jobs}
        due = [room for room, read_at in self.unjoinable.items()
               if room not in busy and room not in outcome.coverage.joined and now >= read_at + ADMIN_FOLLOW_INTERVAL]
        jobs = []
        for room in due:
            self.unjoinable[room] = now
            newest = sync_state.newest_event_ids(self.archive, room)
            record = Pagination(rules.new_id(), room, "gap" if newest else "history", None,
                                stop_event_ids=tuple(newest), via_admin_api=True)
            jobs.append(ActiveJob(record, PageJob(room, None, stop_event_ids=frozenset(newest),
                                                  limit=rules.page_limit)))
        if not jobs:
            return outcome
        cursor = replace(outcome.batch.cursor, jobs=outcome.batch.cursor.jobs + tuple(j.record for j in jobs))
        return replace(outcome, batch=replace(outcome.batch, cursor=cursor),
                       coverage=replace(outcome.coverage, jobs=outcome.coverage.jobs + tuple(jobs)))

    def _accept_invites(self, invites: Any, registry: Registry) -> None:
        policy = self.config.matrix.accept_invites
        for invite in invites:
            listed = invite.room_id in registry.rooms or not self.config.rooms
            if policy == "none" or (policy == "listed" and not listed) or not _selected(registry, invite.room_id):
                log.info("invite to %s from %s not accepted (matrix.accept_invites: %s)", invite.room_id,
                         invite.inviter, policy)
                continue
            try:
                self.client.join(invite.room_id)
                log.info("accepted the invite to %s from %s", invite.room_id, invite.inviter)
            except (Forbidden, RequestFailed) as exc:
                log.warning("cannot accept the invite to %s: %s", invite.room_id, exc)

    def _maybe_check_store(self) -> None:
        if time.monotonic() >= self.store_checked_at + STORE_CHECK_INTERVAL:
            self.store_checked_at = time.monotonic()
            self.decryptor.keys_in_store(self.archive)

    def _maybe_probe_admin(self) -> None:
        if time.monotonic() < self.admin_probed_at + ADMIN_PROBE_INTERVAL:
            return
        self.admin_probed_at = time.monotonic()
        was, self.admin = self.admin, self.client.is_server_admin()
        if self.admin and not was:
            log.info("%s is a server admin: holes and rooms it cannot see are read through the admin API",
                     self.account)

    def _tick(self) -> bool:
        self.beat()
        return False


def _selected(registry: Registry, room_id: str) -> bool:
    return registry.should_archive(room_id, 2**62)


def _wants_history(registry: Registry, room_id: str) -> bool:
    room = registry.rooms.get(room_id)
    return _selected(registry, room_id) and (room.backfill if room is not None else True)


def _active(pending: sync_state.PendingJob) -> ActiveJob:
    record = pending.job
    start = pending.resume_token if pending.resume_token is not None else record.from_token
    pager = PageJob(record.room_id, start, to_token=record.to_token, stop_event_ids=frozenset(record.stop_event_ids),
                    create_seen=pending.create_seen, restricted_by=pending.restricted_by,
                    lowest_event_id=pending.lowest_event_id, lowest_ts=pending.lowest_ts)
    return ActiveJob(record, pager)


def client_settings(config: Config) -> Any:
    """The Matrix client's settings from the config (secrets stay Secret until here)."""
    from mxarchiverd.sources.matrix_sync.client import ClientSettings
    from mxarchiverd.sources.matrix_sync.session import Credentials

    matrix = config.matrix
    credentials = Credentials(
        homeserver_url=matrix.homeserver_url, username=matrix.username or "",
        password=matrix.password.value if matrix.password else None,
        access_token=matrix.access_token.value if matrix.access_token else None, device_name=matrix.device_name)
    return ClientSettings(credentials, matrix.state_dir,
                          pickle_key=matrix.pickle_key.value if matrix.pickle_key else None)


__all__ = ["MatrixError", "SyncFollower", "client_settings"]
