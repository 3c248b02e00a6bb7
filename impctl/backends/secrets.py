"""Encrypting secrets with the gateway's own key.

impOS hands back WiFi keys and proxy passwords encrypted, so a NIC from
`impctl config current` can be stored or shared without exposing them, and
only this gateway can use it again. The key is a Fernet key in a root-only
file beside the state file (`secret.key`, mode 0600), made on first use,
atomically (see `_create_key`). A damaged key file is reported, never replaced.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import tempfile
from pathlib import Path

from impctl.model.errors import PermissionDenied, StateError, ValidationError
from impctl.model.nic import Secret

KEY_FILE_NAME = "secret.key"
# A Fernet key is 44 characters of url-safe base64 (32 bytes); anything much longer is not one.
_MAX_KEY_FILE_BYTES = 1024


def key_path_for(state_path: Path) -> Path:
    return state_path.with_name(KEY_FILE_NAME)


def _corrupt(key_path: Path, what: str) -> StateError:
    # Never regenerated silently: the secrets already stored were encrypted with this key,
    # and a new one would leave them unreadable without anyone being told.
    return StateError(
        f"the gateway key {key_path} is corrupt ({what}); secrets encrypted with it cannot be read:"
        " remove it and re-enter the stored secrets (impctl config wifi/proxy, NICs from config current)"
    )


def _read_key(key_path: Path) -> bytes:
    """The key in `key_path`, checked; FileNotFoundError when there is none."""
    try:
        with key_path.open("rb") as f:
            data = f.read(_MAX_KEY_FILE_BYTES + 1)
    except PermissionError:
        raise PermissionDenied(f"cannot read the gateway key {key_path}: permission denied") from None
    except IsADirectoryError:
        raise StateError(f"the gateway key {key_path} is a directory, not a key file") from None
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise StateError(f"cannot read the gateway key {key_path}: {exc.strerror}") from None
    key = data.strip()
    if not key:
        raise _corrupt(key_path, "empty")
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise _corrupt(key_path, f"over {_MAX_KEY_FILE_BYTES} bytes, a key is 44")
    try:
        raw = base64.b64decode(key, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise _corrupt(key_path, "not url-safe base64") from None
    if len(raw) != 32:
        raise _corrupt(key_path, f"{len(raw)} bytes instead of 32")
    return key


def _create_key(key_path: Path) -> bytes:
    """Make the key, or read the one a concurrent process made first.

    The complete key is written and fsynced under a temporary name, then
    hard-linked into place: link() fails if the name exists, so exactly one
    creator wins, and the file is never visible empty or half-written (an
    O_EXCL create would be, between open and write: another process could
    read it empty). Losers read the winner's complete file.
    """
    # cryptography is imported where it is used: most impctl commands handle no secret.
    from cryptography.fernet import Fernet

    key = Fernet.generate_key()
    tmp: str | None = None
    try:
        key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key_path.name}.", suffix=".tmp", dir=key_path.parent)  # 0600
        with os.fdopen(fd, "wb") as f:
            f.write(key + b"\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, key_path)
        except FileExistsError:
            return _read_key(key_path)  # another process won; its file is complete
        dir_fd = os.open(key_path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)  # the key must outlive a power cut, or the secrets made with it are lost
        finally:
            os.close(dir_fd)
        return key
    except PermissionError:
        raise PermissionDenied(f"cannot create the gateway key {key_path}: permission denied") from None
    except OSError as exc:
        raise StateError(f"cannot create the gateway key {key_path}: {exc.strerror}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _load_key(key_path: Path, create: bool) -> bytes | None:
    try:
        return _read_key(key_path)
    except FileNotFoundError:
        return _create_key(key_path) if create else None


def encrypt_secret(secret: Secret | None, key_path: Path) -> Secret | None:
    """The encrypted form of `secret` (already encrypted ones pass through)."""
    if secret is None or secret.encrypted is not None:
        return secret
    key = _load_key(key_path, create=True)
    assert key is not None
    from cryptography.fernet import Fernet

    token = Fernet(key).encrypt((secret.plain or "").encode("utf-8")).decode("ascii")
    return Secret(encrypted=token)


def decrypt_secret(secret: Secret | None, key_path: Path, path: str = "secret") -> str | None:
    """The clear text of `secret`, for handing to NetworkManager or a proxy; never print it."""
    if secret is None:
        return None
    if secret.encrypted is None:
        return secret.plain
    key = _load_key(key_path, create=False)
    if key is None:
        raise ValidationError(path, "is encrypted, but this gateway has no key: it was made on another gateway")
    from cryptography.fernet import Fernet, InvalidToken

    try:
        return Fernet(key).decrypt(secret.encrypted.encode("ascii")).decode("utf-8")
    except (InvalidToken, ValueError, UnicodeDecodeError):
        raise ValidationError(path, "cannot be decrypted with this gateway's key (made on another gateway?)") from None

