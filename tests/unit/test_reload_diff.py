"""Which roles a reloaded config reconfigures, restarts, or leaves for a full restart."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from mxarchiverd.config import Config, Secret, load_config
from mxarchiverd.config.settings import Effect
from mxarchiverd.supervisor import reload
from mxarchiverd.supervisor.reload import changed_paths, needs_push, plan_reload, rule_for

ROLES = ("poller", "enricher", "dbwriter", "uploader")


@pytest.fixture
def old(tmp_path: Path) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(
        "source:\n  synapse_db_url: postgresql://u:pw@synapse/db\n"
        "archive:\n  database_url: postgresql://u:pw@archive/db\n"
        "rooms:\n  - room_id: '!a:example.org'\n"
    )
    return load_config(str(path), environ={})


def change(config: Any, path: str, value: object) -> Any:
    """A copy with the value at a dotted key path replaced."""
    head, _, rest = path.partition(".")
    if not rest:
        return dataclasses.replace(config, **{head: value})
    return dataclasses.replace(config, **{head: change(getattr(config, head), rest, value)})


def test_no_change_is_nothing_to_apply(old: Config) -> None:
    plan = plan_reload(old, old, ROLES)
    assert not plan.changed and plan.hot == frozenset() and plan.restart == frozenset()


@pytest.mark.parametrize("path, value", [
    ("processing.batch_size", 50),
    ("processing.poll_interval", 1.0),
    ("logging.level", "DEBUG"),
])
def test_hot_keys_reconfigure_every_role(old: Config, path: str, value: object) -> None:
    plan = plan_reload(old, change(old, path, value), ROLES)
    assert plan.applied == (path,)
    assert plan.hot == set(ROLES) and plan.restart == frozenset()


def test_rooms_are_hot(old: Config) -> None:
    rooms = (*old.rooms, dataclasses.replace(old.rooms[0], room_id="!b:example.org"))
    plan = plan_reload(old, dataclasses.replace(old, rooms=rooms), ROLES)
    assert plan.applied == ("rooms",) and plan.hot == set(ROLES)


@pytest.mark.parametrize("path, value, restarted", [
    ("source.statement_timeout", 3.0, {"poller", "enricher"}),
    # The uploader looks media up in Synapse's database too.
    ("source.synapse_db_url", Secret("postgresql://u:new@synapse/db"), {"poller", "enricher", "uploader"}),
    # The poller reads the bridge for portal discovery and late WhatsApp ids.
    ("source.bridge_db_url", Secret("postgresql://u:pw@bridge/db"), {"poller", "enricher"}),
    ("source.event_writers", ("master", "event_persister1"), {"poller", "enricher"}),
    ("source.media_store_path", Path("/srv/media"), {"uploader"}),
    ("archive.database_url", Secret("postgresql://u:pw@elsewhere/db"), {"poller", "dbwriter", "uploader"}),
    ("supabase.database.connection_string", Secret("postgresql://x"), {"poller", "dbwriter", "uploader"}),
    ("archive.storage_path", Path("/srv/archive"), {"uploader"}),
    ("supabase.url", "https://project.supabase.co", {"uploader"}),
    ("supabase.storage.bucket", "other", {"uploader"}),
    ("matrix.homeserver_url", "https://matrix.example.org", {"poller", "uploader"}),
    ("matrix.access_token", Secret("syt_new"), {"poller", "uploader"}),
])
def test_connection_keys_restart_the_stages_that_use_them(
        old: Config, path: str, value: object, restarted: set[str]) -> None:
    plan = plan_reload(old, change(old, path, value), ROLES)
    assert plan.restart == restarted
    assert plan.hot == set(ROLES) - restarted
    assert plan.config == change(old, path, value)


@pytest.mark.parametrize("path, value", [("daemon.start_method", "spawn"), ("source.mode", "matrix_sync")])
def test_topology_is_refused_and_keeps_its_running_value(old: Config, path: str, value: object) -> None:
    new = change(change(old, path, value), "processing.batch_size", 7)
    plan = plan_reload(old, new, ROLES)
    assert plan.refused == (path,)
    assert plan.applied == ("processing.batch_size",)
    assert plan.config == change(old, "processing.batch_size", 7)


def test_supervisor_timing_is_applied_by_the_supervisor(old: Config) -> None:
    plan = plan_reload(old, change(old, "daemon.heartbeat_timeout", 5.0), ROLES)
    assert plan.supervisor and plan.restart == frozenset()
    assert plan.config.daemon.heartbeat_timeout == 5.0


def test_only_roles_that_exist_are_restarted(old: Config) -> None:
    plan = plan_reload(old, change(old, "archive.database_url", Secret("x")), ("uploader",))
    assert plan.restart == {"uploader"} and plan.hot == frozenset()


def test_a_key_without_a_declaration_restarts_everything(old: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reload, "find", lambda cls, path: None)
    plan = plan_reload(old, change(old, "matrix.device_name", "other"), ROLES)
    assert plan.restart == set(ROLES)


def test_config_path_is_not_a_setting(old: Config) -> None:
    assert not plan_reload(old, dataclasses.replace(old, path=Path("/elsewhere.yaml")), ROLES).changed


def test_changed_paths_are_dotted_and_secrets_are_leaves(old: Config) -> None:
    new = change(change(old, "supabase.storage.bucket", "b"), "source.synapse_db_url", Secret("other"))
    assert sorted(changed_paths(old, new)) == ["source.synapse_db_url", "supabase.storage.bucket"]


def test_each_key_has_the_effect_its_declaration_names() -> None:
    assert rule_for("supabase.database.connection_string") == (Effect.RESTART, {"poller", "dbwriter", "uploader", "lease"})
    assert rule_for("processing.batch_size") == (Effect.HOT, frozenset())
    assert rule_for("daemon.start_method") == (Effect.REFUSE, frozenset())
    assert rule_for("path") == (Effect.IGNORE, frozenset())
    assert rule_for("supabase") is None and rule_for("nothing.here") is None


@pytest.mark.parametrize("sent, acknowledged, current, push", [
    (1, 1, 2, True),   # took the last one; a newer one waits
    (2, 1, 3, False),  # still has generation 2 in its pipe
    (2, 2, 2, False),  # up to date
    (1, 0, 2, False),  # booting child never acknowledged its spawn generation yet
])
def test_at_most_one_reconfigure_in_flight(sent: int, acknowledged: int, current: int, push: bool) -> None:
    assert needs_push(sent, acknowledged, current) is push
