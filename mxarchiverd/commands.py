"""Operator subcommands beyond run/migrate/check-config."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def register(sub: argparse._SubParsersAction, add: Callable[..., Any]) -> None:
    return None
