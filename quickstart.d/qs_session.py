"""One quickstart run: start everything, archive the sample conversation, report, stop.

Every process is recorded in <data-dir>/quickstart.json (PID and kernel start
time) the moment it exists, so that whatever happens later (an error, Ctrl-C, a
--keep run) the next run or `./quickstart --stop` can stop exactly those processes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import qs_bot
import qs_daemon
import qs_postgres
import qs_report
import qs_synapse
from qs_postgres import ARCHIVE_DB
from qs_procs import EXIT_CODES, QuickstartError, choose_port, is_running
from tests.support import daemon as launcher
from tests.support import processes
from tests.support.conversation import Sent, send_conversation
from tests.support.daemon import Daemon
from tests.support.postgres import Cluster, remove_outside_root
from tests.support.processes import ProcessId, identify

STATE_FILE = "quickstart.json"
ROOM_NAME = "Friday dinner"
DAEMON_STOP_GRACE_S = 30
SYNAPSE_STOP_GRACE_S = 30


class Session:
    """The data directory of one run and the record of what it started."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.state: dict[str, Any] = {}
        self.started = time.monotonic()

    def record(self, key: str, value: Any) -> None:
        self.state[key] = value
        temp = self.data_dir / (STATE_FILE + ".tmp")
        temp.write_text(json.dumps(self.state, indent=2))
        temp.replace(self.data_dir / STATE_FILE)

    def say(self, text: str) -> None:
        line = f"[{time.monotonic() - self.started:5.1f}s] {text}"
        try:
            print(line, flush=True)
        except OSError:
            # stdout went away (`./quickstart | head`); clean-up must go on regardless.
            print(line, file=sys.stderr, flush=True)


def load_state(data_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((data_dir / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def reset_data_dir(data_dir: Path) -> None:
    """Start from nothing, but never delete a directory the quickstart did not make."""
    if data_dir.exists():
        if any(data_dir.iterdir()) and not (data_dir / STATE_FILE).exists():
            raise QuickstartError(f"{data_dir} is not empty and was not made by ./quickstart (no {STATE_FILE}); "
                                  "remove it or choose another --data-dir")
        remove_outside_root(data_dir)
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)


# Stopping -------------------------------------------------------------------


def _ident(value: dict[str, int]) -> ProcessId:
    return ProcessId.from_dict(value)


def stop_daemon(proc: ProcessId, say: Callable[[str], None]) -> None:
    was_running = is_running(proc)
    stopped = launcher.stop_daemon(proc, DAEMON_STOP_GRACE_S, settle_s=5)
    if was_running:
        is_running(proc)  # reaps it if it is our own child: its exit code
        code = EXIT_CODES.get(proc.pid)
        say(f"mxarchiverd (pid {proc.pid}) stopped" + (f", exit code {code}" if code is not None else "")
            + ("" if stopped.clean else f", by SIGKILL after {DAEMON_STOP_GRACE_S}s"))
    if stopped.leftovers:
        say(f"warning: {len(stopped.leftovers)} process(es) of mxarchiverd outlived the supervisor by 5s "
            f"and were stopped: {stopped.leftovers}")


def stop_synapse(proc: ProcessId, say: Callable[[str], None]) -> None:
    if is_running(proc):
        clean = processes.terminate(proc, SYNAPSE_STOP_GRACE_S)
        say("Synapse stopped" + ("" if clean else f", by SIGKILL after {SYNAPSE_STOP_GRACE_S}s"))


def stop_postgres(cluster: Cluster, say: Callable[[str], None]) -> None:
    if cluster.running():
        cluster.stop()
        say("PostgreSQL stopped")


def stop_recorded(state: dict[str, Any], say: Callable[[str], None]) -> None:
    """Stop what a run started, readers first: the daemon, then Synapse, then PostgreSQL.

    Each step runs even if an earlier one failed: a process left behind holds
    ports and files that the next run needs.
    """
    steps: list[tuple[Callable[..., None], Any]] = []
    if state.get("mxarchiverd"):
        steps.append((stop_daemon, _ident(state["mxarchiverd"])))
    if state.get("synapse"):
        steps.append((stop_synapse, _ident(state["synapse"])))
    if state.get("postgres"):
        steps.append((stop_postgres, Cluster.from_dict(state["postgres"])))
    for stop, what in steps:
        try:
            stop(what, say)
        except Exception as exc:  # noqa: BLE001 - report, then go on with the next one
            say(f"warning: could not stop {what}: {exc}")


def anything_running(state: dict[str, Any]) -> bool:
    procs = [_ident(state[k]) for k in ("mxarchiverd", "synapse") if state.get(k)]
    cluster = Cluster.from_dict(state["postgres"]) if state.get("postgres") else None
    return any(is_running(p) for p in procs) or bool(cluster and cluster.running())


# Starting -------------------------------------------------------------------


def start_postgres(session: Session, pg_port: int) -> Cluster:
    cluster = qs_postgres.new_cluster(session.data_dir, pg_port)
    run_as = cluster.run_as
    try:
        cluster.start()
    finally:
        # Recorded even when start failed: pg_ctl may time out on a server that did start.
        session.record("postgres", cluster.as_dict())
    qs_postgres.create_databases(cluster)
    session.say(f"PostgreSQL started on 127.0.0.1:{pg_port} (data: {cluster.root}"
                + (f", run as OS user {run_as})" if run_as else ")"))
    if not cluster.root.is_relative_to(session.data_dir):
        session.say(f"  (outside {session.data_dir} because the {run_as} user cannot enter it; "
                    "removed again when the run ends)")
    return cluster


def start_synapse(session: Session, port: int, cluster: Cluster) -> qs_synapse.RunningSynapse:
    running = qs_synapse.start(session.data_dir / "synapse", port, cluster)
    session.record("synapse", {**running.ident.as_dict(), "port": port})
    session.say(f"Synapse starting on {running.server.base_url} (it creates its database schema first)")
    qs_synapse.wait_ready(running)
    session.say("Synapse is ready")
    return running


def send_sample(session: Session, running: qs_synapse.RunningSynapse,
                invite: str | None = None) -> tuple[Sent, dict[str, str]]:
    alice, bob = qs_synapse.register_pair(running.server)
    with alice, bob:
        sent = send_conversation(alice, bob, ROOM_NAME)
        passwords = {alice.user_id: alice.password or "", bob.user_id: bob.password or ""}
        if invite:
            alice.invite(sent.room_id, invite)
    session.say(f"alice and bob sent {len(sent.events)} events to room {ROOM_NAME!r} ({sent.room_id}): "
                "text, a reply, a thread, a reaction, edits, redactions, an image, a PDF"
                + (f"; then alice invited {invite}" if invite else ""))
    return sent, passwords


def run_daemon(session: Session, daemon: Daemon, timeout_s: float, min_messages: int = 1) -> dict[str, Any]:
    daemon.start()
    assert daemon.ident is not None
    session.record("mxarchiverd", daemon.ident.as_dict())
    session.say(f"mxarchiverd --config {daemon.config_path} run   (pid {daemon.pid}, log: {daemon.log_path})")
    status = qs_daemon.wait_caught_up(daemon, timeout_s, min_messages)
    session.say(f"caught up: {status['messages']} events archived, media jobs {status['media']}")
    return status


# Reporting ------------------------------------------------------------------


def check_against_sent(data: dict[str, list[dict[str, Any]]], sent: Sent) -> list[str]:
    """Problems found comparing the archive with what the clients sent (none expected)."""
    archived = {row["event_id"] for row in data["messages"]}
    problems = [f"missing from the archive: {label} ({event_id})"
                for label, event_id in sent.events.items() if event_id not in archived]
    media = {(row["event_id"], row["sha256"]) for row in data["media"]}
    problems += [f"media of {event_id} missing or with another sha256"
                 for event_id, (_, sha) in sent.media.items() if (event_id, sha) not in media]
    return problems


def report(session: Session, cluster: Cluster, daemon: Daemon, sent: Sent, bot: bool = False) -> list[str]:
    config = daemon.config_path
    data = qs_report.fetch(cluster.dsn(ARCHIVE_DB))
    cwd = Path.cwd()
    print("\nRooms\n" + qs_report.rooms_table(data["rooms"]))
    redacted = (("a redacted message is marked REDACTED; the bot never saw the content of those\n"
                 "redacted before it joined: the server serves them empty") if bot else
                "a redacted message keeps its content and is marked REDACTED")
    print("\nMessages (state events such as joins are archived too, counted above; with the default\n"
          f"redaction_policy keep, {redacted})\n" + qs_report.messages_table(data["messages"]))
    print("\nMedia\n" + qs_report.media_table(data["media"], session.data_dir / "media", cwd))
    status = daemon.cli("status")
    # Its log lines (stderr) only when it failed: the report is what it prints.
    shown = status.stdout.rstrip() if status.returncode == 0 else f"{status.stdout}{status.stderr}".rstrip()
    print(f"\nmxarchiverd --config {config} status\n{shown}")
    if bot:
        print("\n" + qs_bot.limits_section() + "\n\n" + qs_bot.deployment_section(config) + "\n", flush=True)
    else:
        print("\n" + qs_report.supabase_section(config) + "\n", flush=True)
    problems = check_against_sent(data, sent)
    if problems:
        session.say("PROBLEM: the archive differs from what was sent:\n  " + "\n  ".join(problems))
    else:
        session.say(f"all {len(sent.events)} sent events and {len(sent.media)} media files are in the archive")
    return problems


def choose_ports(args: argparse.Namespace) -> tuple[int, int]:
    pg_port = choose_port(args.pg_port, "PostgreSQL", "--pg-port")
    synapse_port = choose_port(args.synapse_port, "Synapse", "--synapse-port")
    while synapse_port == pg_port:  # two free-port picks may coincide
        synapse_port = choose_port(0, "Synapse", "--synapse-port")
    return pg_port, synapse_port


def archive_sample(session: Session, args: argparse.Namespace, pg_port: int, synapse_port: int) -> list[str]:
    cluster = start_postgres(session, pg_port)
    running = start_synapse(session, synapse_port, cluster)
    bot = qs_bot.register(running.server) if args.bot else None
    sent, passwords = send_sample(session, running, invite=bot.user_id if bot else None)
    session.record("users", passwords)
    storage = session.data_dir / "media"
    storage.mkdir()
    if bot is None:
        daemon = qs_daemon.prepare(session.data_dir, cluster, running.server.media_store_path, storage,
                                   running.server.base_url)
        run_daemon(session, daemon, args.timeout)
    else:
        session.record("bot", bot.user_id)
        daemon = qs_bot.prepare(session.data_dir, cluster, storage, running.server.base_url, bot)
        # Until every sent event is in: the bot's first rounds archive only its invite and join.
        run_daemon(session, daemon, args.timeout, min_messages=len(sent.events))
    return report(session, cluster, daemon, sent, bot=bot is not None)


def print_kept(session: Session) -> None:
    state = session.state
    users = ", ".join(f"{user} / {pw}" for user, pw in state.get("users", {}).items())
    print(f"""
Left running (--keep); stop them with:  ./quickstart --stop{_data_dir_option(session.data_dir)}
  Synapse      http://127.0.0.1:{state['synapse']['port']}   users (password): {users}
  PostgreSQL   psql postgresql://postgres@127.0.0.1:{state['postgres']['port']}/mxarchive
  mxarchiverd  pid {state['mxarchiverd']['pid']}, log {session.data_dir / 'mxarchiverd.log'}""", flush=True)
    if state.get("bot"):
        print(f"  bot          {state['bot']} (password in {session.data_dir / qs_bot.PASSWORD_FILE}), "
              "in every room it is invited to", flush=True)


def _data_dir_option(data_dir: Path) -> str:
    return "" if data_dir == default_data_dir() else f" --data-dir {data_dir}"


def default_data_dir() -> Path:
    return (Path(__file__).resolve().parent.parent / "quickstart-data").resolve()


# Entry ----------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def refuse_concurrent_run(previous: dict[str, Any], data_dir: Path) -> None:
    """Two runs on one data directory would stop and wipe each other's processes."""
    owner = previous.get("quickstart")
    if owner and owner["pid"] != os.getpid() and is_running(_ident(owner)):
        raise QuickstartError(f"another ./quickstart (pid {owner['pid']}) is running in {data_dir}; "
                              "wait for it, or use another --data-dir")


def run(args: argparse.Namespace) -> int:
    data_dir = args.data_dir.resolve()
    session = Session(data_dir)
    previous = load_state(data_dir)
    refuse_concurrent_run(previous, data_dir)
    was_running = anything_running(previous)
    # Leftovers of a --keep run (or of a run that was killed) hold the ports and files.
    stop_recorded(previous, lambda text: session.say(f"previous run: {text}"))
    if args.stop:
        remove_outside_root(data_dir)
        if not was_running:
            session.say(f"nothing from an earlier run in {data_dir} was running")
        return 0
    # Before the wipe: a busy port should not cost the previous run's data.
    pg_port, synapse_port = choose_ports(args)
    reset_data_dir(data_dir)
    me = identify(os.getpid())
    session.record("quickstart", me.as_dict() if me else None)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    problems: list[str] | None = None
    try:
        problems = archive_sample(session, args, pg_port, synapse_port)
    finally:
        # Clean-up must finish even if the user presses Ctrl-C again.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        if problems is not None and args.keep:
            print_kept(session)
        else:
            stop_recorded(session.state, session.say)
            if problems is not None:  # after a failure its server.log may explain it
                remove_outside_root(data_dir)
    session.say(f"done in {time.monotonic() - session.started:.0f}s; the files stay in {data_dir} until the next run")
    return 1 if problems else 0


def fail(exc: BaseException, data_dir: Path) -> int:
    print(f"\nquickstart: {exc}", file=sys.stderr)
    owner = load_state(data_dir.resolve()).get("quickstart") or {}
    if owner.get("pid") == os.getpid():  # this run started something: its logs explain more
        print(f"quickstart: logs are in {data_dir} (*.log, synapse/*.log, pg/server.log)", file=sys.stderr)
    return 1
