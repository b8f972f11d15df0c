"""A path-aware reader over the parsed YAML that collects every problem at once.

Each problem names its key path (`rooms[1].room_id: ...`) the way Synapse's
ConfigError does, so an operator can fix a whole file in one pass.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from mxarchiverd.config.secret import Secret
from mxarchiverd.config.values import kind_of as _kind

T = TypeVar("T")
_MISSING = object()


class Problems:
    """Accumulates (key path, message) pairs, and the key paths the file sets."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        # Dotted paths of the keys given a value (`key_file` counts as `key`), so that
        # check-config can name the ones that have no effect in the configured mode.
        self.given: set[str] = set()

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
        if value is _MISSING or value is None or value == "":
            return _MISSING
        self.problems.given.add(self.key_path(key.removesuffix("_file") if key.endswith("_file") else key))
        return value

    def given(self, key: str) -> bool:
        """Whether the YAML sets the key (an empty value counts as not set)."""
        return self.raw(key) is not _MISSING

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
        self.problems.given.add(self.key_path(key))
        return [(f"{self.key_path(key)}[{i}]", item) for i, item in enumerate(value)]

    def finish(self) -> None:
        for key in self.data:
            if key in self.seen or (key.endswith("_file") and key[:-5] in self.seen):
                continue
            hint = difflib.get_close_matches(str(key), sorted(self.seen), n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            self.problems.add(self.key_path(str(key)), f"unknown key{suffix}")
