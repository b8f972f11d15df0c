"""Parsers for the human-friendly values in the YAML: sizes, durations, mime patterns.

Each parser raises ValueError with a message meant to follow a key path, e.g.
`processing.max_file_size: expected a size like "100MB", got "lots"`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Binary multiples, as Synapse reads `max_upload_size: 50M`: operators of this
# daemon know that convention, and "100MB" then means the same in both files.
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kb": 1024, "kib": 1024,
    "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
    "g": 1024**3, "gb": 1024**3, "gib": 1024**3,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")

_MIME_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/(\*|[a-z0-9][a-z0-9!#$&^_.+-]*)$")


def parse_size(value: object) -> int:
    """Bytes from 100, "100", "100MB", "1.5GiB" (K/M/G are binary multiples)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like \"100MB\", got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected a non-negative size, got {value}")
        return value
    match = _SIZE_RE.match(str(value))
    unit = match.group(2).lower() if match else None
    if not match or unit not in _SIZE_UNITS:
        raise ValueError(f'expected a size like "100MB", got {value!r}')
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_duration(value: object, *, bare_unit: str = "s") -> float:
    """Seconds from 5, "5", "500ms", "2m", "7d". A bare number is in `bare_unit`."""
    if isinstance(value, bool):
        raise ValueError(f'expected a duration like "5s", got {value!r}')
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"expected a non-negative duration, got {value}")
        return float(value) * _DURATION_UNITS[bare_unit]
    match = _DURATION_RE.match(str(value))
    if not match:
        raise ValueError(f'expected a duration like "5s" or "500ms", got {value!r}')
    unit = match.group(2) if match.group(2) is not None else bare_unit
    return float(match.group(1)) * _DURATION_UNITS[unit]


@dataclass(frozen=True)
class MimePattern:
    """A mime type or a wildcard such as image/* (as Supabase buckets accept)."""

    type: str
    subtype: str

    @classmethod
    def parse(cls, value: object) -> MimePattern:
        text = str(value).strip().lower()
        if not isinstance(value, str) or not _MIME_RE.match(text):
            raise ValueError(f'expected a mime type like "image/png" or "image/*", got {value!r}')
        type_, subtype = text.split("/", 1)
        return cls(type_, subtype)

    def matches(self, mime_type: str) -> bool:
        """True if `mime_type` (parameters such as ;charset= ignored) fits the pattern."""
        essence = mime_type.split(";", 1)[0].strip().lower()
        type_, _, subtype = essence.partition("/")
        return type_ == self.type and (self.subtype == "*" or subtype == self.subtype)

    def __str__(self) -> str:
        return f"{self.type}/{self.subtype}"


def mime_allowed(patterns: tuple[MimePattern, ...], mime_type: str) -> bool:
    """An empty pattern list allows everything, as an unset bucket restriction does."""
    return not patterns or any(p.matches(mime_type) for p in patterns)
