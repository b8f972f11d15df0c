"""Bot mode keeps secrets out of log lines even with every library logger at DEBUG."""
from __future__ import annotations

import logging

import nio  # noqa: F401  (creates nio's loggers, as bot mode does before protect_logs)
import pytest

from mxarchiverd.e2ee.log_hygiene import REDACTED, protect_logs
from tests.support.secret_guard import SecretGuard

TOKEN = "syt_Ym90_secret-access-token-1234"
PICKLE = "pickle-key-that-must-never-show"


def test_nio_response_dumps_are_capped_and_secrets_are_redacted(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    protect_logs(PICKLE, TOKEN)
    logging.getLogger("nio.responses").debug("Validating response schema %r: %s", {},
                                             {"access_token": TOKEN})
    logging.getLogger("nio.crypto.log").info("store opened with %s", PICKLE)
    logging.getLogger("mxarchiverd.e2ee.cross_signing").warning("token %s in a message", TOKEN)
    guard = SecretGuard()
    guard.add("token", TOKEN)
    guard.add("pickle key", PICKLE)
    assert not guard.leaks(caplog.records)
    lines = [r.getMessage() for r in caplog.records]
    assert not [line for line in lines if "Validating response schema" in line]
    assert f"store opened with {REDACTED}" in lines and f"token {REDACTED} in a message" in lines


def test_exception_text_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    protect_logs(TOKEN)
    try:
        raise RuntimeError(f"bad {TOKEN}")
    except RuntimeError:
        logging.getLogger("nio.client.async_client").exception("request failed")
    [record] = [r for r in caplog.records if r.name == "nio.client.async_client"]
    assert TOKEN not in (record.exc_text or "") and REDACTED in (record.exc_text or "")


def test_the_guard_itself_sees_a_leak() -> None:
    guard = SecretGuard()
    guard.add("token", TOKEN)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "leaked %s", (TOKEN,), None)
    assert guard.leaks([record])


def test_short_values_are_not_treated_as_secrets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    protect_logs("abc")
    logging.getLogger("nio.client").info("abc stays readable")
    assert "abc stays readable" in [r.getMessage() for r in caplog.records]


def test_nio_logs_no_line_per_event_but_its_warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    protect_logs()
    rooms = logging.getLogger("nio.rooms")
    rooms.info("Room !r:x handling event of type RoomMessageText")
    rooms.warning("something nio finds wrong")
    assert [r.getMessage() for r in caplog.records if r.name == "nio.rooms"] == ["something nio finds wrong"]
