"""What passes between the daemon's processes; imported by the supervisor and the workers alike.

- messages.py   typed batches between stages (EventBatch, RowBatch), their wire form
- cursors.py    the typed cursors the batches carry
- merging.py    batches waiting for the dbwriter merged into fewer transactions
- channels.py   the queues, control pipes and envelope codecs
- heartbeat.py  lock-free shared-memory heartbeat slots

It imports neither side, so there is no import cycle between them.
"""
from __future__ import annotations
