"""Parsers for single YAML values; each raises ValueError with a message meant to follow a key path.

For example `processing.batch_size: expected a number of at least 1, got 0`.
Sizes, durations and mime patterns are in units.py.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mxarchiverd.config.units import parse_duration

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
# Room versions 1-11 use !opaque:server; version 12 ids are a bare hash (no :server).
_ROOM_ID = re.compile(r"^![A-Za-z0-9._~+/=-]+(:[A-Za-z0-9.\-\[\]]+(:\d{1,5})?)?$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def kind_of(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def as_int(minimum: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(f"expected a whole number, got {value!r}")
        try:
            number = int(str(value).strip()) if not isinstance(value, int) else value
        except ValueError:
            raise ValueError(f"expected a whole number, got {value!r}") from None
        if number < minimum:
            raise ValueError(f"expected a number of at least {minimum}, got {number}")
        return number

    return parse


def as_str(value: Any) -> str:
    if isinstance(value, (Mapping, list)):
        raise ValueError(f"expected a string, got {kind_of(value)}")
    return str(value)


def one_of(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return str(value)

    return parse


def log_level(value: Any) -> str:
    return one_of(*LOG_LEVELS)(str(value).upper())


def room_id(value: Any) -> str:
    text = str(value)
    if not _ROOM_ID.match(text):
        raise ValueError(f'expected a room id starting with "!" (like "!abc:example.org" or a version 12 "!hash"), got {value!r}')
    return text


def http_url(value: Any) -> str:
    text = str(value).strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", text):
        raise ValueError(f"expected an http(s) URL, got {value!r}")
    return text


def bucket_name(value: Any) -> str:
    text = str(value)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", text):
        raise ValueError(f"expected a bucket name of letters, digits, '-', '_' or '.', got {value!r}")
    return text


def absolute_path(value: Any) -> Path:
    path = Path(str(value))
    if not path.is_absolute():
        raise ValueError(f"expected an absolute path, got {value!r}")
    return path


def positive_duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"expected a duration above zero, got {value!r}")
    return seconds


def milliseconds_duration(value: Any) -> float:
    """Seed 000 writes sync_timeout in milliseconds (30000), as /sync does."""
    return parse_duration(value, bare_unit="ms")


_LISTEN = re.compile(r"^(?:(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):)?(?P<port>\d{1,5})$")


def listen_address(value: Any) -> str:
    """host:port to listen on; a bare port listens on 127.0.0.1 only (metrics are not for the world)."""
    text = str(value).strip()
    match = _LISTEN.match(text)
    port = int(match["port"]) if match else 0
    if not match or not 1 <= port <= 65535:
        raise ValueError(f'expected a port or host:port such as "9464" or "127.0.0.1:9464", got {value!r}')
    return f"{match['host'] or '127.0.0.1'}:{port}"


def split_listen(address: str) -> tuple[str, int]:
    """("::1", 9464) from "[::1]:9464"."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)
