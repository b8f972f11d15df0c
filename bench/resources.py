#!/usr/bin/env python3
"""Memory and CPU of the whole daemon: idle, during a backfill, during 5 concurrent 60 MB uploads.

The daemon's processes are found through the process tree of `mxarchiverd run`
(supervisor, fork server, resource tracker, poller, enricher, dbwriter, uploader).
Memory: Rss and Pss summed over all of them, from /proc/<pid>/smaps_rollup (Pss
splits pages shared between the forked workers, so its sum is the real
footprint; the Rss sum counts shared pages once per process). CPU: utime+stime
from /proc/<pid>/stat. Media go to the Supabase Storage double
(tests/support/storage_double.py) over a real socket.

Usage: .venv/bin/python bench/resources.py [--backfill 200000] [--idle 60]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import procs, report  # noqa: E402
from benchlib.cluster import open_server  # noqa: E402
from benchlib.daemon import CursorProbe, wait_for_position  # noqa: E402
from benchlib.live import MIB, MediaDoneWatcher, media_events, start_live  # noqa: E402
from benchlib.synthgen import Persister  # noqa: E402
from tests.support.daemon import Daemon  # noqa: E402

MEMORY_TARGET_MB, IDLE_CPU_TARGET = 200.0, 1.0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backfill", type=int, default=200_000, help="events archived during the backfill (default 200000)")
    p.add_argument("--idle", type=float, default=60.0, help="seconds of idle CPU measurement (default 60)")
    p.add_argument("--uploads", type=int, default=5, help="concurrent uploads (default 5)")
    p.add_argument("--upload-mb", type=int, default=60, help="size of each upload in MiB (default 60)")
    p.add_argument("--pg-admin-dsn", help="use this PostgreSQL server (superuser DSN) instead of a private cluster")
    return p.parse_args()


class MemorySampler:
    """Samples the daemon tree's total Rss/Pss (and per role) every `interval_s` in a thread."""

    def __init__(self, daemon: Daemon, interval_s: float) -> None:
        self.daemon, self.interval_s = daemon, interval_s
        self.samples: list[tuple[float, int, int, dict[str, int]]] = []  # (t, rss kB, pss kB, role -> pss kB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(snapshot(self.daemon))
            self._stop.wait(self.interval_s)

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {}
        peak = max(self.samples, key=lambda s: s[2])
        return {"samples": len(self.samples), "peak_rss_mb": max(s[1] for s in self.samples) / 1024,
                "peak_pss_mb": peak[2] / 1024, "mean_pss_mb": sum(s[2] for s in self.samples) / len(self.samples) / 1024,
                "pss_by_role_at_peak_mb": {r: round(v / 1024, 1) for r, v in sorted(peak[3].items())}}


def snapshot(daemon: Daemon) -> tuple[float, int, int, dict[str, int]]:
    rss = pss = 0
    roles: dict[str, int] = {}
    for pid in daemon.pids():
        mem = procs.memory(pid)
        if mem is None:
            continue
        rss, pss = rss + mem.rss_kb, pss + mem.pss_kb
        role = procs.role_of(pid)
        roles[role] = roles.get(role, 0) + mem.pss_kb
    return time.time(), rss, pss, roles


def main() -> int:
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mxa-bench-resources-"))
    from tests.support.storage_double import StorageDouble

    with procs.Cleanup() as stack:
        stack.callback(lambda: shutil.rmtree(workdir, ignore_errors=True), label="remove work dir")
        server = open_server(stack, args.pg_admin_dsn)
        report.header("resources", report.machine(), server.version(), server.settings("shared_buffers"),
                      ["memory and CPU are the daemon's processes only (PostgreSQL and the storage double excluded)"])
        double = StorageDouble(workdir / "storage")
        double.start()
        stack.callback(double.stop, label="stop storage double")
        media_store = workdir / "media_store"
        figures: dict[str, Any] = {"machine": report.machine()}

        print(f"\n[backfill] generating {args.backfill:,} events (no media), then `mxarchiverd run` archives them")
        live = start_backfill_sampled(stack, server, workdir, args, double, media_store, figures)

        print(f"\n[idle] settling 10s, then measuring CPU for {args.idle:.0f}s")
        time.sleep(10)
        figures["idle"] = measure_idle(live.daemon, args.idle)

        print(f"\n[uploads] {args.uploads} x {args.upload_mb} MiB files sent at once to the storage double")
        figures["uploads"] = measure_uploads(live, media_store, args)
        if double.internal_errors:
            print("WARNING: the storage double reported internal errors:\n" + "\n".join(double.internal_errors))
        summarize(figures)
        report.save("resources", figures)
    return 0


def start_backfill_sampled(stack: procs.Cleanup, server: Any, workdir: Path, args: argparse.Namespace,
                           double: Any, media_store: Path, figures: dict[str, Any]) -> Any:
    """The daemon starts on a source of args.backfill events; memory is sampled until it caught up."""
    box: dict[str, Any] = {}

    def sampled_wait(daemon: Daemon, probe: CursorProbe, target: int, timeout_s: float) -> None:
        started = time.monotonic()
        with MemorySampler(daemon, 0.25) as sampler:
            wait_for_position(daemon, probe, target, timeout_s)
            cpu = procs.cpu_by_role(daemon.pids())
        box.update(sampler.summary(), seconds=time.monotonic() - started, cpu_seconds=sum(cpu.values()),
                   events=args.backfill)

    live = start_live(stack, server, workdir, history=args.backfill, media=False, wait_s=3600, waiter=sampled_wait,
                      storage="supabase", supabase_url=double.url, service_key=double.service_key,
                      media_store=media_store, concurrent_uploads=args.uploads)
    figures["backfill"] = box
    print(f"  archived in {box['seconds']:.1f}s; total PSS peak {box['peak_pss_mb']:.0f} MB "
          f"(mean {box['mean_pss_mb']:.0f} MB), total RSS peak {box['peak_rss_mb']:.0f} MB; "
          f"PSS by process at the peak: {box['pss_by_role_at_peak_mb']}")
    return live


def measure_idle(daemon: Daemon, seconds: float) -> dict[str, Any]:
    pids = daemon.pids()
    before = {pid: procs.cpu_seconds(pid) or 0.0 for pid in pids}
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    used: dict[str, float] = {}
    for pid in daemon.pids():
        after = procs.cpu_seconds(pid)
        if after is not None:
            role = procs.role_of(pid)
            used[role] = used.get(role, 0.0) + after - before.get(pid, 0.0)
    total = sum(used.values())
    _, rss, pss, roles = snapshot(daemon)
    found = {"seconds": elapsed, "cpu_seconds": total, "cpu_percent_of_one_cpu": 100 * total / elapsed,
             "cpu_by_role_percent": {r: round(100 * v / elapsed, 2) for r, v in sorted(used.items())},
             "rss_mb": rss / 1024, "pss_mb": pss / 1024, "pss_by_role_mb": {r: round(v / 1024, 1) for r, v in roles.items()}}
    print(f"  CPU {total:.2f}s in {elapsed:.0f}s = {found['cpu_percent_of_one_cpu']:.2f}% of one CPU; by process: "
          f"{found['cpu_by_role_percent']}")
    print(f"  memory idle: total PSS {found['pss_mb']:.0f} MB, total RSS {found['rss_mb']:.0f} MB; "
          f"PSS by process: {found['pss_by_role_mb']}")
    return found


def measure_uploads(live: Any, media_store: Path, args: argparse.Namespace) -> dict[str, Any]:
    persister = Persister(live.synapse_dsn, live.world)
    try:
        events = media_events(live.world, media_store, [args.upload_mb * MIB] * args.uploads, int(time.time() * 1000))
        with MediaDoneWatcher(live.archive_dsn) as watcher, MemorySampler(live.daemon, 0.05) as sampler:
            committed = persister.persist(events)
            done = watcher.wait([e.event_id for e in events], timeout_s=600)
    finally:
        persister.close()
    found = {**sampler.summary(), "seconds": max(done.values()) - committed, "files": len(events),
             "mb_each": args.upload_mb}
    print(f"  all {len(events)} stored {found['seconds']:.1f}s after the commit; total PSS peak "
          f"{found['peak_pss_mb']:.0f} MB (mean {found['mean_pss_mb']:.0f} MB), total RSS peak "
          f"{found['peak_rss_mb']:.0f} MB; PSS by process at the peak: {found['pss_by_role_at_peak_mb']}")
    return found


def summarize(figures: dict[str, Any]) -> None:
    idle, backfill, uploads = figures["idle"], figures["backfill"], figures["uploads"]
    print("\n--- resources of all daemon processes ---")
    print(report.table([
        ["idle", f"{idle['pss_mb']:.0f}", f"{idle['rss_mb']:.0f}", f"{idle['cpu_percent_of_one_cpu']:.2f}%"],
        ["backfill (peak)", f"{backfill['peak_pss_mb']:.0f}", f"{backfill['peak_rss_mb']:.0f}",
         f"{100 * backfill['cpu_seconds'] / backfill['seconds']:.0f}%"],
        [f"{uploads['files']} x {uploads['mb_each']} MiB uploads (peak)", f"{uploads['peak_pss_mb']:.0f}",
         f"{uploads['peak_rss_mb']:.0f}", ""],
    ], ["state", "PSS MB", "RSS MB (sum)", "CPU (of one CPU)"]))
    peak = max(idle["pss_mb"], backfill["peak_pss_mb"], uploads["peak_pss_mb"])
    print(f"target total memory < {MEMORY_TARGET_MB:.0f} MB (PSS): {report.verdict(peak < MEMORY_TARGET_MB)} "
          f"(peak {peak:.0f} MB; the RSS sum counts pages shared by the forked workers once per process)")
    print(f"target idle CPU < {IDLE_CPU_TARGET:.0f}%: "
          f"{report.verdict(idle['cpu_percent_of_one_cpu'] < IDLE_CPU_TARGET)} "
          f"({idle['cpu_percent_of_one_cpu']:.2f}% of one CPU)")


if __name__ == "__main__":
    sys.exit(main())
