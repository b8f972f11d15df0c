"""verify's report: text for people (one line per room, one per problem) and JSON for scripts."""
from __future__ import annotations

from typing import Any

from mxarchiverd.progress import format_seconds
from mxarchiverd.verification.problems import KINDS, MediaReport, Outcome, Problem, RoomReport

SHOWN_PER_ROOM = 10
EXIT_MEANINGS = {0: "complete", 4: "differences found", 5: "not settled yet: run verify again later"}


def room_line(report: RoomReport) -> str:
    verdict = "ok" if not report.missing else f"MISSING {len(report.missing)}: {', '.join(report.missing[:10])}"
    extra = f"; {len(report.only_in_archive)} only in archive" if report.only_in_archive else ""
    return f"{report.room_id}: source {report.source}, archived {report.archived}: {verdict}{extra}"


def problem_line(problem: Problem) -> str:
    label = problem.kind.upper().replace("_", " ")
    where = problem.event_id or "-"
    source = f" (Synapse: {problem.source_has})" if problem.source_has else ""
    detail = f": {problem.detail}" if problem.detail else ""
    mxc = f" {problem.matrix_url}" if problem.matrix_url else ""
    return f"  {label} {where}{mxc}{detail}{source}"


def render_rooms(reports: list[RoomReport] | tuple[RoomReport, ...]) -> list[str]:
    lines = []
    for report in reports:
        lines.append(room_line(report))
        others = [p for p in report.problems if p.kind != "missing"]
        lines += [problem_line(p) for p in others[:SHOWN_PER_ROOM]]
        if len(others) > SHOWN_PER_ROOM:
            lines.append(f"  ... and {len(others) - SHOWN_PER_ROOM} more (--json lists all)")
    return lines


def media_lines(media: MediaReport) -> list[str]:
    head = (f"media: {media.checked} stored object(s) read back ({media.bytes_read} bytes), "
            f"{media.pending} job(s) still queued, {media.refused} refused by policy")
    shown = [problem_line(p).replace("  ", f"  {p.room_id} ", 1) for p in media.problems[:50]]
    more = [f"  ... and {len(media.problems) - 50} more (--json lists all)"] if len(media.problems) > 50 else []
    return [head, *shown, *more]


def render_text(outcome: Outcome, elapsed: float | None = None) -> str:
    lines = render_rooms(outcome.rooms)
    if outcome.media is not None:
        lines += media_lines(outcome.media)
    counts = outcome.counts()
    summary = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items())) or "none"
    took = f" in {format_seconds(elapsed)}" if elapsed is not None else ""
    lines.append(f"{len(outcome.rooms)} room(s) checked{took}, {sum(counts.values())} problem(s): {summary}")
    if outcome.repair is not None:
        done = ", ".join(f"{what} {n}" for what, n in outcome.repair.done.items()) or "nothing"
        lines.append(f"repair: {done}; {len(outcome.repair.unrepairable)} problem(s) cannot be repaired")
    code = outcome.exit_code
    lines.append(f"exit {code}: {EXIT_MEANINGS.get(code, '')}")
    return "\n".join(lines)


def as_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "mode": outcome.mode,
        "scope": outcome.scope.as_dict(),
        "exit_code": outcome.exit_code,
        "complete": outcome.exit_code == 0,
        "problem_counts": outcome.counts(),
        "kinds": {kind: KINDS[kind] for kind in outcome.counts()},
        "rooms": [{"room_id": r.room_id, "source": r.source, "archived": r.archived,
                   "only_in_archive": list(r.only_in_archive),
                   "problems": [p.as_dict() for p in r.problems]} for r in outcome.rooms],
        "media": None if outcome.media is None else {
            "checked": outcome.media.checked, "bytes_read": outcome.media.bytes_read,
            "pending": outcome.media.pending, "refused": outcome.media.refused,
            "problems": [p.as_dict() for p in outcome.media.problems]},
        "repair": None if outcome.repair is None else {
            "done": outcome.repair.done, "unrepairable": [p.as_dict() for p in outcome.repair.unrepairable]},
    }
