"""The state file's schema: what impctl keeps between runs.

Pure: (de)serialisation and validation of the JSON document. Reading and
writing it (atomically, under a lock) is `impctl.backends.statefile`.
Secrets inside are always encrypted tokens, never plain text.

Schema version 1:

    {
      "schema_version": 1,
      "sequence": ["wifi", "cell"],        # normalised, generic; [] = default order
      "sequence_index": 0,                 # reset to 0 whenever a list is applied
      "pinned": {NIC} | null,              # manual mode: the NIC of the last connectwith
      "stored": {"wifi": {...}, "static": {...}, "proxy": {...}},  # impctl config ...
      "current": {"identifier": "eth0", "ifname": "eth0", "since": 1.7e9} | null,
      "last_error": {"code": 4, "name": "NO_SERVER", "identifier": ..., "reason": ..., "at": ...} | null,
      "last_results": {"eth0": {...}},     # the last outcome per interface
      "daemon": {...}                      # the failover daemon's view
    }
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from impctl.model.errors import StateError
from impctl.model.sequence import normalise_sequence

SCHEMA_VERSION = 1
STORED_KINDS = ("wifi", "static", "proxy")


@dataclass
class State:
    sequence: list[str] = field(default_factory=list)
    sequence_index: int = 0
    pinned: dict[str, Any] | None = None
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)
    current: dict[str, Any] | None = None
    last_error: dict[str, Any] | None = None
    last_results: dict[str, Any] = field(default_factory=dict)
    daemon: dict[str, Any] = field(default_factory=dict)

    def set_sequence(self, identifiers: list[str]) -> None:
        self.sequence = normalise_sequence(identifiers)
        self.sequence_index = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "sequence": list(self.sequence),
            "sequence_index": self.sequence_index,
            "pinned": copy.deepcopy(self.pinned),
            "stored": copy.deepcopy(self.stored),
            "current": copy.deepcopy(self.current),
            "last_error": copy.deepcopy(self.last_error),
            "last_results": copy.deepcopy(self.last_results),
            "daemon": copy.deepcopy(self.daemon),
        }


def _expect(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise StateError(f"state file field {where!r} has the wrong type")
    return value


def state_from_dict(doc: Any) -> State:
    """Validate a decoded state document; StateError names what is wrong."""
    if not isinstance(doc, dict):
        raise StateError("state file is not a JSON object")
    version = doc.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise StateError("state file has no valid schema_version")
    if version > SCHEMA_VERSION:
        raise StateError(
            f"state file has schema version {version}, newer than this impctl understands ({SCHEMA_VERSION})",
        )
    if version < 1:
        raise StateError(f"state file has an unknown schema version {version}")
    try:
        sequence = normalise_sequence(_expect(doc.get("sequence", []), list, "sequence"))
    except Exception as exc:
        raise StateError(f"state file field 'sequence' is invalid: {exc}") from None
    index = _expect(doc.get("sequence_index", 0), int, "sequence_index")
    pinned = doc.get("pinned")
    if pinned is not None:
        _expect(pinned, dict, "pinned")
    stored = _expect(doc.get("stored", {}), dict, "stored")
    for key, value in stored.items():
        if key not in STORED_KINDS:
            raise StateError(f"state file field 'stored.{key}' is unknown")
        _expect(value, dict, f"stored.{key}")
    current = doc.get("current")
    if current is not None:
        _expect(current, dict, "current")
    last_error = doc.get("last_error")
    if last_error is not None:
        _expect(last_error, dict, "last_error")
    return State(
        sequence=sequence,
        sequence_index=max(0, index),
        pinned=pinned,
        stored=stored,
        current=current,
        last_error=last_error,
        last_results=_expect(doc.get("last_results", {}), dict, "last_results"),
        daemon=_expect(doc.get("daemon", {}), dict, "daemon"),
    )
