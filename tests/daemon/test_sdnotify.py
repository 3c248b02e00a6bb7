"""sd_notify over a real unix datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from impctl.backends.sdnotify import Notifier


@pytest.fixture
def systemd_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    yield sock, path
    sock.close()


def test_ready_watchdog_stopping_arrive_as_datagrams(systemd_socket: tuple[socket.socket, str]) -> None:
    sock, path = systemd_socket
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready("active eth0")
    assert sock.recv(4096) == b"READY=1\nSTATUS=active eth0"
    assert n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert n.status("two\nlines")
    assert sock.recv(4096) == b"STATUS=two lines"
    assert n.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    n.close()


def test_abstract_socket(tmp_path: Path) -> None:
    name = f"impctl-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2.0)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(64) == b"READY=1"
    finally:
        sock.close()


def test_without_systemd_nothing_is_sent_and_nothing_fails() -> None:
    n = Notifier({})
    assert not n.enabled
    assert n.ready() is False and n.watchdog() is False
    assert n.watchdog_s is None


def test_gone_socket_is_not_fatal(tmp_path: Path) -> None:
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "absent")}).ready() is False


def test_watchdog_period_only_for_this_process() -> None:
    assert Notifier({"WATCHDOG_USEC": "3000000"}).watchdog_s == 3.0
    assert Notifier({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}).watchdog_s == 3.0
    assert Notifier({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}).watchdog_s is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_s is None
