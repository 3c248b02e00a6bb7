"""imp.net.setserverinterfaces / getserverinterfaces over the Store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from impctl.model.record import record
from impctl.model.sequence import DEFAULT_ORDER, normalise_sequence
from impctl.model.state import State

if TYPE_CHECKING:
    # ports pulls in most of the model; `impctl interfaces` starts faster without it.
    from impctl.usecases.ports import Store


@record
class SequenceView:
    sequence: list[str]  # as stored; [] means the default order
    effective: list[str]  # what connect walks: the sequence, then the default order
    index: int


def _view(state: State) -> SequenceView:
    effective = list(state.sequence) + [c for c in DEFAULT_ORDER if c not in state.sequence]
    return SequenceView(state.sequence, effective, state.sequence_index)


def set_sequence(store: Store, identifiers: list[str]) -> SequenceView:
    # Validate before taking the lock: bad input must leave the file as it was.
    normalise_sequence(identifiers)
    with store.transaction() as state:
        state.set_sequence(identifiers)
        return _view(state)


def get_sequence(store: Store) -> SequenceView:
    return _view(store.load())
