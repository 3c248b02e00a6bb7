"""Sockets made inside lab namespaces (from a short-lived thread), usable from the caller's thread."""

from __future__ import annotations

import socket

from impctl.lab.proc import in_netns


def open_socket(netns: str, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM,
                proto: int = 0) -> socket.socket:
    return in_netns(netns, lambda: socket.socket(family, type, proto))


def bound_socket(netns: str, ifname: str, type: int = socket.SOCK_STREAM,
                 family: int = socket.AF_INET) -> socket.socket:
    """A socket in `netns` bound (SO_BINDTODEVICE) to `ifname`."""
    sock = open_socket(netns, family, type)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
    except BaseException:
        sock.close()
        raise
    return sock


def connect(netns: str, ifname: str, ip: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection from `netns` through `ifname` (the family of `ip`)."""
    sock = bound_socket(netns, ifname, family=family_of(ip))
    sock.settimeout(timeout)
    try:
        sock.connect((ip, port))
    except BaseException:
        sock.close()
        raise
    return sock


def family_of(ip: str) -> int:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def tcp_ok(netns: str, ip: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a TCP connect from `netns` to ip:port (either family) succeeds within `timeout`."""
    sock = open_socket(netns, family_of(ip))
    try:
        sock.settimeout(timeout)
        sock.connect((ip, port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def udp53_bound(netns: str, ip: str) -> bool:
    """Whether a daemon holds UDP port 53 on `ip` in `netns` (our bind fails: EADDRINUSE)."""
    sock = open_socket(netns, family_of(ip), socket.SOCK_DGRAM)
    try:
        sock.bind((ip, 53))
        return False
    except OSError:
        return True
    finally:
        sock.close()


def unix_connectable(path: str) -> bool:
    """Whether something accepts connections on the unix socket at `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except OSError:
            return False
    return True
