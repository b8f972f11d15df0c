"""What a homeserver's answer means for the sync stage (pure; no nio, no I/O).

Every request the bot makes ends in one of a few outcomes, and the stage reacts
to the outcome, not to HTTP details: wait (RateLimited), back off and stay
healthy (HomeserverUnavailable), log in again with the same device (SoftLogout,
handled inside the client), raise an alarm and stop without a restart loop
(LoggedOut and its kinds), or skip the room (Forbidden/NotInRoom).

Messages never carry secrets: the server's own error text is passed through
`scrub()` with the secrets the caller knows, because a server (or a proxy in
front of it) may echo a request back.
"""
from __future__ import annotations

import email.utils
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Used when a 429 names no delay at all; nio's own default is the same 5 s.
DEFAULT_RETRY_AFTER_S = 5.0
# A hostile or confused server must not park the bot for a day.
MAX_RETRY_AFTER_S = 3600.0
# Long enough to read, short enough that an echoed body cannot fill the journal.
MAX_SERVER_TEXT = 300
SCRUBBED = "<redacted>"


class MatrixError(Exception):
    """Base of every outcome below; `status` and `errcode` are the server's, if any."""

    def __init__(self, message: str, *, status: int | None = None,
                 errcode: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.errcode = errcode


class HomeserverUnavailable(MatrixError):
    """Connection refused, reset or timed out, a 5xx, or an unreadable answer: back off."""


class RateLimited(MatrixError):
    """429 / M_LIMIT_EXCEEDED; `retry_after` is the delay in seconds to wait first."""

    def __init__(self, message: str, retry_after: float, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class RequestFailed(MatrixError):
    """Any other 4xx: the request itself is wrong; retrying it unchanged will not help."""


class UnknownFilter(RequestFailed):
    """The server no longer knows the filter id we sent (upload it again)."""


class Forbidden(RequestFailed):
    """403 M_FORBIDDEN: the account may not do this (join refused, not an admin...)."""


class NotInRoom(Forbidden):
    """403 on a room the account is not (or no longer) a member of."""


class LoggedOut(MatrixError):
    """The account cannot act any more; the stage raises an alarm and exits without a loop."""


class SoftLogout(LoggedOut):
    """M_UNKNOWN_TOKEN with soft_logout: log in again with the same device id.

    The client does this itself when it has a password; it reaches the stage only
    when it cannot (access-token-only configuration).
    """


class HardLogout(LoggedOut):
    """M_UNKNOWN_TOKEN without soft_logout: the device is gone with its keys."""


class LoginRejected(LoggedOut):
    """The homeserver refused the login (wrong password, deactivated or locked account)."""


class Interrupted(Exception):
    """The caller's tick asked to stop while a request was in flight."""


@dataclass(frozen=True)
class Reply:
    """One HTTP answer, as the classifier needs it."""

    status: int
    headers: Mapping[str, str]
    body: Any  # parsed JSON, or None when the body was not JSON


def parse_retry_after_header(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return _bounded(float(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return _bounded(when.timestamp() - now)


def parse_retry_after_ms(value: Any) -> float | None:
    """Seconds from the body's `retry_after_ms`, ignoring anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return _bounded(value / 1000.0)


def _bounded(seconds: float) -> float | None:
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def retry_after(headers: Mapping[str, str], body: Any, now: float) -> float:
    """The delay a 429 asks for: the longer of header and body, else the default.

    The spec prefers the header (v1.10) but servers still send only the body
    field; waiting for the longer of the two honours both.
    """
    header = parse_retry_after_header(_header(headers, "Retry-After"), now)
    in_body = parse_retry_after_ms(body.get("retry_after_ms")) if isinstance(body, dict) else None
    delays = [d for d in (header, in_body) if d is not None]
    return max(delays) if delays else DEFAULT_RETRY_AFTER_S


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every known secret replaced, cut to a readable length."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, SCRUBBED)
    return text[:MAX_SERVER_TEXT]


def _error_fields(body: Any) -> tuple[str | None, str, bool]:
    if not isinstance(body, dict):
        return None, "", False
    errcode, error = body.get("errcode"), body.get("error")
    return (errcode if isinstance(errcode, str) else None, error if isinstance(error, str) else "",
            body.get("soft_logout") is True)


def classify(reply: Reply, what: str, *, now: float,
             secrets: Iterable[str | None] = ()) -> MatrixError | None:
    """None for a success, else the outcome to raise for `what` (e.g. "GET /sync")."""
    if 200 <= reply.status < 300:
        return None
    errcode, error, soft = _error_fields(reply.body)
    detail = scrub(f"{errcode or 'no errcode'}: {error}" if error else (errcode or "no error text"),
                   secrets)
    message = f"{what} -> HTTP {reply.status} ({detail})"
    kwargs: dict[str, Any] = {"status": reply.status, "errcode": errcode}
    if reply.status == 429 or errcode == "M_LIMIT_EXCEEDED":
        return RateLimited(message, retry_after(reply.headers, reply.body, now), **kwargs)
    if errcode == "M_UNKNOWN_TOKEN":
        return (SoftLogout if soft else HardLogout)(message, **kwargs)
    if errcode in ("M_USER_LOCKED", "M_USER_DEACTIVATED", "M_USER_SUSPENDED"):
        return LoginRejected(message, **kwargs)
    # A 401 without a Matrix errcode comes from something in front of the server.
    if reply.status >= 500 or reply.status < 400 or reply.status == 401 and errcode is None:
        return HomeserverUnavailable(message, **kwargs)
    if reply.status == 403:
        return (NotInRoom if _says_not_in_room(error) else Forbidden)(message, **kwargs)
    return RequestFailed(message, **kwargs)


def _says_not_in_room(error: str) -> bool:
    # Synapse: "User @x not in room !r", "User @x is not in room", "You are not a member".
    lowered = error.lower()
    return "not in room" in lowered or "not in the room" in lowered or "not a member" in lowered


def is_unknown_filter(error: MatrixError) -> bool:
    """True when a /sync failed because the server forgot (or never had) our filter id.

    Synapse answers 400 M_INVALID_PARAM "No such filter" / "Invalid filter ID";
    the spec allows 404 M_NOT_FOUND.
    """
    if not isinstance(error, RequestFailed) or isinstance(error, Forbidden):
        return False
    text = str(error).lower()
    return error.errcode in ("M_INVALID_PARAM", "M_NOT_FOUND") and "filter" in text
