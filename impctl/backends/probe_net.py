"""The socket stages of a probe, every socket bound to the probed interface.

SO_BINDTODEVICE makes the traffic leave through that interface whatever the
routing table prefers; nothing here touches routes. Every wait sits inside an
explicit `asyncio.timeout`, because a cut or blackholed uplink does not fail a
connect — it lets it hang (see LAB-NOTES: never ENETUNREACH, always a time-out).

Failures are converted here, at the edge, into `StageFailed` carrying a
one-line human detail naming what was tried ("DNS 198.18.1.1 did not answer in
2.0 s"); nothing but project errors leaves this module.
"""

from __future__ import annotations

import asyncio
import errno
import secrets
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass

from impctl.model.dnswire import TYPE_A, TYPE_AAAA, DnsFormatError, build_query, parse_response
from impctl.model.errors import ImpctlError, PermissionDenied
from impctl.model.netfacts import Resolved, is_ipv4, is_ipv6
from impctl.model.probe import Stage, StageFailed

DNS_PORT = 53
_MAX_PROXY_HEADER = 16 * 1024
_UDP_BUF = 4096
CLOSE_TIMEOUT_S = 0.2


def _s(seconds: float) -> str:
    return f"{seconds:.1f} s"


def family_of(address: str) -> int:
    return socket.AF_INET6 if is_ipv6(address) else socket.AF_INET


def sockaddr(address: str, port: int, ifname: str) -> tuple[str, int] | tuple[str, int, int, int]:
    """Where to connect: a link-local IPv6 peer (fe80::, an RA's router) needs the scope."""
    if is_ipv6(address) and address.lower().startswith("fe80:"):
        try:
            return (address, port, 0, socket.if_nametoindex(ifname))
        except OSError:
            raise StageFailed(f"{ifname} disappeared") from None
    return (address, port)


def bound_socket(kind: int, ifname: str, family: int = socket.AF_INET) -> socket.socket:
    """A non-blocking socket of `family` that can only send and receive through `ifname`."""
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        sock.setblocking(False)
    except PermissionError:
        sock.close()
        raise PermissionDenied(
            f"binding a socket to {ifname} needs CAP_NET_RAW", hint="run impctl probe as root"
        ) from None
    except OSError as err:
        sock.close()
        if err.errno == errno.ENODEV:
            raise StageFailed(f"{ifname} disappeared") from None
        raise StageFailed(f"cannot bind a socket to {ifname}: {err.strerror}") from None
    return sock


def _os_detail(err: OSError) -> str:
    if isinstance(err, ConnectionRefusedError):
        return "refused the connection"
    if isinstance(err, ConnectionResetError):
        return "reset the connection"
    if err.errno == errno.ENETUNREACH:
        return "is unreachable (no route through this interface)"
    if err.errno == errno.EHOSTUNREACH:
        return "is unreachable (host unreachable)"
    return err.strerror or str(err)


# ---------------------------------------------------------------- DNS


async def _query_one(name: str, server: str, ifname: str, timeout_s: float, qtype: int = TYPE_A) -> Resolved:
    """One server: a query, one retransmission halfway (a lost datagram should
    not fail the stage), the first well-formed answer to our question wins."""
    txid = secrets.randbelow(0x10000)
    query = build_query(name, txid, qtype)
    version = "IPv4" if qtype == TYPE_A else "IPv6"
    loop = asyncio.get_running_loop()
    sock = bound_socket(socket.SOCK_DGRAM, ifname, family_of(server))
    started = time.monotonic()
    last_problem: str | None = None
    try:
        try:
            # connect(): the kernel then drops datagrams from any other source
            # and reports ICMP port-unreachable as ConnectionRefusedError.
            sock.connect(sockaddr(server, DNS_PORT, ifname))
        except OSError as err:
            raise StageFailed(f"DNS {server} {_os_detail(err)}") from None

        async def exchange() -> Resolved:
            nonlocal last_problem
            await loop.sock_sendall(sock, query)
            while True:
                data = await loop.sock_recv(sock, _UDP_BUF)
                try:
                    answer = parse_response(data, txid=txid, name=name, qtype=qtype)
                except DnsFormatError as err:
                    last_problem = f"DNS {server} sent a malformed answer ({err.message})"
                    continue  # a stray or broken datagram: keep waiting for ours
                rtt = (time.monotonic() - started) * 1000
                if answer.rcode != 0:
                    raise StageFailed(f"DNS {server} answered {answer.rcode_name} for {name}")
                if not answer.addresses:
                    raise StageFailed(f"DNS {server} has no {version} address for {name}")
                return Resolved(name, answer.addresses[0], answer.addresses, server, rtt)

        async def with_retry() -> Resolved:
            task = asyncio.ensure_future(exchange())
            try:
                done, _ = await asyncio.wait({task}, timeout=timeout_s / 2)
                if not done:
                    await loop.sock_sendall(sock, query)
                return await task
            finally:
                task.cancel()

        try:
            async with asyncio.timeout(timeout_s):
                return await with_retry()
        except TimeoutError:
            extra = f"; {last_problem}" if last_problem else ""
            raise StageFailed(f"DNS {server} did not answer in {_s(timeout_s)}{extra}") from None
        except ConnectionRefusedError:
            # Connected UDP: the server's ICMP port-unreachable surfaces here.
            raise StageFailed(f"DNS {server} refused the query (port 53 unreachable)") from None
        except OSError as err:
            raise StageFailed(f"DNS {server} {_os_detail(err)}") from None
    finally:
        sock.close()


async def resolve(name: str, servers: Sequence[str], ifname: str, timeout_s: float, version: int) -> Resolved:
    """The IPv`version` address of `name` (A or AAAA), asked of each of `servers` (IPv4
    or IPv6 addresses) at once through `ifname`; the first that answers with one wins."""
    literal = is_ipv4(name) if version == 4 else is_ipv6(name)
    if literal:
        return Resolved(name, name, (name,), None, 0.0)
    if is_ipv4(name) or is_ipv6(name):
        raise StageFailed(f"{name} is an IPv{10 - version} address: nothing to reach over IPv{version}")
    usable = [s for s in servers if is_ipv4(s) or is_ipv6(s)]
    if not usable:
        raise StageFailed(f"{ifname} has no DNS server to resolve {name}")
    qtype = TYPE_A if version == 4 else TYPE_AAAA
    tasks = [asyncio.ensure_future(_query_one(name, s, ifname, timeout_s, qtype)) for s in usable]
    failures: list[str] = []
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                err = task.exception()
                if err is None:
                    return task.result()
                if isinstance(err, StageFailed):
                    failures.append(err.detail)
                elif isinstance(err, ImpctlError):
                    raise err
                else:
                    failures.append(f"{type(err).__name__}: {err}")
    finally:
        for task in tasks:
            task.cancel()
    raise StageFailed("; ".join(failures))


# ---------------------------------------------------------------- TCP, proxy, TLS


@dataclass
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def close(self, *, graceful: bool = True) -> None:
        """Close politely (FIN, TLS close_notify) after a success, within a short
        bound; abort (RST, no waiting) after a failure, whose peer may be hung —
        closing must never push a probe past its deadline."""
        if not graceful:
            transport = self.writer.transport
            transport.abort()
            return
        self.writer.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.writer.wait_closed()
        except (TimeoutError, OSError, ssl.SSLError):
            self.writer.transport.abort()  # best effort: the result is already known


async def open_tcp(address: str, port: int, ifname: str, timeout_s: float, what: str) -> Connection:
    """A TCP connection to address:port leaving through `ifname`; `what` names the
    peer in failures ("cloud cloud.imp.lab (198.19.0.10:443)")."""
    loop = asyncio.get_running_loop()
    sock = bound_socket(socket.SOCK_STREAM, ifname, family_of(address))
    try:
        async with asyncio.timeout(timeout_s):
            await loop.sock_connect(sock, sockaddr(address, port, ifname))
            reader, writer = await asyncio.open_connection(sock=sock)
    except TimeoutError:
        sock.close()
        raise StageFailed(f"{what} did not accept a TCP connection in {_s(timeout_s)}") from None
    except OSError as err:
        sock.close()
        raise StageFailed(f"{what} {_os_detail(err)}") from None
    except BaseException:
        sock.close()
        raise
    return Connection(reader, writer)


async def proxy_connect(
    conn: Connection,
    proxy: str,
    target_host: str,
    target_port: int,
    authorization: str | None,
    timeout_s: float,
) -> int:
    """Ask the proxy for a tunnel to target (HTTP CONNECT); returns the 2xx status.

    4xx (407 and the rest: impOS reads any 4xx as rejected credentials) →
    StageFailed(stage=PROXY, rejected=True); an answer that is not HTTP →
    stage PROXY; 5xx or no answer (the proxy could not reach the cloud) →
    stage TCP.
    """
    target = f"{target_host}:{target_port}"
    request = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
    if authorization:
        request += f"Proxy-Authorization: {authorization}\r\n"
    request += "\r\n"
    try:
        async with asyncio.timeout(timeout_s):
            conn.writer.write(request.encode("ascii"))
            await conn.writer.drain()
            head = await conn.reader.readuntil(b"\r\n\r\n")
    except TimeoutError:
        raise StageFailed(
            f"proxy {proxy} did not answer CONNECT {target} in {_s(timeout_s)}", stage=Stage.TCP
        ) from None
    except asyncio.IncompleteReadError as err:
        if not err.partial:
            raise StageFailed(f"proxy {proxy} closed the connection without answering CONNECT",
                              stage=Stage.PROXY) from None
        raise StageFailed(f"proxy {proxy} sent an incomplete answer to CONNECT", stage=Stage.PROXY) from None
    except asyncio.LimitOverrunError:
        raise StageFailed(f"proxy {proxy} sent an oversized answer to CONNECT", stage=Stage.PROXY) from None
    except OSError as err:
        raise StageFailed(f"proxy {proxy} {_os_detail(err)}", stage=Stage.PROXY) from None
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise StageFailed(f"proxy {proxy} answered something that is not HTTP: {status_line[:60]!r}",
                          stage=Stage.PROXY)
    status = int(parts[1])
    text = f"{status} {parts[2]}" if len(parts) > 2 else str(status)
    if 200 <= status < 300:
        return status
    if 400 <= status < 500:
        what = "without credentials" if authorization is None else "with the configured credentials"
        raise StageFailed(f"proxy {proxy} answered {text} to CONNECT {target} {what}",
                          stage=Stage.PROXY, rejected=True)
    raise StageFailed(f"proxy {proxy} answered {text} to CONNECT {target}", stage=Stage.TCP)


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as err:
        raise StageFailed(f"cannot load the CA file {ca_file}: {err}") from None
    return ctx


async def tls_handshake(conn: Connection, ctx: ssl.SSLContext, server_name: str, timeout_s: float,
                        what: str) -> str:
    """A verified TLS handshake over the connection (direct or tunnelled);
    returns the negotiated protocol version."""
    try:
        async with asyncio.timeout(timeout_s):
            await conn.writer.start_tls(ctx, server_hostname=server_name, ssl_handshake_timeout=timeout_s)
    except TimeoutError:
        raise StageFailed(f"TLS handshake with {what} did not finish in {_s(timeout_s)}") from None
    except ssl.SSLCertVerificationError as err:
        raise StageFailed(f"{what} presented a certificate that does not verify for {server_name}: "
                          f"{err.verify_message}") from None
    except ssl.SSLError as err:
        raise StageFailed(f"TLS handshake with {what} failed: {err.reason or err}") from None
    except (OSError, asyncio.IncompleteReadError) as err:
        raise StageFailed(f"TLS handshake with {what} failed: {err}") from None
    sslobj = conn.writer.get_extra_info("ssl_object")
    return str(sslobj.version()) if sslobj is not None else "TLS"


class BoundSockets:
    """The socket stages as one object (what the probe use case takes), with the
    TLS contexts cached per CA file: loading a CA bundle costs milliseconds."""

    def __init__(self) -> None:
        self._contexts: dict[str | None, ssl.SSLContext] = {}

    async def resolve(self, name: str, servers: Sequence[str], ifname: str, timeout_s: float,
                      version: int) -> Resolved:
        return await resolve(name, servers, ifname, timeout_s, version)

    async def open_tcp(self, address: str, port: int, ifname: str, timeout_s: float, what: str) -> Connection:
        return await open_tcp(address, port, ifname, timeout_s, what)

    async def proxy_connect(
        self,
        conn: Connection,
        proxy: str,
        target_host: str,
        target_port: int,
        authorization: str | None,
        timeout_s: float,
    ) -> int:
        return await proxy_connect(conn, proxy, target_host, target_port, authorization, timeout_s)

    async def tls_handshake(
        self, conn: Connection, ca_file: str | None, server_name: str, timeout_s: float, what: str
    ) -> str:
        ctx = self._contexts.get(ca_file)
        if ctx is None:
            ctx = self._contexts[ca_file] = tls_context(ca_file)
        return await tls_handshake(conn, ctx, server_name, timeout_s, what)
