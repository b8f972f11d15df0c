"""Realistic chat traffic written into Synapse's real schema, the way Synapse writes it.

The generator is deterministic (seeded) and produces, per room, the state a room
created by Element has (create, creator's join, power levels, join rules,
history visibility, name, members with display names), then a message stream:
plain text (20-300 chars, some non-ASCII), replies with their HTML fallback,
thread messages, notices and emotes, ~5% media (m.image mostly, some m.file and
m.video, with mxc:// URLs and local_media_repository rows), edits (same sender,
m.new_content), reactions, redactions (with a `redactions` row) and occasional
display-name changes. Event JSON has the shape of a room v10 event as Synapse
stores it in event_json (auth_events, prev_events, hashes, signatures, unsigned).

Two ways to write it:
- bulk_load(): COPY into the tables (events, event_json, state_events,
  current_state_events, room_memberships, rooms, redactions, event_relations,
  event_edges, local_media_repository), then stream_positions and the sequence,
  as if Synapse had persisted it all;
- persist(): what Synapse's persister does live, for latency benchmarks:
  orderings from events_stream_seq in their own transaction, one persist
  transaction, then the writer's stream_positions row in a separate autocommit
  transaction after the commit (synapse-bridge-facts.md §2.4).
"""
from __future__ import annotations

import base64
import hashlib
import random
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg

SERVER = "bench.test"
ROOM_VERSION = "10"
_WORDS = (
    "the be to of and a in that have I it for not on with he as you do at this but his by from they we say "
    "her she or an will my one all would there their what so up out if about who get which go me when make "
    "can like time no just him know take people into year your good some could them see other than then now "
    "look only come its over think also back after use two how our work first well way even new want because "
    "any these give day most us meeting tomorrow tonight lunch coffee project deadline photo video call "
    "meeting later ok okay thanks sure maybe yes great awesome lol haha plan review deploy server release"
).split()
_UNICODE_WORDS = ("café", "naïve", "Grüße", "façade", "señor", "привет", "спасибо", "こんにちは", "ありがとう",
                  "日本語", "中文", "مرحبا", "שלום", "😀", "👍", "🎉", "❤️", "🙏", "🚀", "😂", "über", "ñandú")
_REACTION_KEYS = ("👍", "❤️", "😂", "🎉", "🙏", "😮", "😢", "👀", "✅", "🔥")
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# Message stream mix (fractions of non-setup events).
MIX = (
    ("text", 0.730), ("notice", 0.010), ("emote", 0.010), ("media", 0.050), ("edit", 0.040),
    ("reaction", 0.140), ("redaction", 0.015), ("displayname", 0.005),
)


@dataclass
class Event:
    event_id: str
    room_id: str
    type: str
    sender: str
    content: dict[str, Any]
    depth: int
    prev: list[str]
    state_key: str | None = None
    redacts: str | None = None
    ts: int = 0
    stream_ordering: int = 0
    # Side rows Synapse writes in the same persist transaction.
    membership: tuple[str, str | None] | None = None  # (membership, display name)
    relation: tuple[str, str, str | None] | None = None  # (relates_to_id, rel_type, aggregation key)
    media: list[tuple[str, str, int, str]] = field(default_factory=list)  # (media_id, mime, size, name)

    def json(self, pool: _Pool) -> str:
        event: dict[str, Any] = {
            "auth_events": pool.auth_events(self.room_id), "prev_events": self.prev, "type": self.type,
            "room_id": self.room_id, "sender": self.sender, "content": self.content, "depth": self.depth,
            "origin": SERVER, "origin_server_ts": self.ts,
            "hashes": {"sha256": pool.text(43)},
            "signatures": {SERVER: {"ed25519:a_bnch": pool.text(86)}},
            "unsigned": {"age_ts": self.ts},
        }
        if self.state_key is not None:
            event["state_key"] = self.state_key
        if self.redacts is not None:
            event["redacts"] = self.redacts
        return orjson.dumps(event).decode()

    @property
    def contains_url(self) -> bool:
        return bool(self.media)


class _Pool:
    """Random-looking base64 text without calling the RNG per character."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.blob = "".join(rng.choice(_B64) for _ in range(1 << 16))
        self.room_auth: dict[str, list[str]] = {}

    def text(self, n: int) -> str:
        start = self.rng.randrange(0, len(self.blob) - n)
        return self.blob[start:start + n]

    def auth_events(self, room_id: str) -> list[str]:
        return self.room_auth.get(room_id, [])


@dataclass
class Room:
    room_id: str
    name: str
    creator: str
    members: list[str]
    depth: int = 0
    last_event: str | None = None
    recent: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=200))  # (event_id, sender)
    threads: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    names: dict[str, str] = field(default_factory=dict)


class World:
    """Users, rooms and the event generator; every choice comes from one seeded RNG."""

    def __init__(self, seed: int = 6, users: int = 120, run_tag: str = "", media: bool = True) -> None:
        self.rng = random.Random(seed)
        self.pool = _Pool(self.rng)
        self.seed, self.tag = seed, run_tag
        self.users = [f"@user{i}:{SERVER}" for i in range(users)]
        self.rooms: list[Room] = []
        self.weights: list[float] = []
        self.counter = 0
        mix = MIX if media else tuple((kind, w) for kind, w in MIX if kind != "media")
        self.kinds, self.kind_weights = zip(*mix)

    # --- ids and text ---------------------------------------------------------

    def event_id(self) -> str:
        self.counter += 1
        digest = hashlib.sha256(f"{self.seed}:{self.tag}:{self.counter}".encode()).digest()
        return "$" + base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def media_id(self) -> str:
        self.counter += 1
        digest = hashlib.sha256(f"media:{self.seed}:{self.tag}:{self.counter}".encode()).digest()
        return base64.b64encode(digest).decode()[:24].replace("+", "x").replace("/", "y")

    def body(self) -> str:
        r = self.rng.random()
        target = self.rng.randint(20, 80) if r < 0.6 else self.rng.randint(80, 180) if r < 0.9 \
            else self.rng.randint(180, 300)
        words: list[str] = []
        length = 0
        unicode_rate = 0.08 if self.rng.random() < 0.3 else 0.0
        while length < target:
            word = self.rng.choice(_UNICODE_WORDS) if self.rng.random() < unicode_rate else self.rng.choice(_WORDS)
            words.append(word)
            length += len(word) + 1
        text = " ".join(words)[:target].strip()
        return text[0].upper() + text[1:] if text else "ok"

    # --- rooms ----------------------------------------------------------------

    def create_rooms(self, count: int, ts: int) -> list[Event]:
        """Room creation as Element does it; returns the state events in order."""
        events: list[Event] = []
        first = len(self.rooms)
        for i in range(first, first + count):
            creator = self.users[i % len(self.users)]
            size = self.rng.randint(4, 40)
            members = [creator] + [u for u in self.rng.sample(self.users, size) if u != creator]
            room = Room(f"!{self.pool.text(18).replace('+', 'a').replace('/', 'b')}:{SERVER}",
                        f"Room {i} {self.rng.choice(_WORDS)}", creator, members)
            self.rooms.append(room)
            self.weights.append(1.0 / (i + 1) ** 0.8)
            events += self._room_setup(room, ts)
        return events

    def _room_setup(self, room: Room, ts: int) -> list[Event]:
        c = room.creator
        events = [self._state(room, c, "m.room.create", "", {"creator": c, "room_version": ROOM_VERSION}, ts)]
        events.append(self._member(room, c, ts))
        events.append(self._state(room, c, "m.room.power_levels", "", {
            "users": {c: 100}, "users_default": 0, "events_default": 0, "state_default": 50,
            "ban": 50, "kick": 50, "redact": 50, "invite": 0,
            "events": {"m.room.name": 50, "m.room.power_levels": 100}}, ts))
        events.append(self._state(room, c, "m.room.join_rules", "", {"join_rule": "invite"}, ts))
        events.append(self._state(room, c, "m.room.history_visibility", "", {"history_visibility": "shared"}, ts))
        self.pool.room_auth[room.room_id] = [e.event_id for e in events[:4]]
        events.append(self._state(room, c, "m.room.name", "", {"name": room.name}, ts))
        events += [self._member(room, user, ts) for user in room.members[1:]]
        return events

    def _state(self, room: Room, sender: str, type_: str, state_key: str, content: dict[str, Any], ts: int) -> Event:
        return self._event(room, sender, type_, content, ts, state_key=state_key)

    def _member(self, room: Room, user: str, ts: int, name: str | None = None) -> Event:
        name = name or f"{user[1:].split(':')[0].title()} {self.rng.choice(('Smith', 'Müller', 'Rossi', 'Tanaka', 'Silva'))}"
        room.names[user] = name
        event = self._event(room, user, "m.room.member", {"membership": "join", "displayname": name}, ts,
                            state_key=user)
        event.membership = ("join", name)
        return event

    def _event(self, room: Room, sender: str, type_: str, content: dict[str, Any], ts: int, **extra: Any) -> Event:
        room.depth += 1
        event = Event(self.event_id(), room.room_id, type_, sender, content, room.depth,
                      [room.last_event] if room.last_event else [], ts=ts, **extra)
        room.last_event = event.event_id
        return event

    # --- the message stream -----------------------------------------------------

    def stream(self, count: int, ts_start: int, ts_step_ms: float = 1500.0) -> Iterator[Event]:
        ts = float(ts_start)
        for _ in range(count):
            ts += self.rng.expovariate(1.0 / ts_step_ms)
            yield self.next_event(int(ts))

    def next_event(self, ts: int) -> Event:
        room = self.rng.choices(self.rooms, self.weights)[0]
        kind = self.rng.choices(self.kinds, self.kind_weights)[0]
        if kind in ("edit", "reaction", "redaction") and not room.recent:
            kind = "text"
        return getattr(self, f"_{kind}")(room, ts)

    def _sender(self, room: Room) -> str:
        return self.rng.choice(room.members)

    def _text(self, room: Room, ts: int, msgtype: str = "m.text") -> Event:
        sender, body = self._sender(room), self.body()
        content: dict[str, Any] = {"msgtype": msgtype, "body": body}
        r = self.rng.random()
        if r < 0.08 and room.recent:
            target, target_sender = self.rng.choice(room.recent)
            content = {"msgtype": msgtype, "body": f"> <{target_sender}> ...\n\n{body}",
                       "format": "org.matrix.custom.html",
                       "formatted_body": f"<mx-reply><blockquote><a href=\"https://matrix.to/#/{room.room_id}/"
                                         f"{target}\">In reply to</a></blockquote></mx-reply>{body}",
                       "m.relates_to": {"m.in_reply_to": {"event_id": target}}}
        elif r < 0.14 and room.recent:
            root = room.threads[-1] if room.threads and self.rng.random() < 0.7 else self.rng.choice(room.recent)[0]
            room.threads.append(root)
            content["m.relates_to"] = {"rel_type": "m.thread", "event_id": root, "is_falling_back": True,
                                       "m.in_reply_to": {"event_id": room.last_event or root}}
        event = self._event(room, sender, "m.room.message", content, ts)
        relates = content.get("m.relates_to", {})
        if relates.get("rel_type") == "m.thread":
            event.relation = (relates["event_id"], "m.thread", None)
        room.recent.append((event.event_id, sender))
        return event

    def _notice(self, room: Room, ts: int) -> Event:
        return self._text(room, ts, "m.notice")

    def _emote(self, room: Room, ts: int) -> Event:
        return self._text(room, ts, "m.emote")

    def _media(self, room: Room, ts: int) -> Event:
        sender = self._sender(room)
        r = self.rng.random()
        if r < 0.8:
            msgtype, mime, name = "m.image", "image/jpeg", f"IMG_{self.rng.randint(1000, 9999)}.jpg"
        elif r < 0.9:
            msgtype, mime, name = "m.file", "application/pdf", f"{self.rng.choice(_WORDS)}-report.pdf"
        else:
            msgtype, mime, name = "m.video", "video/mp4", f"VID_{self.rng.randint(1000, 9999)}.mp4"
        media_id, size = self.media_id(), self.rng.randint(20_000, 4_000_000)
        info: dict[str, Any] = {"mimetype": mime, "size": size}
        event_media = [(media_id, mime, size, name)]
        if msgtype != "m.file":
            thumb_id, thumb_size = self.media_id(), self.rng.randint(5_000, 60_000)
            info.update(w=self.rng.choice((800, 1280, 1920)), h=self.rng.choice((600, 960, 1080)),
                        thumbnail_url=f"mxc://{SERVER}/{thumb_id}",
                        thumbnail_info={"mimetype": "image/jpeg", "size": thumb_size, "w": 320, "h": 240})
            event_media.append((thumb_id, "image/jpeg", thumb_size, "thumbnail.jpg"))
        content = {"msgtype": msgtype, "body": name, "url": f"mxc://{SERVER}/{media_id}", "info": info}
        event = self._event(room, sender, "m.room.message", content, ts)
        event.media = event_media
        room.recent.append((event.event_id, sender))
        return event

    def media_message(self, size: int, ts: int, mime: str = "application/octet-stream") -> Event:
        """An m.file of exactly `size` bytes in a random room (its file is the caller's to write)."""
        room = self.rng.choices(self.rooms, self.weights)[0]
        sender, media_id = self._sender(room), self.media_id()
        name = f"file-{media_id[:6]}.bin"
        content = {"msgtype": "m.file", "body": name, "url": f"mxc://{SERVER}/{media_id}",
                   "info": {"mimetype": mime, "size": size}}
        event = self._event(room, sender, "m.room.message", content, ts)
        event.media = [(media_id, mime, size, name)]
        return event

    def _edit(self, room: Room, ts: int) -> Event:
        target, sender = self.rng.choice(room.recent)
        body = self.body()
        content = {"msgtype": "m.text", "body": f"* {body}", "m.new_content": {"msgtype": "m.text", "body": body},
                   "m.relates_to": {"rel_type": "m.replace", "event_id": target}}
        event = self._event(room, sender, "m.room.message", content, ts)
        event.relation = (target, "m.replace", None)
        return event

    def _reaction(self, room: Room, ts: int) -> Event:
        target, _ = self.rng.choice(room.recent)
        key = self.rng.choice(_REACTION_KEYS)
        event = self._event(room, self._sender(room), "m.reaction",
                            {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}}, ts)
        event.relation = (target, "m.annotation", key)
        return event

    def _redaction(self, room: Room, ts: int) -> Event:
        target, sender = self.rng.choice(room.recent)
        content = {"reason": "oops"} if self.rng.random() < 0.3 else {}
        return self._event(room, sender, "m.room.redaction", content, ts, redacts=target)

    def _displayname(self, room: Room, ts: int) -> Event:
        user = self._sender(room)
        return self._member(room, user, ts, name=f"{self.body()[:20].strip()} ({user[1:5]})")


# --- writing ------------------------------------------------------------------

EVENT_COLUMNS = ("topological_ordering", "event_id", "type", "room_id", "processed", "outlier", "depth",
                 "origin_server_ts", "received_ts", "sender", "contains_url", "instance_name", "stream_ordering",
                 "state_key", "rejection_reason")


def _rows(event: Event, json_text: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row Synapse's persister writes for this event (the ones the archiver may touch)."""
    ts = event.ts
    rows: dict[str, list[tuple[Any, ...]]] = {
        "events": [(event.depth, event.event_id, event.type, event.room_id, True, False, event.depth, ts, ts,
                    event.sender, event.contains_url, "master", event.stream_ordering, event.state_key, None)],
        "event_json": [(event.event_id, event.room_id,
                        f'{{"txn_id":"m{ts}.{event.depth}","token_id":{event.depth % 97}}}', json_text, 3)],
        "event_edges": [(event.event_id, p, event.room_id, False) for p in event.prev],
    }
    if event.state_key is not None:
        rows["state_events"] = [(event.event_id, event.room_id, event.type, event.state_key, None)]
    if event.membership:
        membership, name = event.membership
        rows["room_memberships"] = [(event.event_id, event.state_key, event.sender, event.room_id, membership, 0,
                                     name, None, event.stream_ordering, False)]
    if event.redacts:
        rows["redactions"] = [(event.event_id, event.redacts, False, ts, True)]
    if event.relation:
        rows["event_relations"] = [(event.event_id, *event.relation)]
    if event.media:
        rows["local_media_repository"] = [(mid, mime, size, ts - 2000, name, event.sender)
                                          for mid, mime, size, name in event.media]
    return rows


TABLE_COLUMNS = {
    "events": EVENT_COLUMNS,
    "event_json": ("event_id", "room_id", "internal_metadata", "json", "format_version"),
    "event_edges": ("event_id", "prev_event_id", "room_id", "is_state"),
    "state_events": ("event_id", "room_id", "type", "state_key", "prev_state"),
    "room_memberships": ("event_id", "user_id", "sender", "room_id", "membership", "forgotten", "display_name",
                         "avatar_url", "event_stream_ordering", "participant"),
    "redactions": ("event_id", "redacts", "have_censored", "received_ts", "recheck"),
    "event_relations": ("event_id", "relates_to_id", "relation_type", "aggregation_key"),
    "local_media_repository": ("media_id", "media_type", "media_length", "created_ts", "upload_name", "user_id"),
}


class CurrentState:
    """(room, type, state_key) -> (event_id, membership, stream_ordering): what current_state_events holds."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str, str], tuple[str, str | None, int]] = {}

    def apply(self, event: Event) -> None:
        if event.state_key is not None:
            membership = event.membership[0] if event.membership else None
            self.entries[(event.room_id, event.type, event.state_key)] = (event.event_id, membership,
                                                                         event.stream_ordering)

    def rows(self) -> Iterator[tuple[Any, ...]]:
        for (room_id, type_, state_key), (event_id, membership, ordering) in self.entries.items():
            yield (event_id, room_id, type_, state_key, membership, ordering)


def bulk_load(dsn: str, world: World, events: Iterable[Event], *, progress_every: int = 100_000) -> int:
    """COPY the events (orderings 1..n) and their side rows; set stream_positions and the sequence.

    Returns the last stream ordering. VACUUM ANALYZE afterwards (the source of a
    real archiver is a steady-state database, not one full of unset hint bits).
    """
    state = CurrentState()
    ordering = 0
    started = time.monotonic()
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        buffers: dict[str, list[tuple[Any, ...]]] = {t: [] for t in TABLE_COLUMNS}
        for event in events:
            ordering += 1
            event.stream_ordering = ordering
            state.apply(event)
            for table, rows in _rows(event, event.json(world.pool)).items():
                buffers[table].extend(rows)
            if ordering % 20_000 == 0:
                _flush(cur, buffers)
            if progress_every and ordering % progress_every == 0:
                print(f"bench:   generated {ordering:,} events ({time.monotonic() - started:.0f}s)", flush=True)
        _flush(cur, buffers)
        _copy(cur, "rooms", ("room_id", "is_public", "creator", "room_version", "has_auth_chain_index"),
              [(r.room_id, False, r.creator, ROOM_VERSION, True) for r in world.rooms])
        _copy(cur, "current_state_events", ("event_id", "room_id", "type", "state_key", "membership",
                                            "event_stream_ordering"), list(state.rows()))
        cur.execute("SELECT setval('events_stream_seq', %s)", (ordering,))
        set_position(cur, ordering)
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
    return ordering


def _flush(cur: psycopg.Cursor[Any], buffers: dict[str, list[tuple[Any, ...]]]) -> None:
    for table, rows in buffers.items():
        if rows:
            _copy(cur, table, TABLE_COLUMNS[table], rows)
            rows.clear()


def _copy(cur: psycopg.Cursor[Any], table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def set_position(cur: psycopg.Cursor[Any] | psycopg.Connection, position: int, stream: str = "events") -> None:
    cur.execute("""INSERT INTO stream_positions (stream_name, instance_name, stream_id) VALUES (%s, 'master', %s)
                   ON CONFLICT (stream_name, instance_name) DO UPDATE SET stream_id = EXCLUDED.stream_id""",
                (stream, position))


# --- live persisting (latency) ---------------------------------------------------------

def _insert_sql(table: str) -> str:
    columns = TABLE_COLUMNS[table]
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"


_INSERTS = {table: _insert_sql(table) for table in TABLE_COLUMNS}
_CURRENT_STATE_UPSERT = """
INSERT INTO current_state_events (event_id, room_id, type, state_key, membership, event_stream_ordering)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (room_id, type, state_key) DO UPDATE
   SET event_id = EXCLUDED.event_id, membership = EXCLUDED.membership,
       event_stream_ordering = EXCLUDED.event_stream_ordering
"""


class Persister:
    """One Synapse event writer ('master'): allocate, persist, then publish the position."""

    def __init__(self, dsn: str, world: World) -> None:
        self.world = world
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.position = int(self.conn.execute(
            "SELECT COALESCE(MAX(stream_id), 0) FROM stream_positions WHERE stream_name = 'events'"
        ).fetchone()[0])  # type: ignore[index]

    def close(self) -> None:
        self.conn.close()

    def persist(self, events: list[Event]) -> float:
        """Write `events` like Synapse; returns the wall-clock time (time.time()) of the commit."""
        orderings = [r[0] for r in self.conn.execute(
            "SELECT nextval('events_stream_seq') FROM generate_series(1, %s)", (len(events),)).fetchall()]
        now_ms = int(time.time() * 1000)
        by_table: dict[str, list[tuple[Any, ...]]] = {}
        state_rows = []
        for event, ordering in zip(events, orderings):
            event.stream_ordering, event.ts = ordering, now_ms
            for table, rows in _rows(event, event.json(self.world.pool)).items():
                by_table.setdefault(table, []).extend(rows)
            if event.state_key is not None:
                state_rows.append((event.event_id, event.room_id, event.type, event.state_key,
                                   event.membership[0] if event.membership else None, ordering))
        with self.conn.transaction(), self.conn.cursor() as cur:
            for table in TABLE_COLUMNS:  # events first, as Synapse does
                if by_table.get(table):
                    cur.executemany(_INSERTS[table], by_table[table])
            if state_rows:
                cur.executemany(_CURRENT_STATE_UPSERT, state_rows)
        committed = time.time()
        # Only the writer's own finished position; single writer and in-order commits here.
        self.position = max(self.position, max(orderings))
        set_position(self.conn, self.position)
        return committed
