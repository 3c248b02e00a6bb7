"""Small probes from inside the lab's gateway, bound to one uplink (SO_BINDTODEVICE).

The lab's own tests use them to show that a fault has the effect it claims;
each returns an outcome word rather than raising, so a test can compare
uplinks side by side: "ok", "refused", "timeout", "reset", or "error:<errno name>".
"""

from __future__ import annotations

import base64
import errno
import random
import socket
import ssl
import struct
import subprocess
from typing import TYPE_CHECKING

from impctl.lab.sockets import family_of

if TYPE_CHECKING:
    from impctl.lab.lab import Lab

TIMEOUT_S = 1.0


def _outcome(err: OSError) -> str:
    if isinstance(err, TimeoutError | socket.timeout):
        return "timeout"
    if err.errno == errno.ECONNREFUSED:
        return "refused"
    if err.errno == errno.ECONNRESET:
        return "reset"
    return f"error:{errno.errorcode.get(err.errno or 0, str(err.errno))}"


def tcp(lab: Lab, ifname: str, ip: str, port: int, timeout: float = TIMEOUT_S) -> str:
    """Outcome of a TCP connect through `ifname` (the family of `ip`)."""
    sock = lab.bound_socket(ifname, family=family_of(ip))
    sock.settimeout(timeout)
    try:
        sock.connect((ip, port))
        return "ok"
    except OSError as err:
        return _outcome(err)
    finally:
        sock.close()


def tls(lab: Lab, ifname: str, timeout: float = TIMEOUT_S) -> str:
    """Outcome of TCP + TLS (verified against the lab CA) + one HTTP request to the cloud."""
    sock = lab.bound_socket(ifname)
    sock.settimeout(timeout)
    try:
        sock.connect((lab.cloud_ip, lab.cloud_port))
        ctx = ssl.create_default_context(cafile=str(lab.ca_file))
        with ctx.wrap_socket(sock, server_hostname=lab.cloud_host) as tls_sock:
            tls_sock.sendall(f"GET / HTTP/1.1\r\nHost: {lab.cloud_host}\r\n\r\n".encode())
            head = tls_sock.recv(64)
        return "ok" if head.startswith(b"HTTP/1.1 200") else f"bad-reply:{head[:20]!r}"
    except ssl.SSLError as err:
        return f"tls-error:{err.reason}"
    except OSError as err:
        return _outcome(err)
    finally:
        sock.close()


def proxy_connect(lab: Lab, ifname: str, *, credentials: bool = True,
                  timeout: float = TIMEOUT_S) -> str:
    """HTTP status of a CONNECT to the cloud through the lab proxy ("200", "407"), or an outcome."""
    sock = lab.bound_socket(ifname)
    sock.settimeout(timeout)
    try:
        sock.connect((lab.cloud_ip, lab.proxy_port))
        target = f"{lab.cloud_host}:{lab.cloud_port}"
        request = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        if credentials:
            token = base64.b64encode(f"{lab.proxy_user}:{lab.proxy_password}".encode()).decode()
            request += f"Proxy-Authorization: Basic {token}\r\n"
        sock.sendall((request + "\r\n").encode())
        reply = sock.recv(128).split(b" ")
        return reply[1].decode() if len(reply) > 1 else "no-reply"
    except OSError as err:
        return _outcome(err)
    finally:
        sock.close()


def dns_a(lab: Lab, ifname: str, server: str, name: str,
          timeout: float = TIMEOUT_S) -> tuple[str, list[str]]:
    """An A query over UDP through `ifname`: ("ok", addresses), ("rcode:N", []) or (outcome, [])."""
    return _dns(lab, ifname, server, name, A, timeout)


def dns_aaaa(lab: Lab, ifname: str, server: str, name: str,
             timeout: float = TIMEOUT_S) -> tuple[str, list[str]]:
    """The same for AAAA (`server` of either family)."""
    return _dns(lab, ifname, server, name, AAAA, timeout)


A, AAAA = 1, 28


def _dns(lab: Lab, ifname: str, server: str, name: str, qtype: int,
         timeout: float) -> tuple[str, list[str]]:
    qid = random.randrange(1 << 16)
    query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    query += struct.pack("!HH", qtype, 1)
    sock = lab.bound_socket(ifname, socket.SOCK_DGRAM, family=family_of(server))
    sock.settimeout(timeout)
    try:
        # Connected, so an ICMP port unreachable comes back as ECONNREFUSED.
        sock.connect((server, 53))
        sock.send(query)
        while True:
            reply = sock.recv(512)
            if len(reply) >= 12 and struct.unpack("!H", reply[:2])[0] == qid:
                break
    except OSError as err:
        return _outcome(err), []
    finally:
        sock.close()
    rcode = reply[3] & 0x0F
    if rcode:
        return f"rcode:{rcode}", []
    return "ok", _a_records(reply)


def _a_records(msg: bytes) -> list[str]:
    """The A and AAAA records of the answer section."""
    qd, an = struct.unpack("!HH", msg[4:8])
    pos = 12
    for _ in range(qd):
        pos = _skip_name(msg, pos) + 4
    out = []
    for _ in range(an):
        pos = _skip_name(msg, pos)
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", msg[pos:pos + 10])
        pos += 10
        if rtype == A and rdlen == 4:
            out.append(socket.inet_ntoa(msg[pos:pos + 4]))
        elif rtype == AAAA and rdlen == 16:
            out.append(socket.inet_ntop(socket.AF_INET6, msg[pos:pos + 16]))
        pos += rdlen
    return out


def _skip_name(msg: bytes, pos: int) -> int:
    while True:
        length = msg[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:
            return pos + 2
        pos += 1 + length


def gateway_has_address(lab: Lab, ifname: str) -> bool:
    return bool(lab.addresses().get(ifname))


__all__ = ["dns_a", "dns_aaaa", "gateway_has_address", "proxy_connect", "tcp", "tls"]


def cloud_peers(lab: Lab) -> list[str]:
    """Peer addresses of the cloud's established TLS connections: who the cloud thinks it talks to
    (IPv6 ones without their brackets)."""
    out = subprocess.run(["ip", "netns", "exec", lab.cloud_netns, "ss", "-Htn", "state",
                          "established", "sport", "=", f":{lab.cloud_port}"],
                         capture_output=True, text=True, check=True).stdout
    return [line.split()[-1].rpartition(":")[0].strip("[]") for line in out.splitlines()]
