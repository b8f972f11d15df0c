"""Live traffic into a Synapse-schema database (tests/support/synth.py), and the checks
that the archive equals it: every event once, every file byte for byte."""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import psycopg

from tests.support.synth import SERVER, add_room, insert_event, set_position

ALICE = f"@alice:{SERVER}"


class LiveTraffic(threading.Thread):
    """Commits text events (and every `media_every`-th an image on disk) like a busy homeserver."""

    def __init__(self, dsn: str, rooms: list[str], *, media_store: Path | None = None, media_every: int = 0,
                 pause_s: float = 0.01) -> None:
        super().__init__(daemon=True, name="live-traffic")
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.rooms, self.media_store, self.media_every, self.pause_s = rooms, media_store, media_every, pause_s
        self.stopped = threading.Event()
        self.count = 0
        self.error: BaseException | None = None
        for room in rooms:
            add_room(self.conn, room)

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.pause_s):
                self.write_one()
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def write_one(self) -> str:
        room = self.rooms[self.count % len(self.rooms)]
        if self.media_store is not None and self.media_every and self.count % self.media_every == 0:
            content = self._image()
        else:
            content = {"msgtype": "m.text", "body": f"n{self.count}"}
        event_id, position = insert_event(self.conn, room, "m.room.message", content)
        set_position(self.conn, position)
        self.count += 1
        return event_id

    def _image(self) -> dict[str, object]:
        assert self.media_store is not None
        media_id = f"Media{self.count:06d}{os.urandom(6).hex()}"
        path = self.media_store / "local_content" / media_id[:2] / media_id[2:4] / media_id[4:]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2000 + self.count % 5000))
        self.conn.execute("INSERT INTO local_media_repository (media_id, media_type, media_length, created_ts,"
                          " upload_name, user_id) VALUES (%s, 'image/png', %s, 0, 'p.png', %s)",
                          (media_id, path.stat().st_size, ALICE))
        return {"msgtype": "m.image", "body": "p.png", "url": f"mxc://{SERVER}/{media_id}",
                "info": {"mimetype": "image/png"}}

    def stop(self) -> None:
        self.stopped.set()
        self.join(10)
        self.conn.close()
        if self.error is not None:
            raise AssertionError(f"the traffic writer failed: {self.error!r}")


def source_ids(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT event_id FROM events")}


def archive_ids(dsn: str) -> list[str]:
    with psycopg.connect(dsn, prepare_threshold=None) as conn:
        return [r[0] for r in conn.execute("SELECT event_id FROM archived_messages")]


def archived_count(dsn: str) -> int:
    with psycopg.connect(dsn, prepare_threshold=None) as conn:
        return int(conn.execute("SELECT count(*) FROM archived_messages").fetchone()[0])  # type: ignore[index]


def stored_media(dsn: str) -> dict[str, tuple[str, str]]:
    """matrix_url -> (storage_path, sha256) of every archived file."""
    with psycopg.connect(dsn, prepare_threshold=None) as conn:
        rows = conn.execute("SELECT matrix_url, storage_path, sha256 FROM archived_media").fetchall()
    return {url: (path, sha) for url, path, sha in rows}


def source_media(media_store: Path) -> dict[str, str]:
    """mxc URL -> sha256 of every local file under the media store."""
    found = {}
    for path in (media_store / "local_content").glob("*/*/*"):
        media_id = path.parent.parent.name + path.parent.name + path.name
        found[f"mxc://{SERVER}/{media_id}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


BULK_HISTORY_SQL = """
WITH s AS (
    SELECT nextval('events_stream_seq') AS so, g FROM generate_series(1, %(n)s) AS g
), e AS (
    INSERT INTO events (topological_ordering, event_id, type, room_id, processed, outlier, depth, origin_server_ts,
                        received_ts, sender, contains_url, instance_name, stream_ordering)
    SELECT so, '$hist' || so || 'x' || %(tag)s, 'm.room.message', (%(rooms)s::text[])[1 + g %% %(room_count)s],
           true, false, so, 1700000000000 + g, 1700000000000 + g, %(sender)s, false, 'master', so
      FROM s
    RETURNING event_id, room_id, stream_ordering, origin_server_ts
)
INSERT INTO event_json (event_id, room_id, internal_metadata, json, format_version)
SELECT event_id, room_id, '{}',
       jsonb_build_object('type', 'm.room.message', 'room_id', room_id, 'sender', %(sender)s,
                          'origin_server_ts', origin_server_ts, 'depth', stream_ordering,
                          'content', jsonb_build_object('msgtype', 'm.text', 'body', 'history ' || stream_ordering))::text,
       3
  FROM e
"""


def bulk_history(dsn: str, rooms: list[str], count: int, tag: str = "h") -> None:
    """`count` text events already in the rooms' history (one statement), the stream position after them."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for room in rooms:
            add_room(conn, room)
        conn.execute(BULK_HISTORY_SQL, {"n": count, "tag": tag, "rooms": rooms, "room_count": len(rooms),
                                        "sender": ALICE})
        top = conn.execute("SELECT max(stream_ordering) FROM events").fetchone()[0]  # type: ignore[index]
        set_position(conn, int(top))
