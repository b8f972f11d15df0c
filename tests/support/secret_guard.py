"""Fail a test when any captured log line (nio's, aiohttp's, peewee's, ours) holds a secret."""
from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

_FORMAT = logging.Formatter("%(name)s %(levelname)s %(message)s")


class SecretGuard:
    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}

    def add(self, what: str, value: str | None) -> None:
        if value:
            self.secrets[what] = value

    def leaks(self, records: list[logging.LogRecord]) -> list[str]:
        found = []
        for record in records:
            line = _FORMAT.format(record)
            found += [f"{what} in {record.name}: {line[:200]}"
                      for what, value in self.secrets.items() if value in line]
        return found


@pytest.fixture
def secret_guard(caplog: pytest.LogCaptureFixture) -> Iterator[SecretGuard]:
    """Capture every logger at DEBUG for the test; at the end, no registered secret may appear."""
    guard = SecretGuard()
    caplog.set_level(logging.DEBUG)
    yield guard
    records = caplog.get_records("setup") + caplog.get_records("call")
    assert len(records) > 0, "nothing was logged: the guard would prove nothing"
    assert not guard.leaks(records), guard.leaks(records)
