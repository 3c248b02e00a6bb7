"""imp.net.setserverinterfaces rules, exactly as the reference page states them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from impctl.model.errors import ValidationError
from impctl.model.identifiers import GENERIC, class_of
from impctl.model.sequence import DEFAULT_ORDER, effective_order, normalise_sequence
from impctl.model.state import State

identifiers = st.sampled_from(
    ["ethernet", "wifi", "cell", "eth0", "eth1", "wl0", "wl1", "cell0", "cell1", "ETH0", "WiFi", "Cell"]
)


def test_page_example_specific_to_generic_and_duplicates() -> None:
    assert normalise_sequence(["wl0", "wifi", "eth0", "cell"]) == ["wifi", "ethernet", "cell"]


def test_empty_list_means_default_order() -> None:
    assert normalise_sequence([]) == []
    assert effective_order([], ["cell", "wifi", "ethernet"]) == list(DEFAULT_ORDER)


def test_sequence_first_then_default_order_skipping_absent_classes() -> None:
    # ["wifi", "cell"] on a gateway without WiFi: cell first, then ethernet from the default order.
    assert effective_order(["wifi", "cell"], ["ethernet", "cell"]) == ["cell", "ethernet"]


@pytest.mark.parametrize("bad", ["wlan", "eth", "wl00", "cell-0", "", "foo", "eth100", 3, None])
def test_invalid_identifier_is_refused_with_its_position(bad: object) -> None:
    with pytest.raises(ValidationError) as err:
        normalise_sequence(["wifi", bad])
    assert err.value.path == "identifiers[1]"


def test_applying_a_list_resets_the_index() -> None:
    state = State(sequence=["wifi"], sequence_index=2)
    state.set_sequence(["cell", "wl0"])
    assert state.sequence == ["cell", "wifi"]
    assert state.sequence_index == 0


@given(st.lists(identifiers, max_size=20))
def test_normalisation_properties(ids: list[str]) -> None:
    out = normalise_sequence(ids)
    assert normalise_sequence(out) == out  # idempotent
    assert len(out) == len(set(out))  # no duplicates
    assert all(i in GENERIC for i in out)  # only generic identifiers
    first_seen: list[str] = []
    for ident in ids:
        cls = class_of(ident)
        assert cls is not None
        if cls not in first_seen:
            first_seen.append(cls)
    assert out == first_seen  # order of first appearance kept


@given(st.lists(identifiers, max_size=10), st.sets(st.sampled_from(GENERIC)))
def test_effective_order_covers_exactly_the_available_classes(ids: list[str], have: set[str]) -> None:
    order = effective_order(normalise_sequence(ids), have)
    assert sorted(order) == sorted(have)
    assert len(order) == len(set(order))
