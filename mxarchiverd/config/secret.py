"""A secret config value: usable by the code, invisible to logs, errors and titles."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_URL_PASSWORD = re.compile(r"^(?P<head>[a-z][a-z0-9+.-]*://[^:/@]*:)(?P<password>[^@]*)(?P<tail>@.*)$", re.I)
_DSN_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.I)


@dataclass(frozen=True)
class Secret:
    """A value that must never reach a log, an error message or the process title."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def masked(self) -> str:
        """Show a URL or DSN with only its password hidden; anything else fully hidden."""
        url = _URL_PASSWORD.match(self.value)
        if url:
            return f"{url['head']}***{url['tail']}"
        if _DSN_PASSWORD.search(self.value):
            return _DSN_PASSWORD.sub(r"\1***", self.value)
        if "://" in self.value or "host=" in self.value:
            return self.value
        return "***"
