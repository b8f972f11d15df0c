"""TUS 1.0.0 resumable uploads to Supabase Storage (supabase-storage-facts.md).

POST creates the upload, PATCHes send one chunk each, read from the file one chunk
at a time. A PATCH that dies (timeout, reset, 5xx, offset conflict) is followed by
HEAD, which says how much the server kept, and the upload goes on from there; the
number of such interruptions per upload is bounded.
"""
from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import httpx

from mxarchiverd.sinks.storage.base import StorageError, error_from_response, read_range, send

log = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
MIN_CHUNK = 5 * 1024 * 1024  # every chunk but the last; MiB, the stricter reading of "5 MB"
ENDPOINT = "upload/resumable"
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_=-]+")
_MAX_BACKOFF = 30.0


class UploadGone(StorageError):
    """The server no longer knows the upload (expired or removed): start a new one."""


def encode_metadata(pairs: Mapping[str, str]) -> str:
    """Upload-Metadata: comma-separated `key base64(value)` pairs."""
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode('ascii')}"
                    for key, value in pairs.items())


def validate_chunk_size(chunk_size: int) -> int:
    if chunk_size < MIN_CHUNK:
        raise ValueError(f"chunk_size {chunk_size}: resumable chunks must be at least {MIN_CHUNK} bytes")
    return chunk_size


def next_chunk_length(offset: int, size: int, chunk_size: int) -> int:
    return min(chunk_size, size - offset)


def parse_offset(value: str | None, what: str) -> int:
    if value is None or not value.isdigit():
        raise StorageError(0, "protocol", f"{what}: bad Upload-Offset {value!r}", retryable=True)
    return int(value)


def upload_url_from_location(location: str | None, endpoint_url: str) -> str:
    """Address the upload at our own endpoint, by the id that ends the Location.

    The server builds Location from its own idea of host and prefix (wrong behind a
    proxy that does not forward them), and following a foreign host would hand it
    our service key; the id alone is enough.
    """
    upload_id = urlsplit(location or "").path.rstrip("/").rpartition("/")[2]
    if not _UPLOAD_ID.fullmatch(upload_id):
        raise StorageError(0, "protocol", f"resumable upload created with an unusable Location {location!r}")
    return f"{endpoint_url.rstrip('/')}/{upload_id}"


def is_resumable(error: StorageError) -> bool:
    """Worth a HEAD and another PATCH: lost connection, server trouble, or offset conflict."""
    return not isinstance(error, UploadGone) and (error.retryable or error.code == "409")


class TusUploader:
    """Sends one file as a resumable upload through an authenticated httpx client."""

    def __init__(self, client: httpx.Client, endpoint_url: str, chunk_size: int, retries: int = 5,
                 retry_delay: float = 1.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._endpoint_url = endpoint_url
        self._chunk_size = validate_chunk_size(chunk_size)
        self._retries = retries
        self._retry_delay = retry_delay
        self._sleep = sleep

    def upload(self, path: Path, size: int, bucket: str, object_path: str, content_type: str) -> None:
        metadata = {"bucketName": bucket, "objectName": object_path, "contentType": content_type}
        url = self._create(size, metadata)
        with open(path, "rb") as reader:
            self._send_all(url, reader, size, object_path)

    def _create(self, size: int, metadata: Mapping[str, str]) -> str:
        headers = _headers({"Upload-Length": str(size), "Upload-Metadata": encode_metadata(metadata)})
        response = send(self._client, "POST", self._endpoint_url, "create resumable upload",
                        headers=headers)
        if response.status_code != 201:
            raise error_from_response(response.status_code, response.content, "create resumable upload")
        return upload_url_from_location(response.headers.get("Location"), self._endpoint_url)

    def _send_all(self, url: str, reader: IO[bytes], size: int, object_path: str) -> None:
        offset: int | None = 0
        failures = 0
        while offset is None or offset < size:
            try:
                offset = self._head(url) if offset is None else self._patch(url, reader, offset, size)
            except StorageError as error:
                failures += 1
                if not is_resumable(error) or failures > self._retries:
                    raise
                log.info("resumable upload of %s interrupted (%s); asking where to resume", object_path, error)
                self._sleep(min(self._retry_delay * failures, _MAX_BACKOFF))
                offset = None

    def _patch(self, url: str, reader: IO[bytes], offset: int, size: int) -> int:
        length = next_chunk_length(offset, size, self._chunk_size)
        headers = _headers({"Upload-Offset": str(offset), "Content-Length": str(length),
                            "Content-Type": "application/offset+octet-stream"})
        response = send(self._client, "PATCH", url, "resumable upload chunk",
                        headers=headers, content=read_range(reader, offset, length))
        if response.status_code != 204:
            raise error_from_response(response.status_code, response.content, "resumable upload chunk")
        new_offset = parse_offset(response.headers.get("Upload-Offset"), "resumable upload chunk")
        if new_offset <= offset:
            raise StorageError(0, "protocol", f"chunk at {offset} made no progress", retryable=True)
        return new_offset

    def _head(self, url: str) -> int:
        response = send(self._client, "HEAD", url, "resumable upload status", headers=_headers({}))
        if response.status_code in (404, 410):
            raise UploadGone(response.status_code, str(response.status_code),
                             "resumable upload expired or unknown; start a new one", retryable=True)
        if response.status_code != 200:
            raise error_from_response(response.status_code, response.content, "resumable upload status")
        return parse_offset(response.headers.get("Upload-Offset"), "resumable upload status")


def _headers(extra: Mapping[str, str]) -> dict[str, str]:
    # x-upsert on every request: Supabase re-checks upload rights on each PATCH.
    return {"Tus-Resumable": TUS_VERSION, "x-upsert": "true", **extra}
