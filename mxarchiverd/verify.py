"""`mxarchiverd verify`: prove that every visible source event of a monitored room is archived.

DB mode compares event ids per room with Synapse's database, over the part of
the source the durable cursors cover (events after them are simply not
archived yet). Bot mode names what the bot could not see: every recorded hole
that is not filled, and rooms whose history is known only down to a lower
bound. Events only in the archive are reported too: Synapse's retention or
purge APIs may have deleted them from the source, which is the reason to have
an archive.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mxarchiverd.archive.connection import open_archive
from mxarchiverd.archive.reports import archived_event_ids, bot_coverage
from mxarchiverd.archive.rooms import load_registry
from mxarchiverd.archive.cursors import load_stream_cursors
from mxarchiverd.config import Config


@dataclass(frozen=True)
class RoomReport:
    room_id: str
    source: int
    archived: int
    missing: tuple[str, ...]
    only_in_archive: tuple[str, ...]
    # Bot mode: stretches the bot could not see, in words (bounds and why).
    holes: tuple[str, ...] = field(default=())

    @property
    def complete(self) -> bool:
        return not self.missing and not self.holes


def verify(config: Config) -> list[RoomReport]:
    if config.source.mode == "matrix_sync":
        return _verify_bot(config)
    from mxarchiverd.sources.synapse_db.report import CoveredRange, open_synapse, source_event_ids

    with open_archive(config, purpose="verify", autocommit=True) as archive, \
         open_synapse(config, "verify synapse", timeout_factor=6) as source:
        registry = load_registry(archive, config.rooms, config.source.auto_discover_bridged_rooms)
        covered = CoveredRange.of(load_stream_cursors(archive))
        rooms = [r for r in registry.rooms.values() if registry.should_archive(r.room_id, 2**62) and r.history_done]
        reports = []
        for room in sorted(rooms, key=lambda r: r.room_id):
            expected = source_event_ids(source, room, covered)
            stored = archived_event_ids(archive, room.room_id)
            reports.append(RoomReport(room.room_id, len(expected), len(stored),
                                      tuple(sorted(expected - stored)), tuple(sorted(stored - expected))))
        return reports


def _verify_bot(config: Config) -> list[RoomReport]:
    with open_archive(config, purpose="verify", autocommit=True) as archive:
        coverage = bot_coverage(archive)
        reports = []
        for room in coverage.rooms:
            holes = tuple(_describe_hole(h) for h in coverage.unfilled_holes if h["room_id"] == room["room_id"])
            stored = archived_event_ids(archive, room["room_id"])
            reports.append(RoomReport(room["room_id"], len(stored), len(stored), (), (), holes))
        return reports


def _describe_hole(hole: dict[str, object]) -> str:
    end = hole["before_event_id"] or "(still out of the room)"
    return (f"{hole['state']} hole after {hole['after_event_id'] or '(unknown)'} until {end}: "
            f"{hole['kind']} by {hole['by'] or '-'} ({hole['reason'] or 'no reason'})")


def render(reports: list[RoomReport]) -> str:
    lines = []
    for r in reports:
        verdict = "ok" if not r.missing else f"MISSING {len(r.missing)}: {', '.join(r.missing[:10])}"
        extra = f"; {len(r.only_in_archive)} only in archive" if r.only_in_archive else ""
        lines.append(f"{r.room_id}: source {r.source}, archived {r.archived}: {verdict}{extra}")
        lines += [f"  HOLE {hole}" for hole in r.holes]
    missing = sum(len(r.missing) for r in reports)
    holes = sum(len(r.holes) for r in reports)
    lines.append(f"{len(reports)} room(s) checked, {missing} event(s) missing from the archive"
                 + (f", {holes} hole(s) the bot could not see" if holes else ""))
    return "\n".join(lines)
