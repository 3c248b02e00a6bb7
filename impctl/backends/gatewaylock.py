"""The gateway-wide lock: one command at a time changes which uplink carries traffic.

connectwith, connect, disconnect and the daemon's switches hold it. It is an
flock on `gateway.lock` beside the state file, so it goes with its holder's
death (kill -9 included) and needs no cleanup. The holder writes who it is
into the file, so a command that has to wait can say for whom.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from impctl.model.errors import OperationTimeout, StateError

POLL_S = 0.05
# A gateway change takes at most connect's longest timeout (cellular, 120 s) plus its
# rollback; a command that waits longer than this is stuck behind something broken.
DEFAULT_WAIT_S = 300.0


def lock_path_for(state_path: Path) -> Path:
    return state_path.with_name("gateway.lock")


class GatewayLock:
    def __init__(self, path: Path, *, on_wait: Callable[[str], None] = lambda _m: None,
                 wait_s: float = DEFAULT_WAIT_S) -> None:
        self.path = path
        self._on_wait = on_wait
        self._wait_s = wait_s

    def _open(self) -> int:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(f"cannot open the gateway lock {self.path}: {exc.strerror}") from None

    def holder(self) -> str:
        """Who holds the lock, as the holder wrote it ("impctl connectwith (pid 123)")."""
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8") or "{}")
            return f"impctl {doc['command']} (pid {int(doc['pid'])})"
        except (OSError, ValueError, KeyError, TypeError):
            return "another impctl"

    def try_hold(self, command: str) -> contextlib.AbstractContextManager[bool]:
        """Take the lock if it is free; yields whether it was taken (the daemon never waits)."""
        return self._hold(command, wait=False)

    def hold(self, command: str) -> contextlib.AbstractContextManager[bool]:
        """Take the lock, waiting (and saying so) while another command holds it."""
        return self._hold(command, wait=True)

    @contextlib.contextmanager
    def _hold(self, command: str, *, wait: bool) -> Iterator[bool]:
        fd = self._open()
        try:
            if not self._acquire(fd, command, wait):
                yield False
                return
            self._write_holder(fd, command)
            yield True
        finally:
            os.close(fd)  # closing releases the flock

    def _acquire(self, fd: int, command: str, wait: bool) -> bool:
        deadline = time.monotonic() + self._wait_s
        said = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                pass
            except OSError as exc:
                raise StateError(f"cannot lock the gateway lock {self.path}: {exc.strerror}") from None
            if not wait:
                return False
            if not said:
                self._on_wait(f"waiting for {self.holder()} to finish before {command}")
                said = True
            if time.monotonic() > deadline:
                raise OperationTimeout(
                    f"{self.holder()} has held the gateway for over {self._wait_s:.0f} s; {command} gave up",
                    hint="see what it is doing with 'impctl status', or stop it",
                )
            time.sleep(POLL_S)

    @staticmethod
    def _write_holder(fd: int, command: str) -> None:
        data = json.dumps({"command": command, "pid": os.getpid(), "since": time.time()}).encode()
        with contextlib.suppress(OSError):  # who holds it is a courtesy for waiters
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
