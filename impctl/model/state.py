"""The state file's schema: what impctl keeps between runs.

Pure: (de)serialisation, validation and migration of the JSON document.
Reading and writing it (atomically, under a lock) is `impctl.backends.statefile`.
Secrets inside are always encrypted tokens, never plain text.

Schema version 2:

    {
      "schema_version": 2,
      "sequence": ["wifi", "cell"],        # normalised, generic; [] = default order
      "sequence_index": 0,                 # reset to 0 whenever a list is applied
      "pinned": {NIC} | null,              # manual mode: the NIC of the last connectwith
      "stored": {"wifi": {...}, "static": {..., "interface": "eth0"}, "proxy": {...}},
      "current": {"identifier": "eth0", "ifname": "eth0", "class": "ethernet", "since": 1.7e9,
                  "by": "connectwith", "nic": {NIC}, "profile_uuid": "..."} | null,
      "disconnected_at": 1.7e9 | null,     # impctl disconnect; cleared by the next connect
      "last_error": {"code": 4, "name": "NO_SERVER", "identifier": ..., "reason": ..., "at": ...} | null,
      "last_results": {"eth0": {...}},     # the last outcome per interface
      "daemon": {...} | null               # the failover daemon's view (DaemonView)
    }

Version 1 (impctl 0.1) kept `pinned`, `current`, `stored` and `daemon` as
untyped objects and had no `disconnected_at`; `state_from_dict` migrates it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Generic, TypeVar

from impctl.model.errors import ImpctlError, StateError
from impctl.model.nic import (
    Nic,
    ProxyConfig,
    StaticConfig,
    WifiConfig,
    nic_to_json,
    parse_nic,
    parse_proxy,
    parse_static,
    parse_wifi,
)
from impctl.model.record import record
from impctl.model.sequence import normalise_sequence

SCHEMA_VERSION = 2
STORED_KINDS = ("wifi", "static", "proxy")
CURRENT_BY = ("connectwith", "connect", "daemon")

T = TypeVar("T", WifiConfig, StaticConfig, ProxyConfig)


class Mode(StrEnum):
    """impOS's network modes, computed in one place (`State.mode`).

    legacy: no sequence was ever set, connect walks the default order;
    automatic: connect (and the daemon) walk the stored sequence;
    manual: connectwith pinned an interface.
    """

    LEGACY = "legacy"
    AUTOMATIC = "automatic"
    MANUAL = "manual"


@record
class Pin:
    """Manual mode: the interface connectwith connected, and its NIC if it was extended."""

    interface: str
    nic: Nic | None = None  # secrets encrypted; None for a NIC naming only an interface

    def to_json(self) -> dict[str, Any]:
        return nic_to_json(self.nic) if self.nic is not None else {"interface": self.interface}


@record
class CurrentUplink:
    """The uplink impctl (or its daemon) made current."""

    identifier: str
    ifname: str | None
    iface_class: str
    since: float
    by: str = "connect"  # connectwith | connect | daemon
    nic: Nic | None = None  # connectwith's extended NIC, secrets encrypted
    # The NM profile that NIC was activated as: the NIC describes the connection
    # only while that profile is what the device runs (impOS discards an extended
    # NIC when its connection is lost).
    profile_uuid: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"identifier": self.identifier, "ifname": self.ifname,
                               "class": self.iface_class, "since": self.since, "by": self.by}
        if self.nic is not None:
            out["nic"] = nic_to_json(self.nic)
        if self.profile_uuid is not None:
            out["profile_uuid"] = self.profile_uuid
        return out


@record
class Stored(Generic[T]):
    """One kind of stored settings (impctl config ...), for one interface or all."""

    config: T
    interface: str | None = None  # an identifier, ifname or class; None: every interface it fits


@record
class StoredSettings:
    wifi: Stored[WifiConfig] | None = None
    static: Stored[StaticConfig] | None = None
    proxy: Stored[ProxyConfig] | None = None

    def kinds(self) -> list[str]:
        return [k for k in STORED_KINDS if getattr(self, k) is not None]

    def cleared(self, kind: str) -> StoredSettings:
        return replace(self, **{kind: None})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for kind in self.kinds():
            entry = getattr(self, kind)
            doc = _fragment_json(kind, entry.config)
            if entry.interface is not None:
                doc["interface"] = entry.interface
            out[kind] = doc
        return out


def _fragment_json(kind: str, config: WifiConfig | StaticConfig | ProxyConfig) -> dict[str, Any]:
    # The NIC's own JSON form of the part, so stored settings and NICs never diverge.
    if isinstance(config, WifiConfig):
        return dict(nic_to_json(Nic("wifi", wificonfig=config))["wificonfig"])
    if isinstance(config, StaticConfig):
        return dict(nic_to_json(Nic("ethernet", staticconfig=config))["staticconfig"])
    return dict(nic_to_json(Nic("ethernet", proxyconfig=config))["proxyconfig"])


@record
class UplinkView:
    ifname: str
    identifier: str
    iface_class: str
    health: str
    active: bool
    link: bool | None
    ip_ready: bool | None
    failures: int
    last_code: int | None
    last_reason: str | None
    last_probe_at: float | None
    usable_since: float | None
    losses: int


@record
class SwitchView:
    at: float | None
    from_ifname: str | None
    to_ifname: str | None
    reason: str
    took_s: float | None
    verified: bool | None
    sessions_ended: tuple[int, int, float] | None = None  # sockets, conntrack entries, ms


@record
class DaemonView:
    """What the failover daemon last published, for `impctl status` and `impctl daemon --status`."""

    version: int
    running: bool
    pid: int | None
    mode: str
    phase: str
    active: str | None
    lost_reason: str | None
    failback: bool
    started_at: float | None = None
    updated_at: float | None = None
    networkmanager: bool | None = None
    uplinks: tuple[UplinkView, ...] = ()
    switches: tuple[SwitchView, ...] = ()
    settings: tuple[tuple[str, float], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "daemon_state_version": self.version,
            "mode": self.mode,
            "phase": self.phase,
            "active": self.active,
            "lost_reason": self.lost_reason,
            "failback": self.failback,
            "uplinks": [
                {"ifname": u.ifname, "identifier": u.identifier, "class": u.iface_class, "health": u.health,
                 "active": u.active, "link": u.link, "ip_ready": u.ip_ready, "failures": u.failures,
                 "last_code": u.last_code, "last_reason": u.last_reason, "last_probe_at": u.last_probe_at,
                 "usable_since": u.usable_since, "losses": u.losses}
                for u in self.uplinks
            ],
            "switches": [
                {"at": s.at, "from": s.from_ifname, "to": s.to_ifname, "reason": s.reason, "took_s": s.took_s,
                 "verified": s.verified,
                 **({} if s.sessions_ended is None else {"sessions_ended": dict(zip(
                     ("sockets", "conntrack", "ms"), s.sessions_ended, strict=True))})}
                for s in self.switches
            ],
            "running": self.running,
            "pid": self.pid,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "networkmanager": self.networkmanager,
            "settings": dict(self.settings),
        }


@dataclass
class State:
    sequence: list[str] = field(default_factory=list)
    sequence_index: int = 0
    pinned: Pin | None = None
    stored: StoredSettings = field(default_factory=StoredSettings)
    current: CurrentUplink | None = None
    disconnected_at: float | None = None
    last_error: dict[str, Any] | None = None
    last_results: dict[str, Any] = field(default_factory=dict)
    daemon: DaemonView | None = None

    @property
    def current_ifname(self) -> str | None:
        return self.current.ifname if self.current else None

    @property
    def mode(self) -> Mode:
        if self.pinned is not None:
            return Mode.MANUAL
        return Mode.AUTOMATIC if self.sequence else Mode.LEGACY

    def set_sequence(self, identifiers: list[str]) -> None:
        self.sequence = normalise_sequence(identifiers)
        self.sequence_index = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "sequence": list(self.sequence),
            "sequence_index": self.sequence_index,
            "pinned": self.pinned.to_json() if self.pinned else None,
            "stored": self.stored.to_json(),
            "current": self.current.to_json() if self.current else None,
            "disconnected_at": self.disconnected_at,
            "last_error": _plain_copy(self.last_error),
            "last_results": _plain_copy(self.last_results),
            "daemon": self.daemon.to_json() if self.daemon else None,
        }


def _plain_copy(value: Any) -> Any:
    # JSON-shaped records (dicts, lists, scalars): copied so the caller's state stays its own.
    if isinstance(value, dict):
        return {k: _plain_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_copy(v) for v in value]
    return value


# ---------------------------------------------------------------- reading


def _expect(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float, (int, float))):
        raise StateError(f"state file field {where!r} has the wrong type")
    return value


def _opt(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = doc.get(key)
    return None if value is None else _expect(value, kind, f"{where}.{key}")


def _time(doc: dict[str, Any], key: str, where: str) -> float | None:
    value = _opt(doc, key, (int, float), where)
    if value is not None and not math.isfinite(value):
        raise StateError(f"state file field '{where}.{key}' is not a finite number")
    return None if value is None else float(value)


def _nic(value: Any, where: str) -> Nic:
    try:
        return parse_nic(value)
    except ImpctlError as err:
        raise StateError(f"state file field {where!r} is not a valid NIC: {err.message}") from None


def _pin(value: Any) -> Pin | None:
    if value is None:
        return None
    nic = _nic(_expect(value, dict, "pinned"), "pinned")
    return Pin(nic.interface, None if nic.is_bare else nic)


def _current(value: Any) -> CurrentUplink | None:
    if value is None:
        return None
    doc = _expect(value, dict, "current")
    identifier = _expect(doc.get("identifier"), str, "current.identifier")
    by = doc.get("by", "connect")
    if by not in CURRENT_BY:
        by = "connect"  # version 1 wrote "by" only for the daemon
    nic = _nic(doc["nic"], "current.nic") if doc.get("nic") is not None else None
    return CurrentUplink(
        identifier=identifier,
        ifname=_opt(doc, "ifname", str, "current"),
        iface_class=_opt(doc, "class", str, "current") or "",
        since=_time(doc, "since", "current") or 0.0,
        by=by,
        nic=None if nic is None or nic.is_bare else nic,
        profile_uuid=_opt(doc, "profile_uuid", str, "current"),
    )


def _stored(value: Any) -> StoredSettings:
    doc = _expect(value if value is not None else {}, dict, "stored")
    parsers = {"wifi": parse_wifi, "static": parse_static, "proxy": parse_proxy}
    entries: dict[str, Stored[Any]] = {}
    for key, frag in doc.items():
        if key not in STORED_KINDS:
            raise StateError(f"state file field 'stored.{key}' is unknown")
        frag = _expect(frag, dict, f"stored.{key}")
        interface = _opt(frag, "interface", str, f"stored.{key}")
        try:
            config = parsers[key]({k: v for k, v in frag.items() if k != "interface"}, f"stored.{key}")
        except ImpctlError as err:
            raise StateError(f"state file field 'stored.{key}' is invalid: {err.message}") from None
        entries[key] = Stored(config, interface)
    return StoredSettings(**entries)


def _int(doc: dict[str, Any], key: str, where: str, default: int = 0) -> int:
    value = doc.get(key, default)
    return int(_expect(value, int, f"{where}.{key}"))


def _sessions(value: Any) -> tuple[int, int, float] | None:
    if not isinstance(value, dict):
        return None
    sockets, conntrack = _int(value, "sockets", "s.sessions_ended"), _int(value, "conntrack", "s.sessions_ended")
    ms = _time(value, "ms", "s.sessions_ended")
    return sockets, conntrack, ms or 0.0


def daemon_view_from_json(value: Any) -> DaemonView | None:
    """The daemon's published view (FailoverPolicy.snapshot plus the shell's fields), typed.

    A malformed one is dropped, not an error: it is a cache the daemon rewrites
    within seconds, and it must never lock the user out of the state file."""
    if not value:
        return None
    try:
        doc = _expect(value, dict, "daemon")
        uplinks = tuple(
            UplinkView(
                ifname=_expect(u["ifname"], str, "u"), identifier=str(u.get("identifier", "")),
                iface_class=str(u.get("class", "")), health=str(u.get("health", "")),
                active=bool(u.get("active")), link=u.get("link"), ip_ready=u.get("ip_ready"),
                failures=_int(u, "failures", "u"), last_code=u.get("last_code"), last_reason=u.get("last_reason"),
                last_probe_at=_time(u, "last_probe_at", "u"), usable_since=_time(u, "usable_since", "u"),
                losses=_int(u, "losses", "u"),
            )
            for u in _expect(doc.get("uplinks", []), list, "daemon.uplinks")
        )
        switches = tuple(
            SwitchView(at=_time(s, "at", "s"), from_ifname=s.get("from"), to_ifname=s.get("to"),
                       reason=str(s.get("reason", "")), took_s=_time(s, "took_s", "s"), verified=s.get("verified"),
                       sessions_ended=_sessions(s.get("sessions_ended")))
            for s in _expect(doc.get("switches", []), list, "daemon.switches")
        )
        settings = _expect(doc.get("settings", {}), dict, "daemon.settings")
        pid = doc.get("pid")
        return DaemonView(
            version=_int(doc, "daemon_state_version", "daemon", 1),
            running=bool(doc.get("running")),
            pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
            mode=str(doc.get("mode", "")), phase=str(doc.get("phase", "")),
            active=doc.get("active") if isinstance(doc.get("active"), str) else None,
            lost_reason=doc.get("lost_reason") if isinstance(doc.get("lost_reason"), str) else None,
            failback=bool(doc.get("failback")),
            started_at=_time(doc, "started_at", "daemon"), updated_at=_time(doc, "updated_at", "daemon"),
            networkmanager=doc.get("networkmanager") if isinstance(doc.get("networkmanager"), bool) else None,
            uplinks=uplinks, switches=switches,
            settings=tuple((str(k), float(v)) for k, v in settings.items()
                           if isinstance(v, int | float) and not isinstance(v, bool)),
        )
    except (StateError, KeyError, TypeError, AttributeError, ValueError):
        return None


def state_from_dict(doc: Any) -> State:
    """Validate (and migrate) a decoded state document; StateError names what is wrong."""
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
    except ImpctlError as exc:
        raise StateError(f"state file field 'sequence' is invalid: {exc}") from None
    index = _expect(doc.get("sequence_index", 0), int, "sequence_index")
    last_error = doc.get("last_error")
    if last_error is not None:
        _expect(last_error, dict, "last_error")
    return State(
        sequence=sequence,
        sequence_index=max(0, index),
        pinned=_pin(doc.get("pinned")),
        stored=_stored(doc.get("stored")),
        current=_current(doc.get("current")),
        disconnected_at=_time(doc, "disconnected_at", "state") if version >= 2 else None,
        last_error=last_error,
        last_results=_expect(doc.get("last_results", {}), dict, "last_results"),
        daemon=daemon_view_from_json(doc.get("daemon")),
    )


def merge(base: State, mine: State, theirs: State) -> State:
    """Three-way merge of a command's changes into the file as it is now.

    `base` is what the command read, `mine` what it made of it, `theirs` what
    the file holds now. A field the command changed takes its value; every
    other field keeps `theirs`, so a daemon view, a sequence or stored settings
    written meanwhile by another process survive. last_results merges per interface.
    """
    out = State()
    for name in State.__dataclass_fields__:
        if name == "last_results":
            continue
        mine_value, base_value = getattr(mine, name), getattr(base, name)
        setattr(out, name, mine_value if mine_value != base_value else getattr(theirs, name))
    results = dict(theirs.last_results)
    for key, value in mine.last_results.items():
        if base.last_results.get(key) != value:
            results[key] = value
    for key in base.last_results.keys() - mine.last_results.keys():
        results.pop(key, None)
    out.last_results = results
    return out
