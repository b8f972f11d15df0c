"""Keep secrets out of the journal when nio, aiohttp and peewee log at DEBUG.

nio logs every response body at DEBUG (``nio.responses``: "Validating response
schema"), the login answer with its access token included. So bot mode caps
that logger at INFO, and, as a second line, redacts every registered secret
(pickle key, password, access token, passphrases) from every log record. The
redaction sits in the log record factory rather than in logger filters: a
logger filter sees only records of that very logger, and loggers created later
(or handlers added later, like a test's capture) would miss it.

nio also logs each timeline event it handles at INFO (``nio.rooms``): that logger
is capped at WARNING, so the journal holds no line per archived event.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

REDACTED = "***"
MIN_SECRET_CHARS = 6  # shorter values would redact ordinary words
# Loggers that dump whole request/response bodies at DEBUG.
BODY_DUMPERS = ("nio.responses",)
# Loggers that write a line per event at INFO ("Room ... handling event of type ...").
PER_EVENT_LOGGERS = ("nio.rooms",)


class SecretRedactor:
    def __init__(self) -> None:
        self._secrets: tuple[str, ...] = ()
        self._lock = threading.Lock()
        self._installed = False

    def register(self, *values: str | None) -> None:
        with self._lock:
            known = set(self._secrets) | {v for v in values if v and len(v) >= MIN_SECRET_CHARS}
            # Longest first, so a secret containing another is replaced whole.
            self._secrets = tuple(sorted(known, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def clean(self, record: logging.LogRecord) -> None:
        if not self._secrets:
            return
        message = record.getMessage()
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))

    def install(self) -> None:
        with self._lock:
            if self._installed:
                return
            self._installed = True
            previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            self.clean(record)
            return record

        logging.setLogRecordFactory(factory)


REDACTOR = SecretRedactor()


def protect_logs(*secrets: str | None) -> SecretRedactor:
    """Register ``secrets``; install the redaction and the body-dump cap (idempotent)."""
    REDACTOR.register(*secrets)
    REDACTOR.install()
    for name in BODY_DUMPERS:
        logger = logging.getLogger(name)
        if logger.level < logging.INFO:
            logger.setLevel(logging.INFO)
    for name in PER_EVENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return REDACTOR
