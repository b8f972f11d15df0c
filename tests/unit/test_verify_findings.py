"""What verify concludes from Synapse's view and the archive's (pure parts)."""
from __future__ import annotations

import json

import pytest

from mxarchiverd.archive.audit import ArchivedContent, ArchivedRow, MediaJobFact, MediaRow
from mxarchiverd.config.values import listen_address, split_listen
from mxarchiverd.exitcodes import ExitCode
from mxarchiverd.sources.synapse_db.audit import Edit, SourceRoom, applied_redactions, latest_edits
from mxarchiverd.verification.events import compare_room, expected_content
from mxarchiverd.verification.media import expected_refs, job_problem
from mxarchiverd.verification.problems import Problem, Repair, decide_exit, parse_since
from mxarchiverd.verification.repair import events_to_reread, media_jobs_to_queue, unrepairable

ROOM = "!r:x"
TEXT = {"msgtype": "m.text", "body": "final"}


def content(event_id: str, shown: object, original: object, edited: bool = True) -> ArchivedContent:
    return ArchivedContent(event_id, shown, original, False, edited, "m.room.message")


def rows(redacted: dict[str, str | None], *plain: str) -> dict[str, ArchivedRow]:
    """Archived rows: the redacted ones with the redaction the archive applied, and plain ones."""
    found = {event_id: ArchivedRow(True, by) for event_id, by in redacted.items()}
    return {**found, **{event_id: ArchivedRow(False) for event_id in plain}}


def kinds(problems: tuple[Problem, ...]) -> set[tuple[str, str | None]]:
    return {(p.kind, p.event_id) for p in problems}


def test_a_clean_room_has_no_problem() -> None:
    source = SourceRoom({"$a": 1, "$b": 2, "$red": 3}, {"$b": "$red"}, {"$a": Edit("$edit", 5, TEXT)})
    archived = rows({"$b": "$red"}, "$a", "$red", "$edit")
    report = compare_room(ROOM, source, archived, {"$a": content("$a", TEXT, {"body": "first"})}, purge=False)
    assert report.complete and report.problems == ()


def test_each_kind_of_difference_is_found_once() -> None:
    source = SourceRoom({"$a": 1, "$b": 2, "$c": 3, "$lost": 4, "$red": 5, "$edit": 6},
                        {"$b": "$red"}, {"$a": Edit("$edit", 6, TEXT)})
    archived = rows({"$c": None}, "$a", "$b", "$red", "$edit", "$purged")
    contents = {"$a": content("$a", {"body": "tampered"}, {"body": "first"})}
    report = compare_room(ROOM, source, archived, contents, purge=False)
    assert kinds(report.problems) == {("missing", "$lost"), ("redaction_not_applied", "$b"),
                                      ("redaction_not_in_source", "$c"), ("edit_differs", "$a")}
    assert report.only_in_archive == ("$purged",)
    by_kind = {p.kind: p for p in report.problems}
    assert by_kind["redaction_not_applied"].related_event_id == "$red"
    assert by_kind["edit_differs"].related_event_id == "$edit"


def test_an_edit_whose_event_is_missing_is_reported_as_missing_only() -> None:
    source = SourceRoom({"$a": 1, "$edit": 2}, {}, {"$a": Edit("$edit", 2, TEXT)})
    report = compare_room(ROOM, source, rows({}, "$a"), {"$a": content("$a", {"body": "first"}, {"body": "first"}, False)},
                          purge=False)
    assert kinds(report.problems) == {("missing", "$edit")}


def test_with_every_edit_gone_the_original_content_is_expected_back() -> None:
    source = SourceRoom({"$a": 1}, {}, {})
    report = compare_room(ROOM, source, rows({}, "$a"), {"$a": content("$a", TEXT, {"body": "first"})}, purge=False)
    assert kinds(report.problems) == {("edit_differs", "$a")}


def test_a_redaction_synapse_no_longer_has_is_kept_history_not_a_difference() -> None:
    source = SourceRoom({"$a": 1, "$b": 2, "$r2": 3}, {}, {})
    report = compare_room(ROOM, source, rows({"$a": "$purged_redaction", "$b": "$r2"}, "$r2"), {}, purge=False)
    assert kinds(report.problems) == {("redaction_not_in_source", "$b")}


def test_a_reply_keeps_its_relation_through_an_edit() -> None:
    reply = {"body": "x", "m.relates_to": {"m.in_reply_to": {"event_id": "$q"}}}
    assert expected_content(TEXT, reply) == {**TEXT, "m.relates_to": reply["m.relates_to"]}
    assert expected_content(None, reply) == reply


def test_synapse_applies_redactions_by_its_own_rules() -> None:
    rows = [("$t1", "$r1", "@a:x", False, "@a:x", "m.room.message", ROOM, None),
            ("$t2", "$r2", "@m:evil", True, "@a:x", "m.room.message", ROOM, None),  # recheck, other server
            ("$t3", "$r3", "@a:x", False, "@a:x", "m.room.create", ROOM, None),
            ("$t4", "$r4", "@a:x", False, "@a:x", "m.room.message", "!other:x", None),
            ("$t5", "$r5", "@a:x", False, "@a:x", "m.room.message", ROOM, '{"soft_failed": true}')]
    assert applied_redactions(rows, ROOM) == {"$t1": "$r1"}


def test_the_latest_valid_edit_wins() -> None:
    def edit(edit_id: str, sender: str, ts: int, body: str) -> tuple[object, ...]:
        json_text = json.dumps({"content": {"m.new_content": {"body": body}}})
        return ("$o", edit_id, sender, "m.room.message", ts, None, json_text, "@a:x", "m.room.message", ROOM)
    rows = [edit("$e1", "@a:x", 10, "one"), edit("$e2", "@a:x", 30, "three"), edit("$e3", "@b:x", 40, "bob"),
            edit("$e4", "@a:x", 50, "redacted")]
    found = latest_edits(rows, ROOM, redacted={"$e4"})
    assert found["$o"] == Edit("$e2", 30, {"body": "three"})


def test_media_references_and_jobs() -> None:
    image = {"msgtype": "m.image", "body": "a.png", "url": "mxc://x/a",
             "info": {"thumbnail_url": "mxc://x/t"}}
    refs = expected_refs([MediaRow("$i", ROOM, "m.room.message", image)], thumbnails=False)
    assert refs == {("$i", "file", "mxc://x/a"): ROOM}

    def job(state: str, recorded: bool = True, size: int | None = 3, sha: str | None = "abc") -> MediaJobFact:
        return MediaJobFact(7, "$i", ROOM, "file", "mxc://x/a", state, "why", 3, size, sha, "x/a", recorded)
    assert job_problem(job("pending"), lambda path: None) is None
    assert job_problem(job("dead"), lambda path: None).kind == "media_dead"
    assert job_problem(job("done", recorded=False), lambda path: (3, "abc")).kind == "media_unrecorded"
    assert job_problem(job("done"), lambda path: None).kind == "media_object_missing"
    assert job_problem(job("done"), lambda path: (4, "abc")).kind == "media_size_differs"
    assert job_problem(job("done"), lambda path: (3, "def")).kind == "media_sha256_differs"
    assert job_problem(job("done"), lambda path: (3, "abc")) is None


def test_repair_rereads_each_event_once_and_queues_only_what_synapse_has() -> None:
    problems = [Problem("missing", ROOM, "$a"), Problem("redaction_not_applied", ROOM, "$b", related_event_id="$r"),
                Problem("edit_differs", ROOM, "$a", related_event_id="$e"), Problem("hole", ROOM, "$k"),
                Problem("media_object_missing", ROOM, "$m", job_id=1, matrix_url="mxc://x/1", source_has="on disk"),
                Problem("media_dead", ROOM, "$n", job_id=2, matrix_url="mxc://x/2", source_has="gone")]
    assert events_to_reread(problems) == ["$a", "$b", "$r", "$e"]
    left = unrepairable(problems, bot_mode=False)
    assert [p.kind for p in left] == ["hole", "media_dead"]
    assert media_jobs_to_queue(problems, left) == [1]
    assert [p.kind for p in unrepairable(problems, bot_mode=True)] == [
        "missing", "redaction_not_applied", "edit_differs", "hole", "media_dead"]


@pytest.mark.parametrize(("counts", "pending", "repair", "code"), [
    ({}, 0, None, ExitCode.OK),
    ({"missing": 1}, 0, None, ExitCode.VERIFY_MISMATCH),
    ({}, 2, None, ExitCode.VERIFY_UNSETTLED),
    ({"missing": 1}, 0, Repair({"events re-archived": 1}), ExitCode.VERIFY_UNSETTLED),
    ({"hole": 1}, 0, Repair({}, (Problem("hole", ROOM),)), ExitCode.VERIFY_MISMATCH),
    ({}, 0, Repair(), ExitCode.OK),
])
def test_exit_codes(counts: dict[str, int], pending: int, repair: Repair | None, code: int) -> None:
    assert decide_exit(counts, pending, repair) == code


def test_since_takes_dates_times_and_ages() -> None:
    assert parse_since("2024-05-01", 0) == 1714521600000
    assert parse_since("2024-05-01T02:00:00+02:00", 0) == 1714521600000
    assert parse_since("2024-05-01T00:00:00Z", 0) == 1714521600000
    assert parse_since("7d", 1_000_000.0) == (1_000_000 - 7 * 86400) * 1000
    with pytest.raises(ValueError, match="--since 'yesterday'"):
        parse_since("yesterday", 0)


def test_metrics_listen_on_loopback_unless_told_otherwise() -> None:
    assert listen_address(9464) == "127.0.0.1:9464"
    assert listen_address("0.0.0.0:9464") == "0.0.0.0:9464"
    assert split_listen(listen_address("[::1]:9464")) == ("::1", 9464)
    with pytest.raises(ValueError, match="host:port"):
        listen_address("99999")
