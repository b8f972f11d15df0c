"""`mxarchiverd verify`: prove that every visible source event of a monitored room is archived.

The work is in verification/ (problems.py lists what it finds); this module
keeps the short entry points that status-like callers and tests use.
"""
from __future__ import annotations

from mxarchiverd.config import Config
from mxarchiverd.verification.problems import RoomReport, Scope
from mxarchiverd.verification.render import render_rooms
from mxarchiverd.verification.run import run_verify

__all__ = ["RoomReport", "render", "verify"]


def verify(config: Config, scope: Scope | None = None) -> list[RoomReport]:
    """Per room: missing and extra event ids, unapplied redactions, wrong edits, holes."""
    return list(run_verify(config, scope or Scope()).rooms)


def render(reports: list[RoomReport]) -> str:
    missing = sum(len(r.missing) for r in reports)
    return "\n".join([*render_rooms(reports), f"{len(reports)} room(s) checked, {missing} event(s) missing"])
