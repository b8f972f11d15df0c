"""Supabase Storage backend, speaking its REST and TUS APIs with httpx directly.

Why not the `storage3` client that `supabase` ships: its download() holds whole
objects in memory, its upsert option crashes when given a Python bool, it has no
resumable (TUS) upload for files past the standard limit, and its errors flatten
the status that tells a retryable failure from a refused file
(supabase-storage-facts.md). The few endpoints we need are simple over httpx, which
streams request bodies from an iterator and lets us read the real code from the body.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from mxarchiverd.sinks.storage import tus
from mxarchiverd.sinks.storage.base import (
    StorageError, check_file_size, error_from_response, missing_object, object_url, read_range, send,
    validate_bucket_name, validate_object_path,
)

log = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_CONTENT_TYPE = "application/octet-stream"
READ_PIECE = 1024 * 1024


def bucket_body(bucket: str, public: bool, file_size_limit: int | None,
                allowed_mime_types: Sequence[str]) -> dict[str, Any]:
    """The create-bucket request; an empty mime list means no restriction (null)."""
    return {"id": bucket, "name": bucket, "public": public, "file_size_limit": file_size_limit,
            "allowed_mime_types": list(allowed_mime_types) or None}


def bucket_differences(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """Settings of an existing bucket that differ from the configured ones, for a warning."""
    found: list[str] = []
    for key in ("public", "file_size_limit"):
        if existing.get(key) != wanted.get(key):
            found.append(f"{key}={existing.get(key)!r} (configured {wanted.get(key)!r})")
    if sorted(existing.get("allowed_mime_types") or []) != sorted(wanted.get("allowed_mime_types") or []):
        found.append(f"allowed_mime_types={existing.get('allowed_mime_types')!r} "
                     f"(configured {wanted.get('allowed_mime_types')!r})")
    return found


def use_resumable(size: int, standard_limit: int) -> bool:
    return size > standard_limit


class SupabaseStore:
    """An ObjectStore in one Supabase Storage bucket, authenticated with the service key."""

    def __init__(self, url: str, service_key: str, bucket: str, public: bool = False,
                 file_size_limit: int | None = None, allowed_mime_types: Sequence[str] = (),
                 standard_limit: int = 6 * MiB, chunk_size: int = 6 * MiB, timeout: float = 60.0,
                 tus_retries: int = 5, retry_delay: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"supabase url {url!r}: expected http:// or https://")
        if not service_key:
            raise ValueError("supabase service key is empty")
        self._url = url.rstrip("/")
        self._bucket = validate_bucket_name(bucket)
        self._public = public
        self._wanted = bucket_body(bucket, public, file_size_limit, allowed_mime_types)
        self._standard_limit = standard_limit
        self._client = _client(self._url, service_key, timeout)
        self._tus = tus.TusUploader(self._client, f"{self._url}/storage/v1/{tus.ENDPOINT}",
                                    chunk_size, tus_retries, retry_delay, sleep)

    def __repr__(self) -> str:
        return f"SupabaseStore(url={self._url!r}, bucket={self._bucket!r}, public={self._public})"

    def __enter__(self) -> SupabaseStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists; a concurrent creator winning is fine."""
        what = f"get bucket {self._bucket}"
        response = send(self._client, "GET", f"bucket/{quote(self._bucket, safe='')}", what)
        if response.is_success:
            self._warn_if_different(_json_or_none(response))
            return
        error = error_from_response(response.status_code, response.content, what)
        if error.code != "404":
            raise error
        self._create_bucket()

    def _create_bucket(self) -> None:
        what = f"create bucket {self._bucket}"
        response = send(self._client, "POST", "bucket", what, json=self._wanted)
        if response.is_success:
            log.info("created storage bucket %s (public=%s)", self._bucket, self._public)
            return
        error = error_from_response(response.status_code, response.content, what)
        if error.code != "409":
            raise error

    def _warn_if_different(self, existing: Any) -> None:
        differences = bucket_differences(existing if isinstance(existing, dict) else {}, self._wanted)
        if differences:
            log.warning("storage bucket %s exists with other settings, left unchanged: %s",
                        self._bucket, "; ".join(differences))

    def put_file(self, path: Path, object_path: str, content_type: str, size: int) -> None:
        """Upload (overwriting) from disk; bodies are streamed, never held whole."""
        validate_object_path(object_path)
        check_file_size(path, size)
        content_type = content_type or DEFAULT_CONTENT_TYPE
        if use_resumable(size, self._standard_limit):
            self._tus.upload(path, size, self._bucket, object_path, content_type)
        else:
            self._put_standard(path, object_path, content_type, size)

    def _put_standard(self, path: Path, object_path: str, content_type: str, size: int) -> None:
        what = f"upload {self._bucket}/{object_path}"
        headers = {"Content-Type": content_type, "Content-Length": str(size), "x-upsert": "true"}
        with open(path, "rb") as reader:
            response = send(self._client, "POST", self._object(object_path), what,
                            headers=headers, content=read_range(reader, 0, size))
        if not response.is_success:
            raise error_from_response(response.status_code, response.content, what)

    def delete(self, object_path: str) -> None:
        what = f"delete {self._bucket}/{object_path}"
        response = send(self._client, "DELETE", self._object(validate_object_path(object_path)), what)
        if response.is_success:
            return
        error = error_from_response(response.status_code, response.content, what)
        if error.code != "404":
            raise error

    def exists(self, object_path: str) -> bool:
        """HEAD has no body to carry the real code, so any 4xx reads as absent."""
        what = f"stat {self._bucket}/{object_path}"
        path = f"object/authenticated/{quote(self._bucket, safe='')}/{quote(validate_object_path(object_path))}"
        response = send(self._client, "HEAD", path, what)
        if response.is_success:
            return True
        if 400 <= response.status_code < 500:
            return False
        raise error_from_response(response.status_code, response.content, what)

    def object_url(self, object_path: str) -> str:
        return object_url(self._url, self._bucket, validate_object_path(object_path), self._public)

    def read_object(self, object_path: str) -> Iterator[bytes]:
        """GET of the authenticated object URL, streamed in pieces (verify --media reads
        files of any size back this way)."""
        what = f"read {self._bucket}/{object_path}"
        path = f"object/authenticated/{quote(self._bucket, safe='')}/{quote(validate_object_path(object_path))}"
        try:
            request = self._client.build_request("GET", path)
            response = self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise StorageError(0, "timeout", f"{what}: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise StorageError(0, "connection", f"{what}: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            body = response.read()
            response.close()
            error = error_from_response(response.status_code, body, what)
            if error.code == "404":  # Supabase: HTTP 400 with statusCode "404" in the body
                raise missing_object(what)
            raise error
        return _streamed(response, what)

    def close(self) -> None:
        self._client.close()

    def _object(self, object_path: str) -> str:
        return f"object/{quote(self._bucket, safe='')}/{quote(object_path)}"


def _streamed(response: httpx.Response, what: str) -> Iterator[bytes]:
    try:
        yield from response.iter_bytes(READ_PIECE)
    except httpx.TimeoutException as exc:
        raise StorageError(0, "timeout", f"{what}: {type(exc).__name__}") from exc
    except httpx.TransportError as exc:
        raise StorageError(0, "connection", f"{what}: {type(exc).__name__}: {exc}") from exc
    finally:
        response.close()


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _client(url: str, service_key: str, timeout: float) -> httpx.Client:
    # The key travels only in these default headers: never in URLs, messages or reprs.
    headers = {"Authorization": f"Bearer {service_key}", "apikey": service_key}
    return httpx.Client(base_url=f"{url}/storage/v1/", headers=headers,
                        timeout=httpx.Timeout(timeout), follow_redirects=False)
