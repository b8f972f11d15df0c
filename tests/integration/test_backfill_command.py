"""`mxarchiverd backfill --room R`: one room's history read again through the pipeline, resumable,
with a progress bar on a terminal and progress lines without one."""
from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import psycopg
import pytest

from tests.support.pipeline import archived, pipeline, write_config
from tests.support.synth import add_room, insert_event, set_position, text

pytestmark = pytest.mark.synapse
ROOM = "!backfill:synth.test"
EVENTS = 120


def cli(tmp_path: Path) -> list[str]:
    return [sys.executable, "-m", "mxarchiverd", "--config", str(tmp_path / "mxarchiver.yaml"), "backfill",
            "--room", ROOM]


def run_in_terminal(argv: list[str], timeout_s: float = 120.0) -> tuple[int, str]:
    """Run argv with a pseudo-terminal as its stdin, stdout and stderr; (exit code, what it drew)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 24 rows, 120 columns
    proc = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: every copy of the terminal's other end is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = proc.wait(max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(leader)
    return code, b"".join(chunks).decode(errors="replace")


@pytest.fixture
def archived_room(synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> list[str]:
    with psycopg.connect(synapse_schema_db, autocommit=True) as source:
        add_room(source, ROOM)
        ids = []
        for i in range(EVENTS):
            event_id, position = insert_event(source, ROOM, "m.room.message", text(f"message {i}"))
            ids.append(event_id)
        set_position(source, position)
    config = write_config(tmp_path, synapse_schema_db, fresh_db,
                          f"rooms:\n  - room_id: '{ROOM}'\nprocessing:\n  batch_size: 20\n")
    with pipeline(config) as p:
        p.run_until_caught_up()
    assert set(ids) <= set(archived(fresh_db, ROOM))
    return ids


def lose(fresh_db: str, event_ids: list[str]) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("DELETE FROM archived_messages WHERE event_id = ANY(%s)", (event_ids,))


def test_on_a_terminal_backfill_draws_a_bar_and_restores_the_room(
        archived_room: list[str], fresh_db: str, tmp_path: Path) -> None:
    lose(fresh_db, archived_room[10:15])
    code, screen = run_in_terminal(cli(tmp_path))
    assert code == 0, screen
    assert f"{EVENTS}/{EVENTS}" in screen and "100%|" in screen and "event/s" in screen
    assert "INFO mxarchiverd.progress" not in screen
    assert "5 new" in screen
    assert set(archived_room) <= set(archived(fresh_db, ROOM))


def test_without_a_terminal_backfill_logs_progress_lines_and_resumes(
        archived_room: list[str], fresh_db: str, tmp_path: Path) -> None:
    # An interrupted earlier backfill: its read stopped after the 60th event.
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        ordering = conn.execute("SELECT stream_ordering FROM archived_messages WHERE event_id = %s",
                                (archived_room[59],)).fetchone()[0]
        conn.execute("UPDATE monitored_rooms SET history_done = FALSE, history_cursor = %s,"
                     " history_upto = (SELECT max(stream_ordering) FROM archived_messages) WHERE room_id = %s",
                     (ordering, ROOM))
    lose(fresh_db, archived_room[70:73])
    done = subprocess.run(cli(tmp_path), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "mxarchiverd.progress" in line]
    assert lines[0].endswith(f"backfill {ROOM}: 0/{EVENTS - 60} events (0%), elapsed 0s"), lines
    assert lines[-1].endswith("(done)") and f"{EVENTS - 60}/{EVENTS - 60} events (100%)" in lines[-1]
    assert "\r" not in done.stderr and "|" not in done.stderr
    assert "(resumed)" in done.stdout and f"{EVENTS - 60} event(s) read, 3 new" in done.stdout
    assert set(archived_room) <= set(archived(fresh_db, ROOM))
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT history_done FROM monitored_rooms WHERE room_id = %s", (ROOM,)).fetchone() == (True,)


def test_an_unknown_room_is_refused_by_name(archived_room: list[str], tmp_path: Path) -> None:
    argv = cli(tmp_path)[:-1] + ["!nosuch:synth.test"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "!nosuch:synth.test: not a monitored room" in done.stderr


def test_in_bot_mode_backfill_queues_a_history_job_the_poller_pages(synapse: object, fresh_db: str,
                                                                   tmp_path: Path) -> None:
    from tests.support.nio_driver import register_bot, unique
    from tests.support.pipeline import bot_pipeline, write_bot_config
    from tests.support.synapse import SynapseServer

    assert isinstance(synapse, SynapseServer)
    alice = synapse.register(unique("alice_bf"))
    bot_id, bot_password = register_bot(synapse, unique("archiver_bf"))
    room = alice.create_room(name="bot backfill", invite=[bot_id])
    sent = [alice.send_text(room, f"line {i}") for i in range(8)]
    config = write_bot_config(tmp_path, synapse.base_url, bot_id, bot_password, fresh_db,
                              f"rooms:\n  - room_id: '{room}'\n")
    with bot_pipeline(config) as p:
        p.run_until_caught_up()
    assert set(sent) <= set(archived(fresh_db, room))
    lose(fresh_db, sent[2:5])
    argv = [sys.executable, "-m", "mxarchiverd", "--config", str(tmp_path / "mxarchiver-bot.yaml"), "backfill",
            "--room", room]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    again = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0 and "queued" in first.stdout, first.stderr
    assert again.returncode == 0 and "already pending" in again.stdout
    with bot_pipeline(config) as p:  # the daemon's next start
        p.run_until_caught_up()
    assert set(sent) <= set(archived(fresh_db, room))
    with psycopg.connect(fresh_db) as conn:
        jobs = conn.execute("SELECT state, create_seen FROM room_pagination WHERE id LIKE 'backfill-%'").fetchall()
    assert jobs == [("done", True)]
