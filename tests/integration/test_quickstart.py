"""./quickstart end to end, as a newcomer runs it: install check, private PostgreSQL,
real Synapse, sample conversation, `mxarchiverd run`, report, and a clean stop; and
./quickstart --bot, which archives the same conversation as a bot user (matrix_sync).

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
# Redacted before the bot joined: the client API serves them without content.
REDACTED_BODIES = ("my password is hunter2", "wrong.png")
UPLOADED_FILES = {"dot.png": 67, "agenda.pdf": 1000}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(DEADLINE_S + 90)]


def run_quickstart(data_dir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen([str(REPO / "quickstart"), "--data-dir", str(data_dir), *options], cwd=REPO,
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


# The tests ------------------------------------------------------------------


def check_report(out: str, bodies: tuple[str, ...]) -> None:
    messages = section(out, "Messages")
    missing = [body for body in bodies if body not in messages]
    assert not missing, f"bodies missing from the messages table: {missing}\n{out}"
    rows = [line for line in messages.splitlines() if line.startswith("$")]  # not the title's explanation
    assert any(row.endswith("edited") for row in rows) and sum(row.endswith("REDACTED") for row in rows) == 2, rows

    media = section(out, "Media").splitlines()
    for name, size in UPLOADED_FILES.items():
        rows = [line.split() for line in media if line.startswith(f"{name} ")]
        assert rows, f"{name} is not in the media table:\n{out}"
        assert rows[0][2] == str(size) and rows[0][4] == "ok", rows  # bytes, and sha256 checked on disk
    assert re.search(r"all \d+ sent events and 3 media files are in the archive", out), out
    assert "caught up:      yes" in out


def check_stopped(data_dir: Path, out: str) -> None:
    state = json.loads((data_dir / "quickstart.json").read_text())
    assert not survivors(state), out
    # As root, pytest's private tmp_path keeps the postgres user out, so the
    # cluster lived under /var/tmp: it must not outlive the run.
    assert Path(state["postgres"]["root"]).is_relative_to(data_dir) or not Path(state["postgres"]["root"]).exists()


def test_quickstart_archives_the_sample_and_stops_everything(tmp_path: Path) -> None:
    data_dir = tmp_path / "quickstart-data"
    result = run_quickstart(data_dir)
    out = result.stdout
    assert result.returncode == 0, out
    check_report(out, SAMPLE_BODIES)
    assert "source:         synapse_db" in out and "Point it at Supabase" in out
    check_stopped(data_dir, out)


def test_quickstart_bot_archives_the_sample_through_the_client_api(tmp_path: Path) -> None:
    data_dir = tmp_path / "quickstart-data"
    result = run_quickstart(data_dir, "--bot")
    out = result.stdout
    assert result.returncode == 0, out
    check_report(out, tuple(b for b in SAMPLE_BODIES if b not in REDACTED_BODIES))
    rows = [line for line in section(out, "Messages").splitlines() if line.startswith("$")]
    assert not [b for b in REDACTED_BODIES if any(b in row for row in rows)], rows
    assert "source:         matrix_sync" in out and "pagination:     history done 1" in out  # paged back
    assert "What bot mode cannot see" in out and "kick_matrix_users: false" in out
    assert "matrix.pickle_key_file" in section(out, "Run it as a bot")

    # The secrets are in files only their owner reads; the config names the files, the output neither.
    config = (data_dir / "mxarchiverd.yaml").read_text()
    for name in ("bot-password", "bot-pickle-key"):
        secret_file = data_dir / name
        assert secret_file.stat().st_mode & 0o777 == 0o600
        secret = secret_file.read_text()
        assert len(secret) >= 16 and secret not in config and secret not in out
        assert f"{name[4:].replace('-', '_')}_file: {secret_file}" in config
    assert "mode: matrix_sync" in config and f"state_dir: {data_dir / 'bot-state'}" in config
    check_stopped(data_dir, out)
