"""Sender names at send time while the archiver follows the stream live (cached histories)."""
from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.integration.test_review_display_names import ALICE, ROOM, member, source  # noqa: F401 - fixture
from tests.support.pipeline import archived, pipeline, write_config
from tests.support.synth import insert_event, set_position

pytestmark = pytest.mark.synapse
TEXT = {"msgtype": "m.text", "body": "hi"}


def test_a_rename_read_in_a_later_batch_replaces_the_cached_name(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    member(source, ALICE, "Alice")
    before, position = insert_event(source, ROOM, "m.room.message", TEXT, sender=ALICE)
    set_position(source, position)
    with pipeline(write_config(tmp_path, synapse_schema_db, fresh_db)) as p:
        p.run_until_caught_up(timeout_s=30)  # alice's history is cached now
        renamed = member(source, ALICE, "Alice Smith")
        after, position = insert_event(source, ROOM, "m.room.message", TEXT, sender=ALICE)
        set_position(source, position)
        p.run_until_caught_up(timeout_s=30)
    rows = archived(fresh_db)
    assert rows[before]["sender_display_name"] == "Alice"
    assert rows[after]["sender_display_name"] == "Alice Smith"
    rename = next(r for r in rows.values() if r["stream_ordering"] == renamed)
    assert rename["sender_display_name"] == "Alice", "a rename is shown under the name it was sent with"
