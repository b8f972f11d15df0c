"""How a setting is declared: once, with its parser, default, reload effect and meaning.

Every field of the config model (model.py) is made by `setting()` (a value) or
`section()` (a nested mapping). From that one declaration come:

- the YAML parser (sections.py walks the fields),
- the default (the dataclass default),
- what a reload does when it changes (supervisor/reload.py reads `effect`),
- in which source modes it has any effect (check-config warns about the others),
- the reference table in README.md (reference.py renders it; a test compares).

Effects of a changed key on reload:

| effect     | what happens                                                              |
|------------|---------------------------------------------------------------------------|
| hot        | sent to the running stages as a reconfigure message                       |
| restart    | the stages in `restarts` (which hold a connection or client built from it) restart |
| supervisor | timing the supervisor itself applies                                      |
| refuse     | topology only a full restart may change; the running value stays          |
| ignore     | not a setting (where the config came from)                                |
"""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

SOURCE_MODES: tuple[str, ...] = ("synapse_db", "matrix_sync")

# Facts of a configuration that a setting may need (Setting.needs; reference.facts()).
SUPABASE_STORAGE = "archive.storage_backend: supabase"
FILE_STORAGE = "archive.storage_backend: file"
OWN_ARCHIVE_URL_UNSET = "archive.database_url unset"

# Role groups that restart together (the pipeline stages restart as one anyway).
SOURCE_READERS = frozenset({"poller", "enricher"})
# The poller reads its cursors there; the lease keeper holds the lease there.
ARCHIVE_USERS = frozenset({"poller", "dbwriter", "uploader", "lease"})
UPLOADER = frozenset({"uploader"})
ENRICHER = frozenset({"enricher"})
POLLER = frozenset({"poller"})


class Effect(enum.Enum):
    HOT = "hot"
    RESTART = "restart"
    SUPERVISOR = "supervisor"
    REFUSE = "refuse"
    IGNORE = "ignore"


@dataclass(frozen=True)
class Setting:
    """The declaration behind one field (kept in the field's metadata)."""

    doc: str
    effect: Effect
    restarts: frozenset[str] = frozenset()
    # Parses one YAML value (raising ValueError with a message that follows the key path).
    parse: Callable[[Any], Any] | None = None
    # Parses each item of a YAML list into a tuple (event_writers, allowed_mime_types).
    each: Callable[[Any], Any] | None = None
    # A secret: accepts `<key>_file` too, and is held as config.Secret.
    secret: bool = False
    # Source modes in which the key has any effect.
    modes: tuple[str, ...] = SOURCE_MODES
    # Other facts of the configuration, one of which it needs to have an effect
    # (reference.FACTS: "archive.storage_backend: supabase", ...).
    needs: tuple[str, ...] = ()
    # Why it may have no effect, for check-config.
    idle: str = ""
    # The default as the reference shows it, where the dataclass default does not say it.
    shown_default: str | None = None
    # Computes the value from the rest of the config when the key is absent.
    derive: Callable[[Any], Any] | None = None
    # Reads the key itself, given the enclosing reader.Section and the key (rooms).
    read: Callable[[Any, str], Any] | None = None
    # A nested section: the dataclass type of its mapping.
    section: type | None = None


_KEY = "mxarchiverd"


def setting(default: Any, doc: str, effect: Effect, *, restarts: frozenset[str] = frozenset(),
            parse: Callable[[Any], Any] | None = None, each: Callable[[Any], Any] | None = None,
            secret: bool = False, modes: tuple[str, ...] = SOURCE_MODES, needs: tuple[str, ...] = (), idle: str = "",
            shown_default: str | None = None, derive: Callable[[Any], Any] | None = None,
            read: Callable[[Any, str], Any] | None = None) -> Any:
    """A dataclass field carrying its Setting."""
    declared = Setting(doc, effect, restarts, parse, each, secret, modes, needs, idle, shown_default, derive, read)
    return dataclasses.field(default=default, metadata={_KEY: declared})


def section(cls: type, doc: str) -> Any:
    """A nested section; each of its own fields says its effect."""
    declared = Setting(doc, Effect.IGNORE, section=cls)
    return dataclasses.field(default_factory=cls, metadata={_KEY: declared})


def declaration(field: dataclasses.Field[Any]) -> Setting | None:
    found = field.metadata.get(_KEY)
    return found if isinstance(found, Setting) else None


@dataclass(frozen=True)
class Declared:
    path: str                    # dotted key path: "processing.batch_size"
    field: dataclasses.Field[Any]
    setting: Setting


def walk(cls: type, prefix: str = "") -> Iterator[Declared]:
    """Every declared leaf setting of a config class, depth first, in declaration order."""
    for field in dataclasses.fields(cls):
        declared = declaration(field)
        if declared is None:
            continue
        path = f"{prefix}{field.name}"
        if declared.section is not None:
            yield from walk(declared.section, f"{path}.")
        else:
            yield Declared(path, field, declared)


def find(cls: type, path: str) -> Setting | None:
    """The declaration of a dotted key path (a leaf or a section), or None."""
    head, _, rest = path.partition(".")
    for field in dataclasses.fields(cls):
        declared = declaration(field)
        if field.name != head or declared is None:
            continue
        if not rest:
            return declared
        return find(declared.section, rest) if declared.section is not None else None
    return None
