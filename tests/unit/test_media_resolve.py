"""Local uploads count for an mxc only when the mxc names this homeserver."""
from __future__ import annotations

import pytest

from mxarchiverd.media.resolve import timeout_ms, uploaded_on, user_domain


@pytest.mark.parametrize(("user_id", "domain"), [
    ("@alice:example.org", "example.org"),
    ("@alice:example.org:8448", "example.org:8448"),
    ("@alice:[::1]:8448", "[::1]:8448"),
    ("@whatsapp_4917:synth.test", "synth.test"),
    ("alice:example.org", None),
    ("@alice", None),
    ("@alice:", None),
    ("", None),
])
def test_user_domain(user_id: str, domain: str | None) -> None:
    assert user_domain(user_id) == domain


def test_a_local_upload_is_served_only_under_its_uploaders_server() -> None:
    assert uploaded_on("@alice:example.org", "example.org")
    assert uploaded_on("@alice:example.org:8448", "example.org:8448")
    assert not uploaded_on("@alice:example.org", "elsewhere.example")
    assert not uploaded_on("@alice:example.org:8448", "example.org")
    assert not uploaded_on(None, "example.org"), "a row without uploader proves nothing"


def test_statement_timeout_in_milliseconds_is_never_zero() -> None:
    assert timeout_ms(10.0) == 10_000 and timeout_ms(0.0001) == 1
