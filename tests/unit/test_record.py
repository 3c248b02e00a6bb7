"""`record` keeps the meaning of `@dataclass(frozen=True)`, compared with the real thing."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from impctl.model.record import record


@record
class Point:
    x: int
    y: int = 0
    note: str = field(default="", compare=False)
    secret: str = field(default="", repr=False)


@dataclass(frozen=True)
class RefPoint:
    x: int
    y: int = 0
    note: str = field(default="", compare=False)
    secret: str = field(default="", repr=False)


@record
class Other:
    x: int
    y: int = 0


@record
class Own:
    x: int

    def __repr__(self) -> str:
        return "mine"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Own)


CASES = [((1, 2, "a", "s"), (1, 2, "b", "t")), ((1, 2), (1, 3)), ((0,), (0,)), ((5, 6, "n"), (6, 5, "n"))]


@pytest.mark.parametrize(("left", "right"), CASES)
def test_eq_hash_repr_as_a_frozen_dataclass(left: tuple[object, ...], right: tuple[object, ...]) -> None:
    a, b = Point(*left), Point(*right)  # type: ignore[arg-type]
    ra, rb = RefPoint(*left), RefPoint(*right)  # type: ignore[arg-type]
    assert (a == b) is (ra == rb)
    assert (a != b) is (ra != rb)
    if ra == rb:
        assert hash(a) == hash(b)
    assert hash(a) == hash(Point(*left))  # type: ignore[arg-type]
    assert repr(a).replace("Point", "RefPoint", 1) == repr(ra)
    assert "secret" not in repr(a)


def test_equal_only_to_the_same_class() -> None:
    other: object = Other(1, 2)
    assert Point(1, 2) != other
    not_a_point: object = (1, 0)
    assert Point(1) != not_a_point
    assert {Point(1, 2, "a"), Point(1, 2, "b")} == {Point(1, 2)}


def test_frozen_replace_and_fields_work() -> None:
    p = Point(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    assert dataclasses.replace(p, y=4) == Point(1, 4)
    assert [f.name for f in dataclasses.fields(p)] == ["x", "y", "note", "secret"]


def test_a_class_keeps_its_own_methods_and_stays_hashable() -> None:
    assert repr(Own(1)) == "mine"
    assert Own(1) == Own(2)
    assert isinstance(hash(Own(1)), int)
