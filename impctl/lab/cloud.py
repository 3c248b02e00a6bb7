"""The lab cloud: HTTP and HTTPS servers answering 200 to any request.

Run by the lab inside the cloud namespace:
    python -m impctl.lab.cloud --ip 198.19.0.10 [--ip 2001:db8:ff::10] --cert cloud.pem --key cloud.key

Every service listens on each `--ip` (both families in the dual-stack lab).

Port 80 answers like NetworkManager's connectivity check expects (fixed body,
`X-NetworkManager-Status: online`); port 443 is the impctl cloud endpoint (TLS
with a certificate from the lab CA), answering any HTTP request with 200 and
a small JSON body, and holding a silent connection open until the client closes.
Port 1883 is a session service for the applications of the lab's tests and
benches (impctl.lab.apps): each line received is answered with
`<the client's address as the cloud sees it> <the line>`, for as long as the
client keeps the connection (like an MQTT broker, which drops a client
silent for 1.5 keepalives: 90 s here).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl

NM_ONLINE_BODY = "NetworkManager is online\n"
CLOUD_BODY = '{"service": "impctl lab cloud", "status": "ok"}\n'
READ_TIMEOUT_S = 30.0
SESSION_IDLE_S = 90.0
MAX_LINE_BYTES = 4096


def response(body: str, extra_headers: str = "") -> bytes:
    data = body.encode()
    head = (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/plain\r\n"
        f"Content-Length: {len(data)}\r\n"
        f"{extra_headers}"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + data


def handler(reply: bytes) -> object:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            writer.write(reply)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
                await writer.wait_closed()

    return handle


async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername")
    who = (peer[0] if peer else "?").encode()
    try:
        while True:
            line = await asyncio.wait_for(reader.readline(), SESSION_IDLE_S)
            if not line or len(line) > MAX_LINE_BYTES:
                return
            writer.write(who + b" " + line)
            await writer.drain()
    except (TimeoutError, ConnectionError, ValueError, asyncio.LimitOverrunError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
            await writer.wait_closed()


async def serve(ip: list[str], http_port: int, tls_port: int, cert: str, key: str, body: str,
                session_port: int) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    http = await asyncio.start_server(
        handler(response(body, "X-NetworkManager-Status: online\r\n")),  # type: ignore[arg-type]
        ip, http_port, reuse_address=True)
    https = await asyncio.start_server(
        handler(response(CLOUD_BODY)), ip, tls_port, ssl=ctx,  # type: ignore[arg-type]
        reuse_address=True, ssl_handshake_timeout=10.0)
    sessions = await asyncio.start_server(session, ip, session_port, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with http, https, sessions:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="impctl lab cloud server")
    parser.add_argument("--ip", required=True, action="append")
    parser.add_argument("--http-port", type=int, default=80)
    parser.add_argument("--tls-port", type=int, default=443)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--body", default=NM_ONLINE_BODY)
    parser.add_argument("--session-port", type=int, default=1883)
    args = parser.parse_args()
    asyncio.run(serve(args.ip, args.http_port, args.tls_port, args.cert, args.key, args.body, args.session_port))


if __name__ == "__main__":
    main()
