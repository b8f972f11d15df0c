"""Shared helpers of the benchmarks under bench/ (not part of the package)."""
from __future__ import annotations

import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO = BENCH_DIR.parent
CACHE_DIR = BENCH_DIR / ".cache"
RESULTS_DIR = BENCH_DIR / "results"

# tests.support (real Synapse, storage double) is imported from the checkout.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
