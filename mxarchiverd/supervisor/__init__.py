"""The supervisor process and its pure parts.

- supervisor.py  the loop (process shell): run_supervisor(config) -> exit code
- fleet.py       every child's state and what to do next (pure, fake-clock tested)
- children.py    one child's state machine, backoff, restart intensity (pure)
- reload.py      old vs new Config -> hot reconfigure / restart / refuse (pure)
- status.py      the STATUS= line (pure)
- channels.py    pipeline queues, control pipes, envelope codecs
- heartbeat.py   lock-free shared-memory heartbeat slots
- notify.py      sd_notify
- signals.py     the signal wakeup pipe

Importing this package imports none of them: children import channels and
heartbeat without pulling in the supervisor's loop.
"""
from __future__ import annotations
