"""The object-store interface the uploader writes through, its error, and shared rules.

Everything here except `send` is pure: error classification, key validation and
URL building are decided without I/O and unit-tested on their own.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable
from urllib.parse import quote

import httpx

MAX_KEY_LENGTH = 1024
_PIECE = 64 * 1024
# Supabase Storage accepts S3-safe key characters only (its isValidKey rule).
_KEY = re.compile(r"[A-Za-z0-9_/!\-.*'() &$@=;:+,?]+")
_BUCKET = re.compile(r"[A-Za-z0-9_!\-.*'() &$@=;:+,?]{1,100}")
# No HTTP answer at all: the request may or may not have reached the server.
TRANSPORT_CODES = frozenset({"timeout", "connection"})
_RETRYABLE_4XX = frozenset({408, 423, 429})


class StorageError(Exception):
    """A failed storage call. `status` is the HTTP status (0: no response), `code` the
    real code: Supabase puts it in the body's statusCode and often answers HTTP 400."""

    def __init__(self, status: int, code: str, message: str, retryable: bool | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.retryable = is_retryable(status, code) if retryable is None else retryable
        # All four in args, so the error survives pickling between processes.
        super().__init__(status, code, message, self.retryable)

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status else "no response"
        return f"storage error {self.code} ({where}): {self.message}"


def effective_status(status: int, code: str) -> int:
    """The status that counts: the body's numeric code if there is one, else HTTP's."""
    return int(code) if code.isdigit() else status


def is_retryable(status: int, code: str) -> bool:
    """Server trouble, throttling and lost connections pass; the request itself was fine."""
    if code in TRANSPORT_CODES or status >= 500:
        return True
    effective = effective_status(status, code)
    return effective >= 500 or effective in _RETRYABLE_4XX


def error_from_response(status: int, body: bytes, what: str) -> StorageError:
    """Read Supabase's `{"statusCode","error","message"}` body; plain text (TUS) also works."""
    parsed = _json_object(body)
    code = str(parsed.get("statusCode", status)) if parsed else str(status)
    return StorageError(status, code, f"{what}: {_describe(parsed, body)}")


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _describe(parsed: dict[str, Any] | None, body: bytes) -> str:
    if parsed:
        parts = [str(parsed[k]) for k in ("error", "message") if parsed.get(k)]
        text = ": ".join(dict.fromkeys(parts)) or json.dumps(parsed)
    else:
        text = body.decode("utf-8", "replace").strip() or "(empty body)"
    printable = "".join(c if c.isprintable() else " " for c in text)
    return printable[:300]


def validate_object_path(object_path: str) -> str:
    """A storage key Supabase accepts and that cannot climb out of a directory."""
    if not isinstance(object_path, str) or not object_path:
        raise ValueError(f"object path: expected a non-empty string, got {object_path!r}")
    if len(object_path) > MAX_KEY_LENGTH:
        raise ValueError(f"object path is {len(object_path)} characters long (limit {MAX_KEY_LENGTH})")
    if not _KEY.fullmatch(object_path):
        bad = next(c for c in object_path if not _KEY.fullmatch(c))
        raise ValueError(f"object path {object_path[:80]!r} contains {bad!r}, not allowed in storage keys")
    if any(segment in ("", ".", "..") for segment in object_path.split("/")):
        raise ValueError(f"object path {object_path[:80]!r} has an empty, '.' or '..' segment")
    return object_path


def validate_bucket_name(bucket: str) -> str:
    if not isinstance(bucket, str) or not _BUCKET.fullmatch(bucket):
        raise ValueError(f"bucket name {bucket!r}: expected 1-100 S3-safe characters, no '/'")
    return bucket


def object_url(base_url: str, bucket: str, object_path: str, public: bool) -> str:
    """The public URL in a public bucket, else the authenticated (service-key) URL."""
    kind = "object/public" if public else "object"
    return f"{base_url.rstrip('/')}/storage/v1/{kind}/{quote(bucket, safe='')}/{quote(object_path)}"


def check_file_size(path: Path, size: int) -> None:
    """The declared size must be the file's: it decides the upload protocol and length."""
    actual = path.stat().st_size
    if actual != size:
        raise ValueError(f"{path}: declared size {size} but the file has {actual} bytes")


def read_range(reader: IO[bytes], offset: int, length: int) -> Iterator[bytes]:
    """Yield `length` bytes from `offset` in 64 KiB pieces, so a body never sits in memory."""
    reader.seek(offset)
    remaining = length
    while remaining:
        piece = reader.read(min(_PIECE, remaining))
        if not piece:
            raise ValueError(f"file ended {remaining} bytes before the declared length")
        remaining -= len(piece)
        yield piece


def send(client: httpx.Client, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
    """One HTTP call; a lost connection or timeout becomes a retryable StorageError."""
    try:
        return client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise StorageError(0, "timeout", f"{what}: {type(exc).__name__}") from exc
    except httpx.TransportError as exc:
        raise StorageError(0, "connection", f"{what}: {type(exc).__name__}: {exc}") from exc


@runtime_checkable
class ObjectStore(Protocol):
    """Where media files go. Writes are idempotent: the same path is overwritten (upsert)."""

    def ensure_bucket(self) -> None: ...

    def put_file(self, path: Path, object_path: str, content_type: str, size: int) -> None: ...

    def delete(self, object_path: str) -> None: ...

    def exists(self, object_path: str) -> bool: ...

    def read_object(self, object_path: str) -> Iterator[bytes]:
        """The object's bytes in pieces, streamed (never whole in memory); a missing
        object raises StorageError with code "404"."""
        ...

    def object_url(self, object_path: str) -> str: ...

    def close(self) -> None: ...


def missing_object(what: str) -> StorageError:
    return StorageError(404, "404", f"{what}: object not found", retryable=False)


def digest_object(store: ObjectStore, object_path: str) -> tuple[int, str]:
    """(size, sha256 hex) of a stored object, read back streamed."""
    digest = hashlib.sha256()
    size = 0
    for piece in store.read_object(object_path):
        digest.update(piece)
        size += len(piece)
    return size, digest.hexdigest()
