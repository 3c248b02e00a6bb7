"""The use cases' Store (impctl.usecases.ports.Store): the state file and the
per-gateway key beside it."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from impctl.backends import statefile
from impctl.model.state import State, merge

if TYPE_CHECKING:
    from impctl.model.nic import Secret

# The secrets backend (and with it cryptography and the NIC model) is imported
# only when a secret is handled: `impctl interfaces` and most of `config` need none.


def _replace_all(target: State, source: State) -> None:
    for name in State.__dataclass_fields__:
        setattr(target, name, getattr(source, name))


class FileStore:
    def __init__(self, state_path: Path) -> None:
        self.state_path = state_path

    @property
    def key_path(self) -> Path:
        from impctl.backends import secrets

        return secrets.key_path_for(self.state_path)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[State]:
        """The state for a whole operation; its changes are written back unless it raises.

        The file's lock is held only to read and to write, never across the NM
        calls in between: the daemon must be able to publish its view while a
        connectwith runs. Changes merge field by field into the file as it is
        then (impctl.model.state.merge); who may change the gateway meanwhile is
        the gateway lock's business.
        """
        base = statefile.load_state(self.state_path)
        mine = copy.deepcopy(base)
        yield mine
        if mine != base:
            statefile.update_state(self.state_path, lambda theirs: _replace_all(theirs, merge(base, mine, theirs)))

    def load(self) -> State:
        return statefile.load_state(self.state_path)

    def encrypt(self, secret: Secret | None) -> Secret | None:
        from impctl.backends import secrets

        return secrets.encrypt_secret(secret, self.key_path)

    def decrypt(self, secret: Secret | None, path: str) -> str | None:
        from impctl.backends import secrets

        return secrets.decrypt_secret(secret, self.key_path, path)
