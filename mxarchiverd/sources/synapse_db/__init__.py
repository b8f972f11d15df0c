"""The synapse_db source: Synapse's database, read-only.

- streams.py   the event streams followed, declared once (name, direction, read, bound)
- bounds.py    their commit-safe bounds (stream_positions)
- reader.py    the read-only queries on Synapse's tables
- follower.py  the Source: one round over every stream and per-room history
"""
from __future__ import annotations
