"""sd_notify against a real AF_UNIX datagram socket."""
from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mxarchiverd.supervisor.notify import (
    Notifier, NotifyEnv, monotonic_usec, socket_address, status_field, take_notify_env,
)


@pytest.fixture
def socket_path() -> Iterator[Path]:
    # A short path: AF_UNIX paths are limited to 107 bytes, pytest's tmp_path can be longer.
    directory = Path(tempfile.mkdtemp(prefix="mxn-"))
    yield directory / "notify"
    for entry in directory.iterdir():
        entry.unlink()
    directory.rmdir()


def bind(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


class TestEnvironment:
    def test_variables_are_read_once_and_removed(self) -> None:
        environ = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42",
                   "PATH": "/bin"}
        env = take_notify_env(environ, pid=42)
        assert env == NotifyEnv("/run/systemd/notify", 30_000_000)
        assert env.watchdog_interval == 15.0
        assert environ == {"PATH": "/bin"}

    def test_watchdog_for_another_process_is_not_ours(self) -> None:
        env = take_notify_env({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "41"}, pid=42)
        assert env.watchdog_usec is None and env.watchdog_interval is None

    def test_watchdog_without_pid_is_ours(self) -> None:
        assert take_notify_env({"WATCHDOG_USEC": "2000000"}, pid=42).watchdog_usec == 2_000_000

    @pytest.mark.parametrize("usec, pid", [("0", None), ("soon", None), ("1000", "me"), ("", None)])
    def test_unusable_watchdog_values_disable_it(self, usec: str, pid: str | None) -> None:
        environ = {"WATCHDOG_USEC": usec} | ({"WATCHDOG_PID": pid} if pid else {})
        assert take_notify_env(environ, pid=42).watchdog_usec is None

    def test_nothing_set(self) -> None:
        assert take_notify_env({}, pid=1) == NotifyEnv(None, None)


class TestSending:
    def test_fields_in_one_datagram(self, socket_path: Path) -> None:
        receiver = bind(str(socket_path))
        notifier = Notifier(str(socket_path))
        assert notifier.send("RELOADING=1", "MONOTONIC_USEC=123")
        assert receiver.recv(4096) == b"RELOADING=1\nMONOTONIC_USEC=123"
        notifier.close()
        receiver.close()

    def test_abstract_namespace(self) -> None:
        name = f"@mxarchiverd-test-{os.getpid()}"
        receiver = bind("\0" + name[1:])
        assert Notifier(name).send("READY=1")
        assert receiver.recv(4096) == b"READY=1"
        receiver.close()

    def test_survives_the_receiver_being_recreated(self, socket_path: Path) -> None:
        """systemd re-executing itself binds a new socket at the same path."""
        notifier = Notifier(str(socket_path))
        first = bind(str(socket_path))
        assert notifier.send("WATCHDOG=1")
        first.close()
        socket_path.unlink()
        assert notifier.send("WATCHDOG=1") is False  # nobody listening: no exception
        second = bind(str(socket_path))
        assert notifier.send("WATCHDOG=1")
        assert second.recv(4096) == b"WATCHDOG=1"
        second.close()

    def test_no_socket_means_no_notification(self) -> None:
        notifier = Notifier(None)
        assert not notifier.enabled and notifier.send("READY=1") is False

    def test_unsupported_address_is_disabled(self) -> None:
        assert not Notifier("vsock:2:1234").enabled

    def test_missing_socket_never_raises(self, socket_path: Path) -> None:
        assert Notifier(str(socket_path)).send("READY=1") is False


def test_socket_address() -> None:
    assert socket_address("@foo") == "\0foo"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("relative") is None


def test_status_is_one_line() -> None:
    assert status_field("reload failed:\n  a.b: bad\tvalue") == "STATUS=reload failed: a.b: bad value"


def test_monotonic_usec_is_clock_monotonic() -> None:
    assert abs(monotonic_usec() - time.monotonic() * 1_000_000) < 1_000_000
