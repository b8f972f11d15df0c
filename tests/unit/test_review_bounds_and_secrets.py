"""Review: the commit-safe bound, and secrets kept out of what the daemon prints."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


from mxarchiverd.sources.synapse_db.bounds import compute_bounds

ARCHIVE_PASSWORD = "Arch%Pa55word"
SYNAPSE_PASSWORD = "Syn%Pa55word"


def test_forward_bound_never_passes_a_writer_that_has_a_row() -> None:
    # Synapse deletes rows of instances that are no longer writers at startup
    # (MultiWriterIdGenerator._load_current_ids), so every row is a live writer:
    # persister1 has not finished everything up to 100, only up to 50.
    rows = [("events", "master", 100), ("events", "persister1", 50)]
    bound = compute_bounds(rows, ("master",)).forward
    assert bound is not None and bound <= 50


def test_control_forward_bound_is_the_minimum_over_configured_writers() -> None:
    rows = [("events", "master", 100), ("events", "persister1", 50)]
    assert compute_bounds(rows, ("master", "persister1")).forward == 50
    assert compute_bounds(rows[:1], ("master", "persister1")).forward is None


def test_unparsable_dsn_does_not_print_the_password(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"source:\n  synapse_db_url: 'postgresql://syn:{SYNAPSE_PASSWORD}@127.0.0.1/synapse'\n"
        f"archive:\n  database_url: 'postgresql://arch:{ARCHIVE_PASSWORD}@127.0.0.1/archive'\n"
        f"  storage_path: {tmp_path / 'media'}\n")
    for command in ("migrate", "status"):
        result = subprocess.run([sys.executable, "-m", "mxarchiverd", "--config", str(config), command],
                                capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
        output = result.stdout + result.stderr
        assert result.returncode != 0, command
        assert "Pa55word" not in output, f"{command} printed a password:\n{output[-400:]}"
