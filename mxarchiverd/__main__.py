from __future__ import annotations

from mxarchiverd.cli import main

raise SystemExit(main())
