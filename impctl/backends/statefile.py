"""Reading and writing the state file: atomic, locked, private.

Writes go to a temporary file in the same directory, are fsynced, and are
renamed over the state file, so a reader sees the old or the new document and
never a truncated one. Read-modify-write cycles hold an exclusive flock on a
sibling `.lock` file, so concurrent invocations never lose an update. A
corrupt or newer-version file is reported and never overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from impctl.model.bounded import DocumentError, Limits, load_json
from impctl.model.errors import PermissionDenied, StateError
from impctl.model.state import State, state_from_dict

T = TypeVar("T")

# impctl writes a few KiB here (the sequence, stored settings, the pinned NIC, the last
# result per interface, the daemon's last switches), nested ~5 deep. 4 MiB and 64 levels are
# far above that yet bound the memory and time a damaged or hostile file can cost each command.
STATE_LIMITS = Limits(max_bytes=4 * 1024 * 1024, max_depth=64)


def _os_error(path: Path, exc: OSError, doing: str) -> Exception:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        # Root is refused only by a read-only mount or a mandatory access policy: "run as root" would not help.
        if exc.errno == errno.EROFS:
            hint = "the file system is read-only: choose another file with --state or IMPCTL_STATE"
        elif os.geteuid() == 0:
            hint = "even root may not (a read-only mount or a security policy): choose another file with --state"
        else:
            hint = "run as root, or choose another file with --state or IMPCTL_STATE"
        return PermissionDenied(f"cannot {doing} {path}: {os.strerror(exc.errno or 0).lower()}", hint=hint)
    return StateError(f"cannot {doing} {path}: {exc.strerror or exc}")


def load_state(path: Path) -> State:
    """The state in `path`; a missing file is the empty state."""
    try:
        with path.open("rb") as f:
            # One byte past the limit tells "too large" without reading all of a huge file.
            data = f.read(STATE_LIMITS.max_bytes + 1)
    except FileNotFoundError:
        return State()
    except IsADirectoryError:
        raise StateError(f"state file {path} is a directory") from None
    except OSError as exc:
        raise _os_error(path, exc, "read state file") from None
    except ValueError as exc:  # a NUL in the path
        raise StateError(f"cannot read state file {path}: {exc}") from None
    try:
        doc = load_json(data, STATE_LIMITS)
    except DocumentError as exc:
        where = f" at {exc.path}" if exc.path else ""
        # The advice goes in the message, not a hint: one line on stderr says it all.
        raise StateError(
            f"state file {path} is corrupt (it {exc.reason}{where}); it was left untouched:"
            " move it aside to start afresh",
        ) from None
    try:
        return state_from_dict(doc)
    except StateError as exc:
        raise StateError(f"{path}: {exc.message}; it was left untouched", hint=exc.hint) from None


def _ensure_dir(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise _os_error(directory, exc, "create state directory") from None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of the state file `path`."""
    _ensure_dir(path.parent)
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise _os_error(lock_path, exc, "open lock file") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def write_state(path: Path, state: State) -> None:
    """Atomically replace `path` with `state` (mode 0600). Call under `locked`."""
    data = json.dumps(state.to_dict(), indent=2, sort_keys=True) + "\n"
    _ensure_dir(path.parent)
    # Imported here: `status` and every other reader of the state never write it.
    import tempfile

    tmp_name: str | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)  # the rename itself must survive a power cut
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise _os_error(path, exc, "write state file") from None
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)


def update_state(path: Path, change: Callable[[State], T]) -> T:
    """Read, change and write the state under the lock; returns what `change` returns.

    If `change` raises, nothing is written.
    """
    with locked(path):
        state = load_state(path)
        result = change(state)
        write_state(path, state)
        return result
