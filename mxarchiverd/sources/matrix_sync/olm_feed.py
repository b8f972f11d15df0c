"""What nio's Olm machine must see after each /sync, done the way sync_forever does it.

The archive reads the raw /sync JSON; nio never drives the loop. But end-to-end
encryption needs nio's state to follow the syncs: to-device messages (room keys
arrive there), device-list changes and one-time-key counts. So every /sync answer
is also parsed by nio and given to `receive_response`, and then the requests
sync_forever would make are made: queued to-device messages, key upload, key
query, key claim. A failure in either is logged and left for the next sync:
the events of the sync still reach the archive (invariant 4), and nio's
`should_*` flags stay set, so the next round retries.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from nio import SyncResponse

from mxarchiverd.sources.matrix_sync.errors import scrub
from mxarchiverd.sources.matrix_sync.transport import LoopRunner

log = logging.getLogger(__name__)


def feed_sync(runner: LoopRunner, nio: Any, raw: bytes, timeout_s: float,
              secrets: Iterable[str | None]) -> Any:
    """nio's SyncResponse (with what it could decrypt), or None if nio could not take it."""
    async def feed() -> Any:
        response = SyncResponse.from_dict(json.loads(raw))
        if not isinstance(response, SyncResponse):
            log.error("nio could not read this /sync answer (%s); E2EE state not updated",
                      type(response).__name__)
            return None
        await nio.receive_response(response)
        return response
    try:
        return runner.run(feed(), timeout_s, "nio sync handling")
    except Exception as exc:  # noqa: BLE001 - the raw events still reach the archive
        log.error("nio failed on a /sync answer (%s: %s); E2EE state not updated",
                  type(exc).__name__, scrub(str(exc), secrets))
        return None


def housekeeping(runner: LoopRunner, nio: Any, timeout_s: float,
                 secrets: Iterable[str | None]) -> list[str]:
    """Run sync_forever's follow-up requests; the problems, one line each."""
    secrets = list(secrets)
    calls: list[tuple[str, Callable[[], Any]]] = [("send_to_device", nio.send_to_device_messages)]
    if nio.should_upload_keys:
        calls.append(("keys_upload", nio.keys_upload))
    if nio.should_query_keys:
        calls.append(("keys_query", nio.keys_query))
    if nio.should_claim_keys:
        calls.append(("keys_claim", lambda: nio.keys_claim(nio.get_users_for_key_claiming())))
    return [p for name, call in calls if (p := _run(runner, name, call, timeout_s, secrets))]


def _run(runner: LoopRunner, name: str, call: Callable[[], Any], timeout_s: float,
         secrets: list[str | None]) -> str | None:
    try:
        result = runner.run(call(), timeout_s + 5.0, name)
    except Exception as exc:  # noqa: BLE001 - retried after the next sync
        problem = scrub(f"{name}: {type(exc).__name__}: {exc}", secrets)
    else:
        # nio answers failures with *Error response objects, not exceptions.
        errors = [r for r in (result if isinstance(result, list) else [result])
                  if type(r).__name__.endswith("Error")]
        if not errors:
            return None
        problem = scrub(f"{name}: {errors[0]}", secrets)
    log.warning("housekeeping %s", problem)
    return problem
