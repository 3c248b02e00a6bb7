"""Writing a node_exporter textfile atomically.

The textfile collector may read the file at any moment: write a temporary file
in the same directory (node_exporter ignores names not ending in `.prom`),
fsync it and rename it over the target, so it only ever sees a whole file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from impctl.model.errors import PermissionDenied, StateError


def write_textfile(path: Path, text: str) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise _error(path, exc) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        # Readable by node_exporter, which usually runs as its own user.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _error(path, exc) from None


def _error(path: Path, exc: OSError) -> Exception:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermissionDenied(f"cannot write {path}: {exc.strerror}")
    return StateError(f"cannot write {path}: {exc.strerror or exc}")
