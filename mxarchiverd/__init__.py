"""mxarchiverd: archive a Synapse homeserver's messages and media into Supabase."""
from __future__ import annotations

__version__ = "0.1.0"
