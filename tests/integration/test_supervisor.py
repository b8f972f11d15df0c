"""The real supervisor process with fake stages, against a fake systemd.

Each test binds an AF_UNIX datagram socket, starts the supervisor with
NOTIFY_SOCKET and WATCHDOG_USEC pointing at it, and asserts the transcript
and the children's behaviour (tests/support/fake_stages.py). Conditions are
polled against deadlines; nothing sleeps a fixed time.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from mxarchiverd.exitcodes import ExitCode

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
FAKES = REPO / "tests" / "support" / "fake_stages.py"
STAGES = {"poller": "FakeSource", "enricher": "FakeRelay", "dbwriter": "FakeSink", "uploader": "FakeUploader"}
PIPELINE = ("poller", "enricher", "dbwriter")
WATCHDOG_USEC = 2_000_000
LAUNCH = (
    "import logging, sys\n"
    "logging.basicConfig(level=logging.INFO, format='%(levelname)s supervisor %(name)s: %(message)s')\n"
    "from mxarchiverd.config import load_config\n"
    "from mxarchiverd.supervisor.supervisor import run_supervisor\n"
    "sys.exit(run_supervisor(load_config(sys.argv[1])))\n"
)
BASE_CONFIG: dict[str, Any] = {
    "source": {"synapse_db_url": "postgresql://archiver:hunter2hunter2@synapse-db/synapse"},
    "archive": {"database_url": "postgresql://archiver@archive-db/archive"},
    "processing": {"batch_size": 5, "poll_interval": "50ms"},
    "daemon": {
        "heartbeat_timeout": "1.5s", "stop_timeout": "2s", "startup_timeout": "1s",
        "restart_backoff_initial": "0.1s", "restart_backoff_max": "0.5s",
        "restart_limit": 20, "restart_window": "60s", "start_method": "forkserver",
    },
}
T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """Running and not a zombie (an orphan's zombie may wait for a reaper)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def process_group(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.getpgid(int(entry.name)) == pgid and alive(int(entry.name)):
                members.append(int(entry.name))
        except OSError:
            continue
    return members


class NotifyListener:
    """The fake systemd: collects (monotonic time, datagram) pairs in a thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._running = True
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while self._running:
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.messages.append((time.monotonic(), data.decode()))

    def snapshot(self) -> list[tuple[float, str]]:
        with self._lock:
            return list(self.messages)

    def find(self, field: str, after: int = 0) -> int | None:
        """Index of the first datagram at or after `after` that has this field line."""
        for i, (_, text) in enumerate(self.snapshot()[after:], start=after):
            if field in text.split("\n"):
                return i
        return None

    def wait_for(self, field: str, after: int = 0, timeout: float = 15.0) -> int:
        # Compare with None: index 0 is a valid answer but falsy.
        wait_until(lambda: self.find(field, after) is not None, timeout, f"{field} after datagram {after}")
        index = self.find(field, after)
        assert index is not None
        return index

    def text(self, index: int) -> str:
        return self.snapshot()[index][1]

    def watchdog_times(self) -> list[float]:
        return [t for t, text in self.snapshot() if "WATCHDOG=1" in text.split("\n")]

    def close(self) -> None:
        self._running = False
        self._thread.join()
        self.sock.close()


class Daemon:
    """One supervisor process and the files its fake stages write."""

    def __init__(self, workdir: Path, notify: NotifyListener) -> None:
        self.dir = workdir
        self.notify = notify
        self.config_path = workdir / "config.yaml"
        self.log_path = workdir / "daemon.log"
        (workdir / "pids").mkdir()
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self, **sections: dict[str, Any]) -> None:
        config = json.loads(json.dumps(BASE_CONFIG))
        for name, values in sections.items():
            config.setdefault(name, {}).update(values)
        self.config_path.write_text(yaml.safe_dump(config))

    def start(self) -> None:
        registry = {role: f"{FAKES}:{name}" for role, name in STAGES.items()}
        env = dict(os.environ, NOTIFY_SOCKET=str(self.notify.path), WATCHDOG_USEC=str(WATCHDOG_USEC),
                   MXARCHIVERD_FAKE_DIR=str(self.dir), MXARCHIVERD_STAGES=json.dumps(registry))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", LAUNCH, str(self.config_path)], env=env,
                                         cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)

    def signal(self, signum: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"supervisor still running after {timeout}s; log:\n{self.log()}") from None

    def pids(self, role: str) -> list[int]:
        path = self.dir / "pids" / role
        return [int(line) for line in path.read_text().split()] if path.exists() else []

    def pid(self, role: str) -> int:
        return wait_until(lambda: (self.pids(role) or [0])[-1], 15, f"a {role} pid")

    def all_pids(self) -> set[int]:
        return {pid for role in STAGES for pid in self.pids(role)}

    def marker(self, kind: str, role: str) -> Path:
        return self.dir / f"{kind}-{role}"

    def setting(self, role: str) -> str:
        path = self.dir / f"setting-{role}"
        return path.read_text() if path.exists() else ""

    def archived(self) -> list[int]:
        path = self.dir / "archive.txt"
        return [int(n) for n in path.read_text().split()] if path.exists() else []

    def emitted(self) -> int:
        path = self.dir / "emitted.txt"
        return int(path.read_text() or 0) if path.exists() else 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def running_all(self) -> bool:
        """The latest STATUS= says every child is running."""
        statuses = [text for _, text in self.notify.snapshot() if "STATUS=" in text]
        return bool(statuses) and "STATUS=running;" in statuses[-1]

    def cleanup(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        for pid in self.all_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    # The socket in a short directory of its own: AF_UNIX paths are limited to 107 bytes.
    socket_dir = Path(tempfile.mkdtemp(prefix="mxsup-"))
    notify = NotifyListener(socket_dir / "notify.sock")
    d = Daemon(tmp_path, notify)
    d.write_config()
    try:
        yield d
    finally:
        d.cleanup()
        notify.close()
        shutil.rmtree(socket_dir, ignore_errors=True)


def start_ready(daemon: Daemon) -> int:
    daemon.start()
    return daemon.notify.wait_for("READY=1")


def assert_no_gaps(daemon: Daemon) -> None:
    numbers = set(daemon.archived())
    assert numbers, "nothing was archived"
    top = max(numbers)
    assert set(range(1, top + 1)) <= numbers, f"missing: {sorted(set(range(1, top + 1)) - numbers)[:10]}"
    assert top >= daemon.emitted(), f"emitted {daemon.emitted()} but archived only up to {top}"


def assert_watchdog_cadence(daemon: Daemon, since: float) -> None:
    times = [t for t in daemon.notify.watchdog_times() if t >= since]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(times) >= 2, f"too few WATCHDOG=1: {times}"
    assert max(gaps) < WATCHDOG_USEC / 1e6, f"a watchdog gap of {max(gaps):.2f}s"


def assert_all_gone(pids: set[int], timeout: float) -> None:
    wait_until(lambda: not [p for p in pids if alive(p)], timeout, f"children {sorted(pids)} to exit")


class TestLifecycle:
    @pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
    def test_ready_watchdog_and_graceful_stop(self, daemon: Daemon, start_method: str) -> None:
        """READY=1 after every stage booted; WATCHDOG=1 every second; SIGTERM drains and exits 0."""
        daemon.write_config(daemon={"start_method": start_method})
        ready = start_ready(daemon)
        assert all(daemon.pids(role) for role in STAGES), "READY=1 before every stage booted"
        started = daemon.notify.snapshot()[ready][0]
        wait_until(lambda: len([t for t in daemon.notify.watchdog_times() if t > started]) >= 3, 10, "3 pings")
        assert_watchdog_cadence(daemon, started)
        wait_until(lambda: len(daemon.archived()) >= 50, 10, "some archived numbers")
        children = daemon.all_pids()

        daemon.signal(signal.SIGTERM)
        stopping = daemon.notify.wait_for("STOPPING=1", after=ready)
        assert daemon.wait_exit(timeout=2 + 2 + 3) == ExitCode.OK
        assert "STATUS=stopping;" in daemon.notify.text(stopping)
        assert_no_gaps(daemon)
        assert_all_gone(children, 2)
        assert "drained" in daemon.log() and "SIGKILL" not in daemon.log()

    def test_secrets_stay_out_of_status_and_titles(self, daemon: Daemon) -> None:
        """Neither STATUS= nor a process title shows the DSN password."""
        start_ready(daemon)
        assert daemon.proc is not None
        titles = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in daemon.all_pids() | {daemon.proc.pid}]
        assert any(b"mxarchiverd: poller" in t for t in titles)
        assert not any(b"hunter2" in t for t in titles)
        assert not any("hunter2" in text for _, text in daemon.notify.snapshot())


class TestReload:
    def test_hot_change_reaches_running_stages(self, daemon: Daemon) -> None:
        """RELOADING=1 with MONOTONIC_USEC, READY=1, and a hot key applies without a restart."""
        ready = start_ready(daemon)
        before = {role: daemon.pid(role) for role in STAGES}
        daemon.write_config(processing={"batch_size": 7})
        daemon.signal(signal.SIGHUP)
        reloading = daemon.notify.wait_for("RELOADING=1", after=ready)
        fields = dict(line.split("=", 1) for line in daemon.notify.text(reloading).split("\n"))
        sent_at = daemon.notify.snapshot()[reloading][0]
        assert abs(int(fields["MONOTONIC_USEC"]) / 1e6 - sent_at) < 5
        daemon.notify.wait_for("READY=1", after=reloading)
        for role in STAGES:
            wait_until(lambda: daemon.setting(role) == "7", 10, f"{role} to run with batch_size 7")
        assert {role: daemon.pids(role)[-1] for role in STAGES} == before

    def test_connection_change_restarts_only_its_stages(self, daemon: Daemon) -> None:
        """A new bridge DB restarts the pipeline (it shares queues), not the uploader."""
        ready = start_ready(daemon)
        uploader = daemon.pid("uploader")
        pipeline = {role: daemon.pid(role) for role in PIPELINE}
        daemon.write_config(source={"bridge_db_url": "postgresql://bridge@bridge-db/whatsapp"})
        daemon.signal(signal.SIGHUP)
        daemon.notify.wait_for("READY=1", after=daemon.notify.wait_for("RELOADING=1", after=ready))
        for role in PIPELINE:
            wait_until(lambda: daemon.pids(role)[-1] != pipeline[role], 15, f"{role} to restart")
        wait_until(daemon.running_all, 15, "every stage running again")
        assert daemon.pids("uploader") == [uploader]
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit(10) == ExitCode.OK
        assert_no_gaps(daemon)

    def test_invalid_config_keeps_the_old_one(self, daemon: Daemon) -> None:
        """A bad value or bad YAML: old config runs on, READY=1 still comes, STATUS names the key."""
        ready = start_ready(daemon)
        daemon.write_config(processing={"batch_size": 0})
        daemon.signal(signal.SIGHUP)
        answer = daemon.notify.wait_for("READY=1", after=daemon.notify.wait_for("RELOADING=1", after=ready))
        assert "processing.batch_size" in daemon.notify.text(answer)
        assert "processing.batch_size" in daemon.log()

        daemon.config_path.write_text("processing: [unclosed\n")
        daemon.signal(signal.SIGHUP)
        answer = daemon.notify.wait_for("READY=1", after=daemon.notify.wait_for("RELOADING=1", after=answer + 1))
        assert "reload failed" in daemon.notify.text(answer) and "line " in daemon.notify.text(answer)

        count = len(daemon.archived())
        wait_until(lambda: len(daemon.archived()) > count + 30, 10, "archiving to go on")
        assert daemon.setting("poller") == "5"


class TestFailures:
    @pytest.mark.parametrize("role", list(STAGES))
    def test_killed_stage_comes_back(self, daemon: Daemon, role: str) -> None:
        """SIGKILL of one stage: it (and its pipeline) restarts, the watchdog keeps going, nothing is lost."""
        ready = start_ready(daemon)
        started = daemon.notify.snapshot()[ready][0]
        victim = daemon.pid(role)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(lambda: daemon.pids(role)[-1] != victim, 15, f"{role} to restart")
        if role in PIPELINE:
            for peer in PIPELINE:
                wait_until(lambda: len(daemon.pids(peer)) == 2, 15, f"{peer} restarted with the pipeline")
        else:
            assert all(len(daemon.pids(peer)) == 1 for peer in PIPELINE)
        wait_until(daemon.running_all, 15, "every stage running again")
        count = len(daemon.archived())
        wait_until(lambda: len(daemon.archived()) > count + 30, 10, "archiving to go on")
        wait_until(lambda: len([t for t in daemon.notify.watchdog_times() if t > killed_at]) >= 2, 10, "pings")
        assert_watchdog_cadence(daemon, started)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit(10) == ExitCode.OK
        assert_no_gaps(daemon)

    def test_hanging_stage_is_replaced_and_the_watchdog_withheld(self, daemon: Daemon) -> None:
        """A silent stage is dumped, TERM'd, KILL'd and restarted; while it stays unhealthy past
        its budget WATCHDOG=1 stops; once it recovers, the pings resume."""
        start_ready(daemon)
        hung = daemon.pid("uploader")
        marker = daemon.marker("hang", "uploader")
        marker.touch()
        wait_until(lambda: len(daemon.pids("uploader")) >= 2, 15, "the hung uploader to be replaced")
        assert not alive(hung)
        assert "_hang_while_marked" in daemon.log(), "no faulthandler traceback of the stuck child"

        def watchdog_silent() -> bool:
            times = daemon.notify.watchdog_times()
            return bool(times) and time.monotonic() - times[-1] > WATCHDOG_USEC / 1e6
        wait_until(watchdog_silent, 20, "WATCHDOG=1 to stop")
        assert "withholding WATCHDOG=1" in daemon.log()

        silent_since = daemon.notify.watchdog_times()[-1]
        marker.unlink()
        wait_until(lambda: daemon.notify.watchdog_times()[-1] > silent_since, 20, "WATCHDOG=1 to resume")
        wait_until(daemon.running_all, 15, "every stage running again")

    def test_crash_at_start_exits_restart_limit(self, daemon: Daemon) -> None:
        """A stage that crashes in open() is retried with backoff until the restart limit."""
        daemon.write_config(daemon={"restart_limit": 3})
        daemon.marker("crash", "enricher").touch()
        daemon.start()
        assert daemon.wait_exit(30) == ExitCode.RESTART_LIMIT
        assert len(daemon.pids("enricher")) == 4  # the first start and three restarts
        assert daemon.notify.find("READY=1") is None
        assert daemon.notify.find("STOPPING=1") is not None
        assert_all_gone(daemon.all_pids(), 5)

    def test_boot_error_exits_with_its_code(self, daemon: Daemon) -> None:
        """BootError(CONFIG) in open(): no restart loop, the supervisor exits 78 at once."""
        daemon.marker("bootfail", "poller").touch()
        daemon.start()
        assert daemon.wait_exit(15) == ExitCode.CONFIG
        assert len(daemon.pids("poller")) == 1
        assert_all_gone(daemon.all_pids(), 5)

    @pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
    def test_supervisor_killed_leaves_no_children(self, daemon: Daemon, start_method: str) -> None:
        """SIGKILL of the supervisor: every child notices and exits within 5 s."""
        daemon.write_config(daemon={"start_method": start_method})
        start_ready(daemon)
        children = daemon.all_pids()
        assert len(children) == len(STAGES)
        assert daemon.proc is not None
        group = daemon.proc.pid  # started in its own session: the fork server and resource tracker too
        os.kill(daemon.proc.pid, signal.SIGKILL)
        daemon.proc.wait(5)
        assert_all_gone(children, 5)
        wait_until(lambda: not process_group(group), 5, "the whole process group to exit")
