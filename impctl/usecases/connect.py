"""server.connectwith, server.connect and server.disconnect.

The use cases take their backends as parameters (impctl.usecases.ports):
`Network` (NM and MM), a `CloudCheck` (the staged probe through
`probe_check`, or anything with its signature) and a `Store` (the state file
and the gateway key).

How an attempt goes (connectwith, and each step of connect):
1. the NIC is completed from the stored settings when it names only an
   interface, validated for the device, its secrets decrypted: bad input
   raises before anything changes;
2. a modem must have a SIM, be unlocked and not be denied registration;
3. in a `Network.trial` of the device, a volatile NM profile is activated
   with a high route metric, so the current uplink keeps the default route
   during the trial;
4. the cloud is checked through the device (SO_BINDTODEVICE);
5. success: the device gets the lowest route metric, then the previous
   uplink's device is disconnected, which also stops NM from autoconnecting
   it (impOS: "disconnect from interface A and power it down");
   failure (or any exception): the trial ends uncommitted, so the attempt
   is taken down and whatever the device had before is put back, the
   previous uplink untouched.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from impctl.model.attempt import (
    Activation,
    Attempt,
    CheckOutcome,
    activation_code,
    cloud_code,
    link_code,
    modem_activation_reason,
    modem_code,
    modem_summary,
)
from impctl.model.codes import ResultCode, code_name, exit_code_for
from impctl.model.config import Config
from impctl.model.errors import NoSuchInterface, ValidationError
from impctl.model.identifiers import class_of
from impctl.model.inventory import MODEM_TYPES, WIFI_TYPES, DeviceInfo, NMDeviceState, name_of
from impctl.model.netfacts import Priority
from impctl.model.nic import (
    CellConfig,
    Nic,
    ProxyConfig,
    Secret,
    WifiConfig,
    check_nic_for_class,
)
from impctl.model.nmsettings import DeviceFacts, Settings, nm_settings, with_priority
from impctl.model.sequence import effective_order
from impctl.model.state import CurrentUplink, Mode, Pin, State
from impctl.model.uplinks import complete_nic, current_device, find_devices, primary_metric
from impctl.usecases.ports import CloudCheck, EndSessions, GatewayLock, Network, Store
from impctl.usecases.probe import LinkFacts, ProbeProxy, SocketProbes, probe_interface
from impctl.usecases.resolver import wait_resolver

# Timeouts and metrics, in one place.
DEFAULT_TIMEOUT_S = 60.0  # server.connect / connectwith default
CELL_TIMEOUT_S = 120.0  # a modem needs time to enable, register and bring a bearer up
TRIAL_ROUTE_METRIC = 20000  # while on trial the new uplink must not take the default route
MIN_CHECK_TIMEOUT_S = 1.0


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


# ---------------------------------------------------------------------------
# pure helpers


def default_timeout(iface_class: str) -> float:
    return CELL_TIMEOUT_S if iface_class == "cell" else DEFAULT_TIMEOUT_S


# ---------------------------------------------------------------------------
# results


@dataclass
class ConnectReport:
    command: str  # connectwith | connect
    mode: str  # manual | automatic | legacy
    attempts: list[Attempt] = field(default_factory=list)
    already_connected: Attempt | None = None
    current: CurrentUplink | None = None

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


def _current_json(current: CurrentUplink | None) -> dict[str, Any] | None:
    if current is None:
        return None
    return {k: v for k, v in current.to_json().items() if k not in ("nic", "profile_uuid")}


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
    end_sessions: EndSessions | None = None
    resolver: Callable[[], Sequence[str]] | None = None


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


def _encrypted_nic(nic: Nic, store: Store) -> Nic:
    wifi = nic.wificonfig
    if wifi is not None and wifi.key is not None and not wifi.key.is_empty:
        wifi = WifiConfig(wifi.ssid, store.encrypt(wifi.key))
    proxy = nic.proxyconfig
    if proxy is not None and proxy.password is not None:
        proxy = replace(proxy, password=store.encrypt(proxy.password))
    cell = nic.cellconfig
    if cell is not None and cell.password is not None:
        cell = replace(cell, password=store.encrypt(cell.password))
    return replace(nic, wificonfig=wifi, proxyconfig=proxy, cellconfig=cell)


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
    by: str,
    devices: list[DeviceInfo],
    prepared: tuple[Nic, Settings | None, str | None, str | None] | None = None,
) -> tuple[Attempt, CurrentUplink | None]:
    """Try one device; on success it is the primary uplink and `previous` is down.

    Returns the attempt and, on success, the new current uplink to record
    (its NIC with secrets encrypted).
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
    leaving = previous if previous is not None and previous.ifname != device.ifname else None
    metric: int | None = None
    if is_modem:
        # A modem is never Reapplied (nmsettings.with_priority says why): it is activated
        # with the primary route metric and DNS priority, so it takes the default route
        # during its trial; a failed trial rolls it back, the previous uplink still up.
        metric = primary_metric(devices, device, leaving)
        settings = with_priority(settings, metric, ctx.config.daemon.primary_dns_priority)

    async with ctx.network.trial(device, timeout_s) as trial:
        activation = await trial.activate(settings, timeout_s)
        if not activation.activated:
            code = activation_code(device.iface_class, activation, is_modem=is_modem)
            if device.carrier is False and not is_modem:
                code = link_code(device.iface_class)
            if is_modem:
                fresh = _refreshed(await ctx.network.devices(), device)
                code = modem_code(fresh.modem if fresh else None, after_attempt=True) or code
                return result(code, "activation", modem_activation_reason(
                    device.ifname, activation, fresh.modem if fresh else None, device.modem)), None
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
            reason = outcome.reason
            if is_modem and fresh.modem is not None:
                reason = f"{reason}; {modem_summary(fresh.modem)}"
            return result(code, "cloud", reason, addresses=list(fresh.addresses)), None
        if metric is None:
            metric = primary_metric(devices, fresh, leaving)
            await ctx.network.set_priority(fresh, Priority(metric, ctx.config.daemon.primary_dns_priority))
        trial.commit()
    took_down = None
    details: dict[str, Any] = {"addresses": list(fresh.addresses), "route_metric": metric}
    # Outside the trial: the new uplink stands whatever happens to the old one.
    if leaving is not None and leaving.active_path:
        await ctx.network.disconnect(leaving)
        took_down = leaving.identifier
        # Its addresses are gone, not its sockets: they would retransmit for ~15 min.
        if ctx.end_sessions is not None and ctx.config.daemon.end_sessions:
            # Not before resolv.conf asks the new uplink first: the applications reconnect at once
            # (see impctl.backends.sessions.end_sessions).
            if ctx.resolver is not None:
                await wait_resolver(ctx.resolver, fresh.dns, {s for d in devices for s in d.dns},
                                    clock=time.monotonic)
            ended = await ctx.end_sessions(leaving.ifname, leaving.addresses, ctx.config.cloud.host)
            details["sessions_ended"] = {"ifname": ended.ifname, "sockets": ended.sockets,
                                         "conntrack": ended.conntrack, "nudged": ended.nudged,
                                         "ms": round(ended.took_s * 1000, 1),
                                         "errors": list(ended.errors)}
    if took_down:
        details["previous_taken_down"] = took_down
    attempt = result(ResultCode.SERVER_CONNECTED, "done", outcome.reason, **details)
    current = CurrentUplink(
        identifier=device.identifier, ifname=device.ifname, iface_class=device.iface_class, since=time.time(),
        by=by, nic=None if full.is_bare else _encrypted_nic(full, ctx.store),
        profile_uuid=str(settings["connection"]["uuid"]),
    )
    return attempt, current


def _modem_reason(device: DeviceInfo, code: ResultCode) -> str:
    m = device.modem
    if m is None:
        return f"ModemManager has no modem for {device.ifname}"
    if code == ResultCode.SIM_ERROR:
        if m.sim_locked:
            head = "the SIM is locked (PIN/PUK required)"
        elif not m.sim_present:
            head = "no SIM card in the modem"
        else:
            head = "the SIM failed"
    elif code == ResultCode.REGISTRATION_DENIED:
        head = "the network denied registration"
    elif code == ResultCode.NO_REGISTRATION:
        head = "the modem is not registered on a network"
    else:
        head = "the modem failed"
    return f"{head}; {modem_summary(m)}"


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


# ---------------------------------------------------------------------------
# the use cases


async def connectwith(
    nic: Nic,
    *,
    network: Network,
    check: CloudCheck,
    store: Store,
    gateway: GatewayLock,
    config: Config,
    timeout_s: float | None = None,
    end_sessions: EndSessions | None = None,
    resolver: Callable[[], Sequence[str]] | None = None,
) -> ConnectReport:
    """server.connectwith: connect through the NIC's interface; pin it on success (manual mode)."""
    ctx = _Ctx(network, check, store, config, end_sessions, resolver)
    report = ConnectReport(command="connectwith", mode="manual")
    with gateway.hold("connectwith"), store.transaction() as state:
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
        previous = current_device(state.current_ifname, devices, await network.primary_ifname())
        attempt, current = await _attempt(ctx, nic, device, previous, state, timeout, "connectwith",
                                          devices, prepared)
        report.attempts.append(attempt)
        _record(state, attempt)
        if current is not None:
            state.current = current
            state.disconnected_at = None
            # Manual mode. connect reuses only the interface of the pin with the
            # stored settings: impOS discards an extended NIC's settings.
            state.pinned = Pin(nic.interface, None if nic.is_bare else current.nic)
        report.current = state.current
    return report


async def connect(
    *,
    network: Network,
    check: CloudCheck,
    store: Store,
    gateway: GatewayLock,
    config: Config,
    timeout_s: float | None = None,
    end_sessions: EndSessions | None = None,
    resolver: Callable[[], Sequence[str]] | None = None,
) -> ConnectReport:
    """server.connect: keep a working connection; else the pinned interface, else the sequence.

    `timeout_s` applies to each attempt (default 60 s, 120 s for cellular).
    """
    ctx = _Ctx(network, check, store, config, end_sessions, resolver)
    with gateway.hold("connect"), store.transaction() as state:
        devices = await network.devices()
        mode = state.mode
        primary = await network.primary_ifname()
        # What carries unbound traffic now: an attempt that succeeds takes it down.
        previous = current_device(state.current_ifname, devices, primary)
        if state.pinned is not None:
            identifiers = [state.pinned.interface]
            # Manual mode: the current interface is the pinned one (server.connect on impOS 42),
            # even when another uplink happens to carry the default route.
            current = current_device(state.current_ifname, find_devices(identifiers[0], devices), None)
        else:
            identifiers = effective_order(state.sequence, {d.iface_class for d in devices})
            current = previous
        leaving = current
        if state.disconnected_at is not None:
            # After server.disconnect the gateway is not connected in impOS's sense, whatever
            # else still routes: connect walks the sequence from its first entry, and the
            # uplink it connects replaces whatever still carries the default route.
            current = None
            leaving = previous
            state.sequence_index = 0
        report = ConnectReport(command="connect", mode=mode.value)
        if current is not None:
            outcome = await _check_current(ctx, current, state)
            if outcome.ok:
                report.already_connected = outcome
                if state.current is None or state.current.ifname != current.ifname:
                    state.current = CurrentUplink(current.identifier, current.ifname, current.iface_class,
                                                  since=time.time(), by="connect")
                report.current = state.current
                return report
        candidates: list[tuple[str, DeviceInfo | None]] = []
        for ident in identifiers:
            found = find_devices(ident, devices)
            if not found and mode is Mode.MANUAL and class_of(ident) == "cell":
                candidates.append((ident, None))
            candidates.extend((ident, d) for d in found if d not in [c for _, c in candidates])
        for ident, device in candidates:
            new_current: CurrentUplink | None = None
            if device is None:
                attempt = _no_modem(ident)
            else:
                timeout = timeout_s or default_timeout(device.iface_class)
                try:
                    attempt, new_current = await _attempt(
                        ctx, Nic(interface=device.identifier), device, leaving, state, timeout, "connect",
                        devices,
                    )
                except ValidationError as err:
                    # Stored settings that do not fit this device fail this attempt, not the walk.
                    attempt = Attempt(
                        device.identifier, device.ifname, device.iface_class,
                        link_code(device.iface_class), err.message, stage="settings",
                    )
            report.attempts.append(attempt)
            _record(state, attempt)
            if new_current is not None:
                state.current = new_current
                state.disconnected_at = None
                if mode is not Mode.MANUAL and device is not None and device.iface_class in identifiers:
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


async def disconnect(*, network: Network, store: Store, gateway: GatewayLock) -> DisconnectReport:
    """server.disconnect: take the current uplink down (the pin, if any, stays)."""
    with gateway.hold("disconnect"), store.transaction() as state:
        devices = await network.devices()
        current = current_device(state.current_ifname, devices, await network.primary_ifname())
        state.current = None
        state.disconnected_at = time.time()
        if current is None or not current.active_path:
            return DisconnectReport(was_connected=False)
        await network.disconnect(current)
        return DisconnectReport(True, current.identifier, current.ifname)


