"""server.connectwith, server.connect, server.disconnect, imp.net.info and the stored settings.

The use cases take their backends as parameters: `Network` (NM and MM, see
impctl.backends.dbus.NetworkManagerBackend), a `CloudCheck` (the staged probe
through `probe_check`, or anything with its signature) and a `Store` (the
state file and the gateway key). Nothing here imports dbus-next.

How an attempt goes (connectwith, and each step of connect):
1. the NIC is completed from the stored settings when it names only an
   interface, validated for the device, its secrets decrypted: bad input
   raises before anything changes;
2. a modem must have a SIM, be unlocked and not be denied registration;
3. a volatile NM profile is activated on the device with a high route
   metric, so the current uplink keeps the default route during the trial;
4. the cloud is checked through the device (SO_BINDTODEVICE);
5. success: the device gets the lowest route metric, then the previous
   uplink's device is disconnected, which also stops NM from autoconnecting
   it (impOS: "disconnect from interface A and power it down");
   failure: the attempt is deactivated and whatever the device had before
   is put back, the previous uplink untouched.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from impctl.backends import secrets as secrets_backend
from impctl.backends import statefile
from impctl.model.attempt import (
    Activation,
    Attempt,
    CheckOutcome,
    activation_code,
    cloud_code,
    link_code,
    modem_code,
)
from impctl.model.codes import ResultCode, code_name, exit_code_for
from impctl.model.config import Config
from impctl.model.errors import NoSuchInterface, ValidationError
from impctl.model.identifiers import class_of, resolve
from impctl.model.inventory import (
    DeviceInfo,
    MMModemState,
    MMRegistrationState,
    NMDeviceState,
    name_of,
)
from impctl.model.nic import (
    CellConfig,
    Nic,
    ProxyConfig,
    Secret,
    StaticConfig,
    WifiConfig,
    check_nic_for_class,
    nic_summary,
    nic_to_json,
    parse_nic,
    parse_proxy,
    parse_static,
    parse_wifi,
)
from impctl.model.nmsettings import MODEM_TYPES, WIFI_TYPES, DeviceFacts, Settings, nm_settings
from impctl.model.sequence import effective_order
from impctl.model.state import STORED_KINDS, State
from impctl.usecases.probe import LinkFacts, ProbeProxy, SocketProbes, probe_interface

# Timeouts and metrics, in one place.
DEFAULT_TIMEOUT_S = 60.0  # server.connect / connectwith default
CELL_TIMEOUT_S = 120.0  # a modem needs time to enable, register and bring a bearer up
TRIAL_ROUTE_METRIC = 20000  # while on trial the new uplink must not take the default route
PRIMARY_ROUTE_METRIC = 50  # below NM's defaults (ethernet 100, wifi 600, modem 700)
MIN_CHECK_TIMEOUT_S = 1.0


class Network(Protocol):
    async def devices(self) -> list[DeviceInfo]: ...

    async def primary_ifname(self) -> str | None: ...

    async def activate(self, settings: Settings, device: DeviceInfo, timeout_s: float) -> Activation: ...

    async def deactivate(self, active_path: str) -> bool: ...

    async def disconnect(self, device: DeviceInfo) -> bool: ...

    async def set_route_metric(self, device: DeviceInfo, metric: int) -> None: ...

    async def snapshot(self, device: DeviceInfo) -> Any: ...

    async def restore(self, snapshot: Any) -> bool: ...


# (device, proxy, clear proxy password, timeout_s) -> outcome
CloudCheck = Callable[[DeviceInfo, ProxyConfig | None, str | None, float], Awaitable[CheckOutcome]]


def probe_check(config: Config, *, links: LinkFacts, net: SocketProbes[Any]) -> CloudCheck:
    """The staged probe (impctl.usecases.probe) as connect's cloud check."""

    async def check(
        device: DeviceInfo, proxy: ProxyConfig | None, password: str | None, timeout_s: float
    ) -> CheckOutcome:
        via = ProbeProxy(proxy.address, proxy.port, proxy.username, password) if proxy else None
        result = await probe_interface(
            device, config, via, links=links, net=net, deadline=time.monotonic() + timeout_s
        )
        reason = result.reason or f"the cloud {config.cloud.host}:{config.cloud.port} answered"
        return CheckOutcome(result.code, reason, result.duration_ms / 1000)

    return check


class Store(Protocol):
    def transaction(self) -> contextlib.AbstractContextManager[State]: ...

    def load(self) -> State: ...

    def encrypt(self, secret: Secret | None) -> Secret | None: ...

    def decrypt(self, secret: Secret | None, path: str) -> str | None: ...


class FileStore:
    """The state file and the per-gateway key beside it."""

    def __init__(self, state_path: Path) -> None:
        self.state_path = state_path
        self.key_path = secrets_backend.key_path_for(state_path)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[State]:
        """The state under the file's lock for a whole operation; written back unless it raises.

        Held across the NM calls, so two impctl runs never switch uplinks at once.
        """
        with statefile.locked(self.state_path):
            state = statefile.load_state(self.state_path)
            yield state
            statefile.write_state(self.state_path, state)

    def load(self) -> State:
        return statefile.load_state(self.state_path)

    def encrypt(self, secret: Secret | None) -> Secret | None:
        return secrets_backend.encrypt_secret(secret, self.key_path)

    def decrypt(self, secret: Secret | None, path: str) -> str | None:
        return secrets_backend.decrypt_secret(secret, self.key_path, path)


# ---------------------------------------------------------------------------
# pure helpers


def default_timeout(iface_class: str) -> float:
    return CELL_TIMEOUT_S if iface_class == "cell" else DEFAULT_TIMEOUT_S


def find_devices(identifier: str, devices: list[DeviceInfo]) -> list[DeviceInfo]:
    """The devices an identifier (generic, specific or ifname) designates, preferred first."""
    assignment = {d.ifname: d.identifier for d in devices}
    classes = {d.ifname: d.iface_class for d in devices}
    by_name = {d.ifname: d for d in devices}
    return [by_name[n] for n in resolve(identifier, assignment, classes)]


def _stored_applies(fragment: dict[str, Any], device: DeviceInfo) -> bool:
    target = fragment.get("interface")
    return target is None or target in (device.identifier, device.ifname, device.iface_class)


def _fragment(stored: dict[str, Any], kind: str, device: DeviceInfo) -> dict[str, Any] | None:
    frag = stored.get(kind)
    if not isinstance(frag, dict) or not _stored_applies(frag, device):
        return None
    return {k: v for k, v in frag.items() if k != "interface"}


def complete_nic(nic: Nic, device: DeviceInfo, stored: dict[str, Any]) -> Nic:
    """A NIC naming only an interface takes the stored settings that apply to the device.

    Stored WiFi settings apply to WiFi hardware only (an SSID means nothing
    to the lab's veth playing wifi); static and proxy settings to ethernet
    and wifi interfaces, or to the one named with `config static --interface`.
    """
    if not nic.is_bare:
        return nic
    wifi = static = proxy = None
    if device.nm_type in WIFI_TYPES and (frag := _fragment(stored, "wifi", device)) is not None:
        wifi = parse_wifi(frag, "stored.wifi")
    if device.iface_class in ("ethernet", "wifi"):
        if (frag := _fragment(stored, "static", device)) is not None:
            static = parse_static(frag, "stored.static")
        if (frag := _fragment(stored, "proxy", device)) is not None:
            proxy = parse_proxy(frag, "stored.proxy")
    return replace(nic, wificonfig=wifi, staticconfig=static, proxyconfig=proxy)


def primary_metric(devices: list[DeviceInfo], target: DeviceInfo, leaving: DeviceInfo | None) -> int:
    """A route metric below every other uplink that stays up."""
    others = [
        d.route_metric
        for d in devices
        if d.ifname != target.ifname
        and (leaving is None or d.ifname != leaving.ifname)
        and d.connected
        and d.route_metric is not None
    ]
    return max(0, min([PRIMARY_ROUTE_METRIC, *[m - 1 for m in others]]))


# ---------------------------------------------------------------------------
# results


@dataclass
class ConnectReport:
    command: str  # connectwith | connect
    mode: str  # manual | automatic | legacy
    attempts: list[Attempt] = field(default_factory=list)
    already_connected: Attempt | None = None
    current: dict[str, Any] | None = None

    @property
    def connected(self) -> bool:
        return self.already_connected is not None or any(a.ok for a in self.attempts)

    @property
    def code(self) -> ResultCode:
        if self.connected:
            return ResultCode.SERVER_CONNECTED
        return self.attempts[-1].code if self.attempts else ResultCode.NOT_CONNECTED

    @property
    def exit_code(self) -> int:
        return exit_code_for(self.code)

    def to_json(self) -> dict[str, Any]:
        last_class = self.attempts[-1].iface_class if self.attempts else None
        return {
            "mode": self.mode,
            "connected": self.connected,
            "already_connected": self.already_connected is not None,
            "code": int(self.code),
            "code_name": code_name(self.code, last_class),
            "current": _current_json(self.current),
            "attempts": [a.to_json() for a in self.attempts],
            **({"check": self.already_connected.to_json()} if self.already_connected else {}),
        }


def _current_json(current: dict[str, Any] | None) -> dict[str, Any] | None:
    if current is None:
        return None
    return {k: v for k, v in current.items() if k != "nic"}


def _attempt_record(attempt: Attempt) -> dict[str, Any]:
    return {**attempt.to_json(), "at": time.time()}


def _record(state: State, attempt: Attempt) -> None:
    state.last_results[attempt.identifier] = _attempt_record(attempt)
    if not attempt.ok:
        state.last_error = {
            "code": int(attempt.code),
            "name": attempt.code_name,
            "identifier": attempt.identifier,
            "ifname": attempt.ifname,
            "reason": attempt.reason,
            "at": time.time(),
        }


# ---------------------------------------------------------------------------
# one attempt


@dataclass
class _Ctx:
    network: Network
    check: CloudCheck
    store: Store
    config: Config


def _plain_nic(nic: Nic, store: Store) -> tuple[Nic, str | None]:
    """The NIC with clear secrets for NM, and the clear proxy password for the check."""
    wifi = nic.wificonfig
    if wifi is not None and wifi.key is not None:
        wifi = WifiConfig(wifi.ssid, Secret(plain=store.decrypt(wifi.key, "wificonfig.key") or ""))
    cell = nic.cellconfig
    if cell is not None and cell.password is not None:
        cell = CellConfig(cell.apn, cell.username, Secret(plain=store.decrypt(cell.password, "cellconfig.password")))
    proxy_password = None
    if nic.proxyconfig is not None:
        proxy_password = store.decrypt(nic.proxyconfig.password, "proxyconfig.password")
    return replace(nic, wificonfig=wifi, cellconfig=cell), proxy_password


def _encrypted_nic_json(nic: Nic, store: Store) -> dict[str, Any]:
    wifi = nic.wificonfig
    if wifi is not None and wifi.key is not None and not wifi.key.is_empty:
        wifi = WifiConfig(wifi.ssid, store.encrypt(wifi.key))
    proxy = nic.proxyconfig
    if proxy is not None and proxy.password is not None:
        proxy = replace(proxy, password=store.encrypt(proxy.password))
    cell = nic.cellconfig
    if cell is not None and cell.password is not None:
        cell = replace(cell, password=store.encrypt(cell.password))
    return nic_to_json(replace(nic, wificonfig=wifi, proxyconfig=proxy, cellconfig=cell))


def _refreshed(devices: list[DeviceInfo], device: DeviceInfo) -> DeviceInfo | None:
    return next((d for d in devices if d.nm_path == device.nm_path), None)


def _prepare(nic: Nic, device: DeviceInfo, state: State, store: Store, timeout_s: float) -> tuple[
    Nic, Settings | None, str | None, str | None
]:
    """Validated NIC, NM settings and proxy password; or the reason there are no settings.

    Raises ValidationError for input that cannot apply to the device.
    """
    check_nic_for_class(nic, device.iface_class)
    full = complete_nic(nic, device, state.stored)
    if device.nm_type in WIFI_TYPES and full.wificonfig is None:
        return full, None, None, (
            f"no WiFi network for {device.identifier}: give a wificonfig, or store one with 'impctl config wifi'"
        )
    plain, proxy_password = _plain_nic(full, store)
    settings = nm_settings(
        plain,
        DeviceFacts(device.ifname, device.nm_type),
        uuid=str(uuid.uuid4()),
        route_metric=TRIAL_ROUTE_METRIC,
        dhcp_timeout_s=max(1, int(timeout_s)),
    )
    return full, settings, proxy_password, None


async def _attempt(
    ctx: _Ctx,
    nic: Nic,
    device: DeviceInfo,
    previous: DeviceInfo | None,
    state: State,
    timeout_s: float,
    prepared: tuple[Nic, Settings | None, str | None, str | None] | None = None,
) -> tuple[Attempt, dict[str, Any] | None]:
    """Try one device; on success it is the primary uplink and `previous` is down.

    Returns the attempt and, on success, the NIC to record (secrets encrypted).
    """
    start = time.monotonic()

    def result(code: ResultCode, stage: str, reason: str, **details: Any) -> Attempt:
        return Attempt(
            identifier=device.identifier, ifname=device.ifname, iface_class=device.iface_class,
            code=code, reason=reason, elapsed_s=time.monotonic() - start, stage=stage, details=details,
        )

    full, settings, proxy_password, why_not = prepared or _prepare(nic, device, state, ctx.store, timeout_s)
    if settings is None:
        return result(link_code(device.iface_class), "settings", why_not or "no settings"), None
    is_modem = device.nm_type in MODEM_TYPES
    if is_modem and (code := modem_code(device.modem)) is not None:
        return result(code, "modem", _modem_reason(device, code)), None

    snapshot = await ctx.network.snapshot(device) if device.active_path else None
    trial: str | None = None  # the active connection of this attempt, while it is on trial
    undone = False

    async def undo() -> None:
        """Take the attempt down and give the device back what it had (once)."""
        nonlocal undone
        if undone:
            return
        undone = True
        if trial is not None:
            await ctx.network.deactivate(trial)
        if snapshot is not None:
            await ctx.network.restore(snapshot)

    try:
        activation = await ctx.network.activate(settings, device, timeout_s)
        trial = activation.active_path
        if not activation.activated:
            code = activation_code(device.iface_class, activation, is_modem=is_modem)
            if device.carrier is False and not is_modem:
                code = link_code(device.iface_class)
            if is_modem:
                fresh = _refreshed(await ctx.network.devices(), device)
                code = modem_code(fresh.modem if fresh else None, after_attempt=True) or code
            await undo()
            return result(code, "activation", _activation_reason(device, activation)), None
        devices = await ctx.network.devices()
        fresh = _refreshed(devices, device)
        if fresh is None:
            raise NoSuchInterface(f"{device.ifname} disappeared while connecting")
        remaining = timeout_s - (time.monotonic() - start)
        check_timeout = max(MIN_CHECK_TIMEOUT_S, min(remaining, ctx.config.probe.total_timeout_s))
        outcome = await ctx.check(fresh, full.proxyconfig, proxy_password, check_timeout)
        code = cloud_code(device.iface_class, outcome.code, via_modem=fresh.modem is not None)
        if code != ResultCode.SERVER_CONNECTED:
            await undo()
            return result(code, "cloud", outcome.reason, addresses=list(fresh.addresses)), None
    except BaseException:
        # Leave the gateway as it was, whatever went wrong (NM gone, interrupted, a bug).
        with contextlib.suppress(Exception):
            await undo()
        raise

    leaving = previous if previous is not None and previous.ifname != device.ifname else None
    metric = primary_metric(devices, fresh, leaving)
    await ctx.network.set_route_metric(fresh, metric)
    took_down = None
    if leaving is not None and leaving.active_path:
        await ctx.network.disconnect(leaving)
        took_down = leaving.identifier
    details: dict[str, Any] = {"addresses": list(fresh.addresses), "route_metric": metric}
    if took_down:
        details["previous_taken_down"] = took_down
    return result(ResultCode.SERVER_CONNECTED, "done", outcome.reason, **details), _encrypted_nic_json(full, ctx.store)


def _modem_reason(device: DeviceInfo, code: ResultCode) -> str:
    m = device.modem
    if m is None:
        return f"ModemManager has no modem for {device.ifname}"
    if code == ResultCode.SIM_ERROR:
        return "the SIM is missing, failed or locked" + (" (PIN/PUK required)" if m.sim_locked else "")
    if code == ResultCode.REGISTRATION_DENIED:
        return "the network denied registration"
    if code == ResultCode.NO_REGISTRATION:
        return "the modem is not registered on a network"
    return "the modem failed"


def _activation_reason(device: DeviceInfo, activation: Activation) -> str:
    if device.carrier is False:
        return f"{device.ifname} has no carrier (link down)"
    if activation.error_name:
        return f"NetworkManager refused: {activation.error_text}"
    state = name_of(NMDeviceState, activation.furthest_state)
    if activation.timed_out:
        return f"{device.ifname} did not activate in time (reached {state})"
    return f"{device.ifname} failed to activate after {state} (NM reason {activation.reason})"


def _no_modem(identifier: str) -> Attempt:
    return Attempt(identifier, None, "cell", ResultCode.NO_MODEM, "this gateway has no modem", stage="modem")


def _current_device(state: State, devices: list[DeviceInfo], primary: str | None) -> DeviceInfo | None:
    """The current uplink: the one impctl connected, else NM's primary connection's device."""
    names = []
    if state.current and isinstance(state.current.get("ifname"), str):
        names.append(state.current["ifname"])
    if primary:
        names.append(primary)
    for name in names:
        dev = next((d for d in devices if d.ifname == name), None)
        if dev is not None and dev.connected:
            return dev
    return None


def _set_current(state: State, attempt: Attempt, nic_json: dict[str, Any] | None) -> None:
    state.current = {
        "identifier": attempt.identifier,
        "ifname": attempt.ifname,
        "class": attempt.iface_class,
        "since": time.time(),
        **({"nic": nic_json} if nic_json is not None else {}),
    }


# ---------------------------------------------------------------------------
# the use cases


async def connectwith(
    nic: Nic,
    *,
    network: Network,
    check: CloudCheck,
    store: Store,
    config: Config,
    timeout_s: float | None = None,
) -> ConnectReport:
    """server.connectwith: connect through the NIC's interface; pin it on success (manual mode)."""
    ctx = _Ctx(network, check, store, config)
    report = ConnectReport(command="connectwith", mode="manual")
    with store.transaction() as state:
        devices = await network.devices()
        targets = find_devices(nic.interface, devices)
        if not targets:
            if class_of(nic.interface) == "cell":
                report.attempts.append(_no_modem(nic.interface))
                _record(state, report.attempts[-1])
                return report
            raise NoSuchInterface(
                f"no interface {nic.interface!r} on this gateway",
                hint="'impctl status' lists the interfaces and their identifiers",
            )
        device = targets[0]
        timeout = timeout_s or default_timeout(device.iface_class)
        prepared = _prepare(nic, device, state, store, timeout)  # bad input: raise before any change
        previous = _current_device(state, devices, await network.primary_ifname())
        attempt, nic_json = await _attempt(ctx, nic, device, previous, state, timeout, prepared)
        report.attempts.append(attempt)
        _record(state, attempt)
        if attempt.ok:
            _set_current(state, attempt, nic_json)
            # Manual mode. connect reuses only the interface of the pin with the
            # stored settings: impOS discards an extended NIC's settings.
            state.pinned = {"interface": nic.interface} if nic.is_bare else nic_json
        report.current = state.current
    return report


async def connect(
    *,
    network: Network,
    check: CloudCheck,
    store: Store,
    config: Config,
    timeout_s: float | None = None,
) -> ConnectReport:
    """server.connect: keep a working connection; else the pinned interface, else the sequence.

    `timeout_s` applies to each attempt (default 60 s, 120 s for cellular).
    """
    ctx = _Ctx(network, check, store, config)
    with store.transaction() as state:
        devices = await network.devices()
        if state.pinned and isinstance(state.pinned.get("interface"), str):
            mode, identifiers = "manual", [state.pinned["interface"]]
            # Manual mode: the current interface is the pinned one (server.connect on impOS 42),
            # even when another uplink happens to carry the default route.
            pinned = find_devices(identifiers[0], devices)
            current = _current_device(state, pinned, None)
        else:
            mode = "automatic" if state.sequence else "legacy"
            identifiers = effective_order(state.sequence, {d.iface_class for d in devices})
            current = _current_device(state, devices, await network.primary_ifname())
        report = ConnectReport(command="connect", mode=mode)
        if current is not None:
            outcome = await _check_current(ctx, current, state)
            if outcome.ok:
                report.already_connected = outcome
                report.current = state.current or {
                    "identifier": current.identifier, "ifname": current.ifname, "class": current.iface_class,
                }
                return report
        candidates: list[tuple[str, DeviceInfo | None]] = []
        for ident in identifiers:
            found = find_devices(ident, devices)
            if not found and mode == "manual" and class_of(ident) == "cell":
                candidates.append((ident, None))
            candidates.extend((ident, d) for d in found if d not in [c for _, c in candidates])
        for ident, device in candidates:
            if device is None:
                attempt = _no_modem(ident)
                nic_json = None
            else:
                timeout = timeout_s or default_timeout(device.iface_class)
                try:
                    attempt, nic_json = await _attempt(
                        ctx, Nic(interface=device.identifier), device, current, state, timeout
                    )
                except ValidationError as err:
                    # Stored settings that do not fit this device fail this attempt, not the walk.
                    attempt = Attempt(
                        device.identifier, device.ifname, device.iface_class,
                        link_code(device.iface_class), err.message, stage="settings",
                    )
                    nic_json = None
            report.attempts.append(attempt)
            _record(state, attempt)
            if attempt.ok:
                _set_current(state, attempt, nic_json)
                if mode != "manual" and device is not None and device.iface_class in identifiers:
                    # Where the walk stopped in the sequence (then the default order), as impOS keeps it.
                    state.sequence_index = identifiers.index(device.iface_class)
                break
        report.current = state.current
    return report


async def _check_current(ctx: _Ctx, device: DeviceInfo, state: State) -> Attempt:
    start = time.monotonic()
    proxy = None
    password = None
    with contextlib.suppress(ValidationError):
        full = complete_nic(Nic(interface=device.identifier), device, state.stored)
        proxy = full.proxyconfig
        password = ctx.store.decrypt(proxy.password, "proxyconfig.password") if proxy else None
    outcome = await ctx.check(device, proxy, password, ctx.config.probe.total_timeout_s)
    code = cloud_code(device.iface_class, outcome.code, via_modem=device.modem is not None)
    return Attempt(
        device.identifier, device.ifname, device.iface_class, code, outcome.reason,
        elapsed_s=time.monotonic() - start, stage="cloud",
    )


@dataclass
class DisconnectReport:
    was_connected: bool
    identifier: str | None = None
    ifname: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"was_connected": self.was_connected, "identifier": self.identifier, "ifname": self.ifname}


async def disconnect(*, network: Network, store: Store) -> DisconnectReport:
    """server.disconnect: take the current uplink down (the pin, if any, stays)."""
    with store.transaction() as state:
        devices = await network.devices()
        current = _current_device(state, devices, await network.primary_ifname())
        state.current = None
        if current is None or not current.active_path:
            return DisconnectReport(was_connected=False)
        await network.disconnect(current)
        return DisconnectReport(True, current.identifier, current.ifname)


@dataclass
class StatusReport:
    devices: list[DeviceInfo]
    current_ifname: str | None
    primary_ifname: str | None
    state: State

    def to_json(self) -> dict[str, Any]:
        return {
            "interfaces": [device_json(d, d.ifname == self.current_ifname) for d in self.devices],
            "current": self.current_ifname,
            "primary": self.primary_ifname,
            "mode": "manual" if self.state.pinned else ("automatic" if self.state.sequence else "legacy"),
            "pinned": self.state.pinned.get("interface") if self.state.pinned else None,
            "sequence": list(self.state.sequence),
            "last_error": self.state.last_error,
            # The failover daemon's own view (active uplink, health, last switches), if it has run.
            "daemon": daemon_view(self.state.daemon),
        }


def daemon_view(view: dict[str, Any]) -> dict[str, Any] | None:
    """state.daemon as status shows it: `running` only while its process lives.

    A daemon killed outright (SIGKILL, a crash) cannot clear its own flag.
    """
    if not view:
        return None
    out = dict(view)
    pid = out.get("pid")
    if out.get("running") and isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            out["running"] = False
        except PermissionError:
            pass  # alive, another user's
    return out


def device_json(d: DeviceInfo, active: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "identifier": d.identifier,
        "ifname": d.ifname,
        "class": d.iface_class,
        "active": active,
        "nm_type": d.nm_type_name,
        "nm_state": d.nm_state_name,
        "connected": d.connected,
        "carrier": d.carrier,
        "addresses": list(d.addresses),
        "gateway": d.gateway,
        "dns": list(d.dns),
        "route_metric": d.route_metric,
        "profile": d.active_profile,
    }
    if d.iface_class == "wifi" or d.ssid is not None:
        out["wifi"] = {"ssid": d.ssid, "signal": d.signal}
    if d.modem is not None:
        m = d.modem
        out["cell"] = {
            "modem_state": name_of(MMModemState, m.state),
            "sim": "locked" if m.sim_locked else ("present" if m.sim_present else "missing"),
            "registration": name_of(MMRegistrationState, m.registration) if m.registration is not None else None,
            "operator": m.operator,
            "signal": m.signal_quality,
            "bearer_connected": m.bearer_connected,
        }
    return out


async def status(*, network: Network, store: Store) -> StatusReport:
    """imp.net.info: every interface, the active one, the last error. Changes nothing."""
    state = store.load()
    devices = await network.devices()
    primary = await network.primary_ifname()
    current = _current_device(state, devices, primary)
    return StatusReport(devices, current.ifname if current else None, primary, state)


# ---------------------------------------------------------------------------
# impctl config (imp.setwificonfiguration, setstaticnetworkconfiguration, setproxy, clearconfiguration)


@dataclass
class ConfigView:
    stored: dict[str, Any]  # secrets described, never shown
    sequence: list[str]
    cleared: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"stored": self.stored, "sequence": self.sequence}
        if self.cleared:
            out["cleared"] = self.cleared
        return out


def _describe_stored(stored: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "wifi" in stored:
        w = parse_wifi({k: v for k, v in stored["wifi"].items() if k != "interface"}, "stored.wifi")
        out["wifi"] = nic_summary(Nic("wifi", wificonfig=w))["wificonfig"]
    if "static" in stored:
        s = parse_static({k: v for k, v in stored["static"].items() if k != "interface"}, "stored.static")
        out["static"] = nic_summary(Nic("ethernet", staticconfig=s))["staticconfig"]
    if "proxy" in stored:
        p = parse_proxy({k: v for k, v in stored["proxy"].items() if k != "interface"}, "stored.proxy")
        out["proxy"] = nic_summary(Nic("ethernet", proxyconfig=p))["proxyconfig"]
    for kind in ("static", "proxy"):
        if kind in out and stored[kind].get("interface"):
            out[kind]["interface"] = stored[kind]["interface"]
    return out


def _store_fragment(store: Store, kind: str, fragment: dict[str, Any]) -> ConfigView:
    with store.transaction() as state:
        state.stored[kind] = fragment
        return ConfigView(_describe_stored(state.stored), list(state.sequence))


def _check_target(interface: str | None) -> str | None:
    if interface is None:
        return None
    nic = parse_nic({"interface": interface})
    if nic.iface_class == "cell":
        raise ValidationError("interface", "static and proxy settings do not apply to cellular interfaces")
    return nic.interface


def config_wifi(store: Store, ssid: str, key: str | None) -> ConfigView:
    wifi = parse_wifi({"ssid": ssid, "key": key or None}, "wifi")  # validate before touching anything
    fragment: dict[str, Any] = {"ssid": wifi.ssid, "key": None}
    if not wifi.is_open:
        encrypted = store.encrypt(wifi.key)
        assert encrypted is not None
        fragment["key"] = encrypted.to_json()
    return _store_fragment(store, "wifi", fragment)


def config_static(
    store: Store, ip: str, netmask: str, gateway: str, dns: list[str], interface: str | None = None
) -> ConfigView:
    s: StaticConfig = parse_static({"ip": ip, "netmask": netmask, "gateway": gateway, "dns": dns}, "static")
    fragment: dict[str, Any] = {"ip": s.ip, "netmask": s.netmask, "gateway": s.gateway, "dns": list(s.dns)}
    if (target := _check_target(interface)) is not None:
        fragment["interface"] = target
    return _store_fragment(store, "static", fragment)


def config_proxy(
    store: Store, address: str, port: int, username: str | None, password: str | None, interface: str | None = None
) -> ConfigView:
    raw: dict[str, Any] = {"type": "http", "address": address, "port": port}
    if username is not None:
        raw["username"] = username
    if password:
        raw["password"] = password
    p = parse_proxy(raw, "proxy")
    fragment: dict[str, Any] = {"type": p.type, "address": p.address, "port": p.port}
    if p.username is not None:
        fragment["username"] = p.username
    if p.password is not None:
        encrypted = store.encrypt(p.password)
        assert encrypted is not None
        fragment["password"] = encrypted.to_json()
    if (target := _check_target(interface)) is not None:
        fragment["interface"] = target
    return _store_fragment(store, "proxy", fragment)


CLEAR_KINDS = (*STORED_KINDS, "all")


def config_clear(store: Store, kind: str) -> ConfigView:
    """imp.clearconfiguration: one kind, or all (which also clears the failover sequence)."""
    if kind not in CLEAR_KINDS:
        raise ValidationError("kind", f"must be one of {', '.join(CLEAR_KINDS)} (got {kind!r})")
    with store.transaction() as state:
        kinds = list(STORED_KINDS) if kind == "all" else [kind]
        cleared = [k for k in kinds if state.stored.pop(k, None) is not None]
        if kind == "all":
            if state.sequence:
                cleared.append("sequence")
            state.set_sequence([])
        return ConfigView(_describe_stored(state.stored), list(state.sequence), cleared)


def config_show(store: Store) -> ConfigView:
    state = store.load()
    return ConfigView(_describe_stored(state.stored), list(state.sequence))


@dataclass
class CurrentConfig:
    nic: dict[str, Any] | None  # secrets encrypted; reusable as connectwith --nic

    @property
    def exit_code(self) -> int:
        return 0 if self.nic is not None else exit_code_for(ResultCode.NOT_CONNECTED)


def config_current(store: Store) -> CurrentConfig:
    """imp.net.getcurrentconfig: the NIC of the connection impctl made, secrets encrypted."""
    state = store.load()
    current = state.current or {}
    nic = current.get("nic")
    if nic is None and current.get("identifier"):
        nic = {"interface": current["identifier"]}
    return CurrentConfig(nic if isinstance(nic, dict) else None)
