"""A Supabase Storage double on a real socket, following supabase-storage-facts.md.

Production code talks to it over HTTP exactly as it talks to Supabase: `/storage/v1`
prefix, service-key auth, errors as `{"statusCode","error","message"}` with HTTP 400
(500 only for code 500, as Supabase renders them), upsert, size and mime checks, TUS.
Objects and uploads live in files under a temp dir, never whole in memory.

Where the facts are silent the double follows the storage server's source, and says so:
- the gateway (hosted Kong) answers 401 `{"message": ...}` without a known `apikey`;
  a missing Authorization is 400/"400", an unknown bearer 400/"403" "invalid signature";
- TUS errors carry the real status with a plain-text body (storage's onResponseError);
  a completed non-final PATCH under 5 MiB is refused with 400 and not kept, while the
  bytes of an interrupted PATCH are kept (tus file store), so HEAD can resume;
- `x-upsert` is checked on every TUS request, as Supabase re-checks rights per PATCH;
- resumable uploads obey the bucket's file_size_limit (and `resumable_limit`, unset by
  default), not the standard upload limit;
- HEAD /object/authenticated/... answers 200 or a body-less 400.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import socket
import struct
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import pytest

MiB = 1024 * 1024
DEFAULT_STANDARD_LIMIT = 50 * MiB
TUS_MIN_CHUNK = 5 * MiB
DEFAULT_CONTENT_TYPE = "text/plain;charset=UTF-8"
UPLOAD_KINDS = frozenset({"object_post", "object_put", "tus_patch"})
RLS_MESSAGE = "new row violates row-level security policy"
# An independent copy of storage's rules, so a shared bug cannot hide itself.
_KEY = re.compile(r"[A-Za-z0-9_/!\-.*'() &$@=;:+,?]+")
_BUCKET = re.compile(r"[A-Za-z0-9_!\-.*'() &$@=;:+,?]+")
_PIECE = 64 * 1024


@dataclass
class Bucket:
    id: str
    public: bool = False
    file_size_limit: int | None = None
    allowed_mime_types: list[str] | None = None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.id, "owner": "", "public": self.public,
                "file_size_limit": self.file_size_limit, "allowed_mime_types": self.allowed_mime_types,
                "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z"}


@dataclass
class StoredObject:
    file: Path
    size: int
    content_type: str


@dataclass
class TusUpload:
    bucket: str
    name: str
    content_type: str
    length: int
    file: Path
    offset: int = 0


@dataclass(eq=False)
class Reply(Exception):
    """An answer, raised from anywhere inside a request to stop handling it.

    With `file` set, the body is streamed from it and `length` is its size.
    """

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    file: Path | None = None
    length: int | None = None


class _Abort(Exception):
    """Drop the connection without answering (fault injection)."""


def rest_error(code: int, error: str, message: str) -> Reply:
    body = json.dumps({"statusCode": str(code), "error": error, "message": message}).encode()
    return Reply(500 if code == 500 else 400, body, {"Content-Type": "application/json"})


def tus_error(code: int, message: str) -> Reply:
    return Reply(code, message.encode(), {"Content-Type": "text/plain"})


def json_reply(value: Any, status: int = 200) -> Reply:
    return Reply(status, json.dumps(value).encode(), {"Content-Type": "application/json"})


def mime_allowed(content_type: str, allowed: list[str] | None) -> bool:
    essence = content_type.split(";", 1)[0].strip()
    return not allowed or any(
        essence == pattern or (pattern.endswith("/*") and essence.startswith(pattern[:-1]))
        for pattern in allowed)


_PREFIX = "/storage/v1/"
_OBJECT_ROUTES = {"GET": "object_get", "POST": "object_post", "PUT": "object_put", "DELETE": "object_delete"}
_PREFIXED_OBJECT_ROUTES = {("GET", "public"): "object_public_get", ("GET", "authenticated"): "object_get",
                           ("HEAD", "authenticated"): "object_head"}
_TUS_ROUTES = {"PATCH": "tus_patch", "HEAD": "tus_head", "DELETE": "tus_delete"}


def route(method: str, path: str) -> tuple[str, tuple[str, ...]]:
    """(kind, args) for a request path; kind "unknown" when nothing matches."""
    if not path.startswith(_PREFIX):
        return "unknown", ()
    parts = path[len(_PREFIX):].split("/")
    if parts in (["bucket"], ["upload", "resumable"]):
        return ("bucket_create" if parts == ["bucket"] else "tus_create") if method == "POST" else "unknown", ()
    if len(parts) == 2 and parts[0] == "bucket":
        return "bucket_get" if method == "GET" else "unknown", (unquote(parts[1]),)
    if len(parts) == 3 and parts[:2] == ["upload", "resumable"]:
        return _TUS_ROUTES.get(method, "unknown"), (parts[2],)
    if len(parts) >= 4 and parts[0] == "object" and parts[1] in ("public", "authenticated"):
        kind = _PREFIXED_OBJECT_ROUTES.get((method, parts[1]), "unknown")
        return kind, (unquote(parts[2]), unquote("/".join(parts[3:])))
    if len(parts) >= 3 and parts[0] == "object":
        return _OBJECT_ROUTES.get(method, "unknown"), (unquote(parts[1]), unquote("/".join(parts[2:])))
    return "unknown", ()


def parse_tus_metadata(header: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in header.split(","))):
        key, _, value = item.partition(" ")
        try:
            pairs[key] = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise tus_error(400, f"Upload-Metadata value of {key} is not base64") from None
    return pairs


class BodyReader:
    """The request body (Content-Length or chunked), optionally cut off to inject a reset."""

    def __init__(self, rfile: io.BufferedIOBase, headers: Any, abort_after: int | None) -> None:
        self._rfile = rfile
        self._chunked = headers.get("Transfer-Encoding", "").lower() == "chunked"
        self.declared = None if self._chunked else int(headers.get("Content-Length") or 0)
        self._left = self.declared or 0
        self._chunk_left = 0
        self._ended = False
        self._abort_after = abort_after
        self.total = 0

    def read(self, size: int = _PIECE) -> bytes:
        if self._abort_after is not None:
            if self.total >= self._abort_after:
                raise _Abort()
            size = min(size, self._abort_after - self.total)
        data = self._read_chunked(size) if self._chunked else self._read_plain(size)
        self.total += len(data)
        return data

    def _read_plain(self, size: int) -> bytes:
        data = self._rfile.read(min(size, self._left)) if self._left else b""
        self._left -= len(data)
        return data

    def _read_chunked(self, size: int) -> bytes:
        if self._ended:
            return b""
        if self._chunk_left == 0:
            self._chunk_left = int(self._rfile.readline().split(b";")[0].strip() or b"0", 16)
            if self._chunk_left == 0:
                while self._rfile.readline().strip():
                    pass
                self._ended = True
                return b""
        data = self._rfile.read(min(size, self._chunk_left))
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            self._rfile.readline()
        return data

    def drain(self) -> None:
        while self.read():
            pass

    def into(self, writer: IO[bytes], limit: float) -> int:
        """Copy the body to `writer`, refusing (413) past `limit` bytes."""
        written = 0
        while data := self.read():
            written += len(data)
            if written > limit:
                raise rest_error(413, "Payload too large", "The object exceeded the maximum allowed size")
            writer.write(data)
        return written


@dataclass
class _Faults:
    fail: list[list[Any]] = field(default_factory=list)  # [remaining, status, kinds | None]
    down: str | None = None
    delay: float = 0.0
    reset_next: bool = False


class StorageDouble:
    """State, fault switches and inspection; `_Handler` serves the HTTP side."""

    def __init__(self, root: Path, standard_limit: int = DEFAULT_STANDARD_LIMIT) -> None:
        self.service_key = "service-" + secrets.token_urlsafe(24)
        self.anon_key = "anon-" + secrets.token_urlsafe(24)
        self.standard_limit = standard_limit
        self.resumable_limit: int | None = None
        self._objects_dir = root / "objects"
        self._uploads_dir = root / "uploads"
        self._objects_dir.mkdir(parents=True)
        self._uploads_dir.mkdir()
        self._lock = threading.Lock()
        self._buckets: dict[str, Bucket] = {}
        self._objects: dict[tuple[str, str], StoredObject] = {}
        self._uploads: dict[str, TusUpload] = {}
        self._counts: Counter[str] = Counter()
        # (kind, start, end) in time.monotonic() of each request served: how many were
        # open at once (the media benchmark's transfers in flight).
        self._spans: list[tuple[str, float, float]] = []
        self._faults = _Faults()
        # Tracebacks of the double's own failures; the fixture fails the test on any.
        self.internal_errors: list[str] = []
        self._server = _Server(self)
        # A short poll interval only makes stop() prompt; requests never wait on it.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        name="storage-double", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.close_all()
        self._server.server_close()
        self._thread.join()

    # ---- fault switches -------------------------------------------------------------
    def fail_next(self, n: int, status: int = 500, kinds: Collection[str] | None = None) -> None:
        """The next `n` requests (of `kinds`, default any) fail with `status`."""
        with self._lock:
            self._faults.fail.append([n, status, set(kinds) if kinds else None])

    def down(self, mode: str = "close") -> None:
        """Every request is refused: "close" drops the connection unanswered, "503" answers 503."""
        if mode not in ("close", "503"):
            raise ValueError(f"down mode {mode!r}: expected 'close' or '503'")
        self._faults.down = mode

    def up(self) -> None:
        self._faults.down = None

    def delay(self, seconds: float) -> None:
        """Answer every request `seconds` late (0 turns it off)."""
        self._faults.delay = seconds

    def reset_mid_upload_next(self) -> None:
        """The next upload (POST/PUT object, TUS PATCH) is cut off halfway through its body."""
        self._faults.reset_next = True

    def current_delay(self) -> float:
        return self._faults.delay

    def take_fault(self, kind: str) -> tuple[str, int] | None:
        """The fault that applies to this request, consumed; None to serve it."""
        with self._lock:
            if self._faults.down:
                return (self._faults.down, 503)
            for entry in self._faults.fail:
                if entry[0] > 0 and (entry[2] is None or kind in entry[2]):
                    entry[0] -= 1
                    return ("fail", entry[1])
            if self._faults.reset_next and kind in UPLOAD_KINDS:
                self._faults.reset_next = False
                return ("reset", 0)
        return None

    # ---- inspection -----------------------------------------------------------------
    def count(self, kind: str) -> int:
        with self._lock:
            return self._counts[kind]

    @property
    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def spans(self) -> list[tuple[str, float, float]]:
        """(kind, start, end) of every request served so far, from its headers read to its answer sent."""
        with self._lock:
            return list(self._spans)

    def objects(self, bucket: str) -> dict[str, StoredObject]:
        with self._lock:
            return {name: obj for (b, name), obj in self._objects.items() if b == bucket}

    def object_bytes_sha256(self, bucket: str, path: str) -> str | None:
        with self._lock:
            obj = self._objects.get((bucket, path))
        if obj is None:
            return None
        digest = hashlib.sha256()
        with open(obj.file, "rb") as reader:
            while block := reader.read(MiB):
                digest.update(block)
        return digest.hexdigest()

    def bucket(self, bucket_id: str) -> Bucket | None:
        with self._lock:
            return self._buckets.get(bucket_id)

    def create_bucket(self, bucket: Bucket) -> bool:
        with self._lock:
            if bucket.id in self._buckets:
                return False
            self._buckets[bucket.id] = bucket
            return True

    # ---- state changes used by the handler -----------------------------------------
    def record(self, kind: str) -> None:
        with self._lock:
            self._counts[kind] += 1

    def record_span(self, kind: str, start: float) -> None:
        with self._lock:
            self._spans.append((kind, start, time.monotonic()))

    def get_object(self, bucket: str, name: str) -> StoredObject | None:
        with self._lock:
            return self._objects.get((bucket, name))

    def new_object_file(self) -> Path:
        return self._objects_dir / uuid.uuid4().hex

    def commit(self, bucket: str, name: str, stored: StoredObject, upsert: bool) -> None:
        with self._lock:
            old = self._objects.get((bucket, name))
            if old is not None and not upsert:
                stored.file.unlink()
                raise rest_error(409, "Duplicate", "The resource already exists")
            self._objects[(bucket, name)] = stored
        if old is not None:
            old.file.unlink(missing_ok=True)

    def remove_object(self, bucket: str, name: str) -> bool:
        with self._lock:
            old = self._objects.pop((bucket, name), None)
        if old is not None:
            old.file.unlink(missing_ok=True)
        return old is not None

    def new_upload(self, bucket: str, name: str, content_type: str, length: int) -> str:
        upload_id = base64.urlsafe_b64encode(f"{bucket}/{name}/{uuid.uuid4()}".encode()).decode().rstrip("=")
        upload = TusUpload(bucket, name, content_type, length, self._uploads_dir / uuid.uuid4().hex)
        upload.file.touch()
        with self._lock:
            self._uploads[upload_id] = upload
        return upload_id

    def get_upload(self, upload_id: str) -> TusUpload | None:
        with self._lock:
            return self._uploads.get(upload_id)

    def drop_upload(self, upload_id: str) -> None:
        with self._lock:
            upload = self._uploads.pop(upload_id, None)
        if upload is not None:
            upload.file.unlink(missing_ok=True)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, double: StorageDouble) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.double = double
        self._live: set[socket.socket] = set()
        self._live_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._live_lock:
            self._live.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._live_lock:
            self._live.discard(request)
        super().shutdown_request(request)

    def close_all(self) -> None:
        with self._live_lock:
            live = list(self._live)
        for sock in live:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (timeouts, faults) are normal; anything else is a double bug."""
        if not isinstance(sys.exc_info()[1], OSError):
            self.double.internal_errors.append(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # http.server writes an answer's head and body in two sends; with Nagle's algorithm
        # the body then waits for the client's delayed ACK, 40 ms per request on Linux. The
        # gateway in front of Supabase Storage (nginx: tcp_nodelay on) sends at once.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest shows failures, not every request."""

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_HEAD = do_DELETE = do_GET

    @property
    def double(self) -> StorageDouble:
        return self.server.double

    def _dispatch(self) -> None:
        start = time.monotonic()
        kind, args = route(self.command, urlsplit(self.path).path)
        try:
            self._dispatch_kind(kind, args)
        finally:
            self.double.record_span(kind, start)

    def _dispatch_kind(self, kind: str, args: tuple[str, ...]) -> None:
        self.double.record(kind)
        if self.double.current_delay():
            time.sleep(self.double.current_delay())  # emulated latency, not a test wait
        fault = self.double.take_fault(kind)
        self.body = BodyReader(self.rfile, self.headers, self._abort_point() if fault == ("reset", 0) else None)
        try:
            if fault and fault[0] == "close":
                raise _Abort()
            reply = self._fault_reply(kind, fault) if fault and fault[0] != "reset" else self._serve(kind, args)
            self.body.drain()
        except _Abort:
            self._hard_close()
            return
        self._send(reply)

    def _serve(self, kind: str, args: tuple[str, ...]) -> Reply:
        try:
            handler: Callable[..., Reply] = getattr(self, f"_h_{kind}")
            return handler(*args)
        except Reply as reply:
            return reply

    def _abort_point(self) -> int:
        return max(1, int(self.headers.get("Content-Length") or 2) // 2)

    def _fault_reply(self, kind: str, fault: tuple[str, int]) -> Reply:
        status = fault[1]
        if fault[0] == "503":
            return Reply(503, b'{"message":"Service Unavailable"}', {"Content-Type": "application/json"})
        if kind.startswith("tus_"):
            return tus_error(status, "injected fault")
        return rest_error(status, "InternalError" if status >= 500 else "InjectedFault", "injected fault")

    def _hard_close(self) -> None:
        # RST, not FIN: the client sees a reset, as with a crashed proxy.
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.connection.close()

    def _send(self, reply: Reply) -> None:
        if reply.file is None:
            self._send_head(reply)
            if self.command != "HEAD":
                self.wfile.write(reply.body)
            return
        try:
            reader = open(reply.file, "rb")
        except FileNotFoundError:  # replaced meanwhile; the client sees a reset and retries
            self._hard_close()
            return
        with reader:
            self._send_head(reply)
            if self.command != "HEAD":
                shutil.copyfileobj(reader, self.wfile, _PIECE)

    def _send_head(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body) if reply.length is None else reply.length))
        self.end_headers()

    # ---- auth -----------------------------------------------------------------------
    def _role(self) -> str:
        """"service" or "anon", after the gateway's apikey check and storage's JWT check."""
        apikey = self.headers.get("apikey")
        if apikey is None:
            raise Reply(401, b'{"message":"No API key found in request"}', {"Content-Type": "application/json"})
        if apikey not in (self.double.service_key, self.double.anon_key):
            raise Reply(401, b'{"message":"Invalid API key"}', {"Content-Type": "application/json"})
        auth = self.headers.get("Authorization")
        if auth is None:
            raise rest_error(400, "Error", "headers must have required property 'authorization'")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        roles = {self.double.service_key: "service", self.double.anon_key: "anon"}
        if token not in roles:
            raise rest_error(403, "Unauthorized", "invalid signature")
        return roles[token]

    def _require_writer(self, tus: bool = False) -> None:
        if self._role() != "service":
            raise tus_error(403, RLS_MESSAGE) if tus else rest_error(403, "Unauthorized", RLS_MESSAGE)

    def _existing_bucket(self, bucket_id: str, tus: bool = False) -> Bucket:
        bucket = self.double.bucket(bucket_id)
        if bucket is None:
            raise tus_error(404, "Bucket not found") if tus else rest_error(404, "Bucket not found", "Bucket not found")
        return bucket

    # ---- buckets --------------------------------------------------------------------
    def _h_unknown(self, *_args: str) -> Reply:
        message = f"Route {self.command}:{urlsplit(self.path).path} not found"
        return Reply(404, json.dumps({"statusCode": 404, "error": "Not Found", "message": message}).encode(),
                     {"Content-Type": "application/json"})

    def _h_bucket_create(self) -> Reply:
        self._require_writer()
        bucket = _bucket_from_json(self.body.read(MiB))
        if not self.double.create_bucket(bucket):
            raise rest_error(409, "Duplicate", "The resource already exists")
        return json_reply({"name": bucket.id})

    def _h_bucket_get(self, bucket_id: str) -> Reply:
        if self._role() != "service":
            raise rest_error(404, "Bucket not found", "Bucket not found")  # RLS hides it
        return json_reply(self._existing_bucket(bucket_id).as_json())

    # ---- objects --------------------------------------------------------------------
    def _h_object_post(self, bucket_id: str, name: str) -> Reply:
        return self._upload(bucket_id, name, self.headers.get("x-upsert", "false").lower() == "true")

    def _h_object_put(self, bucket_id: str, name: str) -> Reply:
        return self._upload(bucket_id, name, True)

    def _upload(self, bucket_id: str, name: str, upsert: bool) -> Reply:
        self._require_writer()
        bucket = self._existing_bucket(bucket_id)
        _check_key(name, tus=False)
        content_type = self.headers.get("Content-Type") or DEFAULT_CONTENT_TYPE
        if not mime_allowed(content_type, bucket.allowed_mime_types):
            raise rest_error(415, "invalid_mime_type", f"mime type {content_type} is not supported")
        limit = min(self.double.standard_limit, bucket.file_size_limit or self.double.standard_limit)
        if (self.body.declared or 0) > limit:
            raise rest_error(413, "Payload too large", "The object exceeded the maximum allowed size")
        if not upsert and self.double.get_object(bucket_id, name) is not None:
            raise rest_error(409, "Duplicate", "The resource already exists")
        stored = self._receive(content_type, limit)
        self.double.commit(bucket_id, name, stored, upsert)
        return json_reply({"Key": f"{bucket_id}/{name}", "Id": str(uuid.uuid4())})

    def _receive(self, content_type: str, limit: int) -> StoredObject:
        target = self.double.new_object_file()
        try:
            with open(target, "wb") as writer:
                size = self.body.into(writer, limit)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return StoredObject(target, size, content_type)

    def _h_object_get(self, bucket_id: str, name: str) -> Reply:
        role = self._role()
        self._existing_bucket(bucket_id)
        return self._stream_object(bucket_id, name, visible=role == "service")

    def _h_object_public_get(self, bucket_id: str, name: str) -> Reply:
        bucket = self.double.bucket(bucket_id)
        if bucket is None or not bucket.public:
            raise rest_error(404, "Bucket not found", "Bucket not found")
        return self._stream_object(bucket_id, name, visible=True)

    def _stream_object(self, bucket_id: str, name: str, visible: bool) -> Reply:
        stored = self.double.get_object(bucket_id, name) if visible else None
        if stored is None:
            raise rest_error(404, "not_found", "Object not found")
        return Reply(200, b"", {"Content-Type": stored.content_type}, stored.file, stored.size)

    def _h_object_head(self, bucket_id: str, name: str) -> Reply:
        stored = self.double.get_object(bucket_id, name) if self._role() == "service" else None
        if stored is None:
            return Reply(400)
        return Reply(200, b"", {"Content-Type": stored.content_type}, length=stored.size)

    def _h_object_delete(self, bucket_id: str, name: str) -> Reply:
        self._require_writer()
        self._existing_bucket(bucket_id)
        if not self.double.remove_object(bucket_id, name):
            raise rest_error(404, "not_found", "Object not found")
        return json_reply({"message": "Successfully deleted"})

    # ---- TUS ------------------------------------------------------------------------
    def _tus_preamble(self) -> None:
        self._require_writer(tus=True)
        if self.headers.get("Tus-Resumable") != "1.0.0":
            raise tus_error(412, "Unsupported version")

    def _upsert(self) -> bool:
        return self.headers.get("x-upsert", "false").lower() == "true"

    def _h_tus_create(self) -> Reply:
        self._tus_preamble()
        length = self.headers.get("Upload-Length", "")
        if not length.isdigit():
            raise tus_error(400, "Upload-Length or Upload-Defer-Length header required")
        meta = parse_tus_metadata(self.headers.get("Upload-Metadata", ""))
        if not meta.get("bucketName") or not meta.get("objectName"):
            raise tus_error(400, "Metadata header is required")
        bucket = self._existing_bucket(meta["bucketName"], tus=True)
        _check_key(meta["objectName"], tus=True)
        self._check_tus_limits(bucket, meta.get("contentType", DEFAULT_CONTENT_TYPE), int(length))
        self._check_tus_upsert(bucket.id, meta["objectName"])
        upload_id = self.double.new_upload(bucket.id, meta["objectName"],
                                           meta.get("contentType", DEFAULT_CONTENT_TYPE), int(length))
        self._finish_if_complete(upload_id)
        location = f"{self.double.url}/storage/v1/upload/resumable/{upload_id}"
        return Reply(201, b"", {"Location": location, "Tus-Resumable": "1.0.0"})

    def _check_tus_limits(self, bucket: Bucket, content_type: str, length: int) -> None:
        if not mime_allowed(content_type, bucket.allowed_mime_types):
            raise tus_error(415, f"mime type {content_type} is not supported")
        limits = [v for v in (bucket.file_size_limit, self.double.resumable_limit) if v is not None]
        if limits and length > min(limits):
            raise tus_error(413, "Maximum size exceeded")

    def _check_tus_upsert(self, bucket_id: str, name: str) -> None:
        if not self._upsert() and self.double.get_object(bucket_id, name) is not None:
            raise tus_error(409, "The resource already exists")

    def _upload_or_404(self, upload_id: str) -> TusUpload:
        upload = self.double.get_upload(upload_id)
        if upload is None:
            raise tus_error(404, "The file for this url was not found")
        return upload

    def _h_tus_head(self, upload_id: str) -> Reply:
        self._role()
        upload = self._upload_or_404(upload_id)
        return Reply(200, b"", {"Upload-Offset": str(upload.offset), "Upload-Length": str(upload.length),
                                "Tus-Resumable": "1.0.0", "Cache-Control": "no-store"})

    def _h_tus_delete(self, upload_id: str) -> Reply:
        self._tus_preamble()
        self._upload_or_404(upload_id)
        self.double.drop_upload(upload_id)
        return Reply(204, b"", {"Tus-Resumable": "1.0.0"})

    def _h_tus_patch(self, upload_id: str) -> Reply:
        self._tus_preamble()
        upload = self._upload_or_404(upload_id)
        if self.headers.get("Content-Type") != "application/offset+octet-stream":
            raise tus_error(415, "Content-Type header is invalid")
        if self.headers.get("Upload-Offset") != str(upload.offset):
            raise tus_error(409, "Upload-Offset header does not match current offset of the upload")
        self._check_tus_upsert(upload.bucket, upload.name)
        if upload.offset + (self.body.declared or 0) > upload.length:
            raise tus_error(413, "Maximum size exceeded")
        received = self._append(upload)
        if upload.offset < upload.length and received < TUS_MIN_CHUNK:
            upload.offset -= received
            raise tus_error(400, f"every chunk but the last must be at least {TUS_MIN_CHUNK} bytes, got {received}")
        self._finish_if_complete(upload_id)
        return Reply(204, b"", {"Upload-Offset": str(upload.offset), "Tus-Resumable": "1.0.0"})

    def _append(self, upload: TusUpload) -> int:
        start = upload.offset
        with open(upload.file, "r+b") as writer:
            writer.seek(start)
            try:
                return self.body.into(writer, upload.length - start)
            finally:
                # Bytes that arrived stay even if the connection died (tus file store).
                upload.offset = writer.tell()

    def _finish_if_complete(self, upload_id: str) -> None:
        upload = self.double.get_upload(upload_id)
        if upload is None or upload.offset < upload.length:
            return
        target = self.double.new_object_file()
        os.truncate(upload.file, upload.length)
        os.replace(upload.file, target)
        self.double.drop_upload(upload_id)
        stored = StoredObject(target, upload.length, upload.content_type)
        try:
            self.double.commit(upload.bucket, upload.name, stored, self._upsert())
        except Reply as reply:
            raise tus_error(409, "The resource already exists") from reply


def _check_key(name: str, tus: bool) -> None:
    if not name or not _KEY.fullmatch(name):
        raise tus_error(400, f"Invalid key: {name}") if tus else rest_error(400, "InvalidKey", f"Invalid key: {name}")


def _bucket_from_json(raw: bytes) -> Bucket:
    try:
        data = json.loads(raw)
    except ValueError:
        raise rest_error(400, "InvalidRequest", "body must be JSON") from None
    bucket_id = data.get("id") or data.get("name") if isinstance(data, dict) else None
    if not isinstance(bucket_id, str) or not _BUCKET.fullmatch(bucket_id):
        raise rest_error(400, "Invalid Input", "Bucket name invalid")
    limit = data.get("file_size_limit")
    mimes = data.get("allowed_mime_types")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise rest_error(400, "InvalidRequest", "Invalid file size format, hint: use 20GB / 20MB / 30KB / 3B")
    if mimes is not None and not (isinstance(mimes, list) and all(isinstance(m, str) for m in mimes)):
        raise rest_error(400, "InvalidRequest", "allowed_mime_types must be a list of strings")
    return Bucket(bucket_id, bool(data.get("public", False)), limit, mimes or None)


@pytest.fixture
def storage_double(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageDouble]:
    """A running Supabase Storage double; `.url` is a SUPABASE_URL, `.service_key` its key."""
    double = StorageDouble(tmp_path_factory.mktemp("storage-double"))
    double.start()
    try:
        yield double
    finally:
        double.stop()
    assert not double.internal_errors, "storage double failed:\n" + "\n".join(double.internal_errors)
