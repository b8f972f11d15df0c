"""JSON requests that nio has no method for, sent through the nio client's own HTTP session.

Going through ``AsyncClient.send`` keeps one connection pool, the proxy and TLS
settings of the client. The access token travels only in the Authorization
header and is never part of an error message.
"""
from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from nio import AsyncClient

JsonDict = dict[str, Any]
CLIENT_V3 = "/_matrix/client/v3"
MAX_RATE_LIMITED = 5
DEFAULT_RETRY_S = 5.0
MAX_RETRY_S = 60.0


class MatrixRequestError(RuntimeError):
    """The homeserver refused a request; ``status`` and ``errcode`` say how."""

    def __init__(self, method: str, path: str, status: int, body: JsonDict) -> None:
        self.status, self.body = status, body
        self.errcode = str(body.get("errcode", ""))
        error = str(body.get("error", ""))[:300]
        super().__init__(f"{method} {path} -> {status} {self.errcode}: {error}".rstrip(": "))


def q(part: str) -> str:
    """Quote one path component (ids carry '!', '$', ':' and '/')."""
    return quote(part, safe="")


def retry_delay_s(headers: Any, body: JsonDict) -> float:
    """How long a 429 asks us to wait: the Retry-After header wins over retry_after_ms (v1.10)."""
    header = headers.get("Retry-After") if headers is not None else None
    try:
        seconds = float(header) if header is not None else float(body["retry_after_ms"]) / 1000
    except (KeyError, TypeError, ValueError):
        seconds = DEFAULT_RETRY_S
    return min(max(seconds, 0.0), MAX_RETRY_S)


async def send_json(client: AsyncClient, method: str, path: str,
                    body: JsonDict | None = None) -> tuple[int, JsonDict]:
    """Send once per rate limit; return (status, body) for any answer other than a 429."""
    headers = {"Content-Type": "application/json",
               "Authorization": f"Bearer {client.access_token}"}
    data = None if body is None else json.dumps(body)
    for _ in range(MAX_RATE_LIMITED):
        response = await client.send(method, path, data, headers)
        async with response:
            status, answer = response.status, await _json_body(response)
        if status != 429:
            return status, answer
        await asyncio.sleep(retry_delay_s(response.headers, answer))
    return status, answer


async def request_json(client: AsyncClient, method: str, path: str,
                       body: JsonDict | None = None) -> JsonDict:
    """Send and return the body of a 2xx answer; raise :class:`MatrixRequestError` otherwise."""
    status, answer = await send_json(client, method, path, body)
    if not 200 <= status < 300:
        raise MatrixRequestError(method, path, status, answer)
    return answer


async def _json_body(response: Any) -> JsonDict:
    try:
        parsed = json.loads(await response.read() or b"{}")
    except ValueError:
        return {"error": "answer is not JSON"}
    return parsed if isinstance(parsed, dict) else {"error": "answer is not a JSON object"}
