"""What the matrix_sync source reports to `status`: is the homeserver there.

Everything else bot mode knows of its coverage (the sync token's age, the
bot's memberships, holes, pagination) is in the archive and reported from
there (archive/reports.py bot_coverage), so `status` works while the daemon
is stopped and never logs in.
"""
from __future__ import annotations

import httpx

from mxarchiverd.archive.reports import ArchiveFacts
from mxarchiverd.config import Config
from mxarchiverd.sources.base import SourceState

PROBE_TIMEOUT = 5.0


def source_state(config: Config, facts: ArchiveFacts) -> SourceState:
    problem = homeserver_problem(config.matrix.homeserver_url)
    return SourceState("matrix_sync", (), problems=(problem,) if problem else ())


def homeserver_problem(homeserver_url: str) -> str | None:
    """Why the client API does not answer, or None (an unauthenticated GET /versions)."""
    try:
        response = httpx.get(f"{homeserver_url}/_matrix/client/versions", timeout=PROBE_TIMEOUT)
    except httpx.HTTPError as exc:
        return f"homeserver {homeserver_url} unreachable: {type(exc).__name__}"
    if response.status_code != 200:
        return f"homeserver {homeserver_url} answered HTTP {response.status_code} to /versions"
    return None
