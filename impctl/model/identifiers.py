"""Network interface identifiers: impOS's generic and specific ones, and Linux ifnames.

Generic identifiers name a class (`ethernet`, `wifi`, `cell`); specific ones
name the Nth interface of a class (`eth0`, `wl1`, `cell0`). On a gateway the
Nth interface of a class is taken in natural ifname order (`eth2` before
`eth10`), unless the config file pins an identifier to an ifname.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from impctl.model.errors import ValidationError
from impctl.model.record import record

GENERIC = ("ethernet", "wifi", "cell")
PREFIX_TO_CLASS = {"eth": "ethernet", "wl": "wifi", "cell": "cell"}
CLASS_TO_PREFIX = {v: k for k, v in PREFIX_TO_CLASS.items()}

_SPECIFIC = re.compile(r"^(eth|wl|cell)(0|[1-9][0-9]?)$")
# Linux: at most 15 bytes, no '/', ':' or whitespace, not '.' or '..'
_IFNAME = re.compile(r"^[A-Za-z0-9_.\-@+]{1,15}$")


@record
class Specific:
    iface_class: str
    index: int

    @property
    def text(self) -> str:
        return f"{CLASS_TO_PREFIX[self.iface_class]}{self.index}"


def parse_specific(text: str) -> Specific | None:
    m = _SPECIFIC.match(text.lower()) if isinstance(text, str) else None
    if m is None:
        return None
    return Specific(PREFIX_TO_CLASS[m.group(1)], int(m.group(2)))


def is_generic(text: str) -> bool:
    return isinstance(text, str) and text.lower() in GENERIC


def is_ifname(text: str) -> bool:
    return isinstance(text, str) and bool(_IFNAME.match(text)) and text not in (".", "..")


def class_of(identifier: str) -> str | None:
    """The class an impOS identifier names, or None for a plain ifname."""
    if is_generic(identifier):
        return identifier.lower()
    spec = parse_specific(identifier)
    return spec.iface_class if spec else None


def check_identifier(text: object, path: str = "interface", allow_ifname: bool = True) -> str:
    """Validate an identifier; returns it normalised (impOS identifiers lower-cased)."""
    if not isinstance(text, str) or not text:
        raise ValidationError(path, "must be a non-empty string such as wifi, eth0 or cell0")
    if is_generic(text) or parse_specific(text):
        return text.lower()
    if allow_ifname and is_ifname(text):
        return text
    what = "ethernet, wifi, cell, or eth0/wl0/cell0 ..."
    if allow_ifname:
        what += ", or an interface name"
    raise ValidationError(path, f"{text!r} is not an interface identifier ({what})")


def _natural_key(name: str) -> list[object]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def assign_identifiers(
    devices: Iterable[tuple[str, str]], pins: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Map ifname -> specific identifier for (ifname, class) pairs.

    Pinned identifiers (identifier -> ifname, from the config) are honoured
    when the ifname exists with the right class; the rest of each class is
    numbered in natural ifname order, skipping the indices pins took.
    """
    by_class: dict[str, list[str]] = {c: [] for c in GENERIC}
    for ifname, cls in devices:
        if cls in by_class:
            by_class[cls].append(ifname)
    result: dict[str, str] = {}
    taken: set[str] = set()
    for ident, ifname in (pins or {}).items():
        spec = parse_specific(ident)
        if spec and ifname in by_class.get(spec.iface_class, []) and ifname not in result:
            result[ifname] = spec.text
            taken.add(spec.text)
    for cls, names in by_class.items():
        index = 0
        for ifname in sorted(names, key=_natural_key):
            if ifname in result:
                continue
            while f"{CLASS_TO_PREFIX[cls]}{index}" in taken:
                index += 1
            result[ifname] = f"{CLASS_TO_PREFIX[cls]}{index}"
            taken.add(result[ifname])
            index += 1
    return result


def resolve(identifier: str, assignment: Mapping[str, str], classes: Mapping[str, str]) -> list[str]:
    """The ifnames an identifier designates, in preference order (may be empty).

    `assignment` is ifname -> specific identifier, `classes` ifname -> class.
    A generic identifier designates every interface of its class, the primary
    (index 0) first; a specific one its interface; an ifname itself.
    """
    ident = identifier.lower() if (is_generic(identifier) or parse_specific(identifier)) else identifier
    if ident in GENERIC:
        members = [n for n, c in classes.items() if c == ident]
        return sorted(members, key=lambda n: _natural_key(assignment.get(n, n)))
    if parse_specific(ident):
        return [n for n, i in assignment.items() if i == ident]
    return [identifier] if identifier in classes else []
