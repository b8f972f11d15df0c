"""Canonical JSON (spec appendices, "Signing JSON"): the bytes that Matrix signatures cover.

The spec's own Python snippet (``json.dumps(sort_keys=True, ...)``) fails one of its
test vectors: ``1e10`` must come out as ``10000000000``, and ``-0`` as ``0``. So
values are checked and normalised first (integral floats become ints, anything
else that is not an integer in the safe range is refused), then dumped.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MAX_SAFE_INT = 2**53 - 1


class CanonicalJsonError(ValueError):
    """A value that canonical JSON cannot represent; the message names where it is."""


def canonical_json(value: Any) -> bytes:
    """Encode ``value`` as canonical JSON bytes (sorted keys, no spaces, UTF-8)."""
    text = json.dumps(_normalised(value, "$"), ensure_ascii=False, separators=(",", ":"),
                      sort_keys=True, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalJsonError(f"lone surrogate in a string (position {exc.start})") from None


def _normalised(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return _checked_int(value, where)
    if isinstance(value, float):
        return _integral_float(value, where)
    if isinstance(value, Mapping):
        return {_key(k, where): _normalised(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalised(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise CanonicalJsonError(f"{where}: {type(value).__name__} is not a JSON value")


def _key(key: object, where: str) -> str:
    if not isinstance(key, str):
        raise CanonicalJsonError(f"{where}: object key {key!r} is not a string")
    return key


def _checked_int(value: int, where: str) -> int:
    if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
        raise CanonicalJsonError(f"{where}: integer {value} is outside [-(2**53)+1, (2**53)-1]")
    return value


def _integral_float(value: float, where: str) -> int:
    # A JSON parser reads 1e10 and -0 as floats; both are integers in canonical form.
    if not value.is_integer():
        raise CanonicalJsonError(f"{where}: {value!r} is not an integer (floats are not allowed)")
    return _checked_int(int(value), where)
