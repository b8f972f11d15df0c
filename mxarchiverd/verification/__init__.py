"""`mxarchiverd verify`: prove the archive complete, and repair what it lacks.

- problems.py  what verify can find (a table of kinds), the reports, the exit code
- events.py    one room: Synapse's view against the archive's (pure)
- media.py     every attachment stored, read back streamed, size and sha256 compared
- repair.py    re-archive what is missing or wrong through the normal pipeline
- run.py       one run over the rooms in scope, in either source mode
- render.py    the text and JSON reports

The archive's side of the facts is archive/audit.py, Synapse's is
sources/synapse_db/audit.py.
"""
from __future__ import annotations
