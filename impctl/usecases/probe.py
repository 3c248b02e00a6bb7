"""Probe: is the cloud reachable through each interface, and if not, which stage fails?

Every interface runs concurrently, each through its stages (see
`impctl.model.probe`), stopping at the first failure. All traffic leaves
through the probed interface (sockets bound with SO_BINDTODEVICE); nothing
here changes a route or NetworkManager's state.

Time: every stage has its own timeout from the config's [probe] section,
clipped to what is left of the overall deadline, so a hung DNS server, proxy
or cloud costs at most its stage's timeout and never more than the deadline.
A stage that the deadline cut short fails with a detail saying so.

The backends come in as parameters (`LinkFacts`, `SocketProbes`), so the
connect use case and the daemon can call `probe_interface` with the real ones
and tests with fakes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import field, replace
from typing import Any, Protocol, TypeVar

from impctl.model.config import Config
from impctl.model.errors import (
    ImpctlError,
    NoSuchInterface,
    PermissionDenied,
)
from impctl.model.identifiers import check_identifier, class_of, resolve
from impctl.model.inventory import (
    DeviceInfo,
    MMModemState,
    MMRegistrationState,
    ModemInfo,
    NMDeviceType,
    name_of,
)
from impctl.model.netfacts import (
    IPv4Facts,
    IPv6Facts,
    LinkState,
    Resolved,
    is_ipv4,
    is_ipv6,
    proxy_authorization,
)
from impctl.model.nic import ProxyConfig, Secret
from impctl.model.probe import (
    Family,
    FamilyProbe,
    InterfaceProbe,
    ProbeReport,
    Stage,
    StageFailed,
    StageResult,
    conclude,
    conclude_families,
    conclude_family,
)
from impctl.model.record import record
from impctl.model.state import State
from impctl.model.uplinks import stored_applies

T = TypeVar("T")

# Below this much time left, a stage is not started: it could not finish.
MIN_STAGE_S = 0.05
# Reading NM/MM's view may take at most this (and half the overall timeout).
INVENTORY_TIMEOUT_S = 5.0
# MMModemStateFailedReason values that are the SIM's fault, not the modem's.
_SIM_FAILED_REASONS = {2: "no SIM card", 3: "SIM card error", 5: "eSIM without profiles"}
_REGISTERED = {
    MMRegistrationState.HOME,
    MMRegistrationState.ROAMING,
    MMRegistrationState.HOME_CSFB_NOT_PREFERRED,
    MMRegistrationState.ROAMING_CSFB_NOT_PREFERRED,
}
_REGISTERED_STATES = {
    MMModemState.REGISTERED,
    MMModemState.CONNECTING,
    MMModemState.CONNECTED,
    MMModemState.DISCONNECTING,
}


class LinkFacts(Protocol):
    async def link_state(self, ifname: str) -> LinkState: ...

    async def ipv4(self, ifname: str) -> IPv4Facts: ...


class DualStackLinks(LinkFacts, Protocol):
    """Link facts with IPv6's too: what a dual-stack probe needs."""

    async def ipv6(self, ifname: str) -> IPv6Facts: ...


class Connection(Protocol):
    """An open TCP (maybe TLS) connection of a probe, owned by the socket backend."""

    async def close(self, *, graceful: bool = True) -> None: ...


ConnT = TypeVar("ConnT", bound=Connection)


class SocketProbes(Protocol[ConnT]):
    """The probe's socket stages; the connection type is the backend's own."""

    async def resolve(
        self, name: str, servers: Sequence[str], ifname: str, timeout_s: float, version: int
    ) -> Resolved: ...

    async def open_tcp(
        self, address: str, port: int, ifname: str, timeout_s: float, what: str
    ) -> ConnT: ...

    async def proxy_connect(
        self,
        conn: ConnT,
        proxy: str,
        target_host: str,
        target_port: int,
        authorization: str | None,
        timeout_s: float,
    ) -> int: ...

    async def tls_handshake(
        self, conn: ConnT, ca_file: str | None, server_name: str, timeout_s: float, what: str
    ) -> str: ...


@record
class ProbeProxy:
    """The HTTP proxy a probe goes through, with its password in clear (decrypted
    by the caller); never printed."""

    address: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"


# (ifname, stage, None) when a stage starts; (ifname, stage, result) when it ends.
StageListener = Callable[[str, Stage, StageResult | None], None]


def is_modem(device: DeviceInfo) -> bool:
    """A ModemManager modem (or an NM modem device whose modem is gone)."""
    return device.modem is not None or device.nm_type == NMDeviceType.MODEM


def data_ifname(device: DeviceInfo) -> str:
    """The kernel interface carrying IP: a modem's NM device is named after its
    control port (cdc-wdm0, ttyUSB2); its traffic flows through IpInterface."""
    return device.extra.get("ip_ifname") or device.ifname


class _Run:
    """One interface's probe: the stages done so far and the time left."""

    def __init__(self, ifname: str, deadline: float, total_s: float, listener: StageListener | None):
        self.ifname = ifname
        self.deadline = deadline
        self.total_s = total_s
        self.listener = listener
        self.stages: list[StageResult] = []
        self.details: dict[str, str] = {}

    def _left(self) -> float:
        return self.deadline - time.monotonic()

    def record(self, result: StageResult) -> StageResult:
        self.stages.append(result)
        if self.listener:
            self.listener(self.ifname, result.stage, result)
        return result

    def instant(self, stage: Stage, ok: bool, detail: str, *, rejected: bool = False,
                skipped: bool = False) -> bool:
        """A stage decided from facts already at hand (modem state): no waiting."""
        self.record(StageResult(stage, ok, 0.0, detail, rejected=rejected, skipped=skipped))
        return ok

    async def step(
        self,
        stage: Stage,
        timeout_s: float,
        action: Callable[[float], Awaitable[T]],
        describe: Callable[[T], str],
    ) -> T | None:
        """Run one stage with its timeout clipped to the deadline; None when it failed."""
        left = self._left()
        if self.listener:
            self.listener(self.ifname, stage, None)
        if left < MIN_STAGE_S:
            self.record(StageResult(stage, False, 0.0,
                                    f"not started: the overall timeout of {self.total_s:g} s ran out"))
            return None
        budget = min(timeout_s, left)
        started = time.monotonic()
        try:
            # The backends time out on their own with a precise detail; this
            # outer bound is the guarantee, with a little slack so theirs fires first.
            async with asyncio.timeout(budget + 0.1):
                value = await action(budget)
        except StageFailed as err:
            ms = (time.monotonic() - started) * 1000
            self.record(StageResult(err.stage or stage, False, ms, err.detail, rejected=err.rejected))
            return None
        except TimeoutError:
            ms = (time.monotonic() - started) * 1000
            self.record(StageResult(stage, False, ms, f"did not finish in {budget:.1f} s"))
            return None
        except PermissionDenied:
            raise  # the command's problem (not root), not the interface's
        except ImpctlError as err:
            # The interface vanished, netlink failed: this interface's stage fails.
            ms = (time.monotonic() - started) * 1000
            self.record(StageResult(stage, False, ms, err.message))
            return None
        ms = (time.monotonic() - started) * 1000
        self.record(StageResult(stage, True, ms, describe(value)))
        return value


def _modem_stages(run: _Run, device: DeviceInfo) -> bool:
    """modem, SIM, registration, bearer from ModemManager's view; True when all pass."""
    modem: ModemInfo | None = device.modem
    if modem is None:
        return run.instant(Stage.MODEM, False, f"ModemManager has no modem behind {device.ifname}")
    state = name_of(MMModemState, modem.state)
    failed_sim = modem.state == MMModemState.FAILED and modem.failed_reason in _SIM_FAILED_REASONS
    if modem.state == MMModemState.FAILED and not failed_sim:
        reason = f" (failed reason {modem.failed_reason})" if modem.failed_reason is not None else ""
        return run.instant(Stage.MODEM, False, f"modem {modem.path} is FAILED{reason}")
    if modem.state in (MMModemState.UNKNOWN, MMModemState.INITIALIZING):
        return run.instant(Stage.MODEM, False, f"modem {modem.path} is still {state}")
    if not run.instant(Stage.MODEM, True, f"modem {modem.path} ({state})"):
        return False

    if failed_sim:
        return run.instant(Stage.SIM, False, _SIM_FAILED_REASONS[modem.failed_reason or 0])
    if not modem.sim_present:
        return run.instant(Stage.SIM, False, "no SIM card in the modem")
    if modem.sim_locked or modem.state == MMModemState.LOCKED:
        return run.instant(Stage.SIM, False, "SIM is locked (PIN or PUK required)")
    if not run.instant(Stage.SIM, True, "SIM present and unlocked"):
        return False

    reg = modem.registration
    reg_name = name_of(MMRegistrationState, reg) if reg is not None else "none"
    operator = f", operator {modem.operator}" if modem.operator else ""
    if reg == MMRegistrationState.DENIED:
        return run.instant(Stage.REGISTRATION, False,
                           f"the network denied registration (3GPP {reg_name}{operator})", rejected=True)
    if not (reg in _REGISTERED or (reg is None and modem.state in _REGISTERED_STATES)):
        return run.instant(Stage.REGISTRATION, False,
                           f"not registered (3GPP {reg_name}, modem {state})")
    access = f", {'/'.join(modem.access_technologies)}" if modem.access_technologies else ""
    if modem.signal_quality is not None:
        access += f", signal {modem.signal_quality}%"
    if not run.instant(Stage.REGISTRATION, True, f"registered ({reg_name}{operator}{access})"):
        return False

    if not (modem.bearer_connected or modem.state == MMModemState.CONNECTED):
        # MM keeps a bearer's last connection error: why it was refused or dropped.
        error = modem.bearer_error_description
        last = f", last bearer error {error}" if error else ""
        return run.instant(Stage.BEARER, False, f"no connected data bearer (modem {state}{last})")
    return run.instant(Stage.BEARER, True, f"data bearer connected{modem.bearer_place}")


async def probe_interface(
    device: DeviceInfo,
    config: Config,
    proxy: ProbeProxy | None,
    *,
    links: LinkFacts,
    net: SocketProbes[ConnT],
    deadline: float | None = None,
    listener: StageListener | None = None,
    links6: DualStackLinks | None = None,
) -> InterfaceProbe:
    """Probe one interface through its stages; never raises for a network failure.

    With `links6` (link facts that read IPv6 too) the network stages run for IPv4
    and IPv6 at once and the config's probe.require_family decides; without, IPv4
    only, as the daemon and connect's check probe.

    `deadline` is a `time.monotonic()` instant (default: now + the config's
    total_timeout_s). `proxy` applies to Ethernet/WiFi only (impOS: proxies are
    not used on cellular). Raises only PermissionDenied (sockets cannot be
    bound) — every other failure is a stage result.
    """
    started = time.monotonic()
    settings = config.probe
    if deadline is None:
        deadline = started + settings.total_timeout_s
    total_s = max(0.0, deadline - started)
    ifname = data_ifname(device)
    run = _Run(ifname, deadline, total_s, listener)
    via_modem = is_modem(device)

    def finish() -> InterfaceProbe:
        return conclude(
            device.identifier or device.ifname, ifname, device.iface_class, run.stages,
            via_modem=via_modem, duration_ms=(time.monotonic() - started) * 1000, details=run.details,
        )

    def finish_families(families: Sequence[FamilyProbe], require: str) -> InterfaceProbe:
        return conclude_families(
            device.identifier or device.ifname, ifname, device.iface_class, run.stages,
            families, require, via_modem=via_modem, duration_ms=(time.monotonic() - started) * 1000,
        )

    if via_modem:
        if not _modem_stages(run, device):
            return finish()
    elif device.iface_class == "cell":
        run.instant(Stage.MODEM, True,
                    f"{ifname} is not a modem ({device.nm_type_name}): modem stages skipped",
                    skipped=True)
    if device.iface_class == "cell":
        proxy = None

    # link
    async def link(t: float) -> LinkState:
        state = await links.link_state(ifname)
        if not state.admin_up:
            raise StageFailed(f"{ifname} is administratively down")
        if not state.carrier:
            if device.iface_class == "wifi":
                ssid = f" to {device.ssid}" if device.ssid else ""
                raise StageFailed(f"{ifname} is not associated{ssid} (no carrier)")
            raise StageFailed(f"{ifname} has no carrier (cable unplugged or peer down)")
        return state

    if await run.step(Stage.LINK, settings.link_timeout_s, link,
                      lambda s: f"carrier up (operstate {s.operstate})") is None:
        return finish()

    v4_run = _Run(ifname, deadline, total_s, listener)
    timeout_s = settings.link_timeout_s
    v4_stages = _family_stages(v4_run, Family.IPV4, device, config, proxy, net, via_modem,
                               lambda run, _configured: _address4(run, device, links, timeout_s))
    if links6 is None:
        return finish_families([await v4_stages], "ipv4")
    dual = links6
    v6_run = _Run(ifname, deadline, total_s, None)  # the live view follows the IPv4 stages
    v4, v6 = await asyncio.gather(
        v4_stages, _family_stages(v6_run, Family.IPV6, device, config, proxy, net, via_modem,
                                  lambda run, configured: _address6(run, device, dual, timeout_s, configured)))
    return finish_families([v4, v6], settings.require_family)


_IPV6_METHODS = ("auto", "dhcp", "manual")


def _configured6(device: DeviceInfo, facts: IPv6Facts) -> bool:
    """Whether IPv6 is meant to work on the interface: its profile asks NM for it
    (ipv6.method auto, dhcp, manual), or it has a global address or default route
    anyway, now or in NM's view read with the inventory (whose reader leaves the method
    unread there). Where the method is not known, an IPv6-enabled link (any address) counts."""
    method = device.extra.get("ipv6_method")
    if method in _IPV6_METHODS or facts.addresses or facts.gateway is not None:
        return True
    if device.addresses6 or device.gateway6:
        return True
    return method is None and facts.enabled


async def _address4(run: _Run, device: DeviceInfo, links: LinkFacts, timeout_s: float) -> str | None:
    async def address(t: float) -> IPv4Facts:
        facts = await links.ipv4(run.ifname)
        if not facts.addresses:
            raise StageFailed(f"{run.ifname} has no IPv4 address (NetworkManager: {device.nm_state_name})")
        return _routed(run.ifname, facts, "")

    return await _address_stage(run, timeout_s, address)


async def _address6(run: _Run, device: DeviceInfo, links: DualStackLinks, timeout_s: float,
                    configured: list[bool]) -> str | None:
    """The IPv6 address stage; `configured` gets whether IPv6 is meant to work here."""
    async def address(t: float) -> IPv6Facts:
        facts = await links.ipv6(run.ifname)
        configured.append(_configured6(device, facts))
        if not configured[-1]:
            raise StageFailed(f"IPv6 is not configured on {run.ifname}")
        if not facts.addresses:
            raise StageFailed(f"{run.ifname} has no global IPv6 address (no router advertisement?)")
        return _routed(run.ifname, facts, "IPv6 ")

    return await _address_stage(run, timeout_s, address)


_Facts = TypeVar("_Facts", IPv4Facts, IPv6Facts)


def _routed(ifname: str, facts: _Facts, family: str) -> _Facts:
    if facts.gateway is None:
        raise StageFailed(f"{ifname} has {', '.join(facts.addresses)} but no {family}default route through it")
    return facts


async def _address_stage(run: _Run, timeout_s: float,
                         address: Callable[[float], Awaitable[IPv4Facts | IPv6Facts]]) -> str | None:
    """The address stage: an address and a default route on the interface (its first address)."""
    facts = await run.step(Stage.ADDRESS, timeout_s, address,
                           lambda f: f"{f.addresses[0]}, default via {f.gateway}")
    if facts is None:
        return None
    run.details["address"] = facts.addresses[0]
    run.details["gateway"] = str(facts.gateway)
    return facts.addresses[0]


def _dns_servers(device: DeviceInfo, family: Family) -> tuple[str, ...]:
    """The interface's DNS servers of the family, else (a dual-stack link with only one
    family's servers) the other family's: the record asked for still names the family."""
    v4 = tuple(s for s in device.dns if is_ipv4(s))
    v6 = device.dns6
    own, other = (v4, v6) if family is Family.IPV4 else (v6, v4)
    return own or other


def _host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if is_ipv6(address) else f"{address}:{port}"


async def _family_stages(
    run: _Run,
    family: Family,
    device: DeviceInfo,
    config: Config,
    proxy: ProbeProxy | None,
    net: SocketProbes[ConnT],
    via_modem: bool,
    address: Callable[[_Run, list[bool]], Awaitable[str | None]],
) -> FamilyProbe:
    """address, dns, proxy, tcp, tls over one family, into a run of its own.

    `address` runs the family's address stage; IPv6's also says, into the list it is
    given, whether IPv6 is meant to work on the interface at all."""
    configured: list[bool] = []

    def done() -> FamilyProbe:
        return conclude_family(family, run.stages, via_modem=via_modem,
                               configured=all(configured), details=run.details)

    if await address(run, configured) is None:
        return done()
    await _reach_cloud(run, family, device, config, proxy, net)
    return done()


async def _resolve_stage(run: _Run, family: Family, device: DeviceInfo, name: str, config: Config,
                         net: SocketProbes[ConnT]) -> Resolved | None:
    """Name resolution through this interface's own DNS servers: A for IPv4, AAAA for IPv6."""
    ifname = run.ifname
    servers = _dns_servers(device, family)
    version = 4 if family is Family.IPV4 else 6

    async def dns(t: float) -> Resolved:
        return await net.resolve(name, servers, ifname, t, version)

    def dns_text(r: Resolved) -> str:
        if r.server is None:
            return f"{name} is an address: nothing to resolve"
        return f"{name} is {r.address} (DNS {r.server}, {r.rtt_ms:.1f} ms)"

    resolved = await run.step(Stage.DNS, config.probe.dns_timeout_s, dns, dns_text)
    if resolved is not None:
        run.details["resolved"] = resolved.address
    return resolved


async def _reach_cloud(run: _Run, family: Family, device: DeviceInfo, config: Config,
                       proxy: ProbeProxy | None, net: SocketProbes[ConnT]) -> None:
    """dns, then proxy, tcp and tls, recording each stage into `run`."""
    settings = config.probe
    cloud = config.cloud
    ifname = run.ifname
    name = proxy.address if proxy else cloud.host
    resolved = await _resolve_stage(run, family, device, name, config, net)
    if resolved is None:
        return
    if proxy is not None:
        run.details["proxy"] = proxy.endpoint

    conn: ConnT | None = None
    try:
        if proxy is not None:
            endpoint = _host_port(resolved.address, proxy.port)
            if not (is_ipv4(proxy.address) or is_ipv6(proxy.address)):
                endpoint = f"{proxy.address} ({endpoint})"

            async def to_proxy(t: float) -> ConnT:
                return await net.open_tcp(resolved.address, proxy.port, ifname, t, f"proxy {endpoint}")

            conn = await run.step(Stage.PROXY, settings.proxy_timeout_s, to_proxy,
                                  lambda _c: f"proxy {endpoint} accepted a TCP connection")
            if conn is None:
                return
            tunnel_conn = conn
            auth = proxy_authorization(proxy.username, proxy.password)

            async def tunnel(t: float) -> int:
                return await net.proxy_connect(tunnel_conn, endpoint, cloud.host, cloud.port, auth, t)

            status = await run.step(
                Stage.TCP, settings.connect_timeout_s, tunnel,
                lambda s: f"proxy {endpoint} opened a tunnel to {cloud.host}:{cloud.port} ({s})",
            )
            if status is None:
                # A proxy failure found during CONNECT (407, not HTTP) belongs to the
                # proxy stage: replace the ok it got for the TCP connect.
                failed = run.stages[-1]
                if failed.stage is Stage.PROXY:
                    accepted = run.stages[-2]
                    run.stages[-2:] = [
                        replace(failed, duration_ms=accepted.duration_ms + failed.duration_ms)
                    ]
                return
            what = f"cloud {cloud.host}:{cloud.port} via proxy {endpoint}"
        else:
            target = resolved.address
            literal = is_ipv4(cloud.host) or is_ipv6(cloud.host)
            what = f"cloud {cloud.host} ({_host_port(target, cloud.port)})" if not literal \
                else f"cloud {_host_port(target, cloud.port)}"

            async def tcp(t: float) -> ConnT:
                return await net.open_tcp(target, cloud.port, ifname, t, what)

            conn = await run.step(Stage.TCP, settings.connect_timeout_s, tcp,
                                  lambda _c: f"{what} accepted a TCP connection")
            if conn is None:
                return

        if cloud.tls:
            tls_conn = conn

            async def tls(t: float) -> str:
                return await net.tls_handshake(tls_conn, cloud.ca_file, cloud.tls_name, t, what)

            version = await run.step(Stage.TLS, settings.tls_timeout_s, tls,
                                     lambda v: f"{v} with {cloud.tls_name}, certificate verified")
            if version is not None:
                run.details["tls"] = version
    finally:
        if conn is not None:
            await conn.close(graceful=all(s.ok for s in run.stages))


async def probe_all(
    devices: Sequence[DeviceInfo],
    config: Config,
    proxy_for: Callable[[DeviceInfo], ProbeProxy | None],
    *,
    links: LinkFacts,
    net: SocketProbes[Any],
    deadline: float | None = None,
    listener: StageListener | None = None,
    on_result: Callable[[InterfaceProbe], None] | None = None,
    links6: DualStackLinks | None = None,
) -> list[InterfaceProbe]:
    """Probe every device concurrently; results in the order of `devices`.
    `on_result` hears of each interface as soon as its probe ends."""

    async def one(d: DeviceInfo) -> InterfaceProbe:
        result = await probe_interface(d, config, proxy_for(d), links=links, net=net,
                                       deadline=deadline, listener=listener, links6=links6)
        if on_result:
            on_result(result)
        return result

    return list(await asyncio.gather(*(one(d) for d in devices)))


# ---------------------------------------------------------------- the gateway


InventoryReader = Callable[[Config, float], Awaitable[list[DeviceInfo]]]
Decrypt = Callable[[Secret | None, str], str | None]


def no_modem_probe(identifier: str) -> InterfaceProbe:
    """A cellular identifier with no modem behind it (unplugged): NO_MODEM, as impOS says."""
    stage = StageResult(Stage.MODEM, False, 0.0, f"no modem on this gateway for {identifier} "
                        "(ModemManager and NetworkManager have none: unplugged?)")
    return conclude(identifier, "", "cell", [stage], via_modem=True, duration_ms=0.0)


def select_devices(devices: Sequence[DeviceInfo], targets: Sequence[str],
                   missing_modems: list[str] | None = None) -> list[DeviceInfo]:
    """The devices `targets` name (identifiers, generic or specific, or ifnames), in
    inventory order without duplicates; every device when `targets` is empty.

    With `missing_modems`, a cellular identifier that names nothing (the modem is
    unplugged: NM and MM have no device for it) goes there instead of raising."""
    if not targets:
        return list(devices)
    assignment = {d.ifname: d.identifier for d in devices}
    classes = {d.ifname: d.iface_class for d in devices}
    wanted: set[str] = set()
    for i, target in enumerate(targets):
        ident = check_identifier(target, f"IFACE[{i}]")
        names = resolve(ident, assignment, classes)
        if not names and missing_modems is not None and class_of(ident) == "cell":
            missing_modems.append(ident)
            continue
        if not names:
            known = ", ".join(f"{d.identifier} ({d.ifname})" for d in devices) or "none"
            raise NoSuchInterface(f"{target!r} names no interface of this gateway (interfaces: {known})")
        wanted.update(names)
    return [d for d in devices if d.ifname in wanted]


def _probe_proxy(cfg: ProxyConfig, decrypt: Decrypt, where: str) -> ProbeProxy:
    password = decrypt(cfg.password, f"{where}.password") if cfg.password is not None else None
    return ProbeProxy(cfg.address, cfg.port, cfg.username, password)


def proxy_plan(
    state: State,
    devices: Sequence[DeviceInfo],
    decrypt: Decrypt,
    override: ProbeProxy | None = None,
    no_proxy: bool = False,
) -> dict[str, ProbeProxy]:
    """ifname -> the proxy a connection through it would use, as impOS would:

    the pinned NIC's own proxyconfig on the interface it names (connectwith's
    extended NIC), else the stored proxy (imp.setproxy) on every Ethernet/WiFi
    interface; never on cellular. `override` (probe --proxy) replaces both,
    `no_proxy` drops them.
    """
    eligible = [d for d in devices if d.iface_class in ("ethernet", "wifi")]
    if no_proxy:
        return {}
    if override is not None:
        return {d.ifname: override for d in eligible}
    plan: dict[str, ProbeProxy] = {}
    stored = state.stored.proxy
    if stored is not None:
        stored_proxy = _probe_proxy(stored.config, decrypt, "stored.proxy")
        plan = {d.ifname: stored_proxy for d in eligible if stored_applies(stored.interface, d)}
    pinned = state.pinned.nic if state.pinned else None
    if pinned is not None and pinned.proxyconfig is not None:
        assignment = {d.ifname: d.identifier for d in devices}
        classes = {d.ifname: d.iface_class for d in devices}
        # A generic identifier means the primary interface of its class.
        names = resolve(pinned.interface, assignment, classes)[:1]
        pinned_proxy = _probe_proxy(pinned.proxyconfig, decrypt, "pinned.proxyconfig")
        for d in eligible:
            if d.ifname in names:
                plan[d.ifname] = pinned_proxy
    return plan


async def probe_gateway(
    config: Config,
    state: State,
    targets: Sequence[str],
    *,
    inventory: InventoryReader,
    links: DualStackLinks,
    net: SocketProbes[Any],
    decrypt: Decrypt,
    timeout_s: float,
    proxy_override: ProbeProxy | None = None,
    no_proxy: bool = False,
    listener: StageListener | None = None,
    on_devices: Callable[[list[DeviceInfo]], None] | None = None,
    on_result: Callable[[InterfaceProbe], None] | None = None,
) -> ProbeReport:
    """`impctl probe`: read the interfaces, pick the named ones, probe them all at
    once within `timeout_s` overall (reading the inventory included); both address
    families."""
    wall = time.time()
    started = time.monotonic()
    deadline = started + timeout_s
    devices = await inventory(config, max(0.1, min(INVENTORY_TIMEOUT_S, timeout_s / 2)))
    missing: list[str] = []
    chosen = select_devices(devices, targets, missing)
    if not chosen and not missing:
        raise NoSuchInterface("this gateway has no Ethernet, WiFi or cellular interface to probe")
    plan = proxy_plan(state, chosen, decrypt, proxy_override, no_proxy)
    if on_devices:
        on_devices(chosen)
    results = await probe_all(
        chosen, config, lambda d: plan.get(d.ifname), links=links, net=net,
        deadline=deadline, listener=listener, on_result=on_result, links6=links,
    )
    proxies = sorted({p.endpoint for p in plan.values()})
    return ProbeReport(
        results=(*results, *(no_modem_probe(ident) for ident in missing)),
        cloud=f"{config.cloud.host}:{config.cloud.port}",
        tls=config.cloud.tls,
        proxy=", ".join(proxies) or None,
        started_at=wall,
        duration_ms=(time.monotonic() - started) * 1000,
        require_family=config.probe.require_family,
    )
