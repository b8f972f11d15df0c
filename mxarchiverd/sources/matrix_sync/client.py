"""The bot's synchronous Matrix client: the only module of bot mode that imports nio.

What it decides, and why:
- One device for life: the saved login is restored (nio's restore_login), never
  replaced while valid; logout() is never called. A soft logout is repaired by a
  password login with the same device id (the crypto store stays valid); a hard
  logout raises HardLogout for the stage to alarm on (session.py, errors.py).
- Answers are the server's raw JSON (plain dicts), because the archive stores
  events as the server sent them; /sync answers are also handed to nio, so its
  Olm machine sees to-device messages, device lists and key counts, and after
  each sync the housekeeping that nio's sync_forever does is done here.
- The sync token is never nio's to keep (store_sync_tokens=False): the archive
  commits it with the rows it delivered.
- 429s are waited out here when the wait is short (`max_rate_limit_wait_s`),
  honouring Retry-After and retry_after_ms; longer ones and outages are raised
  so the stage decides (back off, stay healthy, show the outage in status).
- No call blocks longer than its deadline; the stage's `tick` runs every
  `tick_interval_s` meanwhile (transport.py).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mxarchiverd.e2ee.store import CryptoSettings, new_client, restore_session
from mxarchiverd.sources.matrix_sync import olm_feed
from mxarchiverd.sources.matrix_sync import session as sess
from mxarchiverd.sources.matrix_sync.errors import (
    Forbidden, HardLogout, HomeserverUnavailable, LoginRejected, NotInRoom, RateLimited,
    RequestFailed, SoftLogout, is_unknown_filter,
)
from mxarchiverd.sources.matrix_sync.events import room_version_of
from mxarchiverd.sources.matrix_sync.filters import FILTERS_FILE, FilterIds, messages_filter
from mxarchiverd.sources.matrix_sync.paging import PageJob
from mxarchiverd.sources.matrix_sync.transport import Http, LoopRunner, Tick, q

log = logging.getLogger(__name__)
V3 = "/_matrix/client/v3"
ADMIN = "/_synapse/admin/v1"
PICKLE_KEY_FILE = "pickle.key"


@dataclass(frozen=True)
class ClientSettings:
    credentials: sess.Credentials
    state_dir: Path
    pickle_key: str | None = field(default=None, repr=False)  # None: a random one kept in state_dir
    request_timeout_s: float = 30.0
    tick_interval_s: float = 1.0
    max_rate_limit_wait_s: float = 120.0
    rate_limit_retries: int = 10

    def __post_init__(self) -> None:
        for key in ("request_timeout_s", "tick_interval_s"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key}: expected a positive number of seconds")
        if self.max_rate_limit_wait_s < 0 or self.rate_limit_retries < 0:
            raise ValueError("max_rate_limit_wait_s and rate_limit_retries: expected 0 or more")


@dataclass
class ClientStats:
    """Counters for the stage's status line."""

    rate_limited: int = 0                  # 429s waited out inside the client
    last_retry_after: float | None = None  # seconds, of the latest of them
    rate_limit_wait_s: float = 0.0         # total time spent waiting them out
    soft_logouts: int = 0                  # repaired by logging in again


@dataclass
class SyncResult:
    json: dict[str, Any]                  # the server's /sync answer
    next_batch: str
    nio_response: Any = None              # nio's SyncResponse (decrypted events), None if nio failed
    housekeeping_problems: list[str] = field(default_factory=list)


class MatrixSyncClient:
    """Open with `MatrixSyncClient.open(settings)`; `.nio` is the underlying AsyncClient."""

    def __init__(self, settings: ClientSettings, tick: Tick | None = None) -> None:
        self.settings = settings
        self.creds = settings.credentials
        self.state_dir = settings.state_dir
        self._lock = sess.lock_state_dir(self.state_dir)
        try:
            self.crypto = CryptoSettings(self.state_dir, self._pickle_key(), password=self.creds.password)
            # e2ee/store.py owns the store's layout (state_dir/crypto, SqliteStore)
            # and the log redaction; nio itself must never retry: this client decides.
            self.nio = new_client(self.creds.homeserver_url.rstrip("/"), self.creds.username,
                                  self.crypto, max_limit_exceeded=0, max_timeouts=0,
                                  request_timeout=settings.request_timeout_s)
        except BaseException:
            sess.unlock_state_dir(self._lock)
            raise
        self.runner = LoopRunner(tick, settings.tick_interval_s)
        self.http = Http(self.nio, self._secrets)
        self.filters = FilterIds(self.state_dir / FILTERS_FILE)
        self._room_versions: dict[str, str] = {}
        self.login_action: sess.LoginAction | None = None
        self.stats = ClientStats()

    @classmethod
    def open(cls, settings: ClientSettings, tick: Tick | None = None) -> MatrixSyncClient:
        client = cls(settings, tick)
        try:
            client.login()
        except BaseException:
            client.close()
            raise
        return client

    @property
    def user_id(self) -> str:
        return self.nio.user_id

    @property
    def device_id(self) -> str:
        return self.nio.device_id

    # Login ---------------------------------------------------------------

    def login(self) -> sess.LoginAction:
        stored = sess.load_session(sess.session_path(self.state_dir))
        decision = sess.decide_login(stored, self.creds)
        if decision.action is sess.LoginAction.RESTORE and stored is not None:
            # A saved device without its store is refused (CryptoStoreError): nio
            # would invent new identity keys and the device would lose its sessions.
            restore_session(self.nio, self.crypto, stored.user_id, stored.device_id,
                            stored.access_token, store_must_exist=True)
            log.info("restored the login of %s on device %s", stored.user_id, stored.device_id)
        elif decision.action is sess.LoginAction.ADOPT_TOKEN:
            self._adopt_token()
        else:
            self._password_login(decision.device_id)
        self.login_action = decision.action
        return decision.action

    def _adopt_token(self) -> None:
        token = self.creds.access_token or ""
        self.nio.access_token = token
        try:
            who = self._request("GET", f"{V3}/account/whoami", "GET whoami", relogin=False)
        except (HardLogout, SoftLogout) as exc:
            raise LoginRejected(f"matrix.access_token is not valid ({exc})") from None
        user_id, device_id = who.get("user_id"), who.get("device_id")
        if not isinstance(user_id, str) or not isinstance(device_id, str) or not device_id:
            raise LoginRejected("matrix.access_token: the homeserver knows no device for this token; "
                                "the E2EE store needs one (log in with a password instead)")
        self._save_login(user_id, device_id, token, adopted=sess.token_fingerprint(token))
        log.info("using the configured access token of %s on device %s", user_id, device_id)

    def _password_login(self, device_id: str | None) -> None:
        body: dict[str, Any] = {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": self.creds.username},
            "password": self.creds.password, "initial_device_display_name": self.creds.device_name,
        }
        if device_id:
            body["device_id"] = device_id
        try:
            reply = self._request("POST", f"{V3}/login", "POST /login", body=body, auth=False, login=True)
        except Forbidden as exc:
            raise LoginRejected(f"the homeserver refused the login of {self.creds.username} ({exc})"
                                ) from None
        user_id, new_device, token = (reply.get(k) for k in ("user_id", "device_id", "access_token"))
        if not all(isinstance(v, str) and v for v in (user_id, new_device, token)):
            raise LoginRejected("POST /login: the answer lacks user_id, device_id or access_token")
        if device_id and new_device != device_id:
            raise LoginRejected(f"POST /login: asked to keep device {device_id}, got {new_device}")
        self._save_login(user_id, new_device, token, adopted=None)
        log.info("logged in as %s on device %s%s", user_id, new_device,
                 " (same device, after a soft logout)" if device_id else "")

    def _save_login(self, user_id: str, device_id: str, token: str, adopted: str | None) -> None:
        if not sess.same_user(user_id, self.creds.username or user_id):
            raise LoginRejected(f"the homeserver says this login is {user_id}, "
                                f"not matrix.username {self.creds.username}")
        restore_session(self.nio, self.crypto, user_id, device_id, token, store_must_exist=False)
        sess.save_session(sess.session_path(self.state_dir), sess.StoredSession(
            user_id, device_id, token, self.creds.homeserver_url, adopted))

    def _relogin(self, cause: SoftLogout) -> None:
        if not sess.wants_relogin(self.creds):
            raise cause
        log.warning("soft logout (%s); logging in again with device %s", cause, self.device_id)
        self._password_login(self.device_id)

    # Requests --------------------------------------------------------------

    def _request(self, method: str, path: str, what: str, *, query: dict[str, Any] | None = None,
                 body: Any = None, auth: bool = True, relogin: bool = True, login: bool = False,
                 timeout_s: float | None = None) -> Any:
        """The parsed JSON answer of one request (see `_call`)."""
        timeout_s = timeout_s or self._timeout()
        parsed, _raw = self._call(
            lambda: self.http.request(method, path, query=query, body=body, auth=auth, what=what,
                                      timeout_s=timeout_s),
            what, relogin=relogin, login=login, timeout_s=timeout_s)
        return parsed

    def _call(self, make: Callable[[], Any], what: str, *, relogin: bool = True,
              login: bool = False, timeout_s: float | None = None) -> Any:
        """Run one request coroutine; re-login on a soft logout, wait out short rate limits."""
        relogged = False
        for attempt in range(self.settings.rate_limit_retries + 1):
            try:
                return self.runner.run(make(), (timeout_s or self._timeout()) + 5.0, what)
            except HardLogout as exc:
                if login or not relogin:
                    raise
                raise HardLogout(
                    f"{exc}; device {self.device_id} of {self.user_id} is logged out and its keys "
                    f"are void: move {sess.session_path(self.state_dir)} away to start a new device",
                    status=exc.status, errcode=exc.errcode) from None
            except SoftLogout as exc:
                if login or not relogin or relogged:
                    raise
                self._relogin(exc)
                self.stats.soft_logouts += 1
                relogged = True
            except RateLimited as exc:
                too_long = exc.retry_after > self.settings.max_rate_limit_wait_s
                if too_long or attempt >= self.settings.rate_limit_retries:
                    raise
                log.warning("%s rate limited; retrying in %.1fs", what, exc.retry_after)
                self.stats.rate_limited += 1
                self.stats.last_retry_after = exc.retry_after
                self.stats.rate_limit_wait_s += exc.retry_after
                self.runner.sleep(exc.retry_after)
        raise AssertionError("unreachable")

    def _get(self, path: str, what: str, **query: Any) -> Any:
        return self._request("GET", path, what, query=query)

    def _timeout(self) -> float:
        return self.settings.request_timeout_s

    def _secrets(self) -> list[str | None]:
        return [self.nio.access_token, self.creds.password, self.creds.access_token, self.settings.pickle_key]

    # The API the stage uses ------------------------------------------------

    def sync(self, since: str | None, timeout_ms: int, sync_filter: dict[str, Any]) -> SyncResult:
        """One /sync (long poll up to `timeout_ms`), fed to nio, then nio's housekeeping."""
        filter_id = self.filter_id(sync_filter)
        try:
            parsed, raw = self._sync_once(since, timeout_ms, filter_id)
        except RequestFailed as exc:
            if not is_unknown_filter(exc):
                raise
            log.warning("the homeserver forgot sync filter %s; uploading it again", filter_id)
            self.filters.forget(self.user_id, sync_filter)
            parsed, raw = self._sync_once(since, timeout_ms, self.filter_id(sync_filter))
        next_batch = parsed.get("next_batch") if isinstance(parsed, dict) else None
        if not isinstance(next_batch, str) or not next_batch:
            raise HomeserverUnavailable("GET /sync -> a 2xx answer without next_batch")
        result = SyncResult(parsed, next_batch, self._feed_nio(raw))
        result.housekeeping_problems = self.housekeeping()
        return result

    def _sync_once(self, since: str | None, timeout_ms: int, filter_id: str) -> tuple[Any, bytes]:
        query = {"since": since, "timeout": timeout_ms, "filter": filter_id}
        bound = timeout_ms / 1000 + self._timeout()
        return self._call(lambda: self.http.request("GET", f"{V3}/sync", query=query, what="GET /sync",
                                                    timeout_s=bound), "GET /sync", timeout_s=bound)

    def _feed_nio(self, raw: bytes) -> Any:
        return olm_feed.feed_sync(self.runner, self.nio, raw, self._timeout(), self._secrets())

    def housekeeping(self) -> list[str]:
        """What sync_forever does after each sync; failures are reported, retried next time."""
        return olm_feed.housekeeping(self.runner, self.nio, self._timeout(), self._secrets())

    def filter_id(self, body: dict[str, Any]) -> str:
        return self.filters.ensure(self.user_id, body, self.upload_filter)

    def upload_filter(self, body: dict[str, Any]) -> str:
        reply = self._request("POST", f"{V3}/user/{q(self.user_id)}/filter", "POST filter", body=body)
        filter_id = reply.get("filter_id") if isinstance(reply, dict) else None
        if not isinstance(filter_id, str) or not filter_id:
            raise RequestFailed("POST filter: the answer has no filter_id")
        return filter_id

    def messages(self, room_id: str, from_token: str | None, to_token: str | None = None,
                 direction: str = "b", limit: int = 500, room_filter: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
        """GET /rooms/{room}/messages: the raw answer (chunk, start, end, state)."""
        room_filter = messages_filter() if room_filter is None else room_filter
        return self._get(f"{V3}/rooms/{q(room_id)}/messages", f"GET /messages {room_id}",
                         **{"from": from_token, "to": to_token, "dir": direction, "limit": limit,
                            "filter": json.dumps(room_filter) if room_filter else None})

    def admin_messages(self, room_id: str, from_token: str | None, to_token: str | None = None,
                       direction: str = "b", limit: int = 500) -> dict[str, Any]:
        """Synapse's admin /messages: every event the server has, membership and visibility aside."""
        return self._get(f"{ADMIN}/rooms/{q(room_id)}/messages", f"GET admin /messages {room_id}",
                         **{"from": from_token, "to": to_token, "dir": direction, "limit": limit})

    def fetcher(self, admin: bool = False) -> Callable[[PageJob], dict[str, Any]]:
        """A paging.Fetch over the client (or admin) /messages API."""
        read = self.admin_messages if admin else self.messages
        return lambda job: read(job.room_id, job.from_token, job.to_token, job.direction, job.limit)

    def join(self, room_or_alias: str) -> str:
        """Join (or stay in) a room by id or alias; its room id."""
        reply = self._request("POST", f"{V3}/join/{q(room_or_alias)}", f"POST join {room_or_alias}", body={})
        room_id = reply.get("room_id") if isinstance(reply, dict) else None
        if not isinstance(room_id, str):
            raise RequestFailed(f"POST join {room_or_alias}: the answer has no room_id")
        return room_id

    def joined_rooms(self) -> list[str]:
        reply = self._get(f"{V3}/joined_rooms", "GET joined_rooms")
        rooms = reply.get("joined_rooms") if isinstance(reply, dict) else None
        return [r for r in rooms if isinstance(r, str)] if isinstance(rooms, list) else []

    def whoami(self) -> dict[str, Any]:
        return self._get(f"{V3}/account/whoami", "GET whoami")

    def is_server_admin(self) -> bool:
        """Whether Synapse's admin API answers for this account (hidden, or not an admin: False)."""
        try:
            reply = self._get(f"{ADMIN}/users/{q(self.user_id)}/admin", "GET admin status")
        except RequestFailed as exc:
            log.info("no Synapse admin API for %s (%s)", self.user_id, exc)
            return False
        return isinstance(reply, dict) and reply.get("admin") is True

    def state_event(self, room_id: str, event_type: str, state_key: str = "") -> dict[str, Any] | None:
        """A state event's content, None if the room has none of that type."""
        path = f"{V3}/rooms/{q(room_id)}/state/{q(event_type)}/{q(state_key)}"
        try:
            return self._get(path, f"GET state {event_type} {room_id}")
        except RequestFailed as exc:
            if exc.status == 404 and not isinstance(exc, NotInRoom):
                return None
            raise

    def room_version(self, room_id: str) -> str:
        """The room's version (from m.room.create), remembered per room."""
        if room_id not in self._room_versions:
            self._room_versions[room_id] = room_version_of(self.state_event(room_id, "m.room.create"))
        return self._room_versions[room_id]

    def pause(self, seconds: float) -> None:
        """Wait, ticking (a stage's backoff); Interrupted if the tick asks to stop."""
        self.runner.sleep(seconds)

    # Lifecycle ---------------------------------------------------------------

    def _pickle_key(self) -> str:
        """The configured key (e2ee/store.py checks it), else a random one kept in state_dir."""
        key = self.settings.pickle_key
        return sess.load_or_create_secret(self.state_dir / PICKLE_KEY_FILE) if key is None else key

    def close(self) -> None:
        """Close the HTTP session and the loop; the login stays valid (never logout())."""
        try:
            if not self.runner.loop.is_closed():
                self.runner.loop.run_until_complete(self.nio.close())
        finally:
            self.runner.close()
            sess.unlock_state_dir(self._lock)

    def __enter__(self) -> MatrixSyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
