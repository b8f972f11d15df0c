"""./quickstart end to end, as a newcomer runs it: install check, private PostgreSQL,
real Synapse, sample conversation, `mxarchiverd run`, report, and a clean stop.

The quickstart runs in a subprocess with its own --data-dir, so it never touches
a developer's ./quickstart-data, and on free ports, so it can run beside other tests.
"""
from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import ProcessId, group_members, is_running

REPO = Path(__file__).resolve().parents[2]
DEADLINE_S = 300

# What tests/support/conversation.py sends, as the archive shows it: the edited
# message with its latest text, each edit event with its "* " fallback, and the
# redacted messages with their content (the default redaction_policy is keep).
SAMPLE_BODIES = (
    "Hello Bob, are we still on for Friday?", "Yes! 7pm at the usual place.", "waves",
    "Reminder: bring the slides", "Thread: what should we order?", "Pizza, obviously", "👍",
    "See you at 7pm sharp", "* See you at 7pm", "* See you at 7pm sharp", "my password is hunter2",
    "Office", "Pizza or pasta?", "dot.png", "agenda.pdf", "cat", "wrong.png",
)
UPLOADED_FILES = {"dot.png": 67, "agenda.pdf": 1000}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(DEADLINE_S + 90)]


def run_quickstart(data_dir: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen([str(REPO / "quickstart"), "--data-dir", str(data_dir)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, encoding="utf-8", errors="replace")
    try:
        out, _ = proc.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        # SIGTERM makes the quickstart stop everything it started before exiting.
        proc.terminate()
        out, _ = proc.communicate(timeout=90)
        pytest.fail(f"./quickstart did not finish within {DEADLINE_S}s:\n{out}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def section(output: str, title: str) -> str:
    """The lines of one report section: from its title line to the next blank line."""
    match = re.search(rf"^{re.escape(title)}.*?\n(.*?)(?:\n\n|\Z)", output, re.MULTILINE | re.DOTALL)
    assert match, f"no {title!r} section in the output:\n{output}"
    return match.group(1)


# Processes ------------------------------------------------------------------


def still_running(recorded: dict[str, int]) -> bool:
    """The recorded process (same PID and kernel start time) is alive and not a zombie."""
    return is_running(ProcessId.from_dict(recorded))


def listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def survivors(state: dict[str, Any]) -> list[str]:
    found = []
    for name, recorded in (("mxarchiverd", state["mxarchiverd"]), ("synapse", state["synapse"]),
                           ("postmaster", state["postgres"]["postmaster"])):
        if still_running(recorded):
            found.append(f"{name} pid {recorded['pid']}")
    # The daemon leads its own process group: its workers must be gone with it.
    found += [f"mxarchiverd worker pid {pid}" for pid in group_members(state["mxarchiverd"]["pid"])]
    found += [f"port {port} still listening" for port in (state["synapse"]["port"], state["postgres"]["port"])
              if listening(port)]
    # PostgreSQL removes its PID file last, after every backend has exited.
    pid_file = Path(state["postgres"]["root"]) / "data" / "postmaster.pid"
    found += [f"{pid_file} still exists"] if pid_file.exists() else []
    return found


# The test -------------------------------------------------------------------


def test_quickstart_archives_the_sample_and_stops_everything(tmp_path: Path) -> None:
    data_dir = tmp_path / "quickstart-data"
    result = run_quickstart(data_dir)
    out = result.stdout
    assert result.returncode == 0, out

    messages = section(out, "Messages")
    missing = [body for body in SAMPLE_BODIES if body not in messages]
    assert not missing, f"bodies missing from the messages table: {missing}\n{out}"
    assert "edited" in messages and "REDACTED" in messages

    media = section(out, "Media").splitlines()
    for name, size in UPLOADED_FILES.items():
        rows = [line.split() for line in media if line.startswith(f"{name} ")]
        assert rows, f"{name} is not in the media table:\n{out}"
        assert rows[0][2] == str(size) and rows[0][4] == "ok", rows  # bytes, and sha256 checked on disk
    assert re.search(r"all \d+ sent events and 3 media files are in the archive", out), out
    assert "caught up:      yes" in out and "Point it at Supabase" in out

    state = json.loads((data_dir / "quickstart.json").read_text())
    assert not survivors(state), out
    # As root, pytest's private tmp_path keeps the postgres user out, so the
    # cluster lived under /var/tmp: it must not outlive the run.
    assert Path(state["postgres"]["root"]).is_relative_to(data_dir) or not Path(state["postgres"]["root"]).exists()
