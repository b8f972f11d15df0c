"""A small synchronous Matrix client-server API client for tests.

It sends real HTTP to a real Synapse, so events, relations and uploads land in
Synapse's database exactly as a user's client would put them there.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

JsonDict = dict[str, Any]
CLIENT_V3 = "/_matrix/client/v3"
UPLOAD_CHUNK = 1 << 20
# Uploads of tens of MB through a busy 2-core Synapse can take a while.
UPLOAD_TIMEOUT = httpx.Timeout(30.0, write=300.0, read=300.0)


class MatrixError(RuntimeError):
    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        super().__init__(f"{method} {url} -> {status}: {body[:500]}")
        self.status = status
        self.body = body


def _q(part: str) -> str:
    # Ids carry '!', '$' and ':'; room v3 event ids even carry '/' and '+'.
    return quote(part, safe="")


def new_txn_id() -> str:
    return uuid.uuid4().hex


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(UPLOAD_CHUNK):
            yield chunk


class MatrixClient:
    """A logged-in user. Methods return ids; errors raise :class:`MatrixError`."""

    def __init__(self, base_url: str, user_id: str, access_token: str,
                 device_id: str | None = None, password: str | None = None) -> None:
        self.base_url = base_url
        self.user_id = user_id
        self.access_token = access_token
        self.device_id = device_id
        self.password = password
        self.http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=httpx.Timeout(30.0),
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> MatrixClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> JsonDict:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 300:
            raise MatrixError(method, path, response.status_code, response.text)
        return response.json()

    # Rooms -----------------------------------------------------------------

    def create_room(self, name: str | None = None, preset: str = "private_chat",
                    encrypted: bool = False, invite: list[str] | None = None,
                    room_version: str | None = None) -> str:
        body: JsonDict = {"preset": preset, "invite": list(invite or [])}
        if name is not None:
            body["name"] = name
        if room_version is not None:
            body["room_version"] = room_version
        if encrypted:
            body["initial_state"] = [{
                "type": "m.room.encryption", "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }]
        return self.request("POST", f"{CLIENT_V3}/createRoom", json=body)["room_id"]

    def join(self, room_id: str) -> str:
        return self.request("POST", f"{CLIENT_V3}/join/{_q(room_id)}", json={})["room_id"]

    def invite(self, room_id: str, user_id: str) -> None:
        self.request("POST", f"{CLIENT_V3}/rooms/{_q(room_id)}/invite", json={"user_id": user_id})

    def leave(self, room_id: str) -> None:
        self.request("POST", f"{CLIENT_V3}/rooms/{_q(room_id)}/leave", json={})

    # Events ----------------------------------------------------------------

    def send(self, room_id: str, event_type: str, content: JsonDict) -> str:
        path = f"{CLIENT_V3}/rooms/{_q(room_id)}/send/{_q(event_type)}/{new_txn_id()}"
        return self.request("PUT", path, json=content)["event_id"]

    def send_text(self, room_id: str, body: str, reply_to: str | None = None,
                  thread_root: str | None = None, msgtype: str = "m.text") -> str:
        content: JsonDict = {"msgtype": msgtype, "body": body}
        relates = _relates_to(reply_to, thread_root)
        if relates:
            content["m.relates_to"] = relates
        return self.send(room_id, "m.room.message", content)

    def react(self, room_id: str, event_id: str, key: str) -> str:
        relates = {"rel_type": "m.annotation", "event_id": event_id, "key": key}
        return self.send(room_id, "m.reaction", {"m.relates_to": relates})

    def edit(self, room_id: str, event_id: str, new_body: str, msgtype: str = "m.text") -> str:
        # The spec'd shape: fallback body prefixed "* ", the real one in m.new_content.
        content = {
            "msgtype": msgtype,
            "body": f"* {new_body}",
            "m.new_content": {"msgtype": msgtype, "body": new_body},
            "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
        }
        return self.send(room_id, "m.room.message", content)

    def redact(self, room_id: str, event_id: str, reason: str | None = None) -> str:
        path = f"{CLIENT_V3}/rooms/{_q(room_id)}/redact/{_q(event_id)}/{new_txn_id()}"
        body = {} if reason is None else {"reason": reason}
        return self.request("PUT", path, json=body)["event_id"]

    def send_state(self, room_id: str, event_type: str, state_key: str,
                   content: JsonDict) -> str:
        path = f"{CLIENT_V3}/rooms/{_q(room_id)}/state/{_q(event_type)}"
        if state_key:
            path += f"/{_q(state_key)}"
        return self.request("PUT", path, json=content)["event_id"]

    def set_room_name(self, room_id: str, name: str) -> str:
        return self.send_state(room_id, "m.room.name", "", {"name": name})

    def set_displayname(self, name: str) -> None:
        path = f"{CLIENT_V3}/profile/{_q(self.user_id)}/displayname"
        self.request("PUT", path, json={"displayname": name})

    def messages(self, room_id: str, limit: int = 100, direction: str = "b") -> list[JsonDict]:
        params = {"dir": direction, "limit": str(limit)}
        path = f"{CLIENT_V3}/rooms/{_q(room_id)}/messages"
        return self.request("GET", path, params=params)["chunk"]

    # Media -----------------------------------------------------------------

    def upload(self, data: bytes | Path | str, content_type: str, filename: str) -> str:
        """Upload bytes, or stream a file from a path without reading it whole."""
        if isinstance(data, bytes):
            size, body = len(data), data
        else:
            path = Path(data)
            size, body = path.stat().st_size, _file_chunks(path)
        # Synapse rejects uploads without Content-Length; giving it also stops
        # httpx from switching the streamed body to chunked encoding.
        headers = {"Content-Type": content_type, "Content-Length": str(size)}
        response = self.http.post("/_matrix/media/v3/upload", params={"filename": filename},
                                  content=body, headers=headers, timeout=UPLOAD_TIMEOUT)
        if response.status_code >= 300:
            raise MatrixError("POST", "/_matrix/media/v3/upload", response.status_code,
                              response.text)
        return response.json()["content_uri"]

    def download(self, mxc: str) -> bytes:
        """Fetch media via the authenticated endpoint (legacy v3 404s new media)."""
        server_name, media_id = mxc.removeprefix("mxc://").split("/", 1)
        path = f"/_matrix/client/v1/media/download/{_q(server_name)}/{_q(media_id)}"
        response = self.http.get(path, timeout=UPLOAD_TIMEOUT)
        if response.status_code >= 300:
            raise MatrixError("GET", path, response.status_code, response.text)
        return response.content


def _relates_to(reply_to: str | None, thread_root: str | None) -> JsonDict | None:
    if thread_root is not None:
        # In a thread the reply target falls back to the root unless given.
        return {
            "rel_type": "m.thread",
            "event_id": thread_root,
            "is_falling_back": reply_to is None,
            "m.in_reply_to": {"event_id": reply_to or thread_root},
        }
    if reply_to is not None:
        return {"m.in_reply_to": {"event_id": reply_to}}
    return None
