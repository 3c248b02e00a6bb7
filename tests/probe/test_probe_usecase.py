"""The probe use case with fake backends: stage order, stopping at the first
failure, cellular stages, proxy planning, the overall deadline and concurrency.
(The real sockets and netlink are exercised in the lab: test_probe_lab.py.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from impctl.backends.probe_net import Connection
from impctl.model.codes import ResultCode
from impctl.model.config import CloudEndpoint, Config, ProbeSettings
from impctl.model.errors import NoSuchInterface
from impctl.model.inventory import DeviceInfo, MMModemState, MMRegistrationState, ModemInfo, NMDeviceType
from impctl.model.netfacts import IPv4Facts, IPv6Facts, LinkState, Resolved
from impctl.model.nic import Secret
from impctl.model.probe import Family, StageFailed
from impctl.model.state import State, state_from_dict
from impctl.usecases.probe import (
    ProbeProxy,
    no_modem_probe,
    probe_all,
    probe_interface,
    proxy_plan,
    select_devices,
)

CONFIG = Config(cloud=CloudEndpoint(host="cloud.imp.lab", port=443, tls=True))


class FakeTransport:
    def abort(self) -> None:
        pass


class FakeWriter:
    transport = FakeTransport()

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


def fake_conn() -> Connection:
    return Connection(asyncio.StreamReader(), FakeWriter())  # type: ignore[arg-type]


@dataclass
class FakeLinks:
    carrier: bool = True
    addresses: tuple[str, ...] = ("198.18.1.50/24",)
    gateway: str | None = "198.18.1.1"
    calls: list[str] = field(default_factory=list)

    async def link_state(self, ifname: str) -> LinkState:
        self.calls.append(f"link {ifname}")
        return LinkState(ifname, 2, True, self.carrier, "UP" if self.carrier else "DOWN", "veth")

    async def ipv4(self, ifname: str) -> IPv4Facts:
        self.calls.append(f"ipv4 {ifname}")
        return IPv4Facts(self.addresses, self.gateway, False)


@dataclass
class FakeLinks6(FakeLinks):
    addresses6: tuple[str, ...] = ("2001:db8:1::50/64",)
    gateway6: str | None = "fe80::1"
    enabled6: bool = True

    async def ipv6(self, ifname: str) -> IPv6Facts:
        self.calls.append(f"ipv6 {ifname}")
        return IPv6Facts(self.addresses6, self.gateway6, enabled=self.enabled6)


@dataclass
class FakeNet:
    """Socket stages that succeed unless told to fail or hang (seconds) at a step."""

    fail: dict[str, StageFailed] = field(default_factory=dict)
    hang: dict[str, float] = field(default_factory=dict)
    status: int = 200
    calls: list[str] = field(default_factory=list)

    async def _step(self, name: str) -> None:
        self.calls.append(name)
        if name in self.hang:
            await asyncio.sleep(self.hang[name])
        if name in self.fail:
            raise self.fail[name]

    async def resolve(self, name: str, servers: Sequence[str], ifname: str, timeout_s: float,
                      version: int) -> Resolved:
        await self._step("dns" if version == 4 else "dns6")
        address = "198.19.0.10" if version == 4 else "2001:db8:ff::10"
        return Resolved(name, address, (address,), servers[0] if servers else None, 1.0)

    async def open_tcp(self, address: str, port: int, ifname: str, timeout_s: float, what: str) -> Connection:
        await self._step(f"tcp {address}:{port}")
        return fake_conn()

    async def proxy_connect(self, conn: Connection, proxy: str, target_host: str, target_port: int,
                            authorization: str | None, timeout_s: float) -> int:
        await self._step(f"connect {target_host}:{target_port} auth={authorization}")
        return self.status

    async def tls_handshake(self, conn: Connection, ca_file: str | None, server_name: str, timeout_s: float,
                            what: str) -> str:
        await self._step(f"tls {server_name}")
        return "TLSv1.3"


def device(ifname: str = "eth0", cls: str = "ethernet", ident: str = "eth0", **kw: object) -> DeviceInfo:
    kw.setdefault("nm_type", NMDeviceType.VETH)
    return DeviceInfo(ifname=ifname, nm_state=100, iface_class=cls, identifier=ident,
                      dns=("198.18.1.1",), **kw)  # type: ignore[arg-type]


def probe(dev: DeviceInfo, links: FakeLinks | None = None, net: FakeNet | None = None,
          proxy: ProbeProxy | None = None, config: Config = CONFIG):
    return asyncio.run(probe_interface(dev, config, proxy, links=links or FakeLinks(), net=net or FakeNet()))


def stage_names(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [s.name for s in result.stages]


def test_healthy_ethernet_runs_every_stage_in_order() -> None:
    net = FakeNet()
    r = probe(device(), net=net)
    assert r.code == ResultCode.SERVER_CONNECTED and r.reason is None
    assert stage_names(r) == ["link", "address", "dns", "tcp", "tls"]
    assert net.calls == ["dns", "tcp 198.19.0.10:443", "tls cloud.imp.lab"]
    assert r.details["resolved"] == "198.19.0.10" and r.details["tls"] == "TLSv1.3"


def test_no_tls_when_not_configured() -> None:
    config = Config(cloud=CloudEndpoint(host="cloud.imp.lab", port=80, tls=False))
    r = probe(device(), config=config)
    assert r.connected and stage_names(r) == ["link", "address", "dns", "tcp"]


def test_stops_at_the_first_failure() -> None:
    links, net = FakeLinks(carrier=False), FakeNet()
    r = probe(device("wlan0", "wifi", "wl0", ssid="depot"), links=links, net=net)
    assert r.code_name == "NO_WIFI" and stage_names(r) == ["link"]
    assert "not associated to depot" in (r.reason or "")
    assert net.calls == [] and links.calls == ["link wlan0"]


def test_address_without_default_route_is_no_ip_address() -> None:
    r = probe(device(), links=FakeLinks(gateway=None))
    assert r.code == ResultCode.NO_IP_ADDRESS and "no default route" in (r.reason or "")
    r = probe(device(), links=FakeLinks(addresses=()))
    assert r.code == ResultCode.NO_IP_ADDRESS and "no IPv4 address" in (r.reason or "")


def test_dns_failure_detail_is_the_reason() -> None:
    net = FakeNet(fail={"dns": StageFailed("DNS 198.18.1.1 did not answer in 2.0 s")})
    r = probe(device(), net=net)
    assert r.code == ResultCode.NOT_RESOLVED and r.reason == "dns: DNS 198.18.1.1 did not answer in 2.0 s"
    assert net.calls == ["dns"]


def test_tls_failure_is_no_server() -> None:
    net = FakeNet(fail={"tls cloud.imp.lab": StageFailed("certificate does not verify")})
    r = probe(device(), net=net)
    assert r.code == ResultCode.NO_SERVER and r.failed_stage is not None and r.failed_stage.name == "tls"


PROXY = ProbeProxy("proxy.imp.lab", 8888, "lab", "secret")


def test_proxy_path_resolves_the_proxy_and_tunnels() -> None:
    net = FakeNet()
    r = probe(device(), net=net, proxy=PROXY)
    assert r.connected and stage_names(r) == ["link", "address", "dns", "proxy", "tcp", "tls"]
    assert net.calls == ["dns", "tcp 198.19.0.10:8888",
                         "connect cloud.imp.lab:443 auth=Basic bGFiOnNlY3JldA==", "tls cloud.imp.lab"]
    assert r.details["proxy"] == "proxy.imp.lab:8888"


def test_proxy_refusing_credentials_is_not_authorised_on_the_proxy_stage() -> None:
    from impctl.model.probe import Stage

    rejected = StageFailed("proxy answered 407", stage=Stage.PROXY, rejected=True)
    net = FakeNet(fail={"connect cloud.imp.lab:443 auth=Basic bGFiOnNlY3JldA==": rejected})
    r = probe(device(), net=net, proxy=PROXY)
    assert r.code == ResultCode.NOT_AUTHORISED
    assert stage_names(r) == ["link", "address", "dns", "proxy"]  # one proxy stage, failed
    assert r.stages[-1].ok is False


def test_proxy_unreachable_is_no_proxy_and_upstream_failure_no_server() -> None:
    from impctl.model.probe import Stage

    r = probe(device(), net=FakeNet(fail={"tcp 198.19.0.10:8888": StageFailed("refused")}), proxy=PROXY)
    assert r.code == ResultCode.NO_PROXY
    upstream = StageFailed("proxy answered 502", stage=Stage.TCP)
    net = FakeNet(fail={"connect cloud.imp.lab:443 auth=Basic bGFiOnNlY3JldA==": upstream})
    r = probe(device(), net=net, proxy=PROXY)
    assert r.code == ResultCode.NO_SERVER and stage_names(r)[-2:] == ["proxy", "tcp"]


def modem(**kw: object) -> ModemInfo:
    base: dict[str, object] = dict(path="/org/freedesktop/ModemManager1/Modem/0", state=MMModemState.CONNECTED,
                                   sim_present=True, registration=MMRegistrationState.HOME,
                                   bearer_connected=True)
    base.update(kw)
    return ModemInfo(**base)  # type: ignore[arg-type]


def cell(m: ModemInfo | None) -> DeviceInfo:
    # The u-blox modem's net port: its bearer carries IP on usb0, no PPP.
    return device("ttyUSB0", "cell", "cell0", nm_type=NMDeviceType.MODEM, modem=m, extra={"ip_ifname": "usb0"})


@pytest.mark.parametrize(
    ("m", "code", "stages"),
    [
        (None, ResultCode.NO_MODEM, ["modem"]),
        (modem(state=MMModemState.INITIALIZING), ResultCode.NO_MODEM, ["modem"]),
        (modem(state=MMModemState.FAILED, failed_reason=2, sim_present=False), ResultCode.SIM_ERROR,
         ["modem", "sim"]),
        (modem(state=MMModemState.ENABLED, sim_present=False), ResultCode.SIM_ERROR, ["modem", "sim"]),
        (modem(state=MMModemState.LOCKED, sim_locked=True), ResultCode.SIM_ERROR, ["modem", "sim"]),
        (modem(state=MMModemState.SEARCHING, registration=MMRegistrationState.SEARCHING),
         ResultCode.NO_REGISTRATION, ["modem", "sim", "registration"]),
        (modem(state=MMModemState.ENABLED, registration=MMRegistrationState.DENIED),
         ResultCode.REGISTRATION_DENIED, ["modem", "sim", "registration"]),
        (modem(state=MMModemState.REGISTERED, bearer_connected=False), ResultCode.NO_PPP_CONNECTION,
         ["modem", "sim", "registration", "bearer"]),
    ],
)
def test_modem_stages(m: ModemInfo | None, code: ResultCode, stages: list[str]) -> None:
    net = FakeNet()
    r = probe(cell(m), net=net)
    assert r.code == code and stage_names(r) == stages
    assert net.calls == []  # no traffic before the bearer is up


def test_network_failure_behind_a_modem_is_ppp_no_connectivity() -> None:
    links = FakeLinks()
    r = probe(cell(modem()), links=links, net=FakeNet(fail={"dns": StageFailed("DNS 10.0.0.1 timed out")}))
    assert r.code == ResultCode.PPP_NO_CONNECTIVITY and r.ifname == "usb0"
    assert links.calls == ["link usb0", "ipv4 usb0"]  # the IP interface, not the control port


def test_the_bearer_stage_names_what_modemmanager_said() -> None:
    refused = modem(state=MMModemState.REGISTERED, bearer_connected=False, access_technologies=("lte",),
                    bearer_error="org.freedesktop.ModemManager1.Error.MobileEquipment.GprsUnknown",
                    bearer_error_text="Unspecified GPRS error")
    r = probe(cell(refused), net=FakeNet())
    assert r.code == ResultCode.NO_PPP_CONNECTION
    assert r.reason == ("bearer: no connected data bearer (modem REGISTERED, last bearer error "
                        "MobileEquipment.GprsUnknown (Unspecified GPRS error))")
    assert "lte" in r.stages[2].detail
    up = modem(bearer_interface="usb0", bearer_address="198.18.64.2/24")
    r = probe(cell(up), net=FakeNet())
    assert r.stages[3].detail == "data bearer connected on usb0 (198.18.64.2/24)"


def test_a_cellular_identifier_without_a_modem_is_no_modem() -> None:
    missing: list[str] = []
    assert [d.ifname for d in select_devices(INVENTORY, ["eth0", "cell1"], missing)] == ["eth0"]
    assert missing == ["cell1"]
    r = no_modem_probe("cell1")
    assert (r.code, r.identifier, r.iface_class, stage_names(r)) == (ResultCode.NO_MODEM, "cell1", "cell", ["modem"])
    with pytest.raises(NoSuchInterface):  # without the list, as before; and never for other classes
        select_devices(INVENTORY, ["cell1"])
    with pytest.raises(NoSuchInterface):
        select_devices(INVENTORY, ["wl1"], missing)


def test_modem_less_cell_skips_modem_stages_and_reads_like_a_wired_link() -> None:
    dev = device("wwan0", "cell", "cell0")
    r = probe(dev, links=FakeLinks(carrier=False))
    assert r.code_name == "NO_LINK" and r.stages[0].skipped and r.stages[0].name == "modem"
    r = probe(dev, proxy=PROXY)  # impOS: no proxy on cellular
    assert r.connected and "proxy" not in stage_names(r)


def test_a_hung_stage_never_overruns_the_deadline() -> None:
    config = Config(cloud=CONFIG.cloud, probe=ProbeSettings(dns_timeout_s=5.0, total_timeout_s=0.4))
    started = time.monotonic()
    r = probe(device(), net=FakeNet(hang={"dns": 30.0}), config=config)
    elapsed = time.monotonic() - started
    assert elapsed < 0.7
    assert r.code == ResultCode.NOT_RESOLVED and "did not finish" in (r.reason or "")


def test_interfaces_run_concurrently_and_faults_stay_apart() -> None:
    config = Config(cloud=CONFIG.cloud, probe=ProbeSettings(connect_timeout_s=0.5))
    slow = FakeNet(hang={"tcp 198.19.0.10:443": 0.3})
    devices = [device("eth0"), device("eth1", ident="eth1"), device("wlan0", "wifi", "wl0")]
    started = time.monotonic()

    async def go() -> list:  # type: ignore[type-arg]
        return await probe_all(devices, config, lambda d: None, links=FakeLinks(), net=slow)

    results = asyncio.run(go())
    elapsed = time.monotonic() - started
    assert [r.identifier for r in results] == ["eth0", "eth1", "wl0"]
    assert all(r.connected for r in results)
    assert elapsed < 0.6  # three 0.3 s connects at once, not 0.9 s in a row


INVENTORY = [device("eth0"), device("eth1", ident="eth1"), device("wlan0", "wifi", "wl0"),
             device("wwan0", "cell", "cell0")]


def test_select_devices() -> None:
    assert [d.ifname for d in select_devices(INVENTORY, [])] == ["eth0", "eth1", "wlan0", "wwan0"]
    assert [d.ifname for d in select_devices(INVENTORY, ["cell0", "wlan0"])] == ["wlan0", "wwan0"]
    assert [d.ifname for d in select_devices(INVENTORY, ["ethernet"])] == ["eth0", "eth1"]
    with pytest.raises(NoSuchInterface):
        select_devices(INVENTORY, ["wl1"])


def plain(secret: Secret | None, where: str) -> str | None:
    return secret.plain if secret else None


STORED = {"address": "proxy.imp.lab", "port": 8888, "username": "lab", "password": "good"}


def stored_state(pinned: dict[str, Any] | None = None) -> State:
    return state_from_dict({"schema_version": 2, "stored": {"proxy": STORED}, "pinned": pinned})


def test_proxy_plan_stored_applies_to_ethernet_and_wifi_only() -> None:
    plan = proxy_plan(stored_state(), INVENTORY, plain)
    assert sorted(plan) == ["eth0", "eth1", "wlan0"]
    assert plan["eth0"] == ProbeProxy("proxy.imp.lab", 8888, "lab", "good")


def test_proxy_plan_pinned_nic_overrides_on_its_interface() -> None:
    pinned = {"interface": "wl0", "proxyconfig": {"address": "198.19.0.10", "port": 3128,
                                                   "username": "u", "password": "p"}}
    plan = proxy_plan(stored_state(pinned), INVENTORY, plain)
    assert plan["wlan0"] == ProbeProxy("198.19.0.10", 3128, "u", "p")
    assert plan["eth0"].port == 8888
    assert proxy_plan(stored_state(), INVENTORY, plain, no_proxy=True) == {}
    override = ProbeProxy("10.0.0.1", 8080)
    assert set(proxy_plan(stored_state(), INVENTORY, plain, override).values()) == {override}


def probe6(links: FakeLinks6, net: FakeNet, require: str, dev: DeviceInfo | None = None):  # type: ignore[no-untyped-def]
    config = Config(cloud=CONFIG.cloud, probe=ProbeSettings(require_family=require))
    return asyncio.run(probe_interface(dev or device(dns6=("2001:db8:1::1",)), config, None, links=links, net=net,
                                       links6=links))


def test_dual_stack_runs_both_families_through_the_cloud() -> None:
    net = FakeNet()
    r = probe6(FakeLinks6(), net, "all")
    assert r.connected and r.reaches == (Family.IPV4, Family.IPV6) and r.warnings == ()
    assert sorted(net.calls) == sorted(["dns", "tcp 198.19.0.10:443", "tls cloud.imp.lab",
                                        "dns6", "tcp 2001:db8:ff::10:443", "tls cloud.imp.lab"])


@pytest.mark.parametrize(("require", "connected"), [("any", True), ("ipv4", True), ("all", False), ("ipv6", False)])
def test_a_failing_ipv6_family_is_a_warning_or_the_result(require: str, connected: bool) -> None:
    net = FakeNet(fail={"dns6": StageFailed("DNS 2001:db8:1::1 did not answer in 2.0 s")})
    r = probe6(FakeLinks6(), net, require)
    assert r.connected is connected
    assert r.reaches == (Family.IPV4,)
    if connected:
        assert len(r.warnings) == 1 and r.warnings[0].startswith("ipv6: NOT_RESOLVED")
    else:
        assert r.code_name == "NOT_RESOLVED" and "2001:db8:1::1" in (r.reason or "")


def test_ipv6_without_a_default_route_fails_at_its_address_stage() -> None:
    r = probe6(FakeLinks6(gateway6=None), FakeNet(), "ipv6")
    assert r.code_name == "NO_IP_ADDRESS" and "no IPv6 default route" in (r.reason or "")


def test_the_two_families_run_at_once_not_one_after_the_other() -> None:
    """Each family's DNS and TCP take 0.15 s: both families at once take ~0.3 s, the
    slower family alone; one after the other would take 0.6 s."""
    net = FakeNet(hang={"dns": 0.15, "dns6": 0.15, "tcp 198.19.0.10:443": 0.15, "tcp 2001:db8:ff::10:443": 0.15})
    started = time.monotonic()
    r = probe6(FakeLinks6(), net, "all")
    elapsed = time.monotonic() - started
    assert r.connected and r.reaches == (Family.IPV4, Family.IPV6)
    assert 0.3 <= elapsed < 0.5
    # Both families' DNS questions were out before either family's TCP connect.
    assert set(net.calls[:2]) == {"dns", "dns6"}


@pytest.mark.parametrize(("nm_view", "method", "configured"), [
    ({"addresses6": ("2001:db8:1::50/64",)}, None, True),  # NM showed IPv6 in use: method not read
    ({"gateway6": "fe80::1"}, None, True),
    ({}, "auto", True),
    ({}, "ignore", False),  # a profile that leaves IPv6 alone
    ({}, None, False),  # method unknown and no IPv6 on the link at all
])
def test_whether_ipv6_is_configured_without_a_global_address_now(
        nm_view: dict[str, Any], method: str | None, configured: bool) -> None:
    """The kernel shows no IPv6 address at all (gone since the inventory, or never
    there): configured, it is a failure under ipv6; not, it is no failure at all."""
    extra = {"ipv6_method": method} if method else {}
    dev = device(dns6=("2001:db8:1::1",), extra=extra, **nm_view)
    r = probe6(FakeLinks6(addresses6=(), gateway6=None, enabled6=False), FakeNet(), "ipv6", dev)
    v6 = r.family(Family.IPV6)
    assert v6 is not None and v6.configured is configured
    assert v6.status == ("failed" if configured else "not configured")
