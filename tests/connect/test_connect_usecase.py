"""connectwith / connect / disconnect / config current against a hand-written fake network.

The fake keeps what a trial did, so every way an attempt can end is checked:
committed on success only, rolled back on a failed activation, a failed
check, an exception, a cancellation, a failing route change.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field, replace

import pytest

from impctl.model.attempt import Activation, CheckOutcome
from impctl.model.codes import ResultCode
from impctl.model.config import Config, DaemonSettings
from impctl.model.errors import ServiceUnavailable
from impctl.model.inventory import (
    DeviceInfo,
    MMModemState,
    MMRegistrationState,
    ModemInfo,
    NMDeviceState,
    NMDeviceType,
)
from impctl.model.netfacts import Priority
from impctl.model.nic import ProxyConfig, Secret, parse_nic
from impctl.model.nmsettings import Settings
from impctl.model.sessions import SessionsEnded
from impctl.model.state import State
from impctl.usecases import config as config_uc
from impctl.usecases import connect as uc
from impctl.usecases.ports import EndSessions

ETH = DeviceInfo("eth0", NMDeviceType.ETHERNET, NMDeviceState.ACTIVATED, "ethernet", "eth0", "/d/1",
                 carrier=True, addresses=("198.18.1.50/24",), active_path="/a/1", route_metric=100,
                 extra={"profile_uuid": "dhcp-eth0"})
WLAN = DeviceInfo("wlan0", NMDeviceType.ETHERNET, NMDeviceState.ACTIVATED, "wifi", "wl0", "/d/2",
                  carrier=True, addresses=("198.18.2.50/24",), active_path="/a/2", route_metric=600,
                  extra={"profile_uuid": "dhcp-wlan0"})
STATIC_NIC = {"interface": "wl0", "staticconfig": {"ip": "198.18.2.60", "netmask": "255.255.255.0",
                                                   "gateway": "198.18.2.1", "dns": ["198.18.2.1"]}}


@dataclass
class FakeTrial:
    net: FakeNetwork
    device: DeviceInfo
    committed: bool = False

    async def activate(self, settings: Settings, timeout_s: float) -> Activation:
        self.net.log.append(("activate", self.device.ifname))
        self.net.activated.append(settings)
        if self.net.activation_fails:
            return Activation(activated=False, active_path="/a/trial", furthest_state=NMDeviceState.IP_CONFIG)
        uuid = str(settings["connection"]["uuid"])
        self.net.set(self.device.ifname, extra={"profile_uuid": uuid}, active_path="/a/trial")
        return Activation(activated=True, active_path="/a/trial")

    def commit(self) -> None:
        self.committed = True


@dataclass
class FakeNetwork:
    devices_now: list[DeviceInfo] = field(default_factory=lambda: [ETH, WLAN])
    log: list[tuple[str, str]] = field(default_factory=list)
    activation_fails: bool = False
    metric_error: Exception | None = None
    dns_priorities: dict[str, int] = field(default_factory=dict)
    activated: list[Settings] = field(default_factory=list)  # the settings of each activation

    def set(self, ifname: str, **changes: object) -> None:
        self.devices_now = [replace(d, **changes) if d.ifname == ifname else d  # type: ignore[arg-type]
                            for d in self.devices_now]

    async def devices(self) -> list[DeviceInfo]:
        return list(self.devices_now)

    async def primary_ifname(self) -> str | None:
        routed = [d for d in self.devices_now if d.connected and d.route_metric is not None]
        return min(routed, key=lambda d: d.route_metric or 0).ifname if routed else None

    @contextlib.asynccontextmanager
    async def trial(self, device: DeviceInfo, timeout_s: float) -> AsyncIterator[FakeTrial]:
        before = next(d for d in self.devices_now if d.ifname == device.ifname)
        trial = FakeTrial(self, device)
        self.log.append(("trial", device.ifname))
        try:
            yield trial
        finally:
            if trial.committed:
                self.log.append(("commit", device.ifname))
            else:
                self.set(device.ifname, extra=before.extra, active_path=before.active_path,
                         route_metric=before.route_metric)
                self.log.append(("rollback", device.ifname))

    async def disconnect(self, device: DeviceInfo) -> bool:
        self.log.append(("disconnect", device.ifname))
        self.set(device.ifname, nm_state=NMDeviceState.DISCONNECTED, active_path=None, route_metric=None)
        return True

    async def set_priority(self, device: DeviceInfo, priority: Priority) -> None:
        if self.metric_error is not None:
            raise self.metric_error
        self.log.append(("metric", f"{device.ifname}={priority.route_metric}"))
        self.dns_priorities[device.ifname] = priority.dns_priority
        self.set(device.ifname, route_metric=priority.route_metric)


@dataclass
class MemoryStore:
    state: State = field(default_factory=State)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[State]:
        working = copy.deepcopy(self.state)
        yield working
        self.state = working

    def load(self) -> State:
        return copy.deepcopy(self.state)

    def encrypt(self, secret: Secret | None) -> Secret | None:
        if secret is None or secret.encrypted is not None:
            return secret
        return Secret(encrypted=f"enc.{secret.plain}")

    def decrypt(self, secret: Secret | None, path: str) -> str | None:
        if secret is None:
            return None
        return secret.plain if secret.encrypted is None else secret.encrypted.removeprefix("enc.")


class FreeGateway:
    """No other command changes the gateway (the real lock is tested in tests/state)."""

    def __init__(self) -> None:
        self.held: list[str] = []

    @contextlib.contextmanager
    def hold(self, command: str) -> Iterator[bool]:
        self.held.append(command)
        yield True

    def try_hold(self, command: str) -> contextlib.AbstractContextManager[bool]:
        return self.hold(command)


class Cloud:
    """The cloud check: SERVER_CONNECTED unless told otherwise, per ifname."""

    def __init__(self, **outcomes: ResultCode | BaseException) -> None:
        self.outcomes = outcomes
        self.checked: list[str] = []

    async def __call__(self, device: DeviceInfo, proxy: ProxyConfig | None, password: str | None,
                       timeout_s: float) -> CheckOutcome:
        self.checked.append(device.ifname)
        outcome = self.outcomes.get(device.ifname, ResultCode.SERVER_CONNECTED)
        if isinstance(outcome, BaseException):
            raise outcome
        return CheckOutcome(outcome, "fake cloud")


def connectwith(net: FakeNetwork, store: MemoryStore, cloud: Cloud, nic: dict[str, object],
                end_sessions: EndSessions | None = None, config: Config | None = None) -> uc.ConnectReport:
    return asyncio.run(uc.connectwith(parse_nic(nic), network=net, check=cloud, store=store, gateway=FreeGateway(),
                                      config=config or Config(), end_sessions=end_sessions))


def connect(net: FakeNetwork, store: MemoryStore, cloud: Cloud) -> uc.ConnectReport:
    return asyncio.run(uc.connect(network=net, check=cloud, store=store, gateway=FreeGateway(),
                                      config=Config()))


def test_success_commits_then_takes_the_previous_uplink_down() -> None:
    net, store = FakeNetwork(), MemoryStore()
    report = connectwith(net, store, Cloud(), STATIC_NIC)
    assert report.code == ResultCode.SERVER_CONNECTED
    assert net.log == [("trial", "wlan0"), ("activate", "wlan0"), ("metric", "wlan0=50"), ("commit", "wlan0"),
                       ("disconnect", "eth0")]
    current = store.state.current
    assert current is not None and current.by == "connectwith" and current.ifname == "wlan0"
    assert current.profile_uuid == net.devices_now[1].extra["profile_uuid"]
    assert store.state.pinned is not None and store.state.pinned.nic is not None


@pytest.mark.parametrize("cloud", [Cloud(wlan0=ResultCode.NO_SERVER), Cloud(wlan0=ResultCode.NOT_RESOLVED)])
def test_a_failed_check_rolls_back_and_leaves_the_previous_uplink(cloud: Cloud) -> None:
    net, store = FakeNetwork(), MemoryStore()
    report = connectwith(net, store, cloud, STATIC_NIC)
    assert report.code == cloud.outcomes["wlan0"]
    assert net.log == [("trial", "wlan0"), ("activate", "wlan0"), ("rollback", "wlan0")]
    assert store.state.current is None and store.state.pinned is None
    assert net.devices_now == [ETH, WLAN]


def test_a_failed_activation_rolls_back() -> None:
    net, store = FakeNetwork(activation_fails=True), MemoryStore()
    report = connectwith(net, store, Cloud(), STATIC_NIC)
    assert not report.connected
    assert net.log[-1] == ("rollback", "wlan0") and ("disconnect", "eth0") not in net.log


@pytest.mark.parametrize("error", [ServiceUnavailable("NetworkManager went away"), RuntimeError("a bug")])
def test_an_exception_in_the_check_rolls_back_and_propagates(error: Exception) -> None:
    net, store = FakeNetwork(), MemoryStore(State(sequence=["cell"]))
    with pytest.raises(type(error)):
        connectwith(net, store, Cloud(wlan0=error), STATIC_NIC)
    assert net.log[-1] == ("rollback", "wlan0")
    assert store.state == State(sequence=["cell"])  # the transaction did not write


def test_a_failing_route_change_rolls_back() -> None:
    net = FakeNetwork(metric_error=ServiceUnavailable("NetworkManager went away"))
    with pytest.raises(ServiceUnavailable):
        connectwith(net, MemoryStore(), Cloud(), STATIC_NIC)
    assert net.log[-1] == ("rollback", "wlan0") and ("disconnect", "eth0") not in net.log


def test_a_cancelled_attempt_rolls_back() -> None:
    net, store = FakeNetwork(), MemoryStore()

    class Hang(Cloud):
        async def __call__(self, *args: object, **kwargs: object) -> CheckOutcome:
            await asyncio.sleep(3600)
            raise AssertionError("not reached")

    async def main() -> None:
        task = asyncio.create_task(uc.connectwith(parse_nic(STATIC_NIC), network=net, check=Hang(),
                                                  store=store, gateway=FreeGateway(),
                                      config=Config()))
        while ("activate", "wlan0") not in net.log:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert net.log[-1] == ("rollback", "wlan0")


def test_connect_after_disconnect_walks_the_sequence_from_its_first_entry() -> None:
    # wl0 is current; disconnect takes it down, eth0 still carries a default route.
    net = FakeNetwork(devices_now=[replace(ETH, route_metric=700), replace(WLAN, route_metric=50)])
    store = MemoryStore(State(sequence=["wifi", "ethernet"], sequence_index=1))
    assert connect(net, store, Cloud()).already_connected is not None  # wl0, the primary, works
    asyncio.run(uc.disconnect(network=net, store=store, gateway=FreeGateway()))
    assert ("disconnect", "wlan0") in net.log and store.state.disconnected_at is not None
    cloud = Cloud()
    report = connect(net, store, cloud)
    # Not "already connected via eth0": the walk starts at wifi, and eth0 makes way.
    assert report.already_connected is None and report.code == ResultCode.SERVER_CONNECTED
    assert [a.ifname for a in report.attempts] == ["wlan0"]
    assert net.log[-1] == ("disconnect", "eth0")
    assert store.state.disconnected_at is None and store.state.sequence_index == 0


def test_config_current_drops_an_extended_nic_whose_connection_was_lost() -> None:
    net, store = FakeNetwork(), MemoryStore()
    connectwith(net, store, Cloud(), STATIC_NIC)
    nic = asyncio.run(config_uc.config_current(store, net.devices)).nic
    assert nic is not None and nic["staticconfig"]["ip"] == "198.18.2.60"
    # Carrier lost and back: NM dropped the volatile profile, wlan0 runs its DHCP profile again.
    net.set("wlan0", extra={"profile_uuid": "dhcp-wlan0"})
    assert asyncio.run(config_uc.config_current(store, net.devices)).nic == {"interface": "wl0"}
    net.set("wlan0", nm_state=NMDeviceState.DISCONNECTED)
    current = asyncio.run(config_uc.config_current(store, net.devices))
    assert current.nic is None and current.exit_code != 0


def test_bare_nic_connect_uses_stored_settings_through_the_trial() -> None:
    net, store = FakeNetwork(), MemoryStore()
    config_uc.config_static(store, "198.18.2.61", "255.255.255.0", "198.18.2.1", ["198.18.2.1"], "wl0")
    report = connectwith(net, store, Cloud(), {"interface": "wl0"})
    assert report.connected
    assert store.state.pinned is not None and store.state.pinned.nic is None  # a bare pin
    assert store.state.current is not None and store.state.current.nic is not None
    assert store.state.current.nic.staticconfig is not None
    assert store.state.current.nic.staticconfig.ip == "198.18.2.61"


class Ender:
    """end_sessions as the backend's, recording what it was asked to end and when."""

    def __init__(self, net: FakeNetwork, reads: list[int] | None = None) -> None:
        self.net = net
        self.reads = reads if reads is not None else []  # the resolver's reads so far, at each call
        self.read_counts: list[int] = []
        self.calls: list[tuple[str, list[str], list[tuple[str, str]]]] = []

    async def __call__(self, ifname: str, addresses: Sequence[str], lan_dns_name: str = "") -> SessionsEnded:
        assert lan_dns_name == Config().cloud.host
        self.calls.append((ifname, list(addresses), list(self.net.log)))
        self.read_counts.append(len(self.reads))
        return SessionsEnded(ifname, sockets=3, conntrack=0, took_s=0.002)


def test_the_new_uplink_goes_first_in_resolv_conf_and_the_old_ones_sessions_end_after_it_is_down() -> None:
    net, store = FakeNetwork(), MemoryStore()
    ender = Ender(net)
    report = connectwith(net, store, Cloud(), STATIC_NIC, end_sessions=ender)
    assert report.code == ResultCode.SERVER_CONNECTED
    assert net.dns_priorities == {"wlan0": 90}
    ((ifname, addresses, log_then),) = ender.calls
    assert (ifname, addresses) == ("eth0", ["198.18.1.50/24"])  # the addresses it had before going down
    assert log_then[-1] == ("disconnect", "eth0")
    assert report.attempts[-1].details["sessions_ended"] == {"ifname": "eth0", "sockets": 3, "conntrack": 0,
                                                             "nudged": 0, "ms": 2.0, "errors": []}


def test_a_failed_attempt_or_end_sessions_off_ends_nothing() -> None:
    net = FakeNetwork()
    ender = Ender(net)
    assert connectwith(net, MemoryStore(), Cloud(wlan0=ResultCode.NO_SERVER), STATIC_NIC,
                       end_sessions=ender).code == ResultCode.NO_SERVER
    off = Config(daemon=DaemonSettings(end_sessions=False))
    assert connectwith(net, MemoryStore(), Cloud(), STATIC_NIC, end_sessions=ender,
                       config=off).code == ResultCode.SERVER_CONNECTED
    assert ender.calls == []


def test_the_old_uplinks_sessions_end_only_once_resolv_conf_asks_the_new_one_first() -> None:
    net, store = FakeNetwork(), MemoryStore()
    net.set("eth0", dns=("198.18.1.1",))
    net.set("wlan0", dns=("198.18.2.1",))
    reads: list[int] = []

    def resolver() -> list[str]:
        reads.append(len(reads))
        return ["198.18.1.1", "198.18.2.1"] if len(reads) < 4 else ["198.18.2.1"]

    ender = Ender(net, reads)
    report = asyncio.run(uc.connectwith(parse_nic(STATIC_NIC), network=net, check=Cloud(), store=store,
                                        gateway=FreeGateway(), config=Config(), end_sessions=ender,
                                        resolver=resolver))
    assert report.code == ResultCode.SERVER_CONNECTED
    assert len(reads) == 4 and [c[0] for c in ender.calls] == ["eth0"]
    assert ender.read_counts == [4]  # once resolv.conf followed


MODEM = DeviceInfo("ttyUSB0", NMDeviceType.MODEM, NMDeviceState.DISCONNECTED, "cell", "cell1", "/d/3",
                   modem=ModemInfo("/org/freedesktop/ModemManager1/Modem/0", MMModemState.REGISTERED,
                                   sim_present=True, registration=MMRegistrationState.HOME),
                   extra={"ip_ifname": "usb0"})


def test_a_modem_is_activated_as_primary_and_never_reapplied() -> None:
    # NM 1.42 drops a connected modem's bearer address on Device.Reapply: the metric and
    # DNS priority go into the settings it is activated with, and set_priority never runs.
    net = FakeNetwork(devices_now=[ETH, WLAN, MODEM])
    report = connectwith(net, MemoryStore(), Cloud(), {"interface": "cell1", "cellconfig": {"apn": "internet"}})
    assert report.code == ResultCode.SERVER_CONNECTED
    (settings,) = net.activated
    assert settings["gsm"] == {"apn": "internet"}
    # below wl0 (600), which stays up; eth0 (100), the uplink taken down, does not count
    assert settings["ipv4"]["route-metric"] == 50
    assert settings["ipv4"]["dns-priority"] == Config().daemon.primary_dns_priority
    assert not [entry for entry in net.log if entry[0] == "metric"]
    assert ("disconnect", "eth0") in net.log
    assert report.attempts[0].details["route_metric"] == 50


def test_an_ethernet_uplink_still_takes_its_metric_after_the_check() -> None:
    net = FakeNetwork(devices_now=[ETH, WLAN, MODEM])
    connectwith(net, MemoryStore(), Cloud(), {"interface": "wl0"})
    assert net.activated[0]["ipv4"]["route-metric"] == uc.TRIAL_ROUTE_METRIC
    assert "dns-priority" not in net.activated[0]["ipv4"]
    assert ("metric", "wlan0=50") in net.log
