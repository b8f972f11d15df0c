"""Secrets out of every text the daemon shows: STATUS=, status output, logs (pure).

redact() masks the config's secret values (secret_values() finds them), URL
passwords and key=value credentials; the log formatters (logs.py) pass every
line through it, as STATUS= does (supervisor/status.py).
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator
from typing import Any

from mxarchiverd.config import Secret

_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.I)
# libpq's key=value DSNs ("host=db password=..."); "key: value" is left alone,
# because problem texts read "matrix.password: expected a string".
_KEY_VALUE_SECRET = re.compile(r"(?P<head>\b(?:password|passwd|secret|token|key)\s*=\s*)('[^']*'|\S+)", re.I)


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
