"""The daemon launcher's decisions (tests/support/daemon.py): command, environment, config, titles."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from mxarchiverd.config.loader import ENV_OVERRIDES
from tests.support.daemon import (
    DROPPED_ENV, SUPERVISOR_ONLY, Entry, clean_env, command, console_script, merge_sections, render_config, role_of,
)


def test_every_variable_that_overrides_the_config_is_dropped() -> None:
    # The loader's table, plus the two it reads on its own (MONITORED_ROOMS, POLL_INTERVAL_MS).
    assert set(ENV_OVERRIDES) | {"MONITORED_ROOMS", "POLL_INTERVAL_MS", "MXARCHIVER_CONFIG"} <= set(DROPPED_ENV)


def test_clean_env_keeps_the_rest_and_adds_what_is_asked() -> None:
    base = {"PATH": "/usr/bin", "SYNAPSE_DB_URL": "postgresql://x", "NOTIFY_SOCKET": "/run/systemd/notify",
            "WATCHDOG_USEC": "1", "MXARCHIVERD_STAGES": "{}"}
    env = clean_env(base, {"NOTIFY_SOCKET": "/tmp/ours.sock"})
    assert env == {"PATH": "/usr/bin", "NOTIFY_SOCKET": "/tmp/ours.sock"}
    assert base["SYNAPSE_DB_URL"] == "postgresql://x", "the caller's mapping is left alone"


def test_each_entry_runs_the_config_it_is_given(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    assert command(Entry.SCRIPT, config) == [str(console_script()), "--config", str(config), "run"]
    assert command(Entry.MODULE, config) == [sys.executable, "-m", "mxarchiverd", "--config", str(config), "run"]
    assert command(Entry.SUPERVISOR, config) == [sys.executable, "-c", SUPERVISOR_ONLY, str(config)]


def test_sections_replace_keys_of_the_base_and_lists_whole() -> None:
    base: dict[str, Any] = {"processing": {"batch_size": 5, "poll_interval": "50ms"}, "rooms": [{"room_id": "!a:x"}]}
    merged = merge_sections(base, {"processing": {"batch_size": 7}, "rooms": [], "logging": {"level": "DEBUG"}})
    assert merged == {"processing": {"batch_size": 7, "poll_interval": "50ms"}, "rooms": [],
                      "logging": {"level": "DEBUG"}}
    assert base["processing"]["batch_size"] == 5, "each write starts from the base again"


def test_rendered_config_is_the_yaml_of_the_sections() -> None:
    sections = {"source": {"synapse_db_url": "postgresql://a@b/c"}, "rooms": []}
    assert yaml.safe_load(render_config(sections)) == sections


def test_roles_come_from_process_titles_only() -> None:
    assert role_of("mxarchiverd: poller") == "poller"
    assert role_of("mxarchiverd: supervisor extra words") == "supervisor"
    assert role_of("/usr/bin/python3 -m mxarchiverd --config x run") is None
    assert role_of("mxarchiverd: ") is None
