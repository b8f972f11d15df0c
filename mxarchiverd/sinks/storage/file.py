"""A local-directory ObjectStore: objects at root/bucket/object_path.

For archives kept on the host and for tests. A write goes to a temp file in the
target's directory and is renamed over the target, so a reader (or a crash) only
ever sees the old file or the complete new one. The content type is not kept:
archived_media rows carry it.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from mxarchiverd.sinks.storage.base import (
    StorageError, check_file_size, missing_object, validate_bucket_name, validate_object_path,
)

# Conditions that a later attempt can outlive (space freed, device back).
_READ_PIECE = 1024 * 1024
_TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.EBUSY, errno.EINTR})


def jailed_target(base: str, object_path: str) -> Path:
    """The file for `object_path` under `base`, refusing any escape, also via symlinks."""
    validate_object_path(object_path)
    target = os.path.normpath(os.path.join(base, object_path))
    if os.path.commonpath([target, base]) != base:
        raise ValueError(f"object path {object_path!r} escapes the store directory {base!r}")
    real_base = os.path.realpath(base)
    if os.path.commonpath([os.path.realpath(target), real_base]) != real_base:
        raise ValueError(f"object path {object_path!r} resolves outside the store directory {base!r}")
    return Path(target)


def io_error(action: str, object_path: str, exc: OSError) -> StorageError:
    transient = exc.errno in _TRANSIENT_ERRNOS
    return StorageError(0, "io", f"{action} {object_path}: {exc.strerror or exc}", retryable=transient)


class FileStore:
    def __init__(self, root: Path, bucket: str) -> None:
        self._bucket = validate_bucket_name(bucket)
        self._base = os.path.join(os.path.abspath(root), bucket)

    def __repr__(self) -> str:
        return f"FileStore(base={self._base!r})"

    def ensure_bucket(self) -> None:
        os.makedirs(self._base, exist_ok=True)

    def put_file(self, path: Path, object_path: str, content_type: str, size: int) -> None:
        target = jailed_target(self._base, object_path)
        check_file_size(path, size)
        with open(path, "rb") as reader:
            try:
                _replace_atomically(reader, target)
            except OSError as exc:
                raise io_error("write", object_path, exc) from exc

    def delete(self, object_path: str) -> None:
        target = jailed_target(self._base, object_path)
        try:
            target.unlink(missing_ok=True)
        except OSError as exc:
            raise io_error("delete", object_path, exc) from exc

    def exists(self, object_path: str) -> bool:
        return jailed_target(self._base, object_path).is_file()

    def object_url(self, object_path: str) -> str:
        return jailed_target(self._base, object_path).as_uri()

    def read_object(self, object_path: str) -> Iterator[bytes]:
        target = jailed_target(self._base, object_path)
        try:
            reader = open(target, "rb")
        except FileNotFoundError:
            raise missing_object(f"read {object_path}") from None
        except OSError as exc:
            raise io_error("read", object_path, exc) from exc
        return _pieces(reader, object_path)

    def close(self) -> None:
        """Nothing held open between calls."""

    def object_file(self, object_path: str) -> Path:
        """Where an object lives on disk (for tests and for reading back)."""
        return jailed_target(self._base, object_path)


def _pieces(reader: IO[bytes], object_path: str) -> Iterator[bytes]:
    with reader:
        while True:
            try:
                piece = reader.read(_READ_PIECE)
            except OSError as exc:
                raise io_error("read", object_path, exc) from exc
            if not piece:
                return
            yield piece


def _replace_atomically(reader: IO[bytes], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".upload-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as writer:
            shutil.copyfileobj(reader, writer, 1024 * 1024)
            writer.flush()
            os.fsync(writer.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
