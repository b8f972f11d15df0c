"""Stored objects read back streamed, from Supabase Storage (the double, over HTTP) and the file
backend: what verify --media compares with archived_media."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mxarchiverd.sinks.storage import FileStore, ObjectStore, StorageError
from mxarchiverd.sinks.storage.base import digest_object
from tests.integration.test_storage_backends import BUCKET, MiB, new_store, upload
from tests.support.storage_double import StorageDouble


@pytest.fixture(params=["supabase", "file"])
def any_store(request: pytest.FixtureRequest, storage_double: StorageDouble, tmp_path: Path) -> Iterator[ObjectStore]:
    store: ObjectStore = new_store(storage_double) if request.param == "supabase" else FileStore(tmp_path / "o", BUCKET)
    store.ensure_bucket()
    yield store
    store.close()


def test_an_object_comes_back_in_pieces_with_its_size_and_sha256(any_store: ObjectStore, tmp_path: Path) -> None:
    sha = upload(any_store, tmp_path, "server/eightmegs", 8 * MiB + 5)
    pieces = list(any_store.read_object("server/eightmegs"))
    assert len(pieces) > 1 and max(len(p) for p in pieces) <= MiB
    assert digest_object(any_store, "server/eightmegs") == (8 * MiB + 5, sha)


def test_a_missing_object_is_a_404(any_store: ObjectStore) -> None:
    with pytest.raises(StorageError) as error:
        digest_object(any_store, "server/never-stored")
    assert error.value.code == "404" and not error.value.retryable


def test_an_unreachable_storage_is_not_a_missing_object(storage_double: StorageDouble) -> None:
    with new_store(storage_double) as store:
        store.ensure_bucket()
        storage_double.down()
        try:
            with pytest.raises(StorageError) as error:
                digest_object(store, "server/anything")
        finally:
            storage_double.up()
    assert error.value.code != "404" and error.value.retryable
