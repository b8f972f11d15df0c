#!/usr/bin/env python3
"""Media through the uploader to the Supabase Storage double: transfers in flight, connection reuse,
seconds per file, small files per second, message-to-stored latency.

The full daemon runs with storage_backend supabase pointed at the storage double
(tests/support/storage_double.py, a real HTTP server following Supabase's API,
TUS for files over the standard 6 MiB the uploader uses), 5 concurrent uploads
(the default; --concurrent-uploads). Between them sits a TCP proxy
(benchlib/netdelay.py) adding each --storage-rtt-ms round trip in turn, and with
--storage-mbit a link of that rate per connection (a remote Storage is bandwidth
limited; then more concurrent transfers move more). Files are real files in a fake
media store at Synapse's local path, with their local_media_repository rows; the
m.file events are committed the way Synapse does.

At each round trip:
1. Rounds of --at-once files at once (10: twice the uploads), at 1, 10 and
   60 MiB: time from the commit until each file's media job is 'done' (polled
   every 20 ms); MiB/s together.
2. A burst of --small-files files of 10-100 KiB committed at once: files/s
   against what the transfer slots allow (slots / (RTT + a file's bytes over one
   connection's link)).
For each: the upload requests open at once as the uploader sees them (the
double's request spans widened by the one-way delay): peak, and time-weighted
mean while jobs were waiting (from the first request to the start of the last
file), beside concurrent_uploads; and TCP connections the daemon opened to
Storage against the HTTP requests it made (the proxy counts them).
3. At the first round trip only: files of 10 KiB-10 MiB (log-uniform sizes), one
   message every 0.5 s: message-to-stored latency percentiles (--latency-files 0 skips it).

With --baseline REV the daemon of that revision runs the same parts after this tree's.

Usage: .venv/bin/python bench/media.py [--storage-rtt-ms 0,20,60] [--storage-mbit 200] [--rounds 1]
"""
from __future__ import annotations

import argparse
import functools
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402

from benchlib import baseline, procs, report  # noqa: E402
from benchlib.cluster import open_server  # noqa: E402
from benchlib.live import MIB, Live, MediaDoneWatcher, media_events, start_live  # noqa: E402
from benchlib.netdelay import DelayProxy, far_away  # noqa: E402
from benchlib.synthgen import Persister  # noqa: E402
from benchlib.transfers import files_per_s_bound, in_flight, transfer_spans, waiting_window  # noqa: E402

P99_TARGET_S = 5.0
# A TCP window's worth of bytes the proxy holds per direction (Linux's default
# receive buffer grows to 6 MiB): bounds its memory, not the rate at these RTTs.
PROXY_WINDOW = 4 * MIB


def _numbers(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1,10,60", help="MiB per file for the rounds (default 1,10,60)")
    p.add_argument("--rounds", type=int, default=1, help="rounds per size (default 1)")
    p.add_argument("--at-once", type=int, default=10, help="files per round (default 10)")
    p.add_argument("--small-files", type=int, default=200, help="files of 10-100 KiB in the burst (default 200)")
    p.add_argument("--concurrent-uploads", type=int, default=5, help="processing.concurrent_uploads (default 5)")
    p.add_argument("--storage-rtt-ms", type=_numbers, default=[0.0],
                   help="round trips to Storage added by the proxy, a comma-separated list (default 0)")
    p.add_argument("--storage-mbit", type=float, default=0.0,
                   help="rate of each connection's link to Storage in Mbit/s (default 0: unlimited)")
    p.add_argument("--archive-rtt-ms", type=float, default=0.0,
                   help="also put the archive database this round trip away (default 0: local); the uploader's"
                        " claims and records cross it")
    p.add_argument("--latency-files", type=int, default=100, help="files for the latency part (default 100)")
    p.add_argument("--latency-interval", type=float, default=0.5, help="seconds between those messages (default 0.5)")
    p.add_argument("--baseline", metavar="REV[,REV]", default=[], type=lambda text: [r for r in text.split(",") if r],
                   help="also run the daemon of each of these git revisions (its code on PYTHONPATH), after this tree's")
    p.add_argument("--pg-admin-dsn", help="use this PostgreSQL server (superuser DSN) instead of a private cluster")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mxa-bench-media-"))
    with procs.Cleanup() as stack:
        stack.callback(lambda: shutil.rmtree(workdir, ignore_errors=True), label="remove work dir")
        server = open_server(stack, args.pg_admin_dsn)
        link = f"{args.storage_mbit:g} Mbit/s per connection" if args.storage_mbit else "no bandwidth limit"
        report.header("media", report.machine(), server.version(), server.settings("fsync"),
                      [f"storage: the Supabase Storage double behind a proxy adding {args.storage_rtt_ms} ms"
                       f" of round trip, {link}; the archive database "
                       + (f"{args.archive_rtt_ms:g} ms away" if args.archive_rtt_ms else "is local"),
                       "files sit in the page cache after being written: disk reads are not measured"])
        revisions = [baseline.THIS_TREE] + [baseline.checkout(stack, rev) for rev in args.baseline]
        figures: dict[str, Any] = {"machine": report.machine(), "args": vars(args), "runs": []}
        for i, revision in enumerate(revisions):
            with procs.Cleanup() as run_stack:
                figures["runs"].append(one_revision(run_stack, server, workdir / f"run{i}", revision, args))
        summarize(figures, args)
        report.save("media", figures)
    return 0


def one_revision(stack: procs.Cleanup, server: Any, workdir: Path, revision: baseline.Revision,
                 args: argparse.Namespace) -> dict[str, Any]:
    from tests.support.storage_double import StorageDouble

    print(f"\n##### {revision.label}")
    double = StorageDouble(workdir / "storage")
    double.start()
    stack.callback(double.stop, label="stop storage double")
    proxy = DelayProxy("127.0.0.1", int(double.url.rsplit(":", 1)[1]), 0.0, window=PROXY_WINDOW)
    proxy.start()
    stack.callback(proxy.stop, label="stop storage proxy")
    media_store = workdir / "media_store"
    live = start_live(stack, server, workdir, history=2_000, media=False, storage="supabase",
                      supabase_url=f"http://127.0.0.1:{proxy.port}", service_key=double.service_key,
                      media_store=media_store, concurrent_uploads=args.concurrent_uploads, env=revision.env(),
                      remote=far_away(stack, args.archive_rtt_ms))
    print(f"daemon code: {daemon_package(live)}")
    persister = Persister(live.synapse_dsn, live.world)
    stack.callback(persister.close, label="close writer")
    run: dict[str, Any] = {"revision": revision.label, "parts": []}
    written = 0
    with MediaDoneWatcher(live.archive_dsn) as watcher:
        for rtt in args.storage_rtt_ms:
            proxy.set_link(rtt, args.storage_mbit or None)
            part = one_rtt(live, persister, watcher, media_store, double, proxy, rtt, args)
            written += part.pop("bytes")
            if args.latency_files and rtt == args.storage_rtt_ms[0]:
                print(f"\n[latency] {args.latency_files} files of 10 KiB-10 MiB, one message every "
                      f"{args.latency_interval}s, {rtt:g} ms away")
                part["latency"] = latency(live, persister, watcher, media_store, args)
                written += part["latency"]["bytes"]
            run["parts"].append(part)
    check_stored(live, double, written)
    if double.internal_errors:
        print("WARNING: the storage double reported internal errors:\n" + "\n".join(double.internal_errors))
    return run


def daemon_package(live: Live) -> str:
    """Where the daemon's processes import mxarchiverd from (this tree or a baseline's): its
    environment and directory, and -P, since `python -c` would put our own directory first."""
    probe = subprocess.run([sys.executable, "-P", "-c", "import mxarchiverd; print(mxarchiverd.__file__)"],
                           env=live.daemon.child_env(), cwd=live.daemon.config_path.parent,
                           capture_output=True, text=True, check=True)
    return str(Path(probe.stdout.strip()).parent)


def one_rtt(live: Live, persister: Persister, watcher: MediaDoneWatcher, store: Path, double: Any,
            proxy: DelayProxy, rtt: float, args: argparse.Namespace) -> dict[str, Any]:
    part: dict[str, Any] = {"rtt_ms": rtt, "rounds": [], "bytes": 0}
    print(f"\n[{rtt:g} ms] rounds of {args.at_once} files at once, {args.rounds} per size")
    for size_mb in (int(s) for s in args.sizes.split(",") if s.strip()):
        for _ in range(args.rounds):
            found = measured(double, proxy, rtt, args.concurrent_uploads,
                             functools.partial(one_round, live, persister, watcher, store, size_mb, args.at_once))
            part["rounds"].append(found)
            part["bytes"] += size_mb * MIB * args.at_once
    if args.small_files:
        print(f"[{rtt:g} ms] {args.small_files} files of 10-100 KiB committed at once")
        part["small"] = measured(double, proxy, rtt, args.concurrent_uploads,
                                 functools.partial(small_burst, live, persister, watcher, store, args))
        part["small"]["bound_files_per_s"] = files_per_s_bound(
            args.concurrent_uploads, rtt / 1000, part["small"]["mean_bytes"], proxy.bytes_per_s)
        part["bytes"] += part["small"]["total_bytes"]
        print(f"  bound with {args.concurrent_uploads} transfers busy: "
              f"{part['small']['bound_files_per_s']:.0f} files/s")
    return part


def measured(double: Any, proxy: DelayProxy, rtt: float, slots: int,
             work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run `work` and add what the double and the proxy saw meanwhile: in flight, connections, requests."""
    since, connections = time.monotonic(), proxy.connections
    found: dict[str, Any] = work()
    spans = transfer_spans(double.spans(), since, time.monotonic())
    requests = sum(1 for s in double.spans() if s[1] >= since)
    found["connections"], found["requests"] = proxy.connections - connections, requests
    window = waiting_window(spans)
    widen = rtt / 2000
    if spans:
        # From the first request leaving the uploader to the last answer reaching it: the
        # rate of the transfers themselves, without the wait for an idle uploader's claim.
        found["transfer_s"] = max(s[2] for s in spans) - min(s[1] for s in spans) + 2 * widen
        found["transfer_mib_per_s"] = found["mib"] / found["transfer_s"]
    if window:
        busy = in_flight(spans, window[0] - widen, window[1], widen)
        found["in_flight_peak"], found["in_flight_mean"], found["waiting_s"] = busy.peak, busy.mean, busy.window_s
        print(f"  in flight while jobs waited ({busy.window_s:.2f}s): mean {busy.mean:.2f}, peak {busy.peak}"
              f" (concurrent_uploads {slots}); {found['connections']} new connection(s) for {requests} requests;"
              f" {found['transfer_mib_per_s']:.1f} MiB/s from the first request to the last answer")
    return found


def stored_after_commit(live: Live, persister: Persister, watcher: MediaDoneWatcher, store: Path,
                        sizes: list[int], timeout_s: float) -> tuple[float, list[float]]:
    """Messages with files of these sizes committed at once: the commit's time and, sorted,
    the times their media jobs were seen done."""
    events = media_events(live.world, store, sizes, int(time.time() * 1000))
    committed = persister.persist(events)
    return committed, sorted(watcher.wait([e.event_id for e in events], timeout_s=timeout_s).values())


def one_round(live: Live, persister: Persister, watcher: MediaDoneWatcher, store: Path, size_mb: int,
              count: int) -> dict[str, Any]:
    committed, done = stored_after_commit(live, persister, watcher, store, [size_mb * MIB] * count, 900)
    per_file = [t - committed for t in done]
    wall = per_file[-1]
    found = {"size_mb": size_mb, "files": count, "wall_s": wall, "per_file_s": per_file, "mib": size_mb * count,
             "mean_s": sum(per_file) / len(per_file), "mib_per_s": size_mb * count / wall}
    print(f"  {count} x {size_mb} MiB: all stored {wall:.2f}s after the commit (mean {found['mean_s']:.2f}s);"
          f" {found['mib_per_s']:.0f} MiB/s together")
    return found


def small_burst(live: Live, persister: Persister, watcher: MediaDoneWatcher, store: Path,
                args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(7)
    sizes = [rng.randint(10 * 1024, 100 * 1024) for _ in range(args.small_files)]
    committed, done = stored_after_commit(live, persister, watcher, store, sizes, 600)
    wall = done[-1] - committed
    # From the first file stored: the claim of an idle uploader (up to 1 s) left out.
    steady = (len(done) - 1) / (done[-1] - done[0]) if done[-1] > done[0] else float("nan")
    found = {"files": len(sizes), "total_bytes": sum(sizes), "mean_bytes": sum(sizes) / len(sizes),
             "mib": sum(sizes) / MIB,
             "wall_s": wall, "files_per_s": len(sizes) / wall, "steady_files_per_s": steady}
    print(f"  {len(sizes)} files: all stored {wall:.2f}s after the commit ({found['files_per_s']:.0f} files/s;"
          f" {steady:.0f} files/s from the first stored)")
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
    slots = args.concurrent_uploads
    link = f"{args.storage_mbit:g} Mbit/s per connection" if args.storage_mbit else "no bandwidth limit"
    archive = f"archive {args.archive_rtt_ms:g} ms away" if args.archive_rtt_ms else "archive local"
    print(f"\n--- media through the uploader ({slots} concurrent transfers, {link}, {archive}) ---")
    rows = []
    for run in figures["runs"]:
        for part in run["parts"]:
            for r in part["rounds"]:
                rows.append([run["revision"], f"{part['rtt_ms']:g} ms", f"{r['files']} x {r['size_mb']} MiB",
                             f"{r['mean_s']:.2f}", _rates(r), _busy(r), _reuse(r)])
            if "small" in part:
                s = part["small"]
                rows.append([run["revision"], f"{part['rtt_ms']:g} ms", f"{s['files']} x 10-100 KiB",
                             f"{s['files_per_s']:.0f} files/s ({s['steady_files_per_s']:.0f} after the first;"
                             f" bound {s['bound_files_per_s']:.0f})", _rates(s), _busy(s), _reuse(s)])
    print(report.table(rows, ["code", "storage RTT", "files", "mean s per file (commit -> stored)",
                              "MiB/s from the commit / the first request",
                              f"in flight while waiting, mean / peak (of {slots})", "connections / requests"]))
    for run in figures["runs"]:
        lat = next((p["latency"] for p in run["parts"] if "latency" in p), None)
        if lat:
            print(f"{run['revision']}: target p99 message-to-stored < {P99_TARGET_S:.0f} s for files up to 10 MiB: "
                  f"{report.verdict(lat['p99'] < P99_TARGET_S)} (p99 {lat['p99']:.2f}s over {lat['files']} files)")


def _rates(found: dict[str, Any]) -> str:
    return f"{found['mib'] / found['wall_s']:.1f} / {found.get('transfer_mib_per_s', float('nan')):.1f}"


def _busy(found: dict[str, Any]) -> str:
    return f"{found['in_flight_mean']:.2f} / {found['in_flight_peak']}" if "in_flight_mean" in found else "-"


def _reuse(found: dict[str, Any]) -> str:
    return f"{found['connections']} / {found['requests']}"


if __name__ == "__main__":
    sys.exit(main())
