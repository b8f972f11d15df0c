"""Bytes of a media file: hashing a local file, or downloading it over the client API.

Downloads stream to a temporary file and stop as soon as the size limit is
passed, so a hostile or huge file never fills memory or the disk.
"""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from urllib.parse import quote

import httpx

from mxarchiverd.media.errors import MediaRefused
from mxarchiverd.media.paths import MxcUri

CHUNK = 1 << 20


class FetchFailed(Exception):
    """The file could not be had this time (not on disk, HTTP error); worth retrying later."""


def sha256_of(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as reader:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def download(homeserver_url: str, access_token: str | None, mxc: MxcUri, limit: int, workdir: Path,
              timeout: float = 60.0) -> Path:
    """Fetch via /_matrix/client/v1/media/download (authenticated media) into a temp file."""
    if not access_token:
        raise FetchFailed(f"{mxc} is not in the media store and matrix.access_token is not set for the media API")
    url = (f"{homeserver_url}/_matrix/client/v1/media/download/"
           f"{quote(mxc.server_name, safe='')}/{quote(mxc.media_id, safe='')}")
    headers = {"Authorization": f"Bearer {access_token}"}
    target = Path(tempfile.mkstemp(prefix="media-", dir=workdir)[1])
    try:
        with httpx.stream("GET", url, headers=headers, params={"timeout_ms": "20000"}, timeout=timeout,
                          follow_redirects=True) as response:
            if response.status_code != 200:
                raise FetchFailed(f"{mxc}: media API answered HTTP {response.status_code}")
            _write_limited(response, target, limit, mxc)
    except httpx.HTTPError as exc:
        target.unlink(missing_ok=True)
        raise FetchFailed(f"{mxc}: media API unreachable: {type(exc).__name__}") from None
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def _write_limited(response: httpx.Response, target: Path, limit: int, mxc: MxcUri) -> None:
    written = 0
    with target.open("wb") as writer:
        for chunk in response.iter_bytes(CHUNK):
            written += len(chunk)
            if written > limit:
                raise MediaRefused(f"{mxc}: larger than processing.max_file_size ({limit} bytes)")
            writer.write(chunk)
