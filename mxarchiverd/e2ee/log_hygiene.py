"""Keep secrets out of the journal when nio, aiohttp and peewee log at DEBUG.

nio logs every response body at DEBUG (``nio.responses``: "Validating response
schema"), the login answer with its access token included. So bot mode caps
that logger at INFO, and redacts every registered secret (pickle key, password,
access token, passphrases) from the records of the libraries' loggers and ours,
as a second line. Logger filters apply only to records made by that very
logger, so the filter goes on each existing logger of those trees; nio and
peewee create theirs at import time, which is before any of this runs.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

REDACTED = "***"
MIN_SECRET_CHARS = 6  # shorter values would redact ordinary words
# Loggers that dump whole request/response bodies at DEBUG.
BODY_DUMPERS = ("nio.responses",)
GUARDED_TREES = ("nio", "aiohttp", "peewee", "mxarchiverd", "asyncio")


class SecretRedactor(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def register(self, *values: str | None) -> None:
        with self._lock:
            self._secrets.update(v for v in values if v and len(v) >= MIN_SECRET_CHARS)

    def redact(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return True


REDACTOR = SecretRedactor()


def protect_logs(*secrets: str | None) -> SecretRedactor:
    """Register ``secrets`` and (again, idempotently) guard every library logger that exists now."""
    REDACTOR.register(*secrets)
    for name in BODY_DUMPERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < logging.INFO:
            logger.setLevel(logging.INFO)
    for logger in _guarded_loggers():
        if REDACTOR not in logger.filters:
            logger.addFilter(REDACTOR)
    return REDACTOR


def _guarded_loggers() -> Iterable[logging.Logger]:
    for name in list(logging.root.manager.loggerDict):
        if any(name == tree or name.startswith(tree + ".") for tree in GUARDED_TREES):
            logger = logging.getLogger(name)
            if isinstance(logger, logging.Logger):
                yield logger
