"""What a reloaded config changes, and how to apply it: a pure diff of two Configs.

Parse-then-swap (Synapse's reload): the new file is parsed into a new Config
first; only a valid one is compared with the running one here. Each changed
key path gets one effect from RULES (longest matching prefix wins):

  hot         sent to the running children as a `reconfigure` control message
  restart     the stages that hold a connection or client built from the key
              restart (the pipeline stages restart together: they share queues)
  supervisor  timing the supervisor itself applies (daemon.* timeouts, backoff)
  refuse      topology that only a full restart may change; the running value stays
  ignore      not a setting (Config.path)

Every child holds the whole Config, so the children that are not restarted all
get the reconfigure message whenever anything was applied.
"""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from mxarchiverd.config import Config, Secret


class Effect(enum.Enum):
    HOT = "hot"
    RESTART = "restart"
    SUPERVISOR = "supervisor"
    REFUSE = "refuse"
    IGNORE = "ignore"


_ARCHIVE_DB = frozenset({"poller", "dbwriter", "uploader"})  # the poller reads its cursor there
_UPLOADER = frozenset({"uploader"})
_NONE: frozenset[str] = frozenset()

RULES: dict[str, tuple[Effect, frozenset[str]]] = {
    "path": (Effect.IGNORE, _NONE),
    "rooms": (Effect.HOT, _NONE),
    "processing": (Effect.HOT, _NONE),
    "logging": (Effect.HOT, _NONE),
    "daemon": (Effect.SUPERVISOR, _NONE),
    # The start method is fixed when the first child (or the forkserver) starts.
    "daemon.start_method": (Effect.REFUSE, _NONE),
    # Another source is another pipeline, not a setting of this one.
    "source.mode": (Effect.REFUSE, _NONE),
    # Anything else under source.* shapes what the poller reads or how the enricher names it.
    "source": (Effect.RESTART, frozenset({"poller", "enricher"})),
    # The enricher also reads Synapse's room state and profiles.
    "source.synapse_db_url": (Effect.RESTART, frozenset({"poller", "enricher"})),
    "source.bridge_db_url": (Effect.RESTART, frozenset({"enricher"})),
    "source.media_store_path": (Effect.RESTART, _UPLOADER),
    # A session default of the poller's and enricher's Synapse connections (db.connect_source).
    "source.statement_timeout": (Effect.RESTART, frozenset({"poller", "enricher"})),
    "archive": (Effect.RESTART, _ARCHIVE_DB),
    "archive.storage_backend": (Effect.RESTART, _UPLOADER),
    "archive.storage_path": (Effect.RESTART, _UPLOADER),
    "supabase": (Effect.RESTART, _UPLOADER),
    "supabase.database": (Effect.RESTART, _ARCHIVE_DB),
    # The homeserver client fetches media that is not in the media store.
    "matrix": (Effect.RESTART, _UPLOADER),
}


@dataclass(frozen=True)
class ReloadPlan:
    config: Config               # run with this from now on (refused keys keep their running value)
    applied: tuple[str, ...]     # key paths that take effect
    refused: tuple[str, ...]     # key paths that need a full restart of the service
    hot: frozenset[str]          # roles that get a reconfigure message
    restart: frozenset[str]      # roles to restart (before pipeline grouping)
    supervisor: bool             # the supervisor's own timing changed

    @property
    def changed(self) -> bool:
        return bool(self.applied)


def changed_paths(old: Any, new: Any, prefix: str = "") -> Iterator[str]:
    """Dotted key paths whose values differ; a Secret or a list counts as one value."""
    for field in dataclasses.fields(old):
        before, after = getattr(old, field.name), getattr(new, field.name)
        if before == after:
            continue
        path = f"{prefix}{field.name}"
        if _is_section(before) and _is_section(after):
            yield from changed_paths(before, after, f"{path}.")
        else:
            yield path


def _is_section(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, (type, Secret))


def rule_for(path: str) -> tuple[Effect, frozenset[str]] | None:
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        rule = RULES.get(".".join(parts[:end]))
        if rule is not None:
            return rule
    return None


def plan_reload(old: Config, new: Config, roles: Sequence[str]) -> ReloadPlan:
    paths = list(changed_paths(old, new))
    # An unknown key (a section added later without a rule) restarts every role: always safe.
    rules = {path: rule_for(path) or (Effect.RESTART, frozenset(roles)) for path in paths}
    refused = tuple(p for p in paths if rules[p][0] is Effect.REFUSE)
    applied = tuple(p for p in paths if rules[p][0] not in (Effect.REFUSE, Effect.IGNORE))
    restart = frozenset(r for p in applied if rules[p][0] is Effect.RESTART for r in rules[p][1]) & set(roles)
    return ReloadPlan(
        config=_keep_running(new, old, refused),
        applied=applied,
        refused=refused,
        hot=frozenset(roles) - restart if applied else frozenset(),
        restart=restart,
        supervisor=any(rules[p][0] is Effect.SUPERVISOR for p in applied),
    )


def _keep_running(new: Any, old: Any, paths: Sequence[str]) -> Any:
    for path in paths:
        new = _replace_at(new, old, path.split("."))
    return new


def _replace_at(new: Any, old: Any, parts: list[str]) -> Any:
    head, rest = parts[0], parts[1:]
    value = getattr(old, head) if not rest else _replace_at(getattr(new, head), getattr(old, head), rest)
    return dataclasses.replace(new, **{head: value})


def needs_push(sent: int, acknowledged: int, current: int) -> bool:
    """Send a child the current config only once it took the previous one, so that
    at most one reconfigure message is ever waiting in its control pipe."""
    return sent < current and acknowledged >= sent
