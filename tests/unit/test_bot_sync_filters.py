"""The bot's /sync filters, their ids, and that DB mode never loads matrix-nio."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mxarchiverd.sources.matrix_sync.filters import (
    FilterIds, check_timeline_limit, filter_key, first_sync_filter, messages_filter, sync_filter,
)


def test_sync_filter_keeps_load_low() -> None:
    body = sync_filter(20)
    room = body["room"]
    assert room["timeline"] == {"limit": 20, "lazy_load_members": True}
    assert room["state"]["lazy_load_members"] is True
    assert room["ephemeral"] == body["presence"] == {"not_types": ["*"]}
    assert first_sync_filter()["room"]["timeline"]["limit"] == 1
    assert messages_filter() == {"lazy_load_members": True}


@pytest.mark.parametrize("limit", [0, -1, 1001, "10", 2.5, True, None])
def test_timeline_limit_is_checked(limit) -> None:
    with pytest.raises(ValueError, match="timeline_limit: expected an integer"):
        check_timeline_limit(limit)
    with pytest.raises(ValueError):
        sync_filter(limit)


def test_filter_key_ignores_key_order() -> None:
    assert filter_key({"a": 1, "b": [1, 2]}) == filter_key({"b": [1, 2], "a": 1})
    assert filter_key(sync_filter(2)) != filter_key(sync_filter(3))


def test_ids_are_uploaded_once_and_remembered_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "filters.json"
    uploads: list[dict] = []

    def upload(body: dict) -> str:
        uploads.append(body)
        return f"id{len(uploads)}"
    ids = FilterIds(path)
    assert ids.ensure("@bot:x", sync_filter(5), upload) == "id1"
    assert ids.ensure("@bot:x", sync_filter(5), upload) == "id1"
    assert FilterIds(path).ensure("@bot:x", sync_filter(5), upload) == "id1"
    assert FilterIds(path).ensure("@other:x", sync_filter(5), upload) == "id2"  # ids are per user
    ids = FilterIds(path)
    ids.forget("@bot:x", sync_filter(5))
    assert FilterIds(path).ensure("@bot:x", sync_filter(5), upload) == "id3"
    assert len(uploads) == 3


@pytest.mark.parametrize("content", ["{broken", "[]", json.dumps({"@bot:x": "notadict"}),
                                     json.dumps({"@bot:x": {"k": 5}})])
def test_a_damaged_ids_file_only_costs_an_upload(tmp_path: Path, content: str) -> None:
    path = tmp_path / "filters.json"
    path.write_text(content)
    assert FilterIds(path).ensure("@bot:x", sync_filter(5), lambda body: "fresh") == "fresh"
    assert json.loads(path.read_text())["@bot:x"]


def test_db_mode_and_the_pure_bot_modules_do_not_import_nio() -> None:
    modules = ["mxarchiverd.cli", "mxarchiverd.workers.runner"] + [
        f"mxarchiverd.sources.matrix_sync.{name}"
        for name in ("session", "errors", "filters", "plan", "membership", "paging", "events")]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "bad = sorted(m for m in sys.modules if m == 'nio' or m.startswith(('nio.', 'aiohttp')))\n"
            + "print(bad)\nsys.exit(1 if bad else 0)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
