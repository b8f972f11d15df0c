"""Prometheus metrics (`metrics.listen`), off by default.

- instruments.py  the metrics and the calls stages make to move them (no-ops when off)
- directory.py    the run's private multiprocess directory, made by the supervisor

The "metrics" child that serves /metrics is a stage: workers/metrics.py.
"""
from __future__ import annotations
