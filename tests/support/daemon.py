"""The one launcher of the whole daemon, shared by tests, bench/ and quickstart.d/.

A plain module (no pytest): the benchmarks and the quickstart import it with the
project's .venv python. :class:`Daemon` writes a config file, starts
`mxarchiverd --config X run` in a session of its own with a clean environment,
optionally under a fake systemd (:class:`NotifyListener`, ``WATCHDOG_USEC``),
waits for READY=1 or for `status --json` to say caught up, finds its processes by
their titles (`mxarchiverd: <role>`), signals them, and stops it with a deadline,
sweeping its whole process group by PID, never by name.
"""
from __future__ import annotations

import enum
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence, Mapping
from dataclasses import dataclass
from pathlib import Path
from signal import SIGKILL
from typing import Any, Self

import yaml

from tests.support import processes
from tests.support.notify_listener import NotifyListener
from tests.support.processes import ProcessId
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
TITLE_PREFIX = "mxarchiverd: "
# Seed 001's variables override the config file (README, Configuration): a
# developer's shell may carry them for a real deployment and must not steer a run.
OVERRIDING_ENV = (
    "SYNAPSE_DB_URL", "WHATSAPP_DB_URL", "SUPABASE_URL", "SUPABASE_KEY", "POLL_INTERVAL_MS", "BATCH_SIZE",
    "MEDIA_STORE_PATH", "DOWNLOAD_MEDIA", "MONITORED_ROOMS",
)
# Also dropped: where the config comes from (we always pass --config), systemd's
# notify protocol (only our own listener may be set), and the test hooks for fake stages.
DROPPED_ENV = OVERRIDING_ENV + (
    "MXARCHIVER_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "MXARCHIVERD_STAGES",
    "MXARCHIVERD_FAKE_DIR",
)
STAGES_VARIABLE = "MXARCHIVERD_STAGES"
CLI_TIMEOUT_S = 30
# The supervisor alone, as `mxarchiverd run` starts it, minus the schema migration
# and preflight: fake stages (tests/support/fake_stages.py) have no databases.
SUPERVISOR_ONLY = (
    "import logging, sys\n"
    "logging.basicConfig(level=logging.INFO, format='%(levelname)s supervisor %(name)s: %(message)s')\n"
    "from mxarchiverd.config import load_config\n"
    "from mxarchiverd.supervisor.supervisor import run_supervisor\n"
    "sys.exit(run_supervisor(load_config(sys.argv[1])))\n"
)


class Entry(enum.Enum):
    """How the daemon is started."""

    SCRIPT = "script"  # the console script of this interpreter's venv: exactly what a user runs
    MODULE = "module"  # python -m mxarchiverd
    SUPERVISOR = "supervisor"  # SUPERVISOR_ONLY, for fake stages


class DaemonExited(RuntimeError):
    """The daemon ended while we were waiting for it to do something."""


def console_script() -> Path:
    """`mxarchiverd` beside the running interpreter, else the checkout's .venv one."""
    beside = Path(sys.executable).parent / "mxarchiverd"
    return beside if beside.exists() else REPO / ".venv" / "bin" / "mxarchiverd"


def command(entry: Entry, config_path: Path) -> list[str]:
    if entry is Entry.SUPERVISOR:
        return [sys.executable, "-c", SUPERVISOR_ONLY, str(config_path)]
    return [*cli_prefix(entry), "--config", str(config_path), "run"]


def cli_prefix(entry: Entry) -> list[str]:
    """The `mxarchiverd` command of one-shot subcommands (status, verify, ...)."""
    return [str(console_script())] if entry is Entry.SCRIPT else [sys.executable, "-m", "mxarchiverd"]


def clean_env(base: Mapping[str, str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` without the variables that would steer the daemon, plus `extra`."""
    env = {key: value for key, value in base.items() if key not in DROPPED_ENV}
    env.update(extra or {})
    return env


def merge_sections(base: Mapping[str, Any], sections: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with each section's keys replaced by those given (one level deep, copies)."""
    merged = json.loads(json.dumps(base))
    for name, values in sections.items():
        if isinstance(values, Mapping) and isinstance(merged.get(name), dict):
            merged[name].update(json.loads(json.dumps(values)))
        else:
            merged[name] = json.loads(json.dumps(values))
    return merged


def render_config(config: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(config), sort_keys=False)


def role_of(cmdline: str) -> str | None:
    """`mxarchiverd: poller` -> poller; None for any other process."""
    if not cmdline.startswith(TITLE_PREFIX):
        return None
    words = cmdline[len(TITLE_PREFIX):].split()
    return words[0] if words else None


@dataclass(frozen=True)
class Stopped:
    clean: bool  # the supervisor exited on SIGTERM within the grace time
    leftovers: list[int]  # processes of its group still there afterwards (then stopped)


def stop_daemon(leader: ProcessId, grace_s: float, settle_s: float = 5.0) -> Stopped:
    """SIGTERM to the supervisor, SIGKILL past ``grace_s``; then whatever is left of its group.

    Works on a recorded identity, so a later process (./quickstart --stop) can
    stop a daemon it did not start.
    """
    clean = processes.terminate(leader, grace_s)
    # The daemon leads its own process group: anything left in it is a worker
    # the supervisor failed to stop.
    return Stopped(clean, processes.sweep_group(leader.pid, settle_s=settle_s, grace_s=10))


class Daemon:
    """One `mxarchiverd run` (or supervisor) process, its config file, log and processes."""

    def __init__(self, workdir: Path, *, entry: Entry = Entry.SCRIPT, config_path: Path | None = None,
                 log_path: Path | None = None, base_config: Mapping[str, Any] | None = None,
                 stages: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None,
                 notify: bool = False, watchdog_usec: int | None = None, program: Sequence[str] | None = None,
                 cwd: Path | None = None, env_base: Mapping[str, str] | None = None) -> None:
        self.workdir = workdir
        # Another install's `mxarchiverd` (an installed wheel), run from `cwd`, in `env_base`.
        self.program = list(program) if program is not None else None
        self.cwd = cwd
        self.env_base = env_base
        self.entry = entry
        self.config_path = config_path or workdir / "config.yaml"
        self.log_path = log_path or workdir / "daemon.log"
        self.base_config = dict(base_config or {})
        self.stages = dict(stages) if stages is not None else None
        self.extra_env = dict(env or {})
        self.watchdog_usec = watchdog_usec
        self.notify = NotifyListener.in_temp_dir() if notify else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.ident: ProcessId | None = None
        self.started_at = 0.0  # time.time() just before the process was started

    # Config -----------------------------------------------------------------

    def write_config(self, text: str | None = None, /, **sections: Any) -> Path:
        """Write `text` as it is, or the base config with `sections` merged in."""
        if text is not None and sections:
            raise ValueError("write_config takes YAML text or sections, not both")
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        body = text if text is not None else render_config(merge_sections(self.base_config, sections))
        self.config_path.write_text(body)
        return self.config_path

    # Starting ---------------------------------------------------------------

    def child_env(self) -> dict[str, str]:
        extra = dict(self.extra_env)
        if self.notify is not None:
            extra["NOTIFY_SOCKET"] = str(self.notify.path)
        if self.watchdog_usec is not None:
            extra["WATCHDOG_USEC"] = str(self.watchdog_usec)
        if self.stages is not None:
            extra[STAGES_VARIABLE] = json.dumps(self.stages)
        return clean_env(os.environ if self.env_base is None else self.env_base, extra)

    def start(self) -> Self:
        if self.proc is not None:
            raise RuntimeError("this daemon was started already")
        if not self.config_path.exists():
            raise FileNotFoundError(f"no config at {self.config_path}; call write_config() first")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.started_at = time.time()
            # Its own session: the supervisor, its fork server and its workers form
            # one process group, so that whatever outlives the supervisor is found.
            argv = ([*self.program, "--config", str(self.config_path), "run"] if self.program is not None
                    else command(self.entry, self.config_path))
            self.proc = subprocess.Popen(argv, env=self.child_env(),
                                         cwd=self.cwd or self.config_path.parent, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.ident = processes.identify(self.proc.pid) or ProcessId(self.proc.pid, 0)
        return self

    @property
    def pid(self) -> int:
        return self._proc().pid

    def _proc(self) -> subprocess.Popen[bytes]:
        if self.proc is None:
            raise RuntimeError("the daemon has not been started")
        return self.proc

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_running(self) -> None:
        """Raise DaemonExited (with the log's tail) if the supervisor has exited."""
        proc = self._proc()
        if proc.poll() is not None:
            raise DaemonExited(f"mxarchiverd exited with code {proc.returncode}; its log ({self.log_path}):\n"
                               f"{self.tail()}")

    # Processes --------------------------------------------------------------

    def pids(self) -> list[int]:
        """The supervisor and every live process of its group or tree (workers, fork server)."""
        if self.proc is None:
            return []
        found = set(processes.group_members(self.proc.pid)) | set(processes.tree(self.proc.pid))
        return sorted(found)

    def roles(self) -> dict[int, str]:
        """PID -> role, for the processes that carry a `mxarchiverd: <role>` title."""
        titled = {pid: role_of(processes.cmdline(pid)) for pid in self.pids()}
        return {pid: role for pid, role in titled.items() if role is not None}

    def role_pids(self, role: str) -> list[int]:
        return [pid for pid, title in self.roles().items() if title == role]

    def wait_role(self, role: str, timeout_s: float = 30.0, *, other_than: int | None = None) -> int:
        """The PID of a running `role` (one that is not `other_than`, e.g. after a restart)."""
        def found() -> int | None:
            self.check_running()
            return next((p for p in self.role_pids(role) if p != other_than), None)
        return wait_for(found, timeout_s, f"a running {role}" + (f" other than {other_than}" if other_than else ""))

    # Readiness --------------------------------------------------------------

    def wait_ready(self, timeout_s: float = 60.0, after: int = 0) -> int:
        """Index of the first READY=1 datagram at or after `after`."""
        if self.notify is None:
            raise RuntimeError("wait_ready needs Daemon(notify=True)")
        return self.notify.wait_for("READY=1", after=after, timeout=timeout_s)

    def cli(self, *args: str, timeout_s: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """A one-shot `mxarchiverd --config X <args>` on this daemon's config."""
        return subprocess.run([*cli_prefix(self.entry), "--config", str(self.config_path), *args],
                              capture_output=True, text=True, check=False, timeout=timeout_s,
                              env=clean_env(os.environ, self.extra_env))

    def status(self) -> dict[str, Any] | None:
        """`status --json`, or None while it cannot answer (e.g. schema not migrated yet)."""
        try:
            result = self.cli("status", "--json")
        except subprocess.TimeoutExpired:  # a machine under load; the caller's deadline decides
            return None
        if result.returncode != 0:
            return None
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError:
            return None

    def wait_caught_up(self, timeout_s: float, *, min_messages: int = 0, interval_s: float = 0.5) -> dict[str, Any]:
        """Poll `status --json` until caught_up (with at least `min_messages`); fail early on exit."""
        deadline = time.monotonic() + timeout_s
        last: dict[str, Any] | None = None
        while True:
            if not self.running():
                code = self._proc().returncode
                raise DaemonExited(f"mxarchiverd run exited with code {code} before catching up. "
                                   f"Its log ({self.log_path}):\n{self.tail()}")
            last = self.status() or last
            if last and last.get("caught_up") and last.get("messages", 0) >= min_messages:
                return last
            if time.monotonic() >= deadline:
                raise TimeoutError(f"mxarchiverd did not catch up within {timeout_s:.0f}s; last status: "
                                   f"{json.dumps(last)}\nIts log ({self.log_path}):\n{self.tail()}")
            time.sleep(interval_s)

    # Signals and stopping ---------------------------------------------------

    def signal(self, signum: int) -> None:
        """Signal the supervisor (SIGHUP: reload, SIGTERM: stop)."""
        self._proc().send_signal(signum)

    def kill_role(self, role: str, signum: int = SIGKILL) -> int:
        """Signal one running process of `role`; return its PID."""
        pid = self.wait_role(role)
        os.kill(pid, signum)
        return pid

    def wait_exit(self, timeout_s: float) -> int:
        """The supervisor's exit code; fails (with the log) if it runs on past `timeout_s`."""
        try:
            return self._proc().wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"mxarchiverd still running after {timeout_s}s; its log:\n{self.tail()}") from None

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM and wait up to `timeout_s` (then SIGKILL); sweep the group; the exit code."""
        if self.proc is None or self.ident is None:
            return None
        stop_daemon(self.ident, timeout_s)
        return self.proc.wait(10)

    def kill(self) -> None:
        """SIGKILL the supervisor and every process of its group and tree, at once (clean-up)."""
        if self.proc is None:
            return
        processes.kill_all(self.pids())
        processes.kill_all(processes.group_members(self.proc.pid))
        self.proc.wait(10)

    def close(self) -> None:
        """Kill whatever still runs and close the notify listener: safe to call at any point."""
        try:
            self.kill()
        finally:
            if self.notify is not None:
                self.notify.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Logs -------------------------------------------------------------------

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])
