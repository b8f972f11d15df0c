"""nio's asyncio, run from synchronous code, and raw JSON requests over nio's HTTP session.

The project is synchronous; nio is asyncio. `LoopRunner` owns a private event
loop in the caller's thread and runs one coroutine at a time with a hard
deadline, calling the caller's `tick()` every `tick_interval_s` while it waits,
so the sync stage can beat its heartbeat during a 30 s long poll, and stop one
early (tick returns True -> Interrupted).

`Http` sends requests through nio's own aiohttp session (`AsyncClient.send`,
which does no retries), reads status, headers and the exact body itself, and
turns every failure into one of errors.py's outcomes. nio's typed methods retry
429s on their own (ignoring Retry-After) and retry timeouts forever; the raw
path has neither, and the client configures nio's typed calls not to either.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import aiohttp

from mxarchiverd.sources.matrix_sync.errors import (
    HomeserverUnavailable, Interrupted, Reply, classify, scrub,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
Tick = Callable[[], "bool | None"]


def q(part: str) -> str:
    """A path segment: room ids carry '!' and ':', v3+ event ids '/' and '+'."""
    return quote(part, safe="")


class LoopRunner:
    """Runs coroutines on a private loop; never blocks longer than the deadline it is given."""

    def __init__(self, tick: Tick | None = None, tick_interval_s: float = 1.0) -> None:
        self.loop = asyncio.new_event_loop()
        self.tick = tick
        self.tick_interval_s = tick_interval_s

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float, what: str) -> T:
        task = self.loop.create_task(asyncio.wait_for(coro, timeout_s))
        ticker = _Ticker(self.loop, task, self.tick, self.tick_interval_s) if self.tick else None
        try:
            return self.loop.run_until_complete(task)
        except asyncio.CancelledError:
            if ticker is not None and ticker.interrupted:
                raise Interrupted(f"{what}: stopped by the caller") from None
            raise
        except TimeoutError:
            raise HomeserverUnavailable(f"{what}: no answer within {timeout_s:.0f}s") from None
        finally:
            if ticker is not None:
                ticker.cancel()

    def sleep(self, seconds: float) -> None:
        """Wait `seconds`, ticking; Interrupted if the tick asks to stop."""
        self.run(asyncio.sleep(seconds), seconds + 5.0, "pause")

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


class _Ticker:
    """Calls `tick` every interval while `task` runs; a truthy answer cancels the task."""

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any], tick: Tick,
                 interval_s: float) -> None:
        self.loop, self.task, self.tick, self.interval_s = loop, task, tick, interval_s
        self.interrupted = False
        self.handle = loop.call_later(interval_s, self.fire)

    def fire(self) -> None:
        if self.task.done():
            return
        if self.tick():
            self.interrupted = True
            self.task.cancel()
            return
        self.handle = self.loop.call_later(self.interval_s, self.fire)

    def cancel(self) -> None:
        self.handle.cancel()


class Http:
    """JSON requests over an nio AsyncClient's session; results are raw server JSON."""

    def __init__(self, nio_client: Any, secrets: Callable[[], Iterable[str | None]]) -> None:
        self.nio = nio_client
        self.secrets = secrets

    async def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                      body: Any = None, auth: bool = True, what: str | None = None,
                      timeout_s: float = 30.0) -> tuple[Any, bytes]:
        """(parsed JSON, exact body) of a 2xx answer; raises an errors.MatrixError otherwise."""
        what = what or f"{method} {path}"
        full_path = path + ("?" + urlencode(_clean(query)) if query else "")
        headers = {"Content-Type": "application/json"}
        if auth and self.nio.access_token:
            headers["Authorization"] = f"Bearer {self.nio.access_token}"
        data = None if body is None else json.dumps(body)
        try:
            response = await self.nio.send(method, full_path, data, headers, timeout=timeout_s)
            try:
                raw = await response.read()
                status, reply_headers = response.status, dict(response.headers)
            finally:
                response.release()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise HomeserverUnavailable(scrub(f"{what}: {type(exc).__name__}: {exc}", self.secrets())
                                        ) from None
        parsed = _parse(raw)
        error = classify(Reply(status, reply_headers, parsed), what, now=time.time(),
                         secrets=self.secrets())
        if error is not None:
            raise error
        if parsed is None:
            raise HomeserverUnavailable(f"{what} -> HTTP {status} with a body that is not JSON")
        return parsed, raw


def _clean(query: Mapping[str, Any]) -> dict[str, str]:
    """Drop unset parameters; booleans as the spec writes them."""
    out: dict[str, str] = {}
    for key, value in query.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None
