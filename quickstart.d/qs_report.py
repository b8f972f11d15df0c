"""What the quickstart prints: the archive's rooms, messages and media as short tables."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

BODY_WIDTH = 44

ROOMS_SQL = """
SELECT r.room_id, COALESCE(r.room_name, max(m.room_name), '') AS name, r.enabled,
       count(m.id) FILTER (WHERE m.state_key IS NULL) AS messages,
       count(m.id) FILTER (WHERE m.state_key IS NOT NULL) AS state_events
  FROM monitored_rooms r LEFT JOIN archived_messages m USING (room_id)
 GROUP BY r.room_id, r.room_name, r.enabled ORDER BY name"""

# State events (creation, membership, power levels...) are archived too, but a
# newcomer wants to see the conversation: they are counted in the rooms table.
MESSAGES_SQL = """
SELECT event_id, room_name, COALESCE(sender_display_name, sender) AS who, message_type, content,
       relation_type, relates_to_event_id, reaction_key, redacts, reply_to_event_id, thread_id, edited_at, redacted
  FROM archived_messages WHERE state_key IS NULL ORDER BY stream_ordering, id"""

MEDIA_SQL = """
SELECT event_id, media_type, original_filename, file_size, sha256, storage_bucket, storage_path
  FROM archived_media WHERE media_kind = 'file' ORDER BY id"""


def fetch(archive_dsn: str) -> dict[str, list[dict[str, Any]]]:
    with psycopg.connect(archive_dsn, row_factory=dict_row) as conn:
        return {name: conn.execute(query).fetchall()
                for name, query in (("rooms", ROOMS_SQL), ("messages", MESSAGES_SQL), ("media", MEDIA_SQL))}


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def shorten(text: str, width: int = BODY_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def short_id(event_id: str | None) -> str:
    return (event_id or "")[:9]


def describe(row: dict[str, Any]) -> str:
    """The body a user would see, or what a non-text event does."""
    content = row["content"] if isinstance(row["content"], dict) else {}
    if row["relation_type"] == "m.annotation":
        return f"{row['reaction_key']} on {short_id(row['relates_to_event_id'])}"
    if row["redacts"]:
        return f"redacts {short_id(row['redacts'])}"
    body = content.get("body")
    if isinstance(body, str):
        return body
    return shorten(", ".join(sorted(content)) or "(no content)")


def flags(row: dict[str, Any]) -> str:
    marks = []
    if row["edited_at"] is not None:
        marks.append("edited")
    if row["redacted"]:
        marks.append("REDACTED")
    if row["relation_type"] == "m.replace":
        marks.append(f"edit of {short_id(row['relates_to_event_id'])}")
    if row["thread_id"]:
        marks.append(f"thread {short_id(row['thread_id'])}")
    elif row["reply_to_event_id"]:
        marks.append(f"reply to {short_id(row['reply_to_event_id'])}")
    return ", ".join(marks)


def rooms_table(rows: list[dict[str, Any]]) -> str:
    return table(["room", "name", "enabled", "messages", "state events"],
                 [(r["room_id"], r["name"], "yes" if r["enabled"] else "no", r["messages"], r["state_events"])
                  for r in rows])


def messages_table(rows: list[dict[str, Any]]) -> str:
    return table(["event", "sender", "type", "body", "flags"],
                 [(short_id(r["event_id"]), r["who"], r["message_type"], shorten(describe(r)), flags(r))
                  for r in rows])


def on_disk(storage_root: Path, row: dict[str, Any]) -> tuple[str, str]:
    """(where the file is, whether its bytes match the recorded sha256)."""
    path = storage_root / row["storage_bucket"] / row["storage_path"]
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return str(path), "MISSING"
    return str(path), "ok" if digest == row["sha256"] else "DIFFERS"


def media_table(rows: list[dict[str, Any]], storage_root: Path, cwd: Path) -> str:
    out = []
    for r in rows:
        path, check = on_disk(storage_root, r)
        shown = Path(path).relative_to(cwd) if Path(path).is_relative_to(cwd) else path
        out.append((r["original_filename"] or "", r["media_type"], r["file_size"], (r["sha256"] or "")[:16] + "…",
                    check, shown))
    return table(["file", "type", "bytes", "sha256", "on disk", "stored at"], out)


def supabase_section(config_path: Path) -> str:
    return f"""\
Point it at Supabase
  Copy {config_path} (or the commented etc/mxarchiver/config.yaml) and set:
    supabase.url                         https://<project-ref>.supabase.co
    supabase.service_role_key            the service_role key (Project Settings > API); or service_role_key_file
    supabase.database.connection_string  postgresql://postgres.<project-ref>:<password>@<pooler-host>:6543/postgres
    archive.storage_backend              supabase   (media go to the bucket supabase.storage.bucket, private)
  and delete archive.database_url and archive.storage_path, so that the archive uses
  Supabase's database; source.synapse_db_url and source.media_store_path point at your Synapse.
  Then:  mxarchiverd --config FILE check-config && mxarchiverd --config FILE run"""
