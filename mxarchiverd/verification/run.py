"""One verify run: the rooms in scope, Synapse's view or the bot's holes, media, repair.

DB mode compares per room over the part of Synapse's streams the durable
cursors cover (events past them are not archived yet, which is no difference);
rooms whose history is still being read are skipped until it is done. Bot mode
has no source to list events from: it names what the bot could not see. Every
run is recorded in verify_runs (the metrics endpoint shows the latest).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import psycopg

from mxarchiverd.archive import audit
from mxarchiverd.archive.connection import open_archive
from mxarchiverd.archive.cursors import load_stream_cursors
from mxarchiverd.archive.migrations import check_current
from mxarchiverd.archive.reports import bot_coverage
from mxarchiverd.archive.rooms import RoomEntry, load_registry
from mxarchiverd.config import Config
from mxarchiverd.progress import progress
from mxarchiverd.sinks.storage import open_store
from mxarchiverd.verification.events import compare_room
from mxarchiverd.verification.media import check_media
from mxarchiverd.verification.problems import MediaReport, Outcome, Problem, RoomReport, Scope, sort_key
from mxarchiverd.verification.repair import repair as run_repair

log = logging.getLogger(__name__)


class UnknownRoom(ValueError):
    """--room names a room that is not archived (a typo, or a room not monitored)."""


def run_verify(config: Config, scope: Scope, *, repair: bool = False) -> Outcome:
    with open_archive(config, purpose="verify", autocommit=True) as archive:
        check_current(archive)  # SchemaMismatch (exit 65) rather than a missing table
        if config.source.mode == "matrix_sync":
            outcome = _verify_bot(config, archive, scope)
        else:
            outcome = _verify_db(config, archive, scope)
        if repair and outcome.problems:
            outcome = replace(outcome, repair=run_repair(config, archive, outcome.problems))
        audit.record_verify_run(archive, mode=outcome.mode, scope=scope.as_dict(), rooms=len(outcome.rooms),
                                problems=outcome.counts(), exit_code=outcome.exit_code,
                                repaired=outcome.repair.done if outcome.repair else None)
    return outcome


def _in_scope(room_ids: list[str], scope: Scope) -> list[str]:
    if not scope.rooms:
        return room_ids
    unknown = sorted(set(scope.rooms) - set(room_ids))
    if unknown:
        raise UnknownRoom(f"--room {', '.join(unknown)}: not an archived room with its history read"
                          " (see `mxarchiverd status`)")
    return [r for r in room_ids if r in scope.rooms]


def _verify_db(config: Config, archive: psycopg.Connection, scope: Scope) -> Outcome:
    from mxarchiverd.sources.synapse_db.audit import source_room, synapse_has_file
    from mxarchiverd.sources.synapse_db.report import CoveredRange, open_synapse

    purge = config.processing.redaction_policy == "purge"
    with open_synapse(config, "verify synapse", timeout_factor=6) as source:
        registry = load_registry(archive, config.rooms, config.source.auto_discover_bridged_rooms)
        covered = CoveredRange.of(load_stream_cursors(archive))
        done = {r.room_id: r for r in registry.rooms.values()
                if registry.should_archive(r.room_id, 2**62) and r.history_done}
        reports = []
        with progress("verify", total=len(done), unit="room") as bar:
            for room_id in _in_scope(sorted(done), scope):
                room: RoomEntry = done[room_id]
                seen = source_room(source, room, covered, scope.since_ms)
                stored = audit.room_rows(archive, room_id, scope.since_ms)
                contents = audit.contents(archive, room_id, sorted(set(seen.latest_edit) | seen.edited),
                                          scope.since_ms)
                reports.append(compare_room(room_id, seen, stored, contents, purge=purge))
                bar.update()
        media = None
        if scope.media:
            def has(mxc: str) -> str | None:
                return synapse_has_file(source, config.source.media_store_path, mxc)
            media = _verify_media(config, archive, scope, [r.room_id for r in reports], has)
    return Outcome("synapse_db", scope, tuple(reports), media)


def _verify_bot(config: Config, archive: psycopg.Connection, scope: Scope) -> Outcome:
    coverage = bot_coverage(archive)
    reports = []
    for room_id in _in_scope([room["room_id"] for room in coverage.rooms], scope):
        holes = [h for h in coverage.unfilled_holes if h["room_id"] == room_id]
        stored = audit.room_rows(archive, room_id, scope.since_ms)
        problems = tuple(Problem("hole", room_id, h["after_event_id"], describe_hole(h)) for h in holes)
        reports.append(RoomReport(room_id, len(stored), len(stored), (), (), tuple(describe_hole(h) for h in holes),
                                  problems))
    media = None
    if scope.media:
        media = _verify_media(config, archive, scope, [r.room_id for r in reports], lambda mxc: None)
    return Outcome("matrix_sync", scope, tuple(reports), media)


def describe_hole(hole: dict[str, object]) -> str:
    end = hole["before_event_id"] or "(still out of the room)"
    return (f"{hole['state']} hole after {hole['after_event_id'] or '(unknown)'} until {end}: "
            f"{hole['kind']} by {hole['by'] or '-'} ({hole['reason'] or 'no reason'})")


def _verify_media(config: Config, archive: psycopg.Connection, scope: Scope, room_ids: list[str],
                  source_has: Callable[[str], str | None]) -> MediaReport:
    rooms = room_ids if scope.rooms else None
    rows = audit.media_rows(archive, rooms, scope.since_ms)
    jobs = audit.media_jobs(archive, rooms, scope.since_ms)
    store = open_store(config)
    try:
        report = check_media(rows, jobs, store, thumbnails=config.processing.media_thumbnails,
                             source_has=source_has)
    finally:
        store.close()
    return replace(report, problems=tuple(sorted(report.problems, key=sort_key)))
