"""The one error the media layer raises for input it will not touch."""
from __future__ import annotations


class MediaRefused(ValueError):
    """A media reference or file that must not be read, written or trusted.

    `reason` says what was wrong and where, for the quarantine table and logs; it
    never holds key material.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
