"""The package type-checks (mypy) and the code base passes the linter (ruff), as configured in
pyproject.toml; run here so that tests/run, and with it CI, keeps both clean."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=240,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("command", [
    ("mypy", "mxarchiverd"),
    ("ruff", "check", "--no-cache", "mxarchiverd", "tests", "bench", "quickstart.d"),
], ids=["mypy", "ruff"])
def test_static_check_passes(command: tuple[str, ...]) -> None:
    done = run_tool(*command)
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
