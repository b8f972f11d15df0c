#!/usr/bin/env python3
"""Backfill throughput: the full daemon vs the physical limit (COPY) vs seed 001's design.

1. N realistic events go into a database with Synapse's real schema (bulk COPY,
   stream_positions set, VACUUM ANALYZE: a steady-state source).
2. COPY: the same rows (events JOIN event_json) streamed with COPY TO STDOUT into
   COPY FROM STDIN of a plain target table (jsonb event, no index): the physical limit.
3. Daemon: `mxarchiverd --config X run` (uploader idle) archives everything into a
   fresh archive database; wall time from the start of the command until the
   archive's durable 'events' cursor reaches the source bound.
4. Seed 001: its sketch (a listing query per 100, then per message one content
   query on event_json and one upsert, cursor saved per message) on a subset,
   rate extrapolated.

With --baseline REV the daemon of an earlier revision runs too, on the same
source, in the same run; with --archive-rtt-ms 0,20,60 everything runs at each
round-trip time to the archive.

Usage: .venv/bin/python bench/backfill.py [--events 1000000] [--profile]
       .venv/bin/python bench/backfill.py --events 30000 --archive-rtt-ms 0,20,60 --baseline b7386c3
"""
from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import pstats
import sys
import tempfile
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson  # noqa: E402
import psycopg  # noqa: E402

from benchlib import baseline, pgstat, procs, report  # noqa: E402
from benchlib.netdelay import far_away  # noqa: E402
from benchlib.cluster import open_server  # noqa: E402
from benchlib.daemon import CursorProbe, DaemonConfig, start_daemon, wait_for_position  # noqa: E402
from benchlib.schema import create_synapse_db  # noqa: E402
from benchlib.synthgen import World, bulk_load  # noqa: E402
from tests.support.postgres import PgServer  # noqa: E402

TS_START = 1_700_000_000_000
TARGET_RATE, TARGET_COPY_SHARE, TARGET_SEED_FACTOR = 20_000.0, 0.30, 50.0
TARGET_REMOTE_RATE = 10_000.0  # at 20 ms round trip to the archive


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=200_000, help="events in the source (default 200000)")
    p.add_argument("--rooms", type=int, default=20, help="rooms (default 20)")
    p.add_argument("--seed-events", type=int, default=5_000, help="subset for seed 001's design (default 5000)")
    p.add_argument("--batch-size", type=int, default=500, help="processing.batch_size of the daemon (default 500)")
    p.add_argument("--profile", action="store_true",
                   help="also run the three stages in-process under cProfile and print where the time goes")
    p.add_argument("--profile-events", type=int, default=50_000, help="events for --profile (default 50000)")
    p.add_argument("--pg-admin-dsn", help="use this PostgreSQL server (superuser DSN) instead of a private cluster")
    p.add_argument("--archive-rtt-ms", type=_rtts, default=[0.0],
                   help="put the archive database behind a proxy adding this round-trip time (Supabase is remote;"
                        " Synapse's database stays local); a comma-separated list runs everything at each. Applies"
                        " to the daemon, seed 001 and COPY alike")
    p.add_argument("--baseline", metavar="REV[,REV]", default=[], type=lambda text: [r for r in text.split(",") if r],
                   help="also run the daemon of each of these git revisions (same venv, its code on PYTHONPATH),"
                        " beside this tree's, on the same source: before and after in one run")
    p.add_argument("--seed", type=int, default=6, help="RNG seed of the generator")
    p.add_argument("--timeout", type=float, default=3600, help="give up on the daemon after this many seconds")
    return p.parse_args()


def _rtts(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def main() -> int:
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mxa-bench-backfill-"))
    with procs.Cleanup() as stack:
        stack.callback(lambda: _rmtree(workdir), label="remove work directory")
        server = open_server(stack, args.pg_admin_dsn)
        report.header("backfill", report.machine(), server.version(),
                      server.settings("fsync", "synchronous_commit", "shared_buffers"),
                      ["source and archive databases are on the same PostgreSQL server (no network);"
                       " Supabase over the internet adds a round trip per statement"])
        figures: dict[str, Any] = {"machine": report.machine(), "events": args.events,
                                   "archive_rtt_ms": args.archive_rtt_ms, "runs": []}
        revisions = [baseline.THIS_TREE] + [baseline.checkout(stack, rev) for rev in args.baseline]
        synapse_dsn, last = generate(server, args)
        for rtt in args.archive_rtt_ms:
            remote = far_away(stack, rtt)
            run: dict[str, Any] = {"archive_rtt_ms": rtt, "copy": measure_copy(server, synapse_dsn, args.events, remote),
                                   "daemons": {}}
            for revision in revisions:
                run["daemons"][revision.label] = measure_daemon(stack, server, synapse_dsn, last, args, workdir, remote,
                                                                revision)
            run["seed001"] = measure_seed001(server, synapse_dsn, _seed_subset(args.seed_events, rtt), workdir, remote)
            figures["runs"].append(run)
        summarize(figures, args)
        if args.profile:
            figures["profile"] = profile_stages(server, args, workdir)
        report.save("backfill", figures)
    return 0


def _rmtree(path: Path) -> None:
    import shutil
    shutil.rmtree(path, ignore_errors=True)


def generate(server: PgServer, args: argparse.Namespace) -> tuple[str, int]:
    print(f"\n[1/4] generating {args.events:,} events in {args.rooms} rooms into Synapse's schema")
    started = time.monotonic()
    dsn = create_synapse_db(server)
    world = World(seed=args.seed)
    setup = world.create_rooms(args.rooms, TS_START)
    events = itertools.chain(setup, world.stream(args.events - len(setup), TS_START))
    last = bulk_load(dsn, world, events)
    with psycopg.connect(dsn) as conn:
        mix = conn.execute("""SELECT count(*) FILTER (WHERE type = 'm.room.message'),
                                     count(*) FILTER (WHERE type = 'm.reaction'),
                                     count(*) FILTER (WHERE type = 'm.room.redaction'),
                                     count(*) FILTER (WHERE contains_url),
                                     pg_size_pretty(pg_database_size(current_database()))
                                FROM events""").fetchone()
        rel = dict(conn.execute("SELECT relation_type, count(*) FROM event_relations GROUP BY 1").fetchall())
        avg_json = conn.execute("SELECT avg(length(json))::int FROM event_json").fetchone()[0]  # type: ignore[index]
    assert mix is not None
    print(f"  {mix[0]:,} messages ({mix[3]:,} with media), {rel.get('m.replace', 0):,} edits, "
          f"{rel.get('m.thread', 0):,} in threads, {mix[1]:,} reactions, {mix[2]:,} redactions; "
          f"event JSON {avg_json} bytes on average; database {mix[4]}; {time.monotonic() - started:.0f}s")
    return dsn, last


# --- (a) the physical limit ------------------------------------------------------------

COPY_OUT = """COPY (SELECT e.stream_ordering, e.event_id, e.room_id, e.type, e.sender, e.origin_server_ts, ej.json
                FROM events e JOIN event_json ej ON ej.event_id = e.event_id
               ORDER BY e.stream_ordering) TO STDOUT"""
COPY_TABLE = """CREATE TABLE copied (stream_ordering bigint, event_id text, room_id text, type text,
                                     sender text, origin_server_ts bigint, event jsonb)"""


def measure_copy(server: PgServer, synapse_dsn: str, events: int, remote: Callable[[str], str]) -> dict[str, Any]:
    print("\n[2/4] physical limit: COPY TO STDOUT (events JOIN event_json) piped into COPY FROM STDIN")
    target = server.create_database("copy")
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute(COPY_TABLE)
    pg_cpu0 = procs.tree_cpu_seconds(server.postmaster_pid) if server.postmaster_pid else None
    own_cpu0 = time.process_time()
    started = time.monotonic()
    with psycopg.connect(synapse_dsn) as src, psycopg.connect(remote(target)) as dst:
        with src.cursor().copy(COPY_OUT) as out, dst.cursor().copy("COPY copied FROM STDIN") as into:
            for chunk in out:
                into.write(chunk)
        dst.commit()
    seconds = time.monotonic() - started
    own_cpu = time.process_time() - own_cpu0
    pg_cpu = procs.tree_cpu_seconds(server.postmaster_pid) - pg_cpu0 if pg_cpu0 is not None else None
    server.drop_database(target)
    rate = events / seconds
    print(f"  {events:,} rows in {seconds:.1f}s: {rate:,.0f} events/s; CPU per event: pipe {own_cpu / events * 1e6:.0f} us"
          + (f", PostgreSQL {pg_cpu / events * 1e6:.0f} us" if pg_cpu is not None else ""))
    return {"seconds": seconds, "rate": rate, "postgres_cpu_seconds": pg_cpu, "pipe_cpu_seconds": own_cpu}


# --- the daemon -------------------------------------------------------------------------

def _seed_subset(events: int, rtt_ms: float) -> int:
    """Seed 001's subset, smaller far away (two round trips per message): about a minute's work."""
    return events if rtt_ms <= 0 else max(200, min(events, int(30_000 / rtt_ms)))


def measure_daemon(stack: procs.Cleanup, server: PgServer, synapse_dsn: str, last: int, args: argparse.Namespace,
                   workdir: Path, remote: Callable[[str], str],
                   revision: baseline.Revision = baseline.THIS_TREE) -> dict[str, Any]:
    print(f"\n[3/4] full daemon ({revision.label}): mxarchiverd run (uploader idle), until archive_cursors 'events'"
          " = source bound")
    archive = server.create_database("archive")
    home = workdir / f"daemon-{len(list(workdir.glob('daemon-*')))}"
    daemon = DaemonConfig(synapse_dsn, remote(archive), home, batch_size=args.batch_size).daemon(
        home / "daemon.log", env=revision.env())
    probe = CursorProbe(archive)
    pg_cpu0 = procs.tree_cpu_seconds(server.postmaster_pid) if server.postmaster_pid else None
    statements = pgstat.available(server)
    if statements:
        pgstat.reset(server)
    busy0, all0 = procs.machine_cpu()
    start_daemon(stack, daemon)
    done, first = wait_for_position(daemon, probe, last, args.timeout)
    total = done - daemon.started_at
    cpu = procs.cpu_by_role(daemon.pids())
    busy1, all1 = procs.machine_cpu()
    pg_cpu = procs.tree_cpu_seconds(server.postmaster_pid) - pg_cpu0 if pg_cpu0 is not None else None
    probe.close()
    code = daemon.stop()
    with psycopg.connect(archive) as conn:
        counts = conn.execute("""SELECT count(*), count(*) FILTER (WHERE redacted), count(*) FILTER (WHERE edited_at
                                        IS NOT NULL), (SELECT count(*) FROM media_jobs) FROM archived_messages""").fetchone()
    assert counts is not None
    rate, steady = args.events / total, args.events / (done - (first or daemon.started_at))
    print(f"  {counts[0]:,} rows archived ({counts[1]:,} redacted, {counts[2]:,} edited, {counts[3]:,} media jobs);"
          f" daemon exit code {code} after SIGTERM")
    print(f"  wall time {total:.1f}s from `mxarchiverd run` ({(first or done) - daemon.started_at:.1f}s until the "
          f"first batch was durable): {rate:,.0f} events/s overall, {steady:,.0f} events/s after the first batch")
    busy = {role: round(seconds, 1) for role, seconds in sorted(cpu.items(), key=lambda kv: -kv[1])}
    print(f"  CPU seconds per daemon process during the run: {busy}"
          + (f"; PostgreSQL (all backends): {pg_cpu:.1f}" if pg_cpu is not None else ""))
    machine_busy = busy1 - busy0
    others = machine_busy - sum(cpu.values()) - (pg_cpu or 0.0)
    print(f"  machine CPU during the run: {machine_busy / (all1 - all0):.0%} busy of {procs.os.cpu_count()} CPUs"
          f" ({machine_busy:.1f} CPU-s: daemon {sum(cpu.values()):.1f}"
          + (f", PostgreSQL {pg_cpu:.1f}, everything else on the machine {others:.1f}" if pg_cpu is not None else "")
          + f"); per event: daemon {sum(cpu.values()) / args.events * 1e6:.0f} us"
          + (f", PostgreSQL {pg_cpu / args.events * 1e6:.0f} us" if pg_cpu is not None else ""))
    if counts[0] != args.events:
        print(f"  WARNING: archived {counts[0]:,} rows for {args.events:,} source events")
    top = print_statements(server, archive, synapse_dsn) if statements else {}
    return {"seconds": total, "rate": rate, "steady_rate": steady, "cpu_seconds": cpu, "postgres_cpu_seconds": pg_cpu,
            "machine_cpu_busy": machine_busy / (all1 - all0), "archived": counts[0], "exit_code": code,
            "statements": top}


def print_statements(server: PgServer, archive: str, synapse_dsn: str) -> dict[str, Any]:
    """Where PostgreSQL spent its time during the run (pg_stat_statements)."""
    found: dict[str, Any] = {}
    for label, dsn, limit in (("archive", archive, 8), ("synapse (source)", synapse_dsn, 4)):
        calls, total = pgstat.totals(server, dsn)
        rows = pgstat.top(server, dsn, limit)
        print(f"  {label} database: {calls:,} statements, {total / 1000:.1f}s execution in all; costliest:")
        print(report.table([[s.calls, s.total_ms / 1000, s.mean_ms, f"{s.total_ms / total:.0%}" if total else "",
                             pgstat.short(s.query, 90)] for s in rows],
                           ["calls", "total s", "mean ms", "share", "statement"]))
        found[label] = [s.__dict__ for s in rows]
    return found


# --- (b) seed 001's design --------------------------------------------------------------

SEED_LIST = """SELECT event_id, room_id, sender, origin_server_ts FROM events
                WHERE stream_ordering > %s ORDER BY stream_ordering LIMIT 100"""
SEED_CONTENT = "SELECT json FROM event_json WHERE event_id = %s"
SEED_UPSERT = """INSERT INTO archived_messages (event_id, room_id, sender, timestamp, message_type, content)
                 VALUES (%s, %s, %s, %s, %s, %s)
                 ON CONFLICT (event_id) DO UPDATE SET content = EXCLUDED.content, message_type = EXCLUDED.message_type"""


def measure_seed001(server: PgServer, synapse_dsn: str, subset: int, workdir: Path,
                    remote: Callable[[str], str]) -> dict[str, Any]:
    """Seed 001's loop, minimal but faithful: per message one content query and one upsert.

    Generous to the seed: its upsert goes to Supabase over HTTPS (PostgREST);
    here it is a local SQL statement. The listing query reads Synapse's events
    (no bridge DB here) 100 at a time, as the seed's LIMIT 100; the cursor is
    written to a state file after each message, as its pseudocode does.
    """
    print(f"\n[4/4] seed 001's design on the first {subset:,} events (one content query + one upsert per message)")
    from mxarchiverd.archive.migrations import migrate
    target = server.create_database("seed001")
    with psycopg.connect(target, autocommit=True) as conn:
        migrate(conn, target=1)  # seed 000's schema, as seed 001 writes into it
    state = workdir / "seed001.state"
    done, cursor = 0, 0
    started = time.monotonic()
    with psycopg.connect(synapse_dsn, autocommit=True) as src, \
            psycopg.connect(remote(target), autocommit=True) as dst:
        while done < subset:
            listing = src.execute(SEED_LIST, (cursor,)).fetchall()
            if not listing:
                break
            for event_id, room_id, sender, ts in listing:
                row = src.execute(SEED_CONTENT, (event_id,)).fetchone()
                content = orjson.loads(row[0]).get("content", {}) if row else {}
                dst.execute(SEED_UPSERT, (event_id, room_id, sender, ts, content.get("msgtype") or "m.unknown",
                                          psycopg.types.json.Jsonb(content)))
                state.write_text(str(ts))
                done += 1
            cursor = src.execute("SELECT stream_ordering FROM events WHERE event_id = %s",
                                 (listing[-1][0],)).fetchone()[0]  # type: ignore[index]
    seconds = time.monotonic() - started
    server.drop_database(target)
    rate = done / seconds
    print(f"  {done:,} events in {seconds:.1f}s: {rate:,.0f} events/s (extrapolated to the full set)")
    return {"events": done, "seconds": seconds, "rate": rate}


# --- summary ------------------------------------------------------------------------------

def summarize(figures: dict[str, Any], args: argparse.Namespace) -> None:
    """One table: per round-trip time, each daemon beside COPY and seed 001, targets on this tree's rows."""
    print(f"\n--- backfill of {args.events:,} events ---")
    table = []
    for run in figures["runs"]:
        rtt, copy, seed = run["archive_rtt_ms"], run["copy"]["rate"], run["seed001"]["rate"]
        for label, daemon in run["daemons"].items():
            rate = daemon["rate"]
            cpu = sum(daemon["cpu_seconds"].values()) / args.events * 1e6
            pg = daemon["postgres_cpu_seconds"]
            mine = label == baseline.THIS_TREE.label
            target = TARGET_RATE if rtt <= 0 else TARGET_REMOTE_RATE
            table.append([f"{rtt:g}", f"daemon, {label}", rate, daemon["steady_rate"], f"{rate / copy:.1%}",
                          f"{rate / seed:.1f}x",
                          f"{cpu:.0f}", f"{pg / args.events * 1e6:.0f}" if pg is not None else "",
                          f">= {target:,.0f}" if mine else "", report.verdict(rate >= target) if mine else ""])
        table.append([f"{rtt:g}", "physical limit (COPY pipe)", copy, "", "", "", "", "", "", ""])
        table.append([f"{rtt:g}", "seed 001 design (per message)", seed, "", "", "", "", "", "", ""])
    print(report.table(table, ["rtt ms", "what", "events/s", "after 1st batch", "of COPY", "x seed 001",
                               "daemon us/ev", "PG us/ev", "target", ""]))
    print(f"targets: >= {TARGET_RATE:,.0f} events/s and >= {TARGET_COPY_SHARE:.0%} of COPY locally,"
          f" >= {TARGET_REMOTE_RATE:,.0f} events/s at 20 ms, >= {TARGET_SEED_FACTOR:.0f}x seed 001")


# --- in-process profile -----------------------------------------------------------------

def profile_stages(server: PgServer, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The three stages in one process, each under its own cProfile: where does the CPU go?

    Messages take the queues' codec round trip between stages, as over the queues. The
    daemon runs the stages in parallel, so its rate is bounded by the slowest one.
    """
    from mxarchiverd.config import load_config
    from mxarchiverd.archive.migrations import migrate
    from mxarchiverd.workers.dbwriter import DbWriter
    from mxarchiverd.workers.enricher import Enricher
    from mxarchiverd.workers.poller import Poller

    n = min(args.profile_events, args.events)
    print(f"\n--- in-process profile of the stages on {n:,} events (cProfile; not the daemon's figures) ---")
    synapse_dsn = create_synapse_db(server, "synapse_profile")
    world = World(seed=args.seed)
    setup = world.create_rooms(args.rooms, TS_START)
    last = bulk_load(synapse_dsn, world, itertools.chain(setup, world.stream(n - len(setup), TS_START)),
                     progress_every=0)
    archive = server.create_database("archive_profile")
    with psycopg.connect(archive, autocommit=True) as conn:
        migrate(conn)
    path = DaemonConfig(synapse_dsn, archive, workdir / "profile", batch_size=args.batch_size).write()
    config = load_config(str(path), {})
    stages = {"poller": Poller(config, lambda: None), "enricher": Enricher(config, lambda: None),
              "dbwriter": DbWriter(config, lambda: None)}
    for stage in stages.values():
        stage.open()
    profiles = {name: cProfile.Profile() for name in (*stages, "queue codec")}
    seconds = dict.fromkeys(profiles, 0.0)

    def timed(name: str, func: Any, *a: Any) -> Any:
        t = time.perf_counter()
        profiles[name].enable()
        try:
            return func(*a)
        finally:
            profiles[name].disable()
            seconds[name] += time.perf_counter() - t

    from mxarchiverd.pipeline.channels import decode, encode
    from mxarchiverd.pipeline.messages import from_wire, to_wire

    codec = lambda m: from_wire(decode(encode(to_wire(m))))  # noqa: E731
    try:
        while stages["poller"].source.cursors["events"] < last:  # type: ignore[attr-defined]
            messages, _ = timed("poller", stages["poller"].produce)  # type: ignore[attr-defined]
            for message in messages:
                for rows in timed("enricher", stages["enricher"].handle, timed("queue codec", codec, message)):
                    timed("dbwriter", stages["dbwriter"].handle, timed("queue codec", codec, rows))
    finally:
        for stage in stages.values():
            stage.close()
    total = sum(seconds.values())
    result: dict[str, Any] = {"events": n}
    print(report.table([[name, s, n / s if s else 0.0, f"{s / total:.0%}"] for name, s in seconds.items()],
                       ["stage", "seconds", "events/s alone", "share"]))
    print("(the queue codec runs twice per batch in the daemon: encode in the sender, decode in the receiver)")
    for name, profile in profiles.items():
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(12)
        lines = [line for line in out.getvalue().splitlines() if line.strip()][4:]
        print(f"\n{name}: top functions by own time")
        print("\n".join("  " + line for line in lines[:14]))
        result[name] = {"seconds": seconds[name], "top": lines[:14]}
    return result


if __name__ == "__main__":
    sys.exit(main())
