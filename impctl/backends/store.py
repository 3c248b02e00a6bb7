"""The use cases' Store (impctl.usecases.ports.Store): the state file and the
per-gateway key beside it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from impctl.backends import statefile
from impctl.model.state import State

if TYPE_CHECKING:
    from impctl.model.nic import Secret

# The secrets backend (and with it cryptography and the NIC model) is imported
# only when a secret is handled: `impctl interfaces` and most of `config` need none.


class FileStore:
    def __init__(self, state_path: Path) -> None:
        self.state_path = state_path

    @property
    def key_path(self) -> Path:
        from impctl.backends import secrets

        return secrets.key_path_for(self.state_path)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[State]:
        """The state under the file's lock for a whole operation; written back unless it raises.

        Held across the NM calls, so two impctl runs never switch uplinks at once.
        """
        with statefile.locked(self.state_path):
            state = statefile.load_state(self.state_path)
            yield state
            statefile.write_state(self.state_path, state)

    def load(self) -> State:
        return statefile.load_state(self.state_path)

    def encrypt(self, secret: Secret | None) -> Secret | None:
        from impctl.backends import secrets

        return secrets.encrypt_secret(secret, self.key_path)

    def decrypt(self, secret: Secret | None, path: str) -> str | None:
        from impctl.backends import secrets

        return secrets.decrypt_secret(secret, self.key_path, path)
