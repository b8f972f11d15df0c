"""The supervisor process and its pure parts.

- supervisor.py  the loop (process shell): run_supervisor(config) -> exit code
- fleet.py       every child's state and what to do next (pure, fake-clock tested)
- children.py    one child's state machine, backoff, restart intensity (pure)
- reload.py      old vs new Config -> hot reconfigure / restart / refuse (pure)
- status.py      the STATUS= line (pure)
- notify.py      sd_notify
- signals.py     the signal wakeup pipe

The queues, control pipes and heartbeat slots it shares with its children are
in mxarchiverd/pipeline/, which both sides import: the workers never import
the supervisor.
"""
from __future__ import annotations
