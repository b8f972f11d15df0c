"""The queues between pipeline stages, the supervisor's control pipes, and their codecs.

Data envelopes (stage -> stage) are JSON-native dicts, `{"v": 1, "kind": ..., ...}`
(a typed message's wire form, pipeline/messages.py, with the version added), encoded by orjson at the producer
so that a non-JSON value fails there, in the stage that made it, and not in
the consumer. `{"v": 1, "kind": "end"}` is the end-of-stream marker.

A message may carry one `attachment`, bytes that are already encoded (a row batch's
INSERT payload, about a megabyte of JSON): it travels after the envelope and a
newline (compact JSON never holds a raw newline), as it is. Inside the envelope it
would be a JSON string, every quote escaped by the producer and unescaped by the
consumer, and a str in between (four bytes a character with any non-ASCII in it);
that cost the dbwriter, on the pipeline's critical path, half its CPU.

Control envelopes (supervisor -> child) are `{"v": 1, "kind": "stop"}` and
`{"v": 1, "kind": "reconfigure", "generation": n, "config": Config}`. They go
over a one-way Pipe with pickle, not orjson: they carry a Config, which reaches
the child by pickle at spawn anyway, and the supervisor must write without a
feeder thread (it runs none while children exist).

Every edge has one producer and one consumer, and a fresh set of queues is made
for every (re)start of the pipeline: a queue that a killed process touched may
hold a stale lock or half a frame, so it is dropped, never reused.
"""
from __future__ import annotations

import fcntl
import multiprocessing
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.queues import Queue
from typing import Any

import orjson

from mxarchiverd.config import Config

VERSION = 1
END = "end"
STOP = "stop"
RECONFIGURE = "reconfigure"
# Batches in flight per edge. Small, so a slow dbwriter pushes back on the poller
# (and little is re-polled after a crash), yet enough to overlap the stages' I/O.
QUEUE_SIZE = 8
# Room for a large Config (many rooms) in a control pipe, so that a send never
# blocks the supervisor on a child that is momentarily not reading.
_CONTROL_PIPE_BYTES = 1 << 20

END_OF_STREAM: bytes = orjson.dumps({"v": VERSION, "kind": END})
ATTACHMENT = "attachment"
_AFTER_ENVELOPE = b"\n"


class EnvelopeError(ValueError):
    """A message that cannot be encoded, or an envelope that cannot be read."""


def encode(message: dict[str, Any]) -> bytes:
    """A message's wire form as envelope bytes (and its attachment after them); raises
    EnvelopeError for non-JSON values."""
    kind = message.get("kind")
    if not isinstance(kind, str) or kind == END or "v" in message:
        raise EnvelopeError(f"a message needs a string 'kind' other than {END!r} and no 'v' key")
    attachment = message.get(ATTACHMENT)
    if attachment is not None and not isinstance(attachment, bytes):
        raise EnvelopeError(f"message of kind {kind!r}: its attachment is {type(attachment).__name__}, not bytes")
    fields = message if attachment is None else {k: v for k, v in message.items() if k != ATTACHMENT}
    try:
        envelope = orjson.dumps({"v": VERSION, **fields})
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise EnvelopeError(f"message of kind {kind!r} is not JSON-native: {exc}") from None
    return envelope if attachment is None else b"".join((envelope, _AFTER_ENVELOPE, attachment))


def decode(data: bytes) -> dict[str, Any]:
    """Envelope bytes back to the wire form (the end marker decodes to {"kind": "end"})."""
    head, after, attachment = data.partition(_AFTER_ENVELOPE)
    try:
        envelope = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"not a JSON envelope: {exc}") from None
    if not isinstance(envelope, dict) or envelope.get("v") != VERSION:
        raise EnvelopeError(f"unsupported envelope version: {_version(envelope)!r}")
    envelope.pop("v")
    if not isinstance(envelope.get("kind"), str):
        raise EnvelopeError("envelope has no kind")
    if ATTACHMENT in envelope:
        raise EnvelopeError("envelope has an attachment field inside it")
    if after:
        envelope[ATTACHMENT] = attachment
    return envelope


def is_end(message: dict[str, Any]) -> bool:
    return message.get("kind") == END


def _version(envelope: Any) -> Any:
    return envelope.get("v") if isinstance(envelope, dict) else type(envelope).__name__


# -- control messages -----------------------------------------------------------

@dataclass(frozen=True)
class Stop:
    """Stop taking in work, drain (send end-of-stream downstream), exit 0."""


@dataclass(frozen=True)
class Reconfigure:
    """Apply this reloaded config's hot settings; `generation` acknowledges it."""

    config: Config
    generation: int


Control = Stop | Reconfigure


def encode_control(message: Control) -> dict[str, Any]:
    if isinstance(message, Reconfigure):
        return {"v": VERSION, "kind": RECONFIGURE, "generation": message.generation, "config": message.config}
    return {"v": VERSION, "kind": STOP}


def decode_control(envelope: Any) -> Control:
    if not isinstance(envelope, dict) or envelope.get("v") != VERSION:
        raise EnvelopeError(f"unsupported control envelope version: {_version(envelope)!r}")
    kind = envelope.get("kind")
    if kind == STOP:
        return Stop()
    if kind == RECONFIGURE and isinstance(envelope.get("config"), Config):
        return Reconfigure(envelope["config"], int(envelope["generation"]))
    raise EnvelopeError(f"unknown control message kind: {kind!r}")


def control_pipe() -> tuple[Connection, Connection]:
    """(child's reading end, supervisor's writing end)."""
    reader, writer = multiprocessing.Pipe(duplex=False)
    _grow_pipe(writer)
    return reader, writer


def send_control(conn: Connection, message: Control) -> bool:
    """Send to a child; False (never an exception) if the child is already gone."""
    try:
        conn.send(encode_control(message))
        return True
    except OSError:
        return False


def _grow_pipe(conn: Connection) -> None:
    # Best effort: Linux may refuse above /proc/sys/fs/pipe-max-size for a non-root user.
    try:
        fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, _CONTROL_PIPE_BYTES)
    except (OSError, AttributeError):
        pass


# -- the pipeline's queues --------------------------------------------------------

@dataclass(frozen=True)
class StageChannels:
    """What one child reads from and writes to (None at the ends of the pipeline)."""

    inbox: Queue[bytes] | None = None
    outbox: Queue[bytes] | None = None


class PipelineQueues:
    """One bounded queue per edge of the pipeline, made fresh for each generation."""

    def __init__(self, ctx: BaseContext, pipeline: Sequence[str], maxsize: int = QUEUE_SIZE) -> None:
        self.pipeline = tuple(pipeline)
        self.edges: list[Queue[bytes]] = [ctx.Queue(maxsize) for _ in self.pipeline[1:]]

    def for_role(self, role: str) -> StageChannels:
        if role not in self.pipeline:
            return StageChannels()
        i = self.pipeline.index(role)
        inbox = self.edges[i - 1] if i > 0 else None
        outbox = self.edges[i] if i < len(self.edges) else None
        return StageChannels(inbox, outbox)

    def close(self) -> None:
        """Drop this generation. The supervisor never put or got, so it has no feeder
        thread to join; releasing the objects closes its copies of the pipe ends."""
        for queue in self.edges:
            queue.close()
        self.edges.clear()
