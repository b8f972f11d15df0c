"""The private directory of one daemon run's metrics (prometheus-client multiprocess mode).

Made by the supervisor before its first child starts, so that every process,
the fork server included, inherits PROMETHEUS_MULTIPROC_DIR; removed when the
supervisor exits. Private to the run: files a previous run left (a crash, a
kill -9) can never be summed into this run's counters. Under systemd it lives in
$RUNTIME_DIRECTORY (tmpfs, the unit's RuntimeDirectory=), else in the temp dir.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

from mxarchiverd.config import Config
from mxarchiverd.metrics.instruments import DIRECTORY_VARIABLE


def prepare(config: Config, environ: MutableMapping[str, str] = os.environ) -> Path | None:
    """Turn metrics on for this run (a fresh directory), or off; the directory or None."""
    environ.pop(DIRECTORY_VARIABLE, None)
    if config.metrics.listen is None:
        return None
    parent = environ.get("RUNTIME_DIRECTORY", "").split(":")[0] or None
    path = Path(tempfile.mkdtemp(prefix="mxarchiverd-metrics-", dir=parent))
    environ[DIRECTORY_VARIABLE] = str(path)
    return path


def remove(path: Path | None, environ: MutableMapping[str, str] = os.environ) -> None:
    if path is None:
        return
    if environ.get(DIRECTORY_VARIABLE) == str(path):
        environ.pop(DIRECTORY_VARIABLE)
    shutil.rmtree(path, ignore_errors=True)
