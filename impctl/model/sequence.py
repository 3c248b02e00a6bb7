"""The failover sequence of imp.net.setserverinterfaces.

impOS removes duplicates, converts specific identifiers to generic ones
("wl0" → "wifi"), and treats an empty list as "the default order": Ethernet,
WiFi, then cellular. Applying a list resets the index to 0.
"""

from __future__ import annotations

from collections.abc import Iterable

from impctl.model.errors import ValidationError
from impctl.model.identifiers import GENERIC, class_of, is_generic, parse_specific

DEFAULT_ORDER: tuple[str, ...] = ("ethernet", "wifi", "cell")


def normalise_sequence(identifiers: Iterable[object]) -> list[str]:
    """Generic identifiers, duplicates removed, order of first appearance kept.

    Plain ifnames are refused: the page defines the sequence over generic and
    specific identifiers only, and a stored sequence must mean the same thing
    on a gateway whose ifnames change.
    """
    out: list[str] = []
    for i, ident in enumerate(identifiers):
        if not isinstance(ident, str) or not (is_generic(ident) or parse_specific(ident)):
            raise ValidationError(
                f"identifiers[{i}]",
                f"{ident!r} is not an interface identifier (ethernet, wifi, cell, or eth0/wl0/cell0 ...)",
            )
        generic = class_of(ident)
        assert generic in GENERIC
        if generic not in out:
            out.append(generic)
    return out


def effective_order(sequence: Iterable[str], available_classes: Iterable[str]) -> list[str]:
    """The classes connect tries, in order: the sequence, then the default order.

    Classes this gateway lacks are skipped, as impOS ignores identifiers of
    interfaces an imp does not have.
    """
    have = set(available_classes)
    order: list[str] = []
    for cls in [*sequence, *DEFAULT_ORDER]:
        if cls in have and cls not in order:
            order.append(cls)
    return order
