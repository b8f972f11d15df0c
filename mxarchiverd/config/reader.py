"""A path-aware reader over the parsed YAML that collects every problem at once.

Each problem names its key path (`rooms[1].room_id: ...`) the way Synapse's
ConfigError does, so an operator can fix a whole file in one pass.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from mxarchiverd.config.model import Secret

T = TypeVar("T")
_MISSING = object()
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class Problems:
    """Accumulates (key path, message) pairs."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append((path, message))

    def __bool__(self) -> bool:
        return bool(self.items)


class Section:
    """One mapping of the YAML, read key by key; `finish()` reports the unknown keys."""

    def __init__(self, data: object, path: str, problems: Problems) -> None:
        self.path = path
        self.problems = problems
        self.seen: set[str] = set()
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            problems.add(path or "(top level)", f"expected a mapping, got {_kind(data)}")
            data = {}
        self.data: Mapping[str, Any] = data

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str) -> Any:
        self.seen.add(key)
        value = self.data.get(key, _MISSING)
        return _MISSING if value is None or value == "" else value

    def get(self, key: str, parse: Callable[[Any], T], default: T) -> T:
        value = self.raw(key)
        if value is _MISSING:
            return default
        try:
            return parse(value)
        except (ValueError, TypeError) as exc:
            self.problems.add(self.key_path(key), str(exc))
            return default

    def required(self, key: str, parse: Callable[[Any], T], what: str) -> T | None:
        if self.raw(key) is _MISSING:
            self.problems.add(self.key_path(key), f"required: {what}")
            return None
        return self.get(key, parse, None)

    def secret(self, key: str) -> Secret | None:
        """`key` inline, or `key_file` naming a file (systemd credentials) that holds it."""
        inline, file_name = self.raw(key), self.raw(f"{key}_file")
        if inline is not _MISSING and file_name is not _MISSING:
            self.problems.add(self.key_path(key), f"give either {key} or {key}_file, not both")
            return None
        if file_name is not _MISSING:
            return self._read_secret_file(key, str(file_name))
        if inline is _MISSING:
            return None
        if not isinstance(inline, (str, int)) or isinstance(inline, bool):
            self.problems.add(self.key_path(key), f"expected a string, got {_kind(inline)}")
            return None
        return Secret(str(inline))

    def _read_secret_file(self, key: str, file_name: str) -> Secret | None:
        try:
            text = Path(file_name).read_text(encoding="utf-8")
        except OSError as exc:
            self.problems.add(self.key_path(f"{key}_file"), f"cannot read {file_name}: {exc.strerror}")
            return None
        return Secret(text.rstrip("\r\n"))

    def child(self, key: str) -> Section:
        self.seen.add(key)
        return Section(self.data.get(key), self.key_path(key), self.problems)

    def items(self, key: str) -> list[tuple[str, Any]]:
        """The list under `key` as (path, item) pairs; anything but a list is a problem."""
        self.seen.add(key)
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problems.add(self.key_path(key), f"expected a list, got {_kind(value)}")
            return []
        return [(f"{self.key_path(key)}[{i}]", item) for i, item in enumerate(value)]

    def finish(self) -> None:
        for key in self.data:
            if key in self.seen or (key.endswith("_file") and key[:-5] in self.seen):
                continue
            hint = difflib.get_close_matches(str(key), sorted(self.seen), n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            self.problems.add(self.key_path(str(key)), f"unknown key{suffix}")


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
        raise ValueError(f"expected a string, got {_kind(value)}")
    return str(value)


def one_of(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return str(value)

    return parse


def _kind(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
