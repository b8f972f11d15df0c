"""verify's scope (--room, --since), a redaction mark Synapse never made, an edit undone by a
redaction of the edit, and an archive that is not migrated, against Synapse's real schema."""
from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from mxarchiverd.archive.migrations import SchemaMismatch
from mxarchiverd.verification.problems import Scope
from mxarchiverd.verification.run import UnknownRoom, run_verify
from tests.support.pipeline import archived, pipeline, write_config
from tests.support.synth import insert_event, insert_redaction, open_source, set_position, text

pytestmark = pytest.mark.synapse
ROOM, OTHER = "!scope:synth.test", "!other:synth.test"
OLD, NEW = 1_700_000_000_000, 1_700_100_000_000


def edit_of(target: str, body: str) -> dict[str, object]:
    return {"msgtype": "m.text", "body": f"* {body}", "m.new_content": text(body),
            "m.relates_to": {"rel_type": "m.replace", "event_id": target}}


def found(outcome: object) -> set[tuple[str, str | None]]:
    return {(p.kind, p.event_id) for p in outcome.problems}  # type: ignore[attr-defined]


def test_scope_marks_and_edits(synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    with open_source(synapse_schema_db, {ROOM: "11", OTHER: "11"}) as source:
        old, _ = insert_event(source, ROOM, "m.room.message", text("old"), ts=OLD)
        new, _ = insert_event(source, ROOM, "m.room.message", text("new"), ts=NEW)
        edited, _ = insert_event(source, ROOM, "m.room.message", text("first"), ts=NEW)
        edit, _ = insert_event(source, ROOM, "m.room.message", edit_of(edited, "second"), ts=NEW + 1)
        # What Synapse's persister records for every relation (verify reads edits from it).
        source.execute("INSERT INTO event_relations (event_id, relates_to_id, relation_type) VALUES (%s, %s, %s)",
                       (edit, edited, "m.replace"))
        insert_redaction(source, ROOM, edit, ts=NEW + 2)  # the edit taken back: "first" shows again
        other, position = insert_event(source, OTHER, "m.room.message", text("elsewhere"), ts=NEW)
        set_position(source, position)
    config = write_config(tmp_path, synapse_schema_db, fresh_db)
    with pipeline(config) as p:
        p.run_until_caught_up()
    assert archived(fresh_db)[edited]["content"]["body"] == "first"
    assert found(run_verify(config, Scope())) == set()

    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("UPDATE archived_messages SET redacted = TRUE, redacted_by = '@x:y' WHERE event_id = ANY(%s)",
                     ([old, new, other],))
        conn.execute("UPDATE archived_messages SET content = %s WHERE event_id = %s", ('{"body": "second"}', edited))
    assert found(run_verify(config, Scope())) == {("redaction_not_in_source", old), ("redaction_not_in_source", new),
                                                  ("redaction_not_in_source", other), ("edit_differs", edited)}
    assert found(run_verify(config, Scope(rooms=(OTHER,)))) == {("redaction_not_in_source", other)}
    assert found(run_verify(config, Scope(rooms=(ROOM,), since_ms=NEW))) == {
        ("redaction_not_in_source", new), ("edit_differs", edited)}
    with pytest.raises(UnknownRoom, match="!nosuch:synth.test"):
        run_verify(config, Scope(rooms=("!nosuch:synth.test",)))

    repaired = run_verify(config, Scope(rooms=(ROOM,)), repair=True)
    assert repaired.repair is not None and repaired.repair.done == {"redaction marks cleared": 2,
                                                                     "original contents restored": 1,
                                                                     "events re-archived": 1}
    assert found(run_verify(config, Scope(rooms=(ROOM,)))) == set()
    rows = archived(fresh_db)
    assert not rows[old]["redacted"] and rows[old]["redacted_by"] is None and rows[other]["redacted"]
    assert rows[edited]["content"]["body"] == "first"


def test_an_archive_that_is_not_migrated_is_refused(synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, synapse_schema_db, fresh_db)
    with pytest.raises(SchemaMismatch):
        run_verify(config, Scope())
