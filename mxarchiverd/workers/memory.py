"""Give large freed buffers back to the system, in every child.

A batch crosses each stage as a few large buffers (the queue envelope, the
encoded rows, the statement's parameter: about 1 MB per 500 events). glibc's
malloc raises its mmap threshold each time such a block is freed, after which
the next ones come from the heap, which then cannot shrink past the fragments
between them: measured, the enricher grew from 38 to 91-98 MB of PSS over a
200,000-event backfill (bench/resources.py). Fixing the threshold keeps blocks
of 128 KiB and more in their own mappings, returned to the system when freed.
Nothing to do where the C library is not glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
LARGE_BLOCK = 128 * 1024


def return_large_blocks() -> bool:
    """True if glibc's mmap threshold is now fixed at LARGE_BLOCK."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK) != 1:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused; large buffers stay on the heap")
        return False
    return True
