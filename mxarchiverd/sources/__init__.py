"""Where events come from: one source per `source.mode` (the interface is base.py).

- synapse_db/   Synapse's database, read-only (the primary source)
- matrix_sync/  the client-server API as a bot user (seed 000)
- bridge_db.py, room_state.py   lookups the enricher makes (names, WhatsApp ids)

A source is imported only when its mode is configured, so the database mode
never imports the Matrix client library.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable

from mxarchiverd.config import Config
from mxarchiverd.sources.base import Source

# source.mode -> "module:Class" of its follower.
FOLLOWERS: dict[str, str] = {
    "synapse_db": "mxarchiverd.sources.synapse_db.follower:SynapseFollower",
    "matrix_sync": "mxarchiverd.sources.matrix_sync.follower:SyncFollower",
}


def make_source(config: Config, beat: Callable[[], None]) -> Source:
    module_name, _, class_name = FOLLOWERS[config.source.mode].partition(":")
    follower: type[Source] = getattr(importlib.import_module(module_name), class_name)
    return follower(config, beat)
