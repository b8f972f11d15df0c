"""What a reloaded config changes, and how to apply it: a pure diff of two Configs.

Parse-then-swap (Synapse's reload): the new file is parsed into a new Config
first; only a valid one is compared with the running one here. Each changed
key path gets the effect its declaration names (config/settings.py: hot,
restart with the roles it restarts, supervisor, refuse); a path with no
declaration restarts every role, which is always safe.

Every child holds the whole Config, so the children that are not restarted all
get the reconfigure message whenever anything was applied.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from mxarchiverd.config import Config, Secret
from mxarchiverd.config.settings import Effect, find

# Not settings: where the config came from, and which keys it set.
_NOT_SETTINGS = frozenset({"path", "given"})


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
    """The effect declared for a key path and the roles it restarts; None if undeclared."""
    if path in _NOT_SETTINGS:
        return Effect.IGNORE, frozenset()
    declared = find(Config, path)
    if declared is None or declared.section is not None:
        return None
    return declared.effect, declared.restarts


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
