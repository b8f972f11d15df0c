"""The daemon launcher (tests/support/daemon.py) with the real supervisor and fake stages:
a clean environment, processes found by title, a stop that leaves nothing of its group."""
from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import Daemon, DaemonExited, Entry
from tests.support.processes import alive, cmdline, group_members

pytestmark = pytest.mark.slow
FAKES = Path(__file__).resolve().parents[1] / "support" / "fake_stages.py"
STAGES = {"poller": "FakeSource", "enricher": "FakeRelay", "dbwriter": "FakeSink", "uploader": "FakeUploader"}
CONFIG = {
    "source": {"synapse_db_url": "postgresql://archiver@synapse-db/synapse"},
    "archive": {"database_url": "postgresql://archiver@archive-db/archive"},
    "processing": {"batch_size": 5, "poll_interval": "50ms"},
    "daemon": {"stop_timeout": "2s", "startup_timeout": "1s", "restart_backoff_initial": "0.1s"},
}


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    (tmp_path / "pids").mkdir()
    registry = {role: f"{FAKES}:{name}" for role, name in STAGES.items()}
    with Daemon(tmp_path, entry=Entry.SUPERVISOR, base_config=CONFIG, stages=registry, notify=True,
                env={"MXARCHIVERD_FAKE_DIR": str(tmp_path)}) as d:
        d.write_config()
        yield d
    assert not group_members(d.pid), "close() left processes of the daemon's group"


def environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def test_the_daemon_gets_no_overriding_variable_of_ours(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNAPSE_DB_URL", "postgresql://from-the-shell/synapse")
    monkeypatch.setenv("MXARCHIVER_CONFIG", "/etc/elsewhere.yaml")
    daemon.start().wait_ready(15)
    # The fork server's copy: setproctitle reuses the titled processes' environment block.
    [fork_server] = [pid for pid in daemon.pids() if "multiprocessing.forkserver" in cmdline(pid)]
    env = environment(fork_server)
    assert "SYNAPSE_DB_URL" not in env and "MXARCHIVER_CONFIG" not in env
    assert env["MXARCHIVERD_FAKE_DIR"] == str(daemon.workdir)


def test_roles_are_found_by_title_and_a_killed_one_is_found_again(daemon: Daemon) -> None:
    daemon.start().wait_ready(15)
    assert sorted(set(daemon.roles().values())) == sorted([*STAGES, "supervisor"])
    assert daemon.role_pids("supervisor") == [daemon.pid]
    old = daemon.kill_role("uploader")
    new = daemon.wait_role("uploader", 15, other_than=old)
    assert new != old and not alive(old)


def test_stop_returns_the_exit_code_and_leaves_nothing_of_its_group(daemon: Daemon) -> None:
    daemon.start().wait_ready(15)
    workers = set(daemon.pids()) - {daemon.pid}
    assert len(workers) >= len(STAGES)
    assert daemon.stop(10) == 0
    assert not group_members(daemon.pid) and not [p for p in workers if alive(p)]
    assert daemon.notify is not None and daemon.notify.find("STOPPING=1") is not None


def test_an_exited_daemon_is_reported_with_its_log(daemon: Daemon) -> None:
    (daemon.workdir / "bootfail-poller").touch()
    daemon.start()
    assert daemon.wait_exit(15) == 78
    with pytest.raises(DaemonExited, match="exited with code 78") as raised:
        daemon.check_running()
    assert "bootfail marker present" in str(raised.value)


def test_sighup_reaches_the_supervisor(daemon: Daemon) -> None:
    ready = daemon.start().wait_ready(15)
    daemon.signal(signal.SIGHUP)
    assert daemon.notify is not None
    daemon.notify.wait_for("READY=1", after=daemon.notify.wait_for("RELOADING=1", after=ready))
