"""Children fix glibc's mmap threshold so that freed batch buffers go back to the system."""
from __future__ import annotations

import platform

import pytest

from mxarchiverd.workers.memory import return_large_blocks


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_threshold_is_fixed_on_glibc() -> None:
    assert return_large_blocks() is True
