"""imp.net.setserverinterfaces / getserverinterfaces over the state file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from impctl.backends.statefile import load_state, update_state
from impctl.model.sequence import DEFAULT_ORDER, normalise_sequence
from impctl.model.state import State


@dataclass(frozen=True)
class SequenceView:
    sequence: list[str]  # as stored; [] means the default order
    effective: list[str]  # what connect walks: the sequence, then the default order
    index: int
    state_path: Path


def _view(state: State, path: Path) -> SequenceView:
    effective = list(state.sequence) + [c for c in DEFAULT_ORDER if c not in state.sequence]
    return SequenceView(state.sequence, effective, state.sequence_index, path)


def set_sequence(path: Path, identifiers: list[str]) -> SequenceView:
    # Validate before taking the lock: bad input must leave the file as it was.
    normalise_sequence(identifiers)

    def change(state: State) -> SequenceView:
        state.set_sequence(identifiers)
        return _view(state, path)

    return update_state(path, change)


def get_sequence(path: Path) -> SequenceView:
    return _view(load_state(path), path)
