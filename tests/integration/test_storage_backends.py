"""Storage backends end to end: SupabaseStore against the storage double over a real
socket (supabase-storage-facts.md), and FileStore on a real directory."""
from __future__ import annotations

import gc
import hashlib
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import httpx
import pytest

from mxarchiverd.sinks.storage import FileStore, ObjectStore, StorageError, SupabaseStore
from tests.support.storage_double import Bucket, StorageDouble

MiB = 1024 * 1024
BUCKET = "media"


def make_file(path: Path, size: int) -> str:
    """Write `size` random bytes in 1 MiB blocks (never whole in memory); return sha256 hex."""
    digest = hashlib.sha256()
    with open(path, "wb") as writer:
        for start in range(0, size, MiB):
            block = os.urandom(min(MiB, size - start))
            digest.update(block)
            writer.write(block)
    return digest.hexdigest()


def new_store(double: StorageDouble, **kwargs: object) -> SupabaseStore:
    options: dict[str, object] = {"retry_delay": 0.0, "timeout": 10.0, **kwargs}
    return SupabaseStore(double.url, double.service_key, BUCKET, **options)  # type: ignore[arg-type]


@pytest.fixture
def store(storage_double: StorageDouble) -> Iterator[SupabaseStore]:
    with new_store(storage_double) as opened:
        opened.ensure_bucket()
        yield opened


def upload(store: ObjectStore, tmp_path: Path, name: str, size: int, content_type: str = "image/png") -> str:
    path = tmp_path / f"upload-{uuid.uuid4().hex}.bin"
    sha = make_file(path, size)
    store.put_file(path, name, content_type, size)
    return sha


# ---- buckets -------------------------------------------------------------------------
def test_ensure_bucket_creates_it_with_the_configured_settings(storage_double: StorageDouble) -> None:
    with new_store(storage_double, file_size_limit=100 * MiB, allowed_mime_types=["image/*"]) as store:
        store.ensure_bucket()
    assert storage_double.bucket(BUCKET) == Bucket(BUCKET, False, 100 * MiB, ["image/*"])
    assert storage_double.count("bucket_create") == 1


def test_ensure_bucket_leaves_an_existing_bucket_alone(storage_double: StorageDouble,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    storage_double.create_bucket(Bucket(BUCKET, public=True))
    with new_store(storage_double) as store:
        store.ensure_bucket()
        store.ensure_bucket()
    assert storage_double.count("bucket_create") == 0
    assert "public=True (configured False)" in caplog.text


def test_ensure_bucket_tolerates_a_concurrent_creator(storage_double: StorageDouble) -> None:
    storage_double.create_bucket(Bucket(BUCKET))
    storage_double.fail_next(1, status=404, kinds={"bucket_get"})  # it did not exist when we looked
    with new_store(storage_double) as store:
        store.ensure_bucket()
    assert storage_double.count("bucket_create") == 1


def test_a_wrong_key_is_refused_without_showing_it(storage_double: StorageDouble) -> None:
    wrong = storage_double.anon_key[:-4] + "xxxx"
    with SupabaseStore(storage_double.url, wrong, BUCKET) as store, pytest.raises(StorageError) as error:
        store.ensure_bucket()
    assert error.value.code == "401" and not error.value.retryable
    assert wrong not in str(error.value) and wrong not in repr(error.value)


# ---- uploads -------------------------------------------------------------------------
def test_small_file_is_one_request_and_lands_byte_identical(store: SupabaseStore, tmp_path: Path,
                                                           storage_double: StorageDouble) -> None:
    sha = upload(store, tmp_path, "example.org/small", 100_000)
    assert storage_double.object_bytes_sha256(BUCKET, "example.org/small") == sha
    assert storage_double.objects(BUCKET)["example.org/small"].content_type == "image/png"
    assert storage_double.count("object_post") == 1 and storage_double.count("tus_create") == 0
    assert store.exists("example.org/small") and not store.exists("example.org/other")


def test_reupload_overwrites(store: SupabaseStore, tmp_path: Path, storage_double: StorageDouble) -> None:
    upload(store, tmp_path, "example.org/again", 1000)
    second = upload(store, tmp_path, "example.org/again", 2000)
    assert storage_double.object_bytes_sha256(BUCKET, "example.org/again") == second
    assert storage_double.objects(BUCKET)["example.org/again"].size == 2000


def test_twenty_mb_goes_resumable_and_lands_byte_identical(store: SupabaseStore, tmp_path: Path,
                                                          storage_double: StorageDouble) -> None:
    sha = upload(store, tmp_path, "example.org/big", 20 * MiB)
    assert storage_double.object_bytes_sha256(BUCKET, "example.org/big") == sha
    assert storage_double.count("tus_create") == 1 and storage_double.count("tus_patch") == 4
    assert storage_double.count("object_post") == 0


def test_resumable_reupload_overwrites(store: SupabaseStore, tmp_path: Path,
                                       storage_double: StorageDouble) -> None:
    upload(store, tmp_path, "example.org/big", 7 * MiB)
    sha = upload(store, tmp_path, "example.org/big", 8 * MiB)
    assert storage_double.object_bytes_sha256(BUCKET, "example.org/big") == sha


@pytest.mark.parametrize("size", [2 * MiB, 20 * MiB], ids=["standard", "resumable"])
def test_too_large_is_a_final_413(storage_double: StorageDouble, tmp_path: Path, size: int) -> None:
    with new_store(storage_double, file_size_limit=MiB) as store:
        store.ensure_bucket()
        with pytest.raises(StorageError) as error:
            upload(store, tmp_path, "example.org/huge", size)
    assert error.value.code == "413" and not error.value.retryable


@pytest.mark.parametrize("size", [1000, 7 * MiB], ids=["standard", "resumable"])
def test_refused_mime_type_is_a_final_415(storage_double: StorageDouble, tmp_path: Path, size: int) -> None:
    with new_store(storage_double, allowed_mime_types=["image/*"]) as store:
        store.ensure_bucket()
        upload(store, tmp_path, "example.org/ok", 1000, "image/jpeg; charset=binary")
        with pytest.raises(StorageError) as error:
            upload(store, tmp_path, "example.org/json", size, "application/json")
    assert error.value.code == "415" and not error.value.retryable
    assert "application/json is not supported" in str(error.value)


def test_server_errors_are_retryable(store: SupabaseStore, tmp_path: Path,
                                     storage_double: StorageDouble) -> None:
    storage_double.fail_next(1, status=500, kinds={"object_post"})
    with pytest.raises(StorageError) as error:
        upload(store, tmp_path, "example.org/x", 1000)
    assert (error.value.status, error.value.code, error.value.retryable) == (500, "500", True)
    storage_double.fail_next(1, status=503, kinds={"object_post"})  # Supabase: HTTP 400, "503" in body
    with pytest.raises(StorageError) as error:
        upload(store, tmp_path, "example.org/x", 1000)
    assert (error.value.status, error.value.code, error.value.retryable) == (400, "503", True)
    sha = upload(store, tmp_path, "example.org/x", 1000)
    assert storage_double.object_bytes_sha256(BUCKET, "example.org/x") == sha


@pytest.mark.parametrize("mode", ["close", "503"])
def test_an_unreachable_server_is_retryable(store: SupabaseStore, tmp_path: Path,
                                            storage_double: StorageDouble, mode: str) -> None:
    storage_double.down(mode)
    with pytest.raises(StorageError) as error:
        upload(store, tmp_path, "example.org/x", 1000)
    assert error.value.retryable
    storage_double.up()
    upload(store, tmp_path, "example.org/x", 1000)


def test_a_timeout_is_retryable(storage_double: StorageDouble, tmp_path: Path) -> None:
    storage_double.create_bucket(Bucket(BUCKET))
    storage_double.delay(2.0)
    with new_store(storage_double, timeout=0.3) as store, pytest.raises(StorageError) as error:
        upload(store, tmp_path, "example.org/slow", 1000)
    assert (error.value.code, error.value.retryable) == ("timeout", True)


def test_reset_mid_resumable_upload_resumes_via_head(store: SupabaseStore, tmp_path: Path,
                                                     storage_double: StorageDouble) -> None:
    storage_double.reset_mid_upload_next()
    sha = upload(store, tmp_path, "example.org/big", 20 * MiB)
    assert storage_double.object_bytes_sha256(BUCKET, "example.org/big") == sha
    assert storage_double.count("tus_head") == 1
    # The first PATCH died after 3 MiB, which the server kept: 17 MiB left in 3 chunks.
    assert storage_double.count("tus_patch") == 1 + 3
    assert storage_double.count("tus_create") == 1


def test_failed_chunk_is_resent_after_head(store: SupabaseStore, tmp_path: Path,
                                           storage_double: StorageDouble) -> None:
    storage_double.fail_next(2, status=500, kinds={"tus_patch"})
    sha = upload(store, tmp_path, "example.org/big", 13 * MiB)
    assert storage_double.object_bytes_sha256(BUCKET, "example.org/big") == sha
    assert (storage_double.count("tus_head"), storage_double.count("tus_patch")) == (2, 2 + 3)


def test_resuming_is_bounded(storage_double: StorageDouble, tmp_path: Path) -> None:
    storage_double.fail_next(100, status=500, kinds={"tus_patch"})
    with new_store(storage_double, tus_retries=2) as store:
        store.ensure_bucket()
        with pytest.raises(StorageError) as error:
            upload(store, tmp_path, "example.org/big", 7 * MiB)
    assert error.value.retryable and storage_double.count("tus_patch") == 3


def test_an_expired_upload_asks_for_a_fresh_start(store: SupabaseStore, tmp_path: Path,
                                                  storage_double: StorageDouble) -> None:
    storage_double.fail_next(1, status=500, kinds={"tus_patch"})
    storage_double.fail_next(1, status=404, kinds={"tus_head"})
    with pytest.raises(StorageError, match="expired") as error:
        upload(store, tmp_path, "example.org/big", 7 * MiB)
    assert error.value.retryable


def test_bad_input_is_refused_before_any_request(store: SupabaseStore, tmp_path: Path,
                                                 storage_double: StorageDouble) -> None:
    before = storage_double.counts
    with pytest.raises(ValueError, match="contains '\\['"):
        upload(store, tmp_path, "a[b]", 10)
    path = tmp_path / "f"
    path.write_bytes(b"12345")
    with pytest.raises(ValueError, match="declared size 6 but the file has 5 bytes"):
        store.put_file(path, "example.org/f", "text/plain", 6)
    assert storage_double.counts == before


# ---- memory --------------------------------------------------------------------------
def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Highest resident set size seen while the block runs (sampled every few ms)."""

    def __enter__(self) -> PeakRss:
        gc.collect()
        self.baseline = self.peak = _rss()
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._done.set()
        self._sampler.join()
        self.peak = max(self.peak, _rss())


@pytest.mark.parametrize("standard_limit", [6 * MiB, 100 * MiB], ids=["resumable", "standard"])
def test_sixty_mb_upload_does_not_grow_memory(storage_double: StorageDouble, tmp_path: Path,
                                              standard_limit: int) -> None:
    storage_double.standard_limit = 100 * MiB  # the double's own limit; lets 60 MB go in one request
    path = tmp_path / "sixty.bin"
    sha = make_file(path, 60 * MiB)
    with new_store(storage_double, standard_limit=standard_limit) as store:
        store.ensure_bucket()
        upload(store, tmp_path, "example.org/warmup", 7 * MiB)  # imports, pools, first buffers
        with PeakRss() as rss:
            store.put_file(path, "example.org/sixty", "video/mp4", 60 * MiB)
    assert storage_double.object_bytes_sha256(BUCKET, "example.org/sixty") == sha
    grown = (rss.peak - rss.baseline) / MiB
    print(f"RSS grew by {grown:.1f} MiB")
    assert grown < 20, f"RSS grew by {grown:.1f} MiB"


# ---- URLs and deletion ---------------------------------------------------------------
def test_public_bucket_urls_serve_the_object(storage_double: StorageDouble, tmp_path: Path) -> None:
    with new_store(storage_double, public=True) as store:
        store.ensure_bucket()
        sha = upload(store, tmp_path, "example.org/pic", 5000)
        url = store.object_url("example.org/pic")
    assert url == f"{storage_double.url}/storage/v1/object/public/{BUCKET}/example.org/pic"
    response = httpx.get(url)
    assert response.status_code == 200 and hashlib.sha256(response.content).hexdigest() == sha


def test_private_bucket_urls_need_the_key(store: SupabaseStore, tmp_path: Path,
                                          storage_double: StorageDouble) -> None:
    sha = upload(store, tmp_path, "example.org/pic", 5000)
    url = store.object_url("example.org/pic")
    assert url == f"{storage_double.url}/storage/v1/object/{BUCKET}/example.org/pic"
    public = httpx.get(url.replace("/object/", "/object/public/"))
    assert public.status_code == 400 and public.json()["statusCode"] == "404"
    keyed = {"Authorization": f"Bearer {storage_double.service_key}", "apikey": storage_double.service_key}
    assert hashlib.sha256(httpx.get(url, headers=keyed).content).hexdigest() == sha


def test_delete_is_idempotent(store: SupabaseStore, tmp_path: Path, storage_double: StorageDouble) -> None:
    upload(store, tmp_path, "example.org/gone", 10)
    store.delete("example.org/gone")
    store.delete("example.org/gone")
    assert storage_double.objects(BUCKET) == {}


# ---- the double itself, where others rely on its fidelity ----------------------------
def _raw(double: StorageDouble, key: str | None = None) -> httpx.Client:
    key = double.service_key if key is None else key
    return httpx.Client(base_url=f"{double.url}/storage/v1/",
                        headers={"Authorization": f"Bearer {key}", "apikey": key})


def test_double_follows_the_facts_on_upsert_and_content_type(storage_double: StorageDouble) -> None:
    storage_double.create_bucket(Bucket(BUCKET))
    with _raw(storage_double) as client:
        assert client.post(f"object/{BUCKET}/a", content=b"1").status_code == 200
        duplicate = client.post(f"object/{BUCKET}/a", content=b"2", headers={"x-upsert": "false"})
        assert duplicate.status_code == 400
        assert duplicate.json() == {"statusCode": "409", "error": "Duplicate",
                                    "message": "The resource already exists"}
        assert client.put(f"object/{BUCKET}/a", content=b"3").status_code == 200
        assert client.put(f"object/{BUCKET}/new", content=b"4").status_code == 200
        assert client.get(f"object/{BUCKET}/a").content == b"3"
        missing = client.get(f"object/{BUCKET}/nothing")
        assert (missing.status_code, missing.json()["statusCode"]) == (400, "404")
    assert storage_double.objects(BUCKET)["a"].content_type == "text/plain;charset=UTF-8"


def test_double_auth_rules(storage_double: StorageDouble) -> None:
    storage_double.create_bucket(Bucket(BUCKET))
    with _raw(storage_double, storage_double.anon_key) as anon:
        refused = anon.post(f"object/{BUCKET}/a", content=b"1")
        assert refused.status_code == 400
        assert refused.json()["statusCode"] == "403"
        assert refused.json()["message"] == "new row violates row-level security policy"
    no_auth = httpx.get(f"{storage_double.url}/storage/v1/bucket/{BUCKET}",
                        headers={"apikey": storage_double.service_key})
    assert no_auth.status_code == 400
    bad_jwt = httpx.get(f"{storage_double.url}/storage/v1/bucket/{BUCKET}",
                        headers={"apikey": storage_double.service_key, "Authorization": "Bearer nope"})
    assert (bad_jwt.status_code, bad_jwt.json()["statusCode"]) == (400, "403")
    with _raw(storage_double) as client:
        created = client.post("bucket", json={"id": BUCKET, "name": BUCKET})
        assert (created.status_code, created.json()["statusCode"]) == (400, "409")
        unknown = client.get("bucket/none")
        assert unknown.json() == {"statusCode": "404", "error": "Bucket not found", "message": "Bucket not found"}


def test_double_enforces_the_tus_rules(storage_double: StorageDouble) -> None:
    storage_double.create_bucket(Bucket(BUCKET))
    headers = {"Tus-Resumable": "1.0.0", "x-upsert": "true"}
    meta = "bucketName bWVkaWE=,objectName YQ=="  # media, a
    with _raw(storage_double) as client:
        created = client.post("upload/resumable", headers={**headers, "Upload-Length": str(12 * MiB),
                                                            "Upload-Metadata": meta})
        location = created.headers["Location"]
        patch = {**headers, "Content-Type": "application/offset+octet-stream"}
        small = client.patch(location, content=b"x" * MiB, headers={**patch, "Upload-Offset": "0"})
        assert small.status_code == 400, "a non-final chunk under 5 MiB is refused"
        wrong = client.patch(location, content=b"x" * (6 * MiB), headers={**patch, "Upload-Offset": "5"})
        assert wrong.status_code == 409
        first = client.patch(location, content=b"x" * (6 * MiB), headers={**patch, "Upload-Offset": "0"})
        assert first.headers["Upload-Offset"] == str(6 * MiB)
        assert client.head(location, headers=headers).headers["Upload-Offset"] == str(6 * MiB)
        last = client.patch(location, content=b"y" * (6 * MiB), headers={**patch, "Upload-Offset": str(6 * MiB)})
        assert last.status_code == 204
        again = client.post("upload/resumable", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "1",
                                                         "Upload-Metadata": meta})
        assert again.status_code == 409, "without x-upsert an existing object is not replaced"
    assert storage_double.objects(BUCKET)["a"].size == 12 * MiB


# ---- FileStore -----------------------------------------------------------------------
def test_file_store_round_trip(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "archive", BUCKET)
    assert isinstance(store, ObjectStore)
    store.ensure_bucket()
    upload(store, tmp_path, "example.org/a", 100)
    sha = upload(store, tmp_path, "example.org/a", 3 * MiB)
    target = tmp_path / "archive" / BUCKET / "example.org" / "a"
    assert hashlib.sha256(target.read_bytes()).hexdigest() == sha
    assert store.exists("example.org/a")
    assert store.object_url("example.org/a") == target.as_uri()
    assert os.listdir(target.parent) == ["a"], "no temp files left behind"
    store.delete("example.org/a")
    store.delete("example.org/a")
    assert not store.exists("example.org/a")
    store.close()


@pytest.mark.parametrize("object_path", ["../escape", "/etc/passwd", "a/../../escape", "a//b", ".."])
def test_file_store_refuses_paths_outside_its_bucket(tmp_path: Path, object_path: str) -> None:
    store = FileStore(tmp_path / "archive", BUCKET)
    store.ensure_bucket()
    source = tmp_path / "src"
    source.write_bytes(b"x")
    with pytest.raises(ValueError):
        store.put_file(source, object_path, "text/plain", 1)
    assert not (tmp_path / "escape").exists()


def test_file_store_refuses_symlink_escapes(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "archive", BUCKET)
    store.ensure_bucket()
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "archive" / BUCKET / "evil").symlink_to(outside)
    source = tmp_path / "src"
    source.write_bytes(b"x")
    with pytest.raises(ValueError, match="resolves outside"):
        store.put_file(source, "evil/x", "text/plain", 1)
    assert list(outside.iterdir()) == []


def test_file_store_write_failures_are_storage_errors(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "archive", BUCKET)
    store.ensure_bucket()
    (tmp_path / "archive" / BUCKET / "file").write_bytes(b"")
    source = tmp_path / "src"
    source.write_bytes(b"x")
    with pytest.raises(StorageError) as error:
        store.put_file(source, "file/below", "text/plain", 1)  # a file where a directory must be
    assert error.value.code == "io" and not error.value.retryable
