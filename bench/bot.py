#!/usr/bin/env python3
"""Bot mode (matrix_sync) beside DB mode (synapse_db), both archiving from one real Synapse in one run.

A real Synapse (the .venv's matrix-synapse) runs on the benchmark's PostgreSQL.
Both modes run the full daemon (`mxarchiverd --config X run`), one after the
other, each into a fresh archive database (and, for the bot, a fresh state
directory: a new login), on the same Synapse, the same rooms, the same events.

1. History backfill: a room whose N messages (default 5,000) were sent through the
   client API before the archiver started, from a few senders at once. Time from
   `mxarchiverd run` until every one of them is in the archive. DB mode reads them
   from Synapse's tables; bot mode joins the room (it was invited) and pages the
   history back through /messages, processing.batch_size events a page.
2. Live latency: messages sent at a few rates (default 2, 10 and 20 per second) by
   4 senders on a shared schedule. Latency = when the row is first seen committed
   in the archive (polled every 5 ms by id, same watcher for both modes) - when the
   client started its PUT /send. That includes Synapse's own persist time (its
   answer time is printed too); in bot mode it adds /sync's wake-up, in DB mode
   the poll interval.

Synapse's database commits asynchronously (synchronous_commit off: the history is
made faster, and Synapse's persist time does not hide the archiver's part); the
archive databases commit synchronously with fsync, as in the other benchmarks.

Usage: .venv/bin/python bench/bot.py [--mode both|db|bot] [--history 20000] [--rates 2,10,20] [--runs 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from benchlib import procs, report  # noqa: E402
from benchlib.cluster import open_server  # noqa: E402
from benchlib.daemon import DaemonConfig, start_daemon  # noqa: E402
from benchlib.homeserver import RowWatcher, Senders, Sent, start_synapse  # noqa: E402
from tests.support.daemon import Daemon  # noqa: E402
from tests.support.nio_driver import register_bot  # noqa: E402
from tests.support.postgres import PgServer, dbname_of  # noqa: E402
from tests.support.processes import cmdline, tree  # noqa: E402
from tests.support.synapse import SynapseServer  # noqa: E402

MODES = {"db": "synapse_db", "bot": "matrix_sync"}
SEED_LATENCY_S = 5.0  # seed 000: "Message archiving latency: <5 seconds"
PICKLE_KEY = "bench-pickle-key-0123456789"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("both", "db", "bot"), default="both", help="which modes to run (default both)")
    p.add_argument("--history", type=int, default=5_000, help="messages in the history room (default 5000)")
    p.add_argument("--rates", default="2,10,20", help="messages/s of each latency phase (default 2,10,20)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds per latency phase (default 30)")
    p.add_argument("--senders", type=int, default=4, help="users sending the live messages (default 4)")
    p.add_argument("--history-senders", type=int, default=8,
                   help="users sending the history at once, as fast as Synapse takes them (default 8)")
    p.add_argument("--runs", type=int, default=1, help="repeat every measurement; medians are printed (default 1)")
    p.add_argument("--batch-size", type=int, default=500,
                   help="processing.batch_size (bot mode: events per /messages page) (default 500)")
    p.add_argument("--poll-interval", default="200ms", help="processing.poll_interval of both (default 200ms)")
    p.add_argument("--skip-latency", action="store_true", help="only the backfill")
    p.add_argument("--skip-backfill", action="store_true", help="only the latency")
    p.add_argument("--pg-admin-dsn", help="use this PostgreSQL server (superuser DSN) instead of a private cluster")
    return p.parse_args()


class Bench:
    """One Synapse, its two rooms, the bot account, and a daemon per measurement."""

    def __init__(self, stack: procs.Cleanup, server: PgServer, synapse: SynapseServer, workdir: Path,
                 args: argparse.Namespace) -> None:
        self.stack, self.server, self.synapse, self.workdir, self.args = stack, server, synapse, workdir, args
        self.bot_id, self.bot_password = register_bot(synapse, "archiver")
        self.started = 0

    # Daemons ------------------------------------------------------------------------

    def archive(self) -> str:
        dsn = self.server.create_database("archive")
        with self.server.admin_connect() as conn:  # the cluster default is off (for Synapse): not here
            conn.execute(sql.SQL("ALTER DATABASE {} SET synchronous_commit = on").format(
                sql.Identifier(dbname_of(dsn))))
        return dsn

    def daemon(self, mode: str, archive: str, rooms: list[dict[str, Any]]) -> Daemon:
        self.started += 1
        workdir = self.workdir / f"{mode}-{self.started}"
        base = DaemonConfig(self.synapse.db_dsn, archive, workdir, media_store=self.synapse.media_store_path,
                            batch_size=self.args.batch_size, poll_interval=self.args.poll_interval)
        sections = {**base.sections(), "rooms": rooms}
        if mode == "bot":
            sections["source"] = {"mode": MODES[mode]}
            sections["matrix"] = {"homeserver_url": self.synapse.base_url, "username": self.bot_id,
                                  "password": self.bot_password, "pickle_key": PICKLE_KEY,
                                  "state_dir": str(workdir / "bot-state")}
        daemon = Daemon(workdir, config_path=workdir / "mxarchiver.yaml", log_path=workdir / "daemon.log")
        daemon.write_config(**sections)
        return daemon

    def stop(self, daemon: Daemon, archive: str) -> None:
        daemon.stop()
        self.server.drop_database(archive)

    # Backfill -------------------------------------------------------------------------

    def backfill(self, mode: str, room: str, count: int) -> dict[str, Any]:
        archive = self.archive()
        daemon = self.daemon(mode, archive, [{"room_id": room, "backfill": True}])
        synapse_cpu0, pg_cpu0 = synapse_cpu(self.synapse), postgres_cpu(self.server)
        start_daemon(self.stack, daemon)
        first, done = wait_messages(daemon, archive, room, count, timeout_s=max(600.0, count / 10))
        cpu = procs.cpu_by_role(daemon.pids())
        found = {
            "mode": mode, "messages": count, "seconds": done - daemon.started_at, "rate": count / (done - daemon.started_at),
            "first_batch_s": first - daemon.started_at, "steady_rate": count / max(done - first, 1e-3),
            "daemon_cpu_s": sum(cpu.values()), "cpu_by_role": cpu,
            "synapse_cpu_s": synapse_cpu(self.synapse) - synapse_cpu0, "postgres_cpu_s": postgres_cpu(self.server) - pg_cpu0,
            "archived_rows": room_rows(archive, room),
        }
        self.stop(daemon, archive)
        print(f"  [{mode}] {count:,} messages in {found['seconds']:.1f}s from `run` ({found['rate']:,.0f}/s; first "
              f"batch durable after {found['first_batch_s']:.1f}s, then {found['steady_rate']:,.0f}/s); CPU s: daemon "
              f"{found['daemon_cpu_s']:.1f}, Synapse {found['synapse_cpu_s']:.1f}, PostgreSQL {found['postgres_cpu_s']:.1f};"
              f" {found['archived_rows']:,} rows of the room archived (state events and memberships included)")
        return found

    # Latency --------------------------------------------------------------------------

    def latency(self, mode: str, live: Senders, rates: list[float]) -> list[dict[str, Any]]:
        archive = self.archive()
        daemon = self.daemon(mode, archive, [{"room_id": live.room_id, "backfill": False}])
        start_daemon(self.stack, daemon)
        daemon.wait_caught_up(180)  # then the warm-up shows it follows the room
        phases = []
        with RowWatcher(archive) as watcher:
            warm = live.paced(2, 2, f"{mode} warm-up")
            watcher.wait([s.event_id for s in warm], 60, daemon)
            for rate in rates:
                sent = live.paced(rate, self.args.duration, f"{mode} at {rate:g}/s")
                watcher.wait([s.event_id for s in sent], 120, daemon)
                phases.append(analyse(mode, rate, sent, watcher.seen))
        self.stop(daemon, archive)
        return phases


def wait_messages(daemon: Daemon, archive: str, room: str, count: int, timeout_s: float) -> tuple[float, float]:
    """(first m.room.message of `room` seen, all `count` seen) as time.time(), polled every 50 ms."""
    deadline = time.monotonic() + timeout_s
    first: float | None = None
    with psycopg.connect(archive, autocommit=True) as conn:
        while True:
            try:
                (have,) = conn.execute("SELECT count(*) FROM archived_messages WHERE room_id = %s"
                                       " AND event_type = 'm.room.message'", (room,)).fetchone() or (0,)
            except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):  # not migrated yet
                have = 0
            now = time.time()
            if have and first is None:
                first = now
            if have >= count:
                return first or now, now
            daemon.check_running()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{have} of {count} messages archived after {timeout_s:.0f}s; log:\n{daemon.tail()}")
            time.sleep(0.05)


def room_rows(archive: str, room: str) -> int:
    with psycopg.connect(archive) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM archived_messages WHERE room_id = %s", (room,)).fetchone() or (0,)
    return int(rows)


def synapse_cpu(synapse: SynapseServer) -> float:
    """CPU seconds of our Synapse child (found by its config file on its command line)."""
    pids = [pid for pid in tree(os.getpid()) if str(synapse.config_path) in cmdline(pid)]
    return sum(procs.cpu_seconds(pid) or 0.0 for pid in pids) if pids else float("nan")


def postgres_cpu(server: PgServer) -> float:
    return procs.tree_cpu_seconds(server.postmaster_pid) if server.postmaster_pid else float("nan")


def analyse(mode: str, rate: float, sent: list[Sent], seen: dict[str, float]) -> dict[str, Any]:
    lat = sorted(seen[s.event_id] - s.started for s in sent)
    after_answer = sorted(seen[s.event_id] - s.answered for s in sent)
    answer = sorted(s.answered - s.started for s in sent)
    span = max(s.started for s in sent) - min(s.started for s in sent)
    found = {"mode": mode, "rate": rate, "achieved": (len(sent) - 1) / span if span else float("nan"),
             "messages": len(sent), "p50": report.percentile(lat, 50), "p95": report.percentile(lat, 95),
             "p99": report.percentile(lat, 99), "max": lat[-1], "synapse_answer_p50": report.percentile(answer, 50),
             "after_answer_p50": report.percentile(after_answer, 50),
             "after_answer_p99": report.percentile(after_answer, 99)}
    print(f"  [{mode}] {rate:g}/s ({found['achieved']:.1f}/s achieved, {len(sent)} messages): send -> archived p50 "
          f"{ms(found['p50'])}, p95 {ms(found['p95'])}, p99 {ms(found['p99'])}, max {ms(found['max'])} ms; Synapse "
          f"answered after {ms(found['synapse_answer_p50'])} ms (p50); from its answer p50 {ms(found['after_answer_p50'])}"
          f", p99 {ms(found['after_answer_p99'])} ms")
    return found


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


# Summary ------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(backfills: list[dict[str, Any]], latencies: list[dict[str, Any]], modes: list[str],
              args: argparse.Namespace) -> None:
    runs = f"median of {args.runs} runs" if args.runs > 1 else "one run"
    headers = ["figure", *(f"{m} ({MODES[m]})" for m in modes)]
    rows: list[list[Any]] = []
    if backfills:
        def bf(mode: str, key: str) -> float:
            return median([b[key] for b in backfills if b["mode"] == mode])
        rows.append([f"backfill of {args.history:,} messages: messages/s from `run`",
                     *(f"{bf(m, 'rate'):,.0f}" for m in modes)])
        rows.append(["  ... after the first durable batch", *(f"{bf(m, 'steady_rate'):,.0f}" for m in modes)])
        rows.append(["  seconds from `run`", *(f"{bf(m, 'seconds'):.1f}" for m in modes)])
        rows.append(["  CPU s: daemon / Synapse / PostgreSQL", *(
            f"{bf(m, 'daemon_cpu_s'):.1f} / {bf(m, 'synapse_cpu_s'):.1f} / {bf(m, 'postgres_cpu_s'):.1f}" for m in modes)])
    for rate in sorted({p["rate"] for p in latencies}):
        def lt(mode: str, key: str, rate: float = rate) -> float:
            return median([p[key] for p in latencies if p["mode"] == mode and p["rate"] == rate])
        rows.append([f"live {rate:g}/s: send -> archived p50 / p99 ms",
                     *(f"{ms(lt(m, 'p50'))} / {ms(lt(m, 'p99'))}" for m in modes)])
        rows.append(["  from Synapse's answer p50 / p99 ms",
                     *(f"{ms(lt(m, 'after_answer_p50'))} / {ms(lt(m, 'after_answer_p99'))}" for m in modes)])
        rows.append(["  messages/s achieved; Synapse's answer p50 ms",
                     *(f"{lt(m, 'achieved'):.1f}; {ms(lt(m, 'synapse_answer_p50'))}" for m in modes)])
    print(f"\n--- bot mode beside DB mode, same Synapse ({runs}) ---")
    print(report.table(rows, headers))
    for rate in sorted({p["rate"] for p in latencies}):
        for mode in modes:
            p99 = median([p["p99"] for p in latencies if p["mode"] == mode and p["rate"] == rate])
            print(f"target (seed 000) p99 < {SEED_LATENCY_S:.0f} s, {mode} at {rate:g}/s: "
                  f"{report.verdict(p99 < SEED_LATENCY_S)} ({ms(p99)} ms)")


def main() -> int:
    args = parse_args()
    modes = ["db", "bot"] if args.mode == "both" else [args.mode]
    rates = [float(r) for r in args.rates.split(",")]
    sys.setswitchinterval(0.001)  # the watcher thread must not wait 5 ms for the GIL
    workdir = Path(tempfile.mkdtemp(prefix="mxa-bench-bot-"))
    with procs.Cleanup() as stack:
        stack.callback(lambda: _rmtree(workdir), label="remove work directory")
        server = open_server(stack, args.pg_admin_dsn, settings={"synchronous_commit": "off"})
        report.header("bot mode beside DB mode", report.machine(), server.version(),
                      server.settings("fsync", "synchronous_commit", "shared_buffers"),
                      ["Synapse, both daemons, the senders and PostgreSQL share this machine's CPUs",
                       "Synapse's database commits asynchronously; each archive database synchronously"])
        synapse = start_synapse(stack, server, workdir / "synapse")
        print(f"Synapse {synapse.base_url} ready after {synapse.startup_seconds:.1f}s")
        bench = Bench(stack, server, synapse, workdir, args)
        history = None if args.skip_backfill else make_history(bench, args)
        live = None if args.skip_latency else Senders.create(synapse, "live", args.senders, invite=(bench.bot_id,))
        backfills: list[dict[str, Any]] = []
        latencies: list[dict[str, Any]] = []
        for run in range(1, args.runs + 1):
            if history is not None:
                print(f"\n[run {run}/{args.runs}] history backfill of {args.history:,} messages")
                backfills += [bench.backfill(mode, history.room_id, args.history) for mode in modes]
            if live is not None:
                print(f"\n[run {run}/{args.runs}] live latency at {args.rates} messages/s, {args.duration:.0f}s each")
                for mode in modes:
                    latencies += bench.latency(mode, live, rates)
        summarize(backfills, latencies, modes, args)
        report.save("bot", {"machine": report.machine(), "args": vars(args), "backfill": backfills,
                            "latency": latencies})
    return 0


def make_history(bench: Bench, args: argparse.Namespace) -> Senders:
    """The history room: `args.history` messages from `args.history_senders` users at once, then the bot's invite."""
    print(f"\nmaking history: {args.history:,} messages through the client API from {args.history_senders} senders")
    room = Senders.create(bench.synapse, "history", args.history_senders)
    started = time.monotonic()
    sent = room.flood(args.history, "history", progress=lambda n: print(f"  {n:,} sent", flush=True))
    seconds = time.monotonic() - started
    room.invite(bench.bot_id)
    print(f"  {len(sent):,} messages in {seconds:.0f}s ({len(sent) / seconds:.0f}/s through PUT /send); "
          f"history visibility shared (the default), so the bot, invited now, may read all of it")
    return room


def _rmtree(path: Path) -> None:
    import shutil
    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
