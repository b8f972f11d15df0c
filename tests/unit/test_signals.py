"""The wakeup pipe turns signals into bytes for the supervisor's loop."""
from __future__ import annotations

import os
import select
import signal

from mxarchiverd.supervisor.signals import WakeupPipe, decode_signals


def test_decode_keeps_order_drops_repeats_and_unknown_numbers() -> None:
    data = bytes([signal.SIGHUP, signal.SIGTERM, signal.SIGHUP, 0, 250])
    assert decode_signals(data) == [signal.SIGHUP, signal.SIGTERM]
    assert decode_signals(b"") == []


def test_a_signal_wakes_the_pipe_and_nothing_else_happens() -> None:
    previous = signal.getsignal(signal.SIGHUP)
    pipe = WakeupPipe()
    pipe.install()
    try:
        assert pipe.drain() == []
        os.kill(os.getpid(), signal.SIGHUP)
        readable, _, _ = select.select([pipe.fileno()], [], [], 5)
        assert readable == [pipe.fileno()]
        assert pipe.drain() == [signal.SIGHUP]
        assert pipe.drain() == []
    finally:
        pipe.close()
    assert signal.getsignal(signal.SIGHUP) == previous
    assert signal.set_wakeup_fd(-1) == -1  # restored: no wakeup fd left behind
