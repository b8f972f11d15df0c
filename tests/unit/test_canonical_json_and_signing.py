"""Canonical JSON and Ed25519 JSON signatures against the spec appendices' own vectors."""
from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mxarchiverd.e2ee.canonical_json import CanonicalJsonError, canonical_json
from mxarchiverd.e2ee.signing import (
    b64decode, b64encode, has_valid_signature, public_key_b64, sign_json, signable_bytes,
)

# Appendices, "Canonical JSON" examples: (input as sent, expected canonical output).
CANONICAL_VECTORS = [
    ("{}", "{}"),
    ('{"one": 1, "two": "Two"}', '{"one":1,"two":"Two"}'),
    ('{"b": "2", "a": "1"}', '{"a":"1","b":"2"}'),
    ('{"b":"2","a":"1"}', '{"a":"1","b":"2"}'),
    ('{"auth": {"success": true, "mxid": "@john.doe:example.com", "profile": {"display_name": '
     '"John Doe", "three_pids": [{"medium": "email", "address": "john.doe@example.org"}, '
     '{"medium": "msisdn", "address": "123456789"}]}}}',
     '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":'
     '[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":'
     '"msisdn"}]},"success":true}}'),
    ('{"a": "日本語"}', '{"a":"日本語"}'),
    ('{"本": 2, "日": 1}', '{"日":1,"本":2}'),
    ('{"a": "\\u65E5"}', '{"a":"日"}'),
    ('{"a": null}', '{"a":null}'),
    ('{"a": -0, "b": 1e10}', '{"a":0,"b":10000000000}'),
]

# Appendices, "Cryptographic Test Vectors": seed, signer "domain", key id "ed25519:1".
SPEC_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
SPEC_PUBLIC = "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"
EMPTY_SIGNATURE = ("K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZz"
                   "uHGZKM5ZAQ")
ONE_TWO_SIGNATURE = ("KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIM"
                     "JpvhJI+6Bw")


@pytest.fixture
def spec_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(b64decode(SPEC_SEED, "seed"))


@pytest.mark.parametrize("given,expected", CANONICAL_VECTORS)
def test_spec_canonical_json_examples(given: str, expected: str) -> None:
    assert canonical_json(json.loads(given)) == expected.encode("utf-8")


def test_control_characters_use_the_shortest_escapes() -> None:
    assert canonical_json({"a": "\n\t\"\\\x01\x1f\x7f"}) == b'{"a":"\\n\\t\\"\\\\\\u0001\\u001f\x7f"}'


@pytest.mark.parametrize("value,where", [
    ({"a": 1.5}, "$.a"),
    ({"a": [1, 2**53]}, "$.a[1]"),
    ({"a": {"b": -(2**53)}}, "$.a.b"),
    ({"a": float("nan")}, "$.a"),
    ({"a": {1: "x"}}, "$.a"),
    ({"a": b"bytes"}, "$.a"),
])
def test_values_canonical_json_cannot_hold_are_refused_with_their_path(value: object,
                                                                        where: str) -> None:
    with pytest.raises(CanonicalJsonError) as refused:
        canonical_json(value)
    assert str(refused.value).startswith(f"{where}: ")


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(CanonicalJsonError, match="surrogate"):
        canonical_json({"a": "\ud800"})


def test_spec_signing_key_gives_the_spec_public_key(spec_key: Ed25519PrivateKey) -> None:
    assert public_key_b64(spec_key) == SPEC_PUBLIC


def test_spec_signature_of_the_empty_object(spec_key: Ed25519PrivateKey) -> None:
    assert sign_json({}, "domain", "ed25519:1", spec_key) == {
        "signatures": {"domain": {"ed25519:1": EMPTY_SIGNATURE}}}


def test_spec_signature_of_an_object_with_data(spec_key: Ed25519PrivateKey) -> None:
    signed = sign_json({"one": 1, "two": "Two"}, "domain", "ed25519:1", spec_key)
    assert signed == {"one": 1, "two": "Two",
                      "signatures": {"domain": {"ed25519:1": ONE_TWO_SIGNATURE}}}


def test_signatures_and_unsigned_are_not_covered_and_survive(spec_key: Ed25519PrivateKey) -> None:
    given = {"one": 1, "two": "Two", "unsigned": {"age_ts": 5},
             "signatures": {"other": {"ed25519:x": "kept"}}}
    signed = sign_json(given, "domain", "ed25519:1", spec_key)
    assert signed["signatures"] == {"other": {"ed25519:x": "kept"},
                                    "domain": {"ed25519:1": ONE_TWO_SIGNATURE}}
    assert signed["unsigned"] == {"age_ts": 5}
    assert "domain" not in given["signatures"], "the input must not be changed"
    assert signable_bytes(signed) == b'{"one":1,"two":"Two"}'


def test_verification_accepts_the_spec_vector_and_rejects_tampering() -> None:
    signed = {"one": 1, "two": "Two", "signatures": {"domain": {"ed25519:1": ONE_TWO_SIGNATURE}}}
    assert has_valid_signature(signed, "domain", "ed25519:1", SPEC_PUBLIC)
    assert not has_valid_signature({**signed, "two": "Three"}, "domain", "ed25519:1", SPEC_PUBLIC)
    assert not has_valid_signature(signed, "domain", "ed25519:2", SPEC_PUBLIC)
    assert not has_valid_signature(signed, "elsewhere", "ed25519:1", SPEC_PUBLIC)
    other = public_key_b64(Ed25519PrivateKey.generate())
    assert not has_valid_signature(signed, "domain", "ed25519:1", other)
    garbled = {**signed, "signatures": {"domain": {"ed25519:1": "!!not base64!!"}}}
    assert not has_valid_signature(garbled, "domain", "ed25519:1", SPEC_PUBLIC)


def test_unpadded_base64_matches_the_spec_examples() -> None:
    examples = {b"": "", b"f": "Zg", b"fo": "Zm8", b"foo": "Zm9v", b"foob": "Zm9vYg",
                b"fooba": "Zm9vYmE", b"foobar": "Zm9vYmFy"}
    for raw, text in examples.items():
        assert b64encode(raw) == text
        assert b64decode(text, "x") == raw
        assert b64decode(text + "=" * (-len(text) % 4), "x") == raw  # padding tolerated
    with pytest.raises(ValueError, match="^field: not valid base64"):
        b64decode("a$b", "field")
