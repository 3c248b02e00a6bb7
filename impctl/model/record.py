"""`record`: a frozen dataclass that costs less to define.

On Python 3.11 `dataclass` writes every method it adds as source text and
compiles it with `exec`, six of them for a frozen class: ~0.65 ms a class,
and `impctl status` defines about thirty before it reads anything (a tenth of
its start-up, measured by bench/startup_bench.py). Only `__init__` and the
frozen `__setattr__`/`__delattr__` need code of their own; `__repr__`,
`__eq__` and `__hash__` are the same for every class, so `record` gives each
class the shared ones below and keeps dataclass's meaning: fields compared
and hashed in order (those with `compare=False` left out, `hash=` honoured),
equal only to an instance of the very same class, and a method the class
defines itself is kept.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields
from typing import Any, TypeVar, dataclass_transform

_T = TypeVar("_T")


def _hashed(f: Field[Any]) -> bool:
    return f.compare if f.hash is None else f.hash


def _repr(self: object) -> str:
    cls: Any = type(self)
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in cls.__record_repr__)
    return f"{cls.__qualname__}({shown})"


def _eq(self: object, other: object) -> Any:  # bool, or NotImplemented for another class
    if other.__class__ is not self.__class__:
        return NotImplemented
    names = type(self).__record_compare__  # type: ignore[attr-defined]
    return tuple(getattr(self, n) for n in names) == tuple(getattr(other, n) for n in names)


def _hash(self: object) -> int:
    return hash(tuple(getattr(self, n) for n in type(self).__record_hash__))  # type: ignore[attr-defined]


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[_T]) -> type[_T]:
    """`@dataclass(frozen=True)` with shared `__repr__`, `__eq__` and `__hash__`."""
    own = set(cls.__dict__)
    if cls.__dict__.get("__hash__", 0) is None and "__eq__" in own:
        own.discard("__hash__")  # Python's implicit None beside an own __eq__, not a choice
    done: Any = dataclass(frozen=True, repr=False, eq=False)(cls)
    all_fields = fields(done)
    done.__record_repr__ = tuple(f.name for f in all_fields if f.repr)
    done.__record_compare__ = tuple(f.name for f in all_fields if f.compare)
    done.__record_hash__ = tuple(f.name for f in all_fields if _hashed(f))
    for name, method in (("__repr__", _repr), ("__eq__", _eq), ("__hash__", _hash)):
        if name not in own:
            setattr(done, name, method)
    return done  # type: ignore[no-any-return]
