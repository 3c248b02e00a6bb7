"""Encrypting secrets with the gateway's own key.

impOS hands back WiFi keys and proxy passwords encrypted, so a NIC from
`impctl config current` can be stored or shared without exposing them, and
only this gateway can use it again. The key is a Fernet key in a root-only
file beside the state file (`secret.key`, mode 0600), made on first use.
"""

from __future__ import annotations

import os
from pathlib import Path

from impctl.model.errors import PermissionDenied, StateError, ValidationError
from impctl.model.nic import Secret

KEY_FILE_NAME = "secret.key"


def key_path_for(state_path: Path) -> Path:
    return state_path.with_name(KEY_FILE_NAME)


def _load_key(key_path: Path, create: bool) -> bytes | None:
    try:
        return key_path.read_bytes().strip()
    except FileNotFoundError:
        if not create:
            return None
    except PermissionError:
        raise PermissionDenied(f"cannot read the gateway key {key_path}: permission denied") from None
    # cryptography is imported where it is used: most impctl commands handle no secret.
    from cryptography.fernet import Fernet

    key = Fernet.generate_key()
    try:
        key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return key_path.read_bytes().strip()  # another process made it first
    except PermissionError:
        raise PermissionDenied(f"cannot create the gateway key {key_path}: permission denied") from None
    except OSError as exc:
        raise StateError(f"cannot create the gateway key {key_path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
        f.flush()
        os.fsync(f.fileno())
    return key


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

