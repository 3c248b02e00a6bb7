"""Applications of the lab's tests and benches: what a user on (or behind) the gateway feels of a failover.

Each runs as its own process in a lab namespace and prints one JSON object
per line (wall-clock `t`, seconds), so a test or bench reads what happened
and when:

    python -m impctl.lab.apps session --host cloud.imp.lab [--every 0.1] [--keepalive 60] [--bind-device IF]
        A long-lived session like an MQTT client's: connect by name (the
        system resolver), send a line every --every seconds and wait for its
        answer up to 1.5 keepalives; reconnect at once when the socket fails
        or the answer does not come. Lines: connected, echo (with `seen_as`,
        the address the cloud saw), error.
    python -m impctl.lab.apps attempts --host cloud.imp.lab [--every 0.1] [--timeout 10]
        A new connection by name every --every seconds, each in its own
        thread (resolve, connect, one line and its answer): `ok` or `fail`
        with the time it started.

Both talk to the cloud's session service (impctl.lab.cloud.session). Nothing
here binds to a device unless told to: these are the unbound applications
whose traffic follows the gateway's default route and resolv.conf.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

from impctl.lab.topology import CLOUD_HOST, CLOUD_SESSION_PORT

_print_lock = threading.Lock()


def _emit(event: str, **fields: Any) -> None:
    line = json.dumps({"event": event, "t": time.time(), **fields})
    with _print_lock:
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            os._exit(0)  # whoever read the lines is gone: so is the point of running


def _error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _open(host: str, port: int, timeout_s: float, device: str | None) -> socket.socket:
    # getaddrinfo: the system resolver (resolv.conf, its timeouts and order), as applications use it.
    family, kind, proto, _, address = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        if device:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
        sock.settimeout(timeout_s)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _exchange(sock: socket.socket, reader: IO[bytes], n: int) -> str:
    sock.sendall(f"{n}\n".encode())
    line = reader.readline()
    if not line:
        raise ConnectionError("the cloud closed the session")
    seen_as, _, echoed = line.decode().strip().partition(" ")
    if echoed != str(n):
        raise ConnectionError(f"unexpected answer {line[:60]!r}")
    return seen_as


def session(host: str, port: int, every_s: float, keepalive_s: float, device: str | None) -> None:
    n = 0
    while True:
        try:
            sock = _open(host, port, 10.0, device)
        except OSError as err:
            _emit("error", stage="connect", error=_error_text(err))
            time.sleep(every_s)
            continue
        local = sock.getsockname()[0]
        _emit("connected", local=local)
        # A broker drops a client silent for 1.5 keepalives; the client gives up on an answer as late.
        sock.settimeout(1.5 * keepalive_s)
        reader = sock.makefile("rb")
        try:
            while True:
                n += 1
                seen_as = _exchange(sock, reader, n)
                _emit("echo", n=n, local=local, seen_as=seen_as)
                time.sleep(every_s)
        except OSError as err:
            _emit("error", stage="session", local=local, error=_error_text(err))
        finally:
            reader.close()
            sock.close()


def attempts(host: str, port: int, every_s: float, timeout_s: float) -> None:
    def one(started: float) -> None:
        try:
            sock = _open(host, port, timeout_s, None)
            with sock, sock.makefile("rb") as reader:
                sock.settimeout(max(0.1, timeout_s - (time.time() - started)))
                seen_as = _exchange(sock, reader, 1)
                _emit("ok", started=started, local=sock.getsockname()[0], seen_as=seen_as)
        except OSError as err:
            _emit("fail", started=started, error=_error_text(err))

    while True:
        threading.Thread(target=one, args=(time.time(),), daemon=True).start()
        time.sleep(every_s)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m impctl.lab.apps", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="app", required=True)
    s = sub.add_parser("session")
    a = sub.add_parser("attempts")
    for p in (s, a):
        p.add_argument("--host", default=CLOUD_HOST)
        p.add_argument("--port", type=int, default=CLOUD_SESSION_PORT)
        p.add_argument("--every", type=float, default=0.1)
    s.add_argument("--keepalive", type=float, default=60.0)
    s.add_argument("--bind-device")
    a.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    try:
        if args.app == "session":
            session(args.host, args.port, args.every, args.keepalive, args.bind_device)
        else:
            attempts(args.host, args.port, args.every, args.timeout)
    except KeyboardInterrupt:
        pass


# ---------------------------------------------------------------- the reading side (tests, benches)


class App:
    """One application process started with `argv` (already wrapped for its namespace); its lines, parsed."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        self._proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      env=env, text=True)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            try:
                self.lines.put(json.loads(raw))
            except ValueError:
                continue

    def wait(self, match: Callable[[dict[str, Any]], bool], timeout_s: float) -> dict[str, Any] | None:
        """The first line from now on that `match`es, or None after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                return None
            self.seen.append(line)
            if match(line):
                return line

    def drain(self) -> None:
        while True:
            try:
                self.seen.append(self.lines.get_nowait())
            except queue.Empty:
                return

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def app_argv(app: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "impctl.lab.apps", app, *args]


if __name__ == "__main__":
    main()
