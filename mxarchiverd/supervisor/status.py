"""The one-line STATUS= text that `systemctl status` shows: pure, never a secret.

It is built only from numbers, role and state names, and problem texts; problem
texts pass through redact() first, because a config error may quote a value.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from mxarchiverd.config import ConfigError, Secret

# Long enough for a reload error with its key path; systemctl shows one line anyway.
MAX_LENGTH = 300
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.I)
# libpq's key=value DSNs ("host=db password=..."); "key: value" is left alone,
# because problem texts read "matrix.password: expected a string".
_KEY_VALUE_SECRET = re.compile(r"(?P<head>\b(?:password|passwd|secret|token|key)\s*=\s*)('[^']*'|\S+)", re.I)


@dataclass(frozen=True)
class Totals:
    archived: float = 0.0
    lag: float = 0.0  # stream positions, not seconds (heartbeat.STAT_KEYS)
    media_backlog: float = 0.0
    errors: float = 0.0
    media_dead: float = 0.0  # dead-lettered media jobs in the archive (the uploader counts them)


def aggregate(stats: Mapping[str, Mapping[str, float]]) -> Totals:
    """Counts add up across children; lag is the worst one."""
    values = list(stats.values())
    return Totals(
        archived=sum(s.get("archived", 0.0) for s in values),
        lag=max((s.get("lag", 0.0) for s in values), default=0.0),
        media_backlog=sum(s.get("media_backlog", 0.0) for s in values),
        errors=sum(s.get("errors", 0.0) for s in values),
        # Every uploader counts the same queue: the largest count, not the sum.
        media_dead=max((s.get("media_dead", 0.0) for s in values), default=0.0),
    )


@dataclass(frozen=True)
class StatusView:
    phase: str                      # starting, running, stopping
    states: Mapping[str, str]       # role -> child state name
    totals: Totals
    problem: str | None = None      # the latest restart or give-up reason
    reload_error: str | None = None


def render_status(view: StatusView) -> str:
    parts = [_headline(view), _numbers(view.totals)]
    if view.problem:
        parts.append(f"last problem: {view.problem}")
    if view.reload_error:
        parts.append(f"reload failed, old config kept: {view.reload_error}")
    text = "; ".join(parts)
    return text if len(text) <= MAX_LENGTH else text[: MAX_LENGTH - 3] + "..."


def _headline(view: StatusView) -> str:
    if view.phase != "running":
        return view.phase
    others = [f"{role} {state}" for role, state in view.states.items() if state != "running"]
    return f"degraded ({', '.join(others)})" if others else "running"


def _numbers(totals: Totals) -> str:
    # Dead jobs are shown only when there are some, but then always: they wait for an operator.
    dead = f", {totals.media_dead:.0f} media jobs dead (see mxarchiverd status)" if totals.media_dead else ""
    return (f"archived {totals.archived:.0f} events, lag {totals.lag:.0f} positions, "
            f"media backlog {totals.media_backlog:.0f}{dead}, errors {totals.errors:.0f}")


def describe_config_error(error: ConfigError, secrets: Iterable[str]) -> str:
    """The first problem with its key path, and how many more there are."""
    if not error.problems:
        return redact(str(error), secrets)
    path, message = error.problems[0]
    more = len(error.problems) - 1
    suffix = f" (+{more} more, see the log)" if more else ""
    return redact(f"{path}: {message}{suffix}", secrets)


def redact(text: str, secrets: Iterable[str]) -> str:
    """Mask known secret values, URL passwords and key=value credentials."""
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _URL_PASSWORD.sub(r"\g<head>***@", text)
    return _KEY_VALUE_SECRET.sub(r"\g<head>***", text)


def secret_values(value: Any) -> Iterator[str]:
    """Every Secret's value inside a Config (or any dataclass tree)."""
    if isinstance(value, Secret):
        yield value.value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from secret_values(getattr(value, field.name))
    elif isinstance(value, tuple):
        for item in value:
            yield from secret_values(item)
