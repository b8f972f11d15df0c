"""How every process of mxarchiverd logs: one line per record, secrets masked.

journald makes one entry per line of stderr, so a traceback printed as is
becomes twenty unrelated entries. Both formats keep a record on one line:

- text (the default): `LEVEL where: message`, a traceback appended with its
  line breaks written as the two characters \\n (`journalctl -o cat | sed 's/\\\\n/\\n/g'`
  unfolds it);
- json: one object per line with time, level, logger, process role, pid,
  message, the room_id and event_id a record was given (`extra=ids(...)`), and
  the traceback as one string.

Every line passes through redaction.redact with the config's secret values
(and URL passwords, key=value credentials) before it is written: a secret in
an exception message or a DSN quoted by a library never reaches the journal.
The level stays changeable on SIGHUP (the supervisor and the runner set it).
"""
from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

from mxarchiverd.redaction import redact

FORMATS = ("text", "json")
# The record attributes that name what a failure was about (logging's `extra`).
ID_FIELDS = ("room_id", "event_id")


def ids(room_id: str | None = None, event_id: str | None = None) -> dict[str, str]:
    """`extra=` for a log call about one room or event: json shows them as fields."""
    return {key: value for key, value in (("room_id", room_id), ("event_id", event_id)) if value}


def fold(text: str) -> str:
    """One line: line breaks become the two characters \\n."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")


class TextFormatter(logging.Formatter):
    def __init__(self, pattern: str, secrets: Iterable[str] = ()) -> None:
        super().__init__(pattern)
        self.secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return fold(redact(super().format(record), self.secrets))


class JsonFormatter(logging.Formatter):
    def __init__(self, role: str | None, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.role = role
        self.secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "role": self.role or "main", "pid": record.process,
            "message": redact(record.getMessage(), self.secrets),
        }
        for key in ID_FIELDS:
            value = getattr(record, key, None)
            if value:
                entry[key] = str(value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info), self.secrets)
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text, self.secrets)
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info), self.secrets)
        return json.dumps(entry, ensure_ascii=False)


def formatter(fmt: str, role: str | None, secrets: Iterable[str] = ()) -> logging.Formatter:
    """The formatter of `logging.format` for a child (role) or the main process (None)."""
    if fmt == "json":
        return JsonFormatter(role, secrets)
    where = f"mxarchiverd {role}[%(process)d] %(name)s" if role else "%(name)s"
    return TextFormatter(f"%(levelname)s {where}: %(message)s", secrets)


def configure(role: str | None, level: str, fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    """One stderr handler on the root logger, in place of plain stream handlers
    (logging.basicConfig's); handlers of other kinds (a test's capture) stay."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt, role, secrets))
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if type(h) is not logging.StreamHandler] + [handler]
    root.setLevel(level)


def batch_context(message: object) -> tuple[str, dict[str, str]]:
    """What a batch holds, for the log line of a stage that failed on it: its rooms and
    its first and last event ids (and `extra` with the first of each)."""
    items = getattr(message, "events", None) or getattr(message, "rows", None) or []
    if isinstance(items, list):
        events = [str(i.get("event_id")) for i in items if isinstance(i, dict)]
        rooms = sorted({str(i.get("room_id")) for i in items if isinstance(i, dict)})
    else:  # rows already encoded for the archive: their ids travel beside them
        events, rooms = [str(e) for e in getattr(items, "event_ids", [])], []
    if not events:
        return "an empty batch", {}
    span = events[0] if len(events) == 1 else f"{events[0]} .. {events[-1]}"
    where = f" in {', '.join(rooms[:5])}{' ...' if len(rooms) > 5 else ''}" if rooms else ""
    return f"{len(events)} event(s) {span}{where}", ids(rooms[0] if rooms else None, events[0])
