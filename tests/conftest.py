"""Shared fixtures: real PostgreSQL, a real Synapse, the bridge schema, the storage double."""
from __future__ import annotations

pytest_plugins = [
    "tests.support.pg",
    "tests.support.pgbouncer",
    "tests.support.synapse",
    "tests.support.bridge",
    "tests.support.synth",
    "tests.support.storage_double",
    "tests.support.nio_driver",
    "tests.support.password_pg",
]
