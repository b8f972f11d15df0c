"""The "metrics" child: serves the Prometheus text format on `metrics.listen`.

A child of its own, because the supervisor holds no connection and starts no
thread while children run (DESIGN.md §2), and a slow scraper must never delay
the supervisor's loop. Its main loop serves one request per turn
(handle_request with a short timeout, a socket timeout per request), so its
heartbeat proves that it serves. Each scrape sums every process's files in the
run's multiprocess directory (so counters survive a stage's restart), and asks
the archive for the numbers only it knows: media jobs by state, quarantined
events, the latest verify run. A port it cannot bind is logged and retried:
metrics are never a reason to stop archiving.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import psycopg

from mxarchiverd.archive import audit
from mxarchiverd.archive.connection import open_archive
from mxarchiverd.archive.media_queue import job_counts
from mxarchiverd.config.values import split_listen
from mxarchiverd.metrics.instruments import DIRECTORY_VARIABLE, PREFIX
from mxarchiverd.workers.stage import Message, SourceStage

log = logging.getLogger(__name__)
TURN = 0.5
REQUEST_TIMEOUT = 5.0
BIND_RETRY = 30.0
MEDIA_STATES = ("pending", "done", "refused", "dead", "purge", "purged")


class MetricsExporter(SourceStage):
    role = "metrics"

    def open(self) -> None:
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        self.registry = CollectorRegistry()
        MultiProcessCollector(self.registry, path=os.environ[DIRECTORY_VARIABLE])
        self.registry.register(ArchiveCollector(self))
        self.archive: psycopg.Connection | None = None
        self.server: HTTPServer | None = None
        self.next_bind = 0.0
        self.scrapes = 0

    def close(self) -> None:
        server, archive = getattr(self, "server", None), getattr(self, "archive", None)
        if server is not None:
            server.server_close()
        if archive is not None:
            archive.close()

    def stats(self) -> dict[str, float]:
        return {"scrapes": float(self.scrapes)}

    def produce(self) -> tuple[list[Message], float]:
        if self.server is None and not self._bind():
            return [], TURN
        assert self.server is not None
        self.server.handle_request()
        return [], 0.0

    def _bind(self) -> bool:
        if time.monotonic() < self.next_bind:
            return False
        assert self.config.metrics.listen is not None
        host, port = split_listen(self.config.metrics.listen)
        try:
            self.server = _server(host, port, self)
        except OSError as exc:
            self.next_bind = time.monotonic() + BIND_RETRY
            log.error("metrics: cannot listen on %s: %s; retrying every %.0fs", self.config.metrics.listen,
                      exc.strerror or exc, BIND_RETRY)
            return False
        log.info("metrics on http://%s/metrics", self.config.metrics.listen)
        return True

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        self.scrapes += 1
        return generate_latest(self.registry)

    def archive_connection(self) -> psycopg.Connection:
        if self.archive is None or self.archive.closed:
            self.archive = open_archive(self.config, purpose="metrics", autocommit=True)
        return self.archive


class ArchiveCollector:
    """Numbers that live in the archive, read at scrape time (a few indexed counts)."""

    def __init__(self, exporter: MetricsExporter) -> None:
        self.exporter = exporter

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily(f"{PREFIX}archive_up", "1 when the archive answered this scrape")
        try:
            conn = self.exporter.archive_connection()
            families = list(_archive_families(conn))
        except psycopg.Error as exc:
            log.warning("metrics: the archive did not answer: %s", str(exc).splitlines()[0] if str(exc) else exc)
            if self.exporter.archive is not None:
                self.exporter.archive.close()
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from families


def _archive_families(conn: psycopg.Connection) -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily

    counts = job_counts(conn)
    jobs = GaugeMetricFamily(f"{PREFIX}media_jobs", "Media jobs in the archive by state", labels=["state"])
    for state in MEDIA_STATES:
        jobs.add_metric([state], float(counts.get(state, 0)))
    yield jobs
    yield GaugeMetricFamily(f"{PREFIX}quarantined_events", "Events set aside in quarantined_events",
                            value=float(audit.quarantined_count(conn)))
    run = audit.latest_verify_run(conn)
    if run is None:
        return
    yield GaugeMetricFamily(f"{PREFIX}verify_last_run_timestamp_seconds", "When the latest verify finished",
                            value=run.finished_at)
    yield GaugeMetricFamily(f"{PREFIX}verify_last_exit_code", "Exit code of the latest verify (0: complete)",
                            value=float(run.exit_code))
    problems = GaugeMetricFamily(f"{PREFIX}verify_problems", "Problems the latest verify found, by kind",
                                 labels=["kind"])
    for kind, count in sorted(run.problems.items()):
        problems.add_metric([kind], float(count))
    yield problems


def _server(host: str, port: int, exporter: MetricsExporter) -> HTTPServer:
    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.split("?")[0] not in ("/metrics", "/"):
                self.send_error(404, "only /metrics is served here")
                return
            from prometheus_client import CONTENT_TYPE_LATEST

            body = exporter.render()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Scrapes are not news."""

    class Server(HTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server = Server((host, port), Handler)
    server.timeout = TURN
    return server
