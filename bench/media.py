#!/usr/bin/env python3
"""Media through the uploader to the Supabase Storage double: seconds per file, message-to-stored latency.

The full daemon runs with storage_backend supabase pointed at the storage double
(tests/support/storage_double.py, a real HTTP server following Supabase's API,
TUS for files over the standard 50 MiB limit), 5 concurrent uploads (the default).
Files are real files in a fake media store at Synapse's local path, with their
local_media_repository rows; the m.file events are committed the way Synapse does.

1. Rounds of 5 files at once, at 1, 10 and 60 MiB: time from the commit of the
   5 messages until each file's media job is 'done' (polled every 20 ms).
2. Many files of 10 KiB-10 MiB (log-uniform sizes), one message every 0.5 s:
   message-to-stored latency percentiles.

Usage: .venv/bin/python bench/media.py [--rounds 2] [--latency-files 100]
"""
from __future__ import annotations

import argparse
import math
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402

from benchlib import procs, report  # noqa: E402
from benchlib.cluster import open_server  # noqa: E402
from benchlib.live import MIB, Live, MediaDoneWatcher, media_events, start_live  # noqa: E402
from benchlib.synthgen import Persister  # noqa: E402

P99_TARGET_S = 5.0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1,10,60", help="MiB per file for the rounds (default 1,10,60)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of 5 files per size (default 2)")
    p.add_argument("--at-once", type=int, default=5, help="files per round (default 5)")
    p.add_argument("--latency-files", type=int, default=100, help="files for the latency part (default 100)")
    p.add_argument("--latency-interval", type=float, default=0.5, help="seconds between those messages (default 0.5)")
    p.add_argument("--pg-admin-dsn", help="use this PostgreSQL server (superuser DSN) instead of a private cluster")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mxa-bench-media-"))
    from tests.support.storage_double import StorageDouble

    with procs.Cleanup() as stack:
        stack.callback(lambda: shutil.rmtree(workdir, ignore_errors=True), label="remove work dir")
        server = open_server(stack, args.pg_admin_dsn)
        report.header("media", report.machine(), server.version(), server.settings("fsync"),
                      ["storage: the Supabase Storage double on loopback (no internet latency or bandwidth limit)",
                       "files sit in the page cache after being written: disk reads are not measured"])
        double = StorageDouble(workdir / "storage")
        double.start()
        stack.callback(double.stop, label="stop storage double")
        media_store = workdir / "media_store"
        live = start_live(stack, server, workdir, history=2_000, media=False, storage="supabase",
                          supabase_url=double.url, service_key=double.service_key, media_store=media_store)
        persister = Persister(live.synapse_dsn, live.world)
        stack.callback(persister.close, label="close writer")
        figures: dict[str, Any] = {"machine": report.machine(), "rounds": [], "latency": {}}
        with MediaDoneWatcher(live.archive_dsn) as watcher:
            print(f"\n[rounds] {args.at_once} files at once, {args.rounds} round(s) per size")
            for size_mb in (int(s) for s in args.sizes.split(",")):
                for _ in range(args.rounds):
                    figures["rounds"].append(one_round(live, persister, watcher, media_store, size_mb, args.at_once))
            print(f"\n[latency] {args.latency_files} files of 10 KiB-10 MiB, one message every "
                  f"{args.latency_interval}s")
            figures["latency"] = latency(live, persister, watcher, media_store, args)
        check_stored(live, double, sum(r["size_mb"] * MIB * r["files"] for r in figures["rounds"])
                     + figures["latency"]["bytes"])
        summarize(figures, args)
        if double.internal_errors:
            print("WARNING: the storage double reported internal errors:\n" + "\n".join(double.internal_errors))
        report.save("media", figures)
    return 0


def one_round(live: Live, persister: Persister, watcher: MediaDoneWatcher, store: Path, size_mb: int,
              count: int) -> dict[str, Any]:
    events = media_events(live.world, store, [size_mb * MIB] * count, int(time.time() * 1000))
    committed = persister.persist(events)
    done = watcher.wait([e.event_id for e in events], timeout_s=900)
    per_file = sorted(t - committed for t in done.values())
    wall = per_file[-1]
    found = {"size_mb": size_mb, "files": count, "wall_s": wall, "per_file_s": per_file,
             "mean_s": sum(per_file) / len(per_file), "mib_per_s": size_mb * count / wall}
    print(f"  {count} x {size_mb} MiB: all stored {wall:.2f}s after the commit (each: "
          + ", ".join(f"{t:.2f}" for t in per_file) + f" s); {found['mib_per_s']:.0f} MiB/s together")
    return found


def latency(live: Live, persister: Persister, watcher: MediaDoneWatcher, store: Path,
            args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(6)
    sizes = [int(math.exp(rng.uniform(math.log(10 * 1024), math.log(10 * MIB)))) for _ in range(args.latency_files)]
    committed: dict[str, float] = {}
    started = time.monotonic()
    for i, size in enumerate(sizes):
        (event,) = media_events(live.world, store, [size], int(time.time() * 1000))
        committed[event.event_id] = persister.persist([event])
        pause = started + (i + 1) * args.latency_interval - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    done = watcher.wait(list(committed), timeout_s=600)
    values = sorted(done[e] - committed[e] for e in committed)
    lower = sorted(watcher.updated_at[e] - committed[e] for e in committed)
    found = {"files": len(values), "total_mib": sum(sizes) / MIB, "bytes": sum(sizes), "p50": report.percentile(values, 50),
             "p95": report.percentile(values, 95), "p99": report.percentile(values, 99), "max": values[-1],
             "updated_at_p99": report.percentile(lower, 99)}
    print(f"  {len(values)} files ({found['total_mib']:.0f} MiB): message -> stored p50 {found['p50']:.2f}s, "
          f"p95 {found['p95']:.2f}s, p99 {found['p99']:.2f}s, max {found['max']:.2f}s "
          f"(media_jobs.updated_at cross-check: p99 {found['updated_at_p99']:.2f}s)")
    return found


def check_stored(live: Live, double: Any, expected_bytes: int) -> None:
    """The bytes in the storage double add up to the files' bytes (their sha256 is the uploader tests' job)."""
    with psycopg.connect(live.archive_dsn) as conn:
        rows = conn.execute("SELECT count(*), COALESCE(sum(file_size), 0) FROM archived_media").fetchone()
    assert rows is not None
    stored = sum(o.size for o in double.objects(live_bucket()).values())
    print(f"\n{rows[0]} archived_media rows, {int(rows[1]):,} bytes recorded, {stored:,} bytes in the storage double"
          f" ({double.count('tus_patch')} TUS PATCH, {double.count('object_post') + double.count('object_put')}"
          f" standard uploads); files written: {expected_bytes:,} bytes")
    if not (int(rows[1]) == stored == expected_bytes):
        print("WARNING: stored bytes differ from the files' bytes")


def live_bucket() -> str:
    return "matrix-media"  # supabase.storage.bucket's default; the benchmark config does not change it


def summarize(figures: dict[str, Any], args: argparse.Namespace) -> None:
    print("\n--- media through the uploader (5 concurrent transfers) ---")
    by_size: dict[int, list[dict[str, Any]]] = {}
    for r in figures["rounds"]:
        by_size.setdefault(r["size_mb"], []).append(r)
    rows = []
    for size, rounds in sorted(by_size.items()):
        per_file = [t for r in rounds for t in r["per_file_s"]]
        rows.append([f"{size} MiB", len(per_file), f"{sum(per_file) / len(per_file):.2f}",
                     f"{max(r['wall_s'] for r in rounds):.2f}",
                     f"{sum(r['mib_per_s'] for r in rounds) / len(rounds):.0f}"])
    print(report.table(rows, ["file size", "files", "mean s per file (commit -> stored)",
                              f"worst round of {args.at_once} (s)", "MiB/s"]))
    lat = figures["latency"]
    print(f"target p99 message-to-stored < {P99_TARGET_S:.0f} s for files up to 10 MiB: "
          f"{report.verdict(lat['p99'] < P99_TARGET_S)} (p99 {lat['p99']:.2f}s over {lat['files']} files)")


if __name__ == "__main__":
    sys.exit(main())
