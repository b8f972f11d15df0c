"""The archive database gateway: the only code that sends SQL to the archive.

- connection.py   opening connections (the only reader of config.archive_dsn)
- batches.py      one batch: rows, media jobs, redactions, edits, rooms, quarantine, cursor
- batch_sql.py    the statements batches.py runs
- cursors.py      durable source cursors (loaded at start, stored with their rows)
- rooms.py        the monitored_rooms registry and its rules
- bridge_ids.py   WhatsApp ids the bridge recorded after the message was archived
- leadership.py   the HA lease and the fence check of every batch
- ...             media_queue, sync_state, room_state, reports, audit, migrations, privileges
"""
from __future__ import annotations
