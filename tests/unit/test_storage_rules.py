"""The storage layer's pure decisions: error codes, retryability, keys, URLs, TUS details."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from mxarchiverd.config.model import ArchiveConfig, Config, Secret, StorageConfig, SupabaseConfig
from mxarchiverd.sinks.storage import FileStore, ObjectStore, SupabaseStore, open_store
from mxarchiverd.sinks.storage import tus
from mxarchiverd.sinks.storage.base import (
    StorageError, error_from_response, is_retryable, object_url, validate_object_path,
)
from mxarchiverd.sinks.storage.supabase import bucket_body, bucket_differences, use_resumable

KEY = "eyJhbGciOiJIUzI1NiJ9.service-role-secret.sig"


@pytest.mark.parametrize(("status", "code", "retryable"), [
    (400, "413", False), (400, "415", False), (400, "403", False), (400, "400", False),
    (400, "409", False), (400, "404", False), (401, "401", False),
    (500, "500", True), (400, "503", True), (400, "544", True), (503, "503", True),
    (502, "502", True), (429, "429", True), (400, "423", True),
    (0, "timeout", True), (0, "connection", True), (0, "protocol", False),
])
def test_retryable_follows_the_real_code(status: int, code: str, retryable: bool) -> None:
    assert is_retryable(status, code) is retryable


def test_code_comes_from_the_json_body() -> None:
    body = json.dumps({"statusCode": "413", "error": "Payload too large",
                       "message": "The object exceeded the maximum allowed size"}).encode()
    error = error_from_response(400, body, "upload media/x")
    assert (error.status, error.code, error.retryable) == (400, "413", False)
    assert "upload media/x: Payload too large: The object exceeded" in str(error)


@pytest.mark.parametrize(("status", "body", "code"), [
    (413, b"Maximum size exceeded", "413"),  # TUS answers in plain text
    (502, b"", "502"),
    (400, b"[1, 2]", "400"),
    (401, b'{"message": "Invalid API key"}', "401"),
])
def test_code_falls_back_to_http_status(status: int, body: bytes, code: str) -> None:
    assert error_from_response(status, body, "x").code == code


def test_error_messages_are_bounded_and_printable() -> None:
    error = error_from_response(500, b"\x1b[31m" + b"x" * 5000, "x")
    assert "\x1b" not in error.message and len(error.message) < 400


def test_storage_error_survives_pickling() -> None:
    error = StorageError(0, "io", "disk full", retryable=False)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.status, copy.code, copy.message, copy.retryable) == (0, "io", "disk full", False)
    gone = pickle.loads(pickle.dumps(tus.UploadGone(404, "404", "gone", True)))
    assert isinstance(gone, tus.UploadGone) and gone.retryable


@pytest.mark.parametrize("path", ["a", "example.org/AbCd", "(::1):8448/x@thumbnail-1x1-crop", "a b/c'd!*"])
def test_valid_object_paths(path: str) -> None:
    assert validate_object_path(path) == path


@pytest.mark.parametrize(("path", "reason"), [
    ("", "non-empty"), ("/abs", "empty, '.' or '..'"), ("a//b", "empty"), ("a/", "empty"),
    ("a/../b", "'..'"), ("..", "'..'"), ("a/./b", "'.'"), ("a[b]", "contains '['"),
    ("é", "contains 'é'"), ("a\x00", "contains '\\x00'"), ("a%2F", "contains '%'"),
    ("a" * 1025, "1025 characters"),
])
def test_invalid_object_paths(path: str, reason: str) -> None:
    with pytest.raises(ValueError) as refused:
        validate_object_path(path)
    assert reason in str(refused.value)


def test_object_urls() -> None:
    assert object_url("https://p.supabase.co/", "media", "a:1/b(c)", True) == \
        "https://p.supabase.co/storage/v1/object/public/media/a%3A1/b%28c%29"
    assert object_url("https://p.supabase.co", "media", "x/y", False) == \
        "https://p.supabase.co/storage/v1/object/media/x/y"


def test_tus_metadata_is_base64_pairs() -> None:
    header = tus.encode_metadata({"bucketName": "media", "objectName": "a/b é"})
    assert header == "bucketName bWVkaWE=,objectName YS9iIMOp"


def test_tus_chunking() -> None:
    assert tus.next_chunk_length(0, 20, 6) == 6
    assert tus.next_chunk_length(18, 20, 6) == 2
    assert tus.validate_chunk_size(tus.MIN_CHUNK) == tus.MIN_CHUNK
    with pytest.raises(ValueError, match="at least"):
        tus.validate_chunk_size(tus.MIN_CHUNK - 1)


@pytest.mark.parametrize("value", [None, "", "-1", "1.5", "abc"])
def test_bad_upload_offset_is_a_protocol_error(value: str | None) -> None:
    with pytest.raises(StorageError) as error:
        tus.parse_offset(value, "HEAD")
    assert error.value.code == "protocol"


def test_upload_url_is_rebuilt_on_our_own_endpoint() -> None:
    ours = "http://127.0.0.1:9/storage/v1/upload/resumable"
    assert tus.upload_url_from_location("https://evil.example/upload/resumable/QUJD", ours) == f"{ours}/QUJD"
    assert tus.upload_url_from_location("/upload/resumable/QUJD/", ours) == f"{ours}/QUJD"
    for bad in (None, "", "https://x/upload/resumable/a%2Fb", "https://x/"):
        with pytest.raises(StorageError, match="unusable Location"):
            tus.upload_url_from_location(bad, ours)


def test_which_tus_failures_are_resumed() -> None:
    assert tus.is_resumable(StorageError(0, "connection", "reset"))
    assert tus.is_resumable(StorageError(500, "500", "boom"))
    assert tus.is_resumable(StorageError(409, "409", "offset conflict"))
    assert not tus.is_resumable(StorageError(413, "413", "too large"))
    assert not tus.is_resumable(tus.UploadGone(404, "404", "gone", True))


def test_bucket_body_and_differences() -> None:
    wanted = bucket_body("media", False, None, [])
    assert wanted == {"id": "media", "name": "media", "public": False, "file_size_limit": None,
                      "allowed_mime_types": None}
    assert bucket_differences({**wanted, "allowed_mime_types": []}, wanted) == []
    found = bucket_differences({**wanted, "public": True, "allowed_mime_types": ["image/*"]}, wanted)
    assert found[0].startswith("public=True") and "allowed_mime_types" in found[1]


def test_protocol_choice() -> None:
    assert not use_resumable(6 * 1024 * 1024, 6 * 1024 * 1024)
    assert use_resumable(6 * 1024 * 1024 + 1, 6 * 1024 * 1024)


def test_supabase_store_never_shows_its_key() -> None:
    store = SupabaseStore("https://p.supabase.co", KEY, "media")
    try:
        assert KEY not in repr(store) and KEY not in str(vars(store).get("_wanted"))
        assert isinstance(store, ObjectStore)
    finally:
        store.close()


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"url": "ftp://x"}, "expected http"), ({"service_key": ""}, "service key is empty"),
    ({"bucket": "a/b"}, "bucket name"), ({"chunk_size": 1024}, "at least"),
])
def test_supabase_store_refuses_bad_settings(kwargs: dict[str, object], reason: str) -> None:
    args: dict[str, object] = {"url": "https://p.supabase.co", "service_key": KEY, "bucket": "media", **kwargs}
    with pytest.raises(ValueError, match=reason) as refused:
        SupabaseStore(**args)  # type: ignore[arg-type]
    assert KEY not in str(refused.value)


def test_open_store_follows_the_config(tmp_path: Path) -> None:
    file_config = Config(archive=ArchiveConfig(storage_backend="file", storage_path=tmp_path))
    assert isinstance(open_store(file_config), FileStore)
    supabase = SupabaseConfig(url="https://p.supabase.co", service_role_key=Secret(KEY),
                              storage=StorageConfig(bucket="archive", public_bucket=True))
    store = open_store(Config(supabase=supabase, archive=ArchiveConfig(storage_backend="supabase")))
    try:
        assert isinstance(store, SupabaseStore)
        assert store.object_url("a/b") == "https://p.supabase.co/storage/v1/object/public/archive/a/b"
    finally:
        store.close()
    with pytest.raises(ValueError, match="service_role_key"):
        open_store(Config(archive=ArchiveConfig(storage_backend="supabase")))
