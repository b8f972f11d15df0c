"""A TCP proxy that adds a fixed round-trip time, to put the archive database "far away".

In production the archive is Supabase, across the internet, while Synapse's
database is local. Every round trip to the archive then costs the RTT; this
proxy (asyncio, in a thread of the benchmark) delays each chunk by RTT/2 in
each direction, keeping order. By default bandwidth is not limited; `set_link`
can give each connection its own link of a fixed rate (a remote Storage: one
TCP flow gets a bounded share of the path), and `window` bounds the bytes one
direction holds in flight, as a TCP window does (else a fast sender's whole
body would sit in the proxy's memory). Both can change while it runs, for
one daemon measured at several distances.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from benchlib import procs


def link_times(now: float, link_free: float, size: int, bytes_per_s: float | None,
               one_way: float) -> tuple[float, float]:
    """(when the link is free again, when these `size` bytes arrive) for a chunk read at `now`.

    A chunk waits for the chunks before it to leave the link, takes size/rate to
    cross it (no time when the rate is None: unlimited), then the one-way delay.
    """
    start = max(now, link_free)
    done = start + (size / bytes_per_s if bytes_per_s else 0.0)
    return done, done + one_way


class DelayProxy:
    def __init__(self, target_host: str, target_port: int, rtt_ms: float, mbit: float | None = None,
                 window: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.set_link(rtt_ms, mbit)
        self.window = window
        self.connections = 0  # accepted so far (connection reuse: compare with the requests made)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delay-proxy", daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def start(self) -> int:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("delay proxy did not start")
        return self.port

    def set_link(self, rtt_ms: float, mbit: float | None = None) -> None:
        """Round trip and per-connection rate (Mbit/s, None: unlimited) from now on."""
        self.one_way = rtt_ms / 2000.0
        self.bytes_per_s = mbit * 1e6 / 8 if mbit else None

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1  # only the loop's thread writes it
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(self._pump(client_r, upstream_w), self._pump(upstream_r, client_w),
                             return_exceptions=True)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        held = 0  # bytes read and not yet delivered
        room = asyncio.Event()
        room.set()
        link_free = 0.0

        async def deliver() -> None:
            nonlocal held
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    sink.close()
                    return
                sink.write(data)
                await sink.drain()
                held -= len(data)
                if self.window is None or held < self.window:
                    room.set()

        sender = asyncio.create_task(deliver())
        try:
            while data := await source.read(65536):
                link_free, due = link_times(loop.time(), link_free, len(data), self.bytes_per_s, self.one_way)
                queue.put_nowait((due, data))
                held += len(data)
                if self.window is not None and held >= self.window:
                    room.clear()
                    await room.wait()  # the sender waits, as on a full TCP window
        except (ConnectionError, OSError):
            pass
        queue.put_nowait((max(loop.time(), link_free) + self.one_way, b""))
        try:
            await sender
        except (ConnectionError, OSError):
            pass


def far_away(stack: procs.Cleanup, rtt_ms: float) -> Callable[[str], str]:
    """DSN -> the DSN through a proxy adding `rtt_ms` of round trip (identity when 0)."""
    if rtt_ms <= 0:
        return lambda dsn: dsn
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    proxies: dict[tuple[str, int], int] = {}

    def via_proxy(dsn: str) -> str:
        info = conninfo_to_dict(dsn)
        target = (str(info.get("host", "127.0.0.1")), int(info.get("port", 5432)))
        if target not in proxies:
            proxy = DelayProxy(*target, rtt_ms)
            proxies[target] = proxy.start()
            stack.callback(proxy.stop, label="stop delay proxy")
        return make_conninfo(dsn, host="127.0.0.1", port=proxies[target])

    print(f"note: the archive database is reached through a proxy adding {rtt_ms:g} ms of round trip")
    return via_proxy
