"""The unit file: systemd accepts it, and it keeps the supervisor's contract."""
from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mxarchiverd.config import DaemonConfig
from mxarchiverd.exitcodes import ExitCode
from mxarchiverd.supervisor.children import Policy

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD / "mxarchiverd.service"


def service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def installed_executable() -> str:
    script = Path(sys.executable).parent / "mxarchiverd"
    return str(script if script.exists() else sys.executable)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_is_silent(tmp_path: Path) -> None:
    # verify checks that ExecStart= exists: point it at this environment's executable.
    text = UNIT.read_text().replace("ExecStart=/usr/local/bin/mxarchiverd", f"ExecStart={installed_executable()}")
    (tmp_path / UNIT.name).write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / UNIT.name)],
                            capture_output=True, text=True, timeout=60)
    # An unknown or misspelt key is only a warning with exit status 0: require silence.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_notify_contract() -> None:
    unit = service()
    assert unit["Type"] == "notify" and unit["NotifyAccess"] == "main"
    assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert float(unit["WatchdogSec"]) > 0
    assert unit["KillMode"] == "mixed"


def test_boot_errors_stop_systemd_but_an_unreachable_database_does_not() -> None:
    codes = {int(code) for code in service()["RestartPreventExitStatus"].split()}
    assert codes == {ExitCode.CONFIG, ExitCode.SCHEMA_MISMATCH, ExitCode.PERMISSION}
    assert ExitCode.UNAVAILABLE not in codes and ExitCode.RESTART_LIMIT not in codes
    assert service()["Restart"] == "on-failure"


def test_stop_timeout_covers_the_whole_drain() -> None:
    policy = Policy.from_config(DaemonConfig())
    assert float(service()["TimeoutStopSec"]) > policy.stop_timeout + policy.kill_grace


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers not installed")
def test_sysusers_snippet_creates_the_service_user(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    subprocess.run(["systemd-sysusers", f"--root={tmp_path}", str(SYSTEMD / "mxarchiverd-sysusers.conf")],
                   check=True, capture_output=True, timeout=60)
    users = {line.split(":")[0] for line in (tmp_path / "etc" / "passwd").read_text().splitlines()}
    assert service()["User"] in users and service()["Group"] == service()["User"]
