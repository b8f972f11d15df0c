"""One room, Synapse's view against the archive's (pure).

A finding that follows from another is reported once, as its cause: an edit or a
redaction whose own event is missing from the archive is a missing event, not
also a wrong content or an unapplied redaction (re-archiving it fixes both).
"""
from __future__ import annotations

from typing import Any

from mxarchiverd.archive.audit import ArchivedContent, ArchivedRow
from mxarchiverd.sources.synapse_db.audit import SourceRoom
from mxarchiverd.verification.problems import Problem, RoomReport, sort_key


def compare_room(room_id: str, source: SourceRoom, archived: dict[str, ArchivedRow],
                 contents: dict[str, ArchivedContent], *, purge: bool) -> RoomReport:
    """`archived`: the room's archived rows (same scope as `source`)."""
    expected, stored = set(source.visible), set(archived)
    missing = tuple(sorted(expected - stored))
    problems = [Problem("missing", room_id, event_id) for event_id in missing]
    problems += _redactions(room_id, source, archived)
    problems += _edits(room_id, source, stored, contents, purge)
    return RoomReport(room_id, len(expected), len(stored), missing, tuple(sorted(stored - expected)),
                      problems=tuple(sorted(problems, key=sort_key)))


def _redactions(room_id: str, source: SourceRoom, archived: dict[str, ArchivedRow]) -> list[Problem]:
    found = []
    for target, redaction in source.redacted.items():
        row = archived.get(target)
        if target in source.visible and row is not None and not row.redacted and redaction in archived:
            found.append(Problem("redaction_not_applied", room_id, target, f"redacted by {redaction}", redaction))
    for event_id, row in archived.items():
        # A redaction whose own event Synapse no longer has (retention) is history the
        # archive keeps, not a difference; one Synapse has and does not apply is.
        founded_on = row.redaction_event_id
        unfounded = founded_on is None or founded_on in source.visible
        if row.redacted and unfounded and event_id in source.visible and event_id not in source.redacted:
            found.append(Problem("redaction_not_in_source", room_id, event_id, "Synapse applies no redaction to it",
                                 founded_on))
    return found


def _edits(room_id: str, source: SourceRoom, stored: set[str], contents: dict[str, ArchivedContent],
           purge: bool) -> list[Problem]:
    found = []
    for event_id in sorted(set(source.latest_edit) | source.edited | {e for e, c in contents.items() if c.edited}):
        row = contents.get(event_id)
        edit = source.latest_edit.get(event_id)
        if row is None or event_id not in source.visible or not _edit_applies(row, purge):
            continue
        if edit is not None and edit.event_id not in stored:
            continue  # the edit itself is missing: reported as such
        wanted = expected_content(edit.new_content if edit else None, row.original_content)
        if wanted is not None and row.content != wanted:
            latest = f"latest edit {edit.event_id}" if edit else "no valid edit left: the original content"
            found.append(Problem("edit_differs", room_id, event_id, f"archive content differs from {latest}",
                                 edit.event_id if edit else None))
    return found


def _edit_applies(row: ArchivedContent, purge: bool) -> bool:
    """The archive applies edits to m.room.message originals, except redacted ones under purge."""
    return row.event_type == "m.room.message" and row.original_content is not None and not (purge and row.redacted)


def expected_content(new_content: dict[str, Any] | None, original: Any) -> Any:
    """What the archive's content must be (archive/batch_sql.py APPLY_EDITS): the latest
    edit's m.new_content, keeping the original's own m.relates_to (a reply stays a
    reply); with no valid edit, the original content."""
    if new_content is None:
        return original
    if isinstance(original, dict) and "m.relates_to" in original:
        return {**new_content, "m.relates_to": original["m.relates_to"]}
    return new_content
