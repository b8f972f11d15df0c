"""mxc parsing and media_store paths: hostile references are refused with a reason,
valid ones map exactly onto Synapse's layout (synapse-bridge-facts.md §5.1)."""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from mxarchiverd.media import MediaRefused, MxcUri, local_media_path, parse_mxc, remote_media_path
from mxarchiverd.media.paths import storage_object_path
from mxarchiverd.sinks.storage.base import validate_object_path

SYNAPSE_ID = "AbCdEfGhIjKlMnOpQrStUvWx"  # random_string(24), case-sensitive


@pytest.mark.parametrize(("uri", "reason"), [
    ("", "does not start with mxc://"),
    ("http://example.org/abc", "does not start with mxc://"),
    ("MXC://example.org/abc", "does not start with mxc://"),
    ("mxc://", "found 0 slashes"),
    ("mxc://example.org", "found 0 slashes"),
    ("mxc://example.org/", "media id is empty"),
    ("mxc:///abcdef", "server name is empty"),
    ("mxc://example.org/abc/def", "found 2 slashes"),
    ("mxc://example.org/../../etc/passwd", "found 4 slashes"),
    ("mxc://example.org//etc/passwd", "found 3 slashes"),
    ("mxc://example.org/..", "relative path component"),
    ("mxc://example.org/.", "relative path component"),
    ("mxc://../abcdef", "relative path component"),
    ("mxc://example.org/abc%2Fdef", "percent-encoding"),
    ("mxc://example.org/%2e%2e", "percent-encoding"),
    ("mxc://example.org/abc\x00def", "NUL"),
    ("mxc://example.org/" + "a" * 256, "256 characters long"),
    ("mxc://example.org/abcé", "contains 'é'"),
    ("mxc://exämple.org/abc", "contains 'ä'"),
    ("mxc://example.org/abc def", "contains ' '"),
    ("mxc://example.org/abc?x=1", "contains '?'"),
    ("mxc://example.org/abc#frag", "contains '#'"),
    ("mxc://example.org/abc\\def", "contains '\\\\'"),
    ("mxc://example.org/abc\n", "contains '\\n'"),
    ("mxc://example.org/abc@thumbnail", "contains '@'"),
    ("mxc://example.org:99999/abc", "invalid port"),
    ("mxc://example.org:/abc", "invalid port"),
    ("mxc://example.org:8448:1/abc", "invalid port"),
    ("mxc://[::1/abc", "not a hostname"),
    ("mxc://[::1]x/abc", "not a hostname"),
    ("mxc://exa_mple.org/abc", "not a hostname"),
    ("mxc://example..org/abc", "not a hostname"),
    ("mxc://.example.org/abc", "not a hostname"),
])
def test_malformed_mxc_is_refused_with_a_reason(uri: str, reason: str) -> None:
    with pytest.raises(MediaRefused) as refused:
        parse_mxc(uri)
    assert reason in refused.value.reason
    assert refused.value.reason.startswith("mxc uri ")


def test_non_string_mxc_is_refused() -> None:
    with pytest.raises(MediaRefused, match="expected a string, got NoneType"):
        parse_mxc(None)


def test_long_values_are_shortened_in_the_reason() -> None:
    with pytest.raises(MediaRefused) as refused:
        parse_mxc("mxc://example.org/" + "a" * 5000)
    assert len(refused.value.reason) < 400


@pytest.mark.parametrize(("uri", "server_name", "media_id"), [
    (f"mxc://example.org/{SYNAPSE_ID}", "example.org", SYNAPSE_ID),
    ("mxc://matrix.example.org:8448/abc-_.123", "matrix.example.org:8448", "abc-_.123"),
    ("mxc://[2001:db8::1]:8448/abcdef", "[2001:db8::1]:8448", "abcdef"),
    ("mxc://[::1]/abcdef", "[::1]", "abcdef"),
    ("mxc://192.0.2.7/abcdef", "192.0.2.7", "abcdef"),
    ("mxc://localhost/a", "localhost", "a"),
    ("mxc://example.org/" + "a" * 255, "example.org", "a" * 255),
])
def test_valid_mxc_is_split_exactly(uri: str, server_name: str, media_id: str) -> None:
    mxc = parse_mxc(uri)
    assert (mxc.server_name, mxc.media_id) == (server_name, media_id)
    assert str(mxc) == uri


def test_constructing_an_mxc_directly_is_validated_too() -> None:
    with pytest.raises(MediaRefused, match="media id is '..'"):
        MxcUri("example.org", "..")
    with pytest.raises(MediaRefused, match="server name"):
        MxcUri("evil/../x", "abcdef")


def test_local_media_path_is_synapses_layout(tmp_path: Path) -> None:
    path = local_media_path(tmp_path, SYNAPSE_ID)
    assert path == tmp_path / "local_content" / "Ab" / "Cd" / "EfGhIjKlMnOpQrStUvWx"


def test_remote_media_path_uses_server_and_filesystem_id(tmp_path: Path) -> None:
    path = remote_media_path(tmp_path, "matrix.org:8448", "GhIjKlMnOpQrStUvWxYzAbCd")
    assert path == tmp_path / "remote_content" / "matrix.org:8448" / "Gh" / "Ij" / "KlMnOpQrStUvWxYzAbCd"


@pytest.mark.parametrize(("media_id", "reason"), [
    ("../../etc/passwd", "contains '/'"),
    ("/etc/passwd", "contains '/'"),
    ("ab/cdef", "contains '/'"),
    ("", "media id is empty"),
    ("abcd", "characters 5- is empty"),
    ("abc", "characters 5- is empty"),
    ("..abcdef", "characters 1-2 is '..'"),
    ("ab..cdef", "characters 3-4 is '..'"),
    ("abcd..", "characters 5- is '..'"),
    ("abcd.", "characters 5- is '.'"),
    ("ab\x00cdef", "contains '\\x00'"),
    ("abc%2Fdef", "contains '%'"),
    ("a" * 256, "256 characters long"),
])
def test_local_path_refuses_hostile_media_ids(tmp_path: Path, media_id: str, reason: str) -> None:
    with pytest.raises(MediaRefused) as refused:
        local_media_path(tmp_path, media_id)
    assert reason in refused.value.reason
    assert "media id" in refused.value.reason


@pytest.mark.parametrize(("server_name", "filesystem_id", "what"), [
    ("..", SYNAPSE_ID, "remote media server name"),
    ("a/b", SYNAPSE_ID, "remote media server name"),
    ("matrix.org", "../../../etc", "filesystem id"),
    ("matrix.org", "ab..cdef", "filesystem id"),
])
def test_remote_path_refuses_hostile_parts(tmp_path: Path, server_name: str, filesystem_id: str,
                                           what: str) -> None:
    with pytest.raises(MediaRefused, match=what):
        remote_media_path(tmp_path, server_name, filesystem_id)


def test_symlink_out_of_the_store_is_refused(tmp_path: Path) -> None:
    store, outside = tmp_path / "store", tmp_path / "outside"
    (store / "local_content").mkdir(parents=True)
    outside.mkdir()
    (store / "local_content" / "Ab").symlink_to(outside)
    with pytest.raises(MediaRefused, match="outside the media store"):
        local_media_path(store, SYNAPSE_ID)


def test_symlinks_within_the_store_and_a_symlinked_store_are_fine(tmp_path: Path) -> None:
    real_store = tmp_path / "real"
    (real_store / "local_content" / "shared").mkdir(parents=True)
    (real_store / "local_content" / "Ab").symlink_to(real_store / "local_content" / "shared")
    linked_store = tmp_path / "linked"
    linked_store.symlink_to(real_store)
    assert local_media_path(linked_store, SYNAPSE_ID) == linked_store / "local_content/Ab/Cd/EfGhIjKlMnOpQrStUvWx"


def test_fuzzed_uris_either_fail_cleanly_or_stay_in_the_store(tmp_path: Path) -> None:
    alphabet = "aZ09_-.[]:/%\x00\\ @é"
    rng = random.Random(7)
    accepted = 0
    for _ in range(5000):
        body = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        try:
            mxc = parse_mxc("mxc://" + body)
            path = local_media_path(tmp_path, mxc.media_id)
        except MediaRefused:
            continue
        accepted += 1
        assert os.path.commonpath([path, tmp_path]) == str(tmp_path)
        validate_object_path(storage_object_path(mxc))
    assert accepted > 0


@pytest.mark.parametrize(("uri", "kind", "key"), [
    (f"mxc://example.org/{SYNAPSE_ID}", "original", f"example.org/{SYNAPSE_ID}"),
    ("mxc://example.org:8448/abc", "thumbnail", "example.org:8448/abc@thumbnail"),
    ("mxc://example.org/abc", "thumbnail-320x240-scale", "example.org/abc@thumbnail-320x240-scale"),
    ("mxc://[2001:db8::1]:8448/a[b]", "original", "(2001:db8::1):8448/a(b)"),
])
def test_storage_object_path_is_deterministic_and_a_valid_key(uri: str, kind: str, key: str) -> None:
    assert storage_object_path(parse_mxc(uri), kind) == key
    assert validate_object_path(key) == key


@pytest.mark.parametrize("kind", ["", "thumb", "thumbnail-0x10-crop", "thumbnail-10x10-fit", "../x"])
def test_unknown_storage_kinds_are_refused(kind: str) -> None:
    with pytest.raises(ValueError, match="storage object kind"):
        storage_object_path(parse_mxc("mxc://example.org/abc"), kind)
