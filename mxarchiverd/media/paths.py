"""Pure mapping from Matrix media references to Synapse's media_store and to storage keys.

Invariant 7 (DESIGN.md §3): no mxc URI may name a file outside the media store.
Values from events and from the database are checked component by component the
way Synapse's MediaFilePaths does (ASCII letters, digits and `_-.[]:`, never "",
"." or ".."), and the joined path is then normalised and resolved through
symlinks and must still lie inside the store (synapse-bridge-facts.md §5.1).

The returned path is checked, not locked: a symlink planted after the check is
the media store owner's doing, and readers should still open with O_NOFOLLOW.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from mxarchiverd.media.errors import MediaRefused

MAX_ID_LENGTH = 255
MXC_PREFIX = "mxc://"

_COMPONENT = re.compile(r"[A-Za-z0-9_\-.\[\]:]+")
_COMPONENT_CHARS = "ASCII letters, digits and _ - . [ ] :"
_DNS_NAME = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_IPV6_LITERAL = re.compile(r"\[[0-9A-Fa-f:.]{2,45}\]")
_PORT = re.compile(r"[0-9]{1,5}")
_THUMBNAIL_KIND = re.compile(r"thumbnail(?:-[1-9][0-9]{0,4}x[1-9][0-9]{0,4}-(?:crop|scale))?")
# Storage keys may not hold square brackets (supabase-storage-facts: S3-safe keys).
# Parentheses never occur in a valid server name or media id, so this stays one-to-one.
_KEY_SAFE = str.maketrans("[]", "()")


@dataclass(frozen=True)
class MxcUri:
    """A validated mxc://server_name/media_id; constructing one checks both parts."""

    server_name: str
    media_id: str

    def __post_init__(self) -> None:
        check_server_name(self.server_name, "server name")
        check_component(self.media_id, "media id")

    def __str__(self) -> str:
        return f"{MXC_PREFIX}{self.server_name}/{self.media_id}"


def parse_mxc(uri: object) -> MxcUri:
    """Split an mxc URI into server name and media id, refusing anything ambiguous."""
    if not isinstance(uri, str):
        raise MediaRefused(f"mxc uri: expected a string, got {type(uri).__name__}")
    where = f"mxc uri {_shown(uri)}"
    _check_uri_text(uri, where)
    parts = uri[len(MXC_PREFIX):].split("/")
    if len(parts) != 2:
        raise MediaRefused(f"{where}: expected mxc://<server_name>/<media_id>, "
                           f"found {len(parts) - 1} slashes after the scheme")
    server_name, media_id = parts
    check_server_name(server_name, f"{where}: server name")
    check_component(media_id, f"{where}: media id")
    return MxcUri(server_name, media_id)


def _check_uri_text(uri: str, where: str) -> None:
    if "\x00" in uri:
        raise MediaRefused(f"{where}: contains a NUL character")
    if not uri.startswith(MXC_PREFIX):
        raise MediaRefused(f"{where}: does not start with {MXC_PREFIX}")
    # Decoding would turn %2F into a separator after validation; Synapse never emits it.
    if "%" in uri:
        raise MediaRefused(f"{where}: percent-encoding is not allowed")


def check_component(value: str, what: str) -> None:
    """Refuse a path component Synapse would refuse, plus overlong ones."""
    if value == "":
        raise MediaRefused(f"{what} is empty")
    if value in (".", ".."):
        raise MediaRefused(f"{what} is {value!r}, a relative path component")
    if len(value) > MAX_ID_LENGTH:
        raise MediaRefused(f"{what} is {len(value)} characters long (limit {MAX_ID_LENGTH})")
    if not _COMPONENT.fullmatch(value):
        bad = next(c for c in value if not _COMPONENT.fullmatch(c))
        raise MediaRefused(f"{what} {_shown(value)} contains {bad!r}; allowed: {_COMPONENT_CHARS}")


def check_server_name(value: str, what: str) -> None:
    """A Matrix server name: DNS name, IPv4 or [IPv6], with an optional :port."""
    check_component(value, what)
    host, port = _split_host_port(value)
    if not (_DNS_NAME.fullmatch(host) or _IPV6_LITERAL.fullmatch(host)):
        raise MediaRefused(f"{what} {_shown(value)} is not a hostname, IPv4 or [IPv6] literal")
    if port is not None and not (_PORT.fullmatch(port) and 0 < int(port) < 65536):
        raise MediaRefused(f"{what} {_shown(value)} has an invalid port {port!r}")


def _split_host_port(value: str) -> tuple[str, str | None]:
    if value.startswith("["):
        host, bracket, rest = value.partition("]")
        port = rest[1:] if rest.startswith(":") else None
        if rest and port is None:
            return value, None  # junk after "]": fails the host check
        return host + bracket, port
    host, colon, port = value.partition(":")
    return host, (port if colon else None)


def local_media_path(store: Path, media_id: str) -> Path:
    """Synapse's local original: local_content/AB/CD/REST (facts §5.1)."""
    return _inside(store, ["local_content", *_split_id(media_id, "media id")])


def remote_media_path(store: Path, server_name: str, filesystem_id: str) -> Path:
    """Synapse's cached remote original, keyed by filesystem_id, not the remote media id."""
    check_server_name(server_name, "remote media server name")
    return _inside(store, ["remote_content", server_name, *_split_id(filesystem_id, "filesystem id")])


def _split_id(value: str, what: str) -> list[str]:
    check_component(value, what)
    pieces = [value[0:2], value[2:4], value[4:]]
    # Each piece is a directory or file name of its own: "ab..cdef" would give "..".
    for label, piece in zip(("characters 1-2", "characters 3-4", "characters 5-"), pieces):
        check_component(piece, f"{what} {_shown(value)} {label}")
    return pieces


def _inside(store: Path, components: list[str]) -> Path:
    base = os.path.abspath(store)
    joined = os.path.normpath(os.path.join(base, *components))
    if not _within(joined, base):
        raise MediaRefused(f"path {joined!r} escapes the media store {base!r}")
    real_base = os.path.realpath(base)
    real = os.path.realpath(joined)
    if not _within(real, real_base):
        raise MediaRefused(f"path {joined!r} resolves to {real!r}, outside the media store {real_base!r}")
    return Path(joined)


def _within(path: str, base: str) -> bool:
    return os.path.commonpath([path, base]) == base


def storage_object_path(mxc: MxcUri, kind: str = "original") -> str:
    """The deterministic storage key of a media file, so a retry overwrites the same object.

    Originals: "{server_name}/{media_id}". Thumbnails: "{server_name}/{media_id}@{kind}"
    with kind "thumbnail" or "thumbnail-<w>x<h>-<crop|scale>"; "@" never occurs in a
    media id, so a thumbnail key cannot collide with an original. Square brackets (IPv6
    server names) become parentheses because storage keys may not hold brackets.
    """
    base = f"{mxc.server_name}/{mxc.media_id}".translate(_KEY_SAFE)
    if kind == "original":
        return base
    if _THUMBNAIL_KIND.fullmatch(kind):
        return f"{base}@{kind}"
    raise ValueError(f"storage object kind {kind!r}: expected 'original', 'thumbnail' "
                     "or 'thumbnail-<w>x<h>-<crop|scale>'")


def _shown(value: str) -> str:
    # Bounded and escaped, so a hostile value cannot flood or forge a log line.
    return repr(value) if len(value) <= 80 else repr(value[:80]) + "..."
