"""A loopback TCP proxy whose link can be cut, to put an outage between the daemon and a database.

Two ways to cut, as networks fail:
- ``stall``: bytes stop flowing both ways (new connections are accepted and hang);
  when the link returns, what was held back flows on, as TCP retransmission would.
- ``reset``: every open connection is closed at once and new ones are closed
  as soon as they arrive, until the link returns.

It also counts round trips: a client sending after it last heard from the server
starts a new one (pipelined requests sent before any answer count once).

Plain threads (one per direction of each connection): started and stopped by
the test, nothing outlives ``stop()``.
"""
from __future__ import annotations

import socket
import threading
from contextlib import suppress

CHUNK = 65536


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.flowing = threading.Event()
        self.flowing.set()
        self.refusing = False
        self.closed = False
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        self.threads: list[threading.Thread] = []
        self.connections = 0
        self.round_trips = 0
        self._acceptor = threading.Thread(target=self._accept, name="tcp-proxy-accept", daemon=True)

    def start(self) -> TcpProxy:
        self._acceptor.start()
        return self

    @classmethod
    def start_for(cls, dsn: str) -> TcpProxy:
        """A started proxy to the host and port of a connection string."""
        from psycopg.conninfo import conninfo_to_dict
        params = conninfo_to_dict(dsn)
        return cls(str(params.get("host", "127.0.0.1")), int(str(params.get("port", 5432)))).start()

    def dsn_for(self, dsn: str) -> str:
        """The same connection string, through this proxy."""
        from psycopg.conninfo import conninfo_to_dict, make_conninfo
        params = conninfo_to_dict(dsn)
        params.update(host="127.0.0.1", port=str(self.port))
        return make_conninfo(**params)

    # -- the link -------------------------------------------------------------

    def cut(self, mode: str = "stall") -> None:
        if mode == "stall":
            self.flowing.clear()
        elif mode == "reset":
            self.refusing = True
            self._close_all()
        else:
            raise ValueError(f"unknown cut mode {mode!r}")

    def restore(self) -> None:
        self.refusing = False
        self.flowing.set()

    def stop(self) -> None:
        self.closed = True
        self.flowing.set()
        with suppress(OSError):
            self.listener.close()
        self._close_all()
        self._acceptor.join(5)
        for thread in list(self.threads):
            thread.join(5)

    # -- plumbing -------------------------------------------------------------

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            self.connections += 1
            with self.lock:
                self.sockets |= {client, upstream}
            link = _Link()
            for a, b, to_server in ((client, upstream, True), (upstream, client, False)):
                thread = threading.Thread(target=self._pump, args=(a, b, link, to_server), name="tcp-proxy-pump",
                                          daemon=True)
                self.threads.append(thread)
                thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket, link: _Link, to_server: bool) -> None:
        try:
            while True:
                data = source.recv(CHUNK)
                if not data:
                    break
                self._count(link, to_server)
                self.flowing.wait()
                if self.closed:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._close(source, sink)

    def _count(self, link: _Link, to_server: bool) -> None:
        with self.lock:
            if to_server and link.answered:
                self.round_trips += 1
            link.answered = not to_server

    def _close(self, *socks: socket.socket) -> None:
        for sock in socks:
            with self.lock:
                self.sockets.discard(sock)
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with suppress(OSError):
                sock.close()

    def _close_all(self) -> None:
        with self.lock:
            socks = list(self.sockets)
        self._close(*socks)


class _Link:
    """One proxied connection: has the server spoken since the client last sent?"""

    def __init__(self) -> None:
        self.answered = True
