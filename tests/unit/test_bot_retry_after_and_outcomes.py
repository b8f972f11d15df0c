"""How the bot reads a homeserver's answer: Retry-After, retry_after_ms, and the outcome kinds."""
from __future__ import annotations

import email.utils

import pytest

from mxarchiverd.sources.matrix_sync.errors import (
    DEFAULT_RETRY_AFTER_S, MAX_RETRY_AFTER_S, Forbidden, HardLogout, HomeserverUnavailable,
    LoginRejected, NotInRoom, RateLimited, Reply, RequestFailed, SoftLogout, classify,
    is_unknown_filter, parse_retry_after_header, parse_retry_after_ms, retry_after, scrub,
)

NOW = 1_800_000_000.0


@pytest.mark.parametrize("value, seconds", [
    ("3", 3.0), (" 12 ", 12.0), ("0", 0.0), ("999999", MAX_RETRY_AFTER_S),
    (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
    (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),  # a date in the past: retry now
    (None, None), ("", None), ("soon", None), ("-5", None), ("1.5", None),
    ("Wed, 99 Foo 2026 25:61:00 GMT", None),
])
def test_retry_after_header(value, seconds) -> None:
    assert parse_retry_after_header(value, NOW) == seconds


@pytest.mark.parametrize("value, seconds", [
    (2500, 2.5), (0, 0.0), (1.5, 0.0015), (-100, 0.0), (10**12, MAX_RETRY_AFTER_S),
    (True, None), ("2000", None), (None, None), (float("nan"), None), ([1], None),
])
def test_retry_after_ms(value, seconds) -> None:
    assert parse_retry_after_ms(value) == seconds


def test_the_longer_of_header_and_body_wins_and_the_default_fills_in() -> None:
    assert retry_after({"Retry-After": "4"}, {"retry_after_ms": 1000}, NOW) == 4.0
    assert retry_after({"retry-after": "1"}, {"retry_after_ms": 7000}, NOW) == 7.0
    assert retry_after({}, {"retry_after_ms": 1200}, NOW) == 1.2
    assert retry_after({"Retry-After": "2"}, "not json", NOW) == 2.0
    assert retry_after({}, {}, NOW) == DEFAULT_RETRY_AFTER_S
    assert retry_after({"Retry-After": "junk"}, {"retry_after_ms": "junk"}, NOW) == DEFAULT_RETRY_AFTER_S


def outcome(status: int, body=None, headers=None, secrets=()):
    return classify(Reply(status, headers or {}, body), "GET /sync", now=NOW, secrets=secrets)


def test_success_is_no_outcome() -> None:
    assert outcome(200, {"next_batch": "s1"}) is None


@pytest.mark.parametrize("status, body, kind", [
    (429, {"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests"}, RateLimited),
    (400, {"errcode": "M_LIMIT_EXCEEDED"}, RateLimited),  # errcode alone is enough
    (429, None, RateLimited),                            # a proxy's 429 without JSON
    (401, {"errcode": "M_UNKNOWN_TOKEN", "soft_logout": True}, SoftLogout),
    (401, {"errcode": "M_UNKNOWN_TOKEN", "soft_logout": False}, HardLogout),
    (401, {"errcode": "M_UNKNOWN_TOKEN"}, HardLogout),
    (401, {"errcode": "M_UNKNOWN_TOKEN", "soft_logout": "yes"}, HardLogout),  # only true is true
    (401, {"errcode": "M_USER_LOCKED", "soft_logout": True}, LoginRejected),
    (403, {"errcode": "M_USER_DEACTIVATED"}, LoginRejected),
    (401, None, HomeserverUnavailable),                  # not a Matrix answer
    (500, {"errcode": "M_UNKNOWN"}, HomeserverUnavailable),
    (502, None, HomeserverUnavailable),
    (503, "<html>", HomeserverUnavailable),
    (403, {"errcode": "M_FORBIDDEN", "error": "You are not invited to this room."}, Forbidden),
    (403, {"errcode": "M_FORBIDDEN", "error": "User @b:x not in room !r:x"}, NotInRoom),
    (403, {"errcode": "M_FORBIDDEN", "error": "User @b:x is not a member of !r:x"}, NotInRoom),
    (404, {"errcode": "M_NOT_FOUND"}, RequestFailed),
    (404, None, RequestFailed),
    (400, {"errcode": "M_INVALID_PARAM", "error": "No such filter"}, RequestFailed),
    (400, ["not", "an", "object"], RequestFailed),
])
def test_outcome_kinds(status, body, kind) -> None:
    error = outcome(status, body)
    assert type(error) is kind
    assert error.status == status


def test_rate_limit_carries_the_delay() -> None:
    error = outcome(429, {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 1500}, {"Retry-After": "2"})
    assert isinstance(error, RateLimited) and error.retry_after == 2.0


def test_messages_never_show_secrets_and_stay_short() -> None:
    token, password = "syt_c2VjcmV0_abcdefghijklmnop", "hunter2-long"
    body = {"errcode": "M_FORBIDDEN", "error": f"echo: token={token} pw={password} " + "x" * 2000}
    message = str(outcome(403, body, secrets=[token, password, None, ""]))
    assert token not in message and password not in message and "<redacted>" in message
    assert len(message) < 400
    assert scrub("abc", ["ab"]) == "abc"  # too short to be a secret: never blank out ordinary text


def test_unknown_filter_is_recognised() -> None:
    assert is_unknown_filter(outcome(400, {"errcode": "M_INVALID_PARAM", "error": "No such filter"}))
    assert is_unknown_filter(outcome(400, {"errcode": "M_INVALID_PARAM", "error": "Invalid filter ID"}))
    assert is_unknown_filter(outcome(404, {"errcode": "M_NOT_FOUND", "error": "Filter not found"}))
    assert not is_unknown_filter(outcome(400, {"errcode": "M_INVALID_PARAM", "error": "bad since"}))
    assert not is_unknown_filter(outcome(403, {"errcode": "M_FORBIDDEN", "error": "filter"}))
    assert not is_unknown_filter(outcome(502, None))
