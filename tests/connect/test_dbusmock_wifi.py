"""WiFi paths of connectwith against python-dbusmock's NetworkManager (no radio exists here).

The template lacks AddAndActivateConnection2: the test adds one that plays an
access point with a known SSID and key. The right SSID and key activate;
anything else fails association the way NM does (device FAILED with reason
SUPPLICANT_TIMEOUT, active connection DEACTIVATED). The cloud check is a fake
that answers SERVER_CONNECTED: the probe is tested elsewhere, and no
interface exists behind the mock.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dbusmock.testcase import BusType, PrivateDBus, SpawnedMock

from impctl.backends.gatewaylock import GatewayLock, lock_path_for
from impctl.backends.nm import NMClient as NetworkManagerBackend
from impctl.backends.nm import read_inventory, system_bus
from impctl.backends.store import FileStore
from impctl.model.attempt import CheckOutcome
from impctl.model.codes import ResultCode
from impctl.model.config import Config
from impctl.model.errors import OperationTimeout, PermissionDenied, ServiceUnavailable
from impctl.model.inventory import DeviceInfo
from impctl.model.nic import ProxyConfig, parse_nic
from impctl.usecases import config as config_uc
from impctl.usecases import connect as uc

pytestmark = pytest.mark.dbusmock

NM_IFACE = "org.freedesktop.NetworkManager"
MOCK_IFACE = "org.freedesktop.DBus.Mock"
SSID = "depot"
KEY = "verybadpassw0rd!"
DEVICE_STATE_DISCONNECTED = 30

# Runs inside the mock: `self` is the NM manager object, `objects` maps paths to mock objects.
AAC2 = """
settings, dev, _spec, options = args
known = %(known)r
self.aac2_count = getattr(self, 'aac2_count', 0) + 1
n = self.aac2_count
wifi = settings.get('802-11-wireless', {})
ssid = bytes(bytearray(wifi.get('ssid', []))).decode()
psk = settings.get('802-11-wireless-security', {}).get('psk')
ok = ssid in known and known[ssid] == (psk or None)
conn = '/org/freedesktop/NetworkManager/Settings/impctl%%d' %% n
active = '/org/freedesktop/NetworkManager/ActiveConnection/impctl%%d' %% n
self.AddObject(conn, 'org.freedesktop.NetworkManager.Settings.Connection',
               {'Unsaved': True, 'Filename': ''}, [])
self.AddObject(active, 'org.freedesktop.NetworkManager.Connection.Active', {
    'State': dbus.UInt32(2 if ok else 4),
    'Id': str(settings['connection']['id']),
    'Uuid': str(settings['connection']['uuid']),
    'Devices': dbus.Array([dev], signature='o'),
    'Connection': dbus.ObjectPath(conn),
}, [])
d = objects[dev]
if ok:
    d.Set('org.freedesktop.NetworkManager.Device', 'State', dbus.UInt32(100))
    d.Set('org.freedesktop.NetworkManager.Device', 'ActiveConnection', dbus.ObjectPath(active))
    d.AddProperties('org.freedesktop.NetworkManager.Device.Wireless', {'ActiveAccessPoint': dbus.ObjectPath(%(ap)r)})
    d.EmitSignal('org.freedesktop.NetworkManager.Device', 'StateChanged', 'uuu', [100, 30, 0])
else:
    d.Set('org.freedesktop.NetworkManager.Device', 'State', dbus.UInt32(120))
    d.Set('org.freedesktop.NetworkManager.Device', 'StateReason', (dbus.UInt32(120), dbus.UInt32(11)))
    d.EmitSignal('org.freedesktop.NetworkManager.Device', 'StateChanged', 'uuu', [50, 30, 0])
    d.EmitSignal('org.freedesktop.NetworkManager.Device', 'StateChanged', 'uuu', [120, 50, 11])
ret = (dbus.ObjectPath(conn), dbus.ObjectPath(active), dbus.Dictionary({}, signature='sv'))
"""


class MockNM:
    def __init__(self, conn: Any, device: str) -> None:
        self.conn = conn  # a connection to this test's private bus (dbus.SystemBus() is a stale singleton)
        self.device = device

    def calls(self, method: str) -> list[Any]:
        manager = self.conn.get_object(NM_IFACE, "/org/freedesktop/NetworkManager")
        return [c[2] for c in manager.GetCalls(dbus_interface=MOCK_IFACE) if c[1] == method]


@pytest.fixture
def mock_nm() -> Iterator[MockNM]:
    saved = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    try:
        with PrivateDBus(BusType.SYSTEM) as bus:
            assert os.environ["DBUS_SYSTEM_BUS_ADDRESS"] == bus.address
            with SpawnedMock.spawn_with_template("networkmanager", {}, BusType.SYSTEM) as mock:
                obj = mock.obj
                conn = BusType.SYSTEM.get_connection()
                device = obj.AddWiFiDevice("mock_wlan0", "wlan0", DEVICE_STATE_DISCONNECTED,
                                           dbus_interface=MOCK_IFACE)
                ap = obj.AddAccessPoint(device, "ap_depot", SSID, "00:11:22:33:44:55", 2, 2437, 54000, 73, 0x100,
                                        dbus_interface=MOCK_IFACE)
                manager = conn.get_object(NM_IFACE, "/org/freedesktop/NetworkManager")
                manager.AddMethod(NM_IFACE, "AddAndActivateConnection2", "a{sa{sv}}ooa{sv}", "ooa{sv}",
                              AAC2 % {"known": {SSID: KEY, "cafe": None}, "ap": str(ap)},
                              dbus_interface=MOCK_IFACE)
                dev_obj = conn.get_object(NM_IFACE, device)
                # Route-metric changes on success go through the applied connection and Reapply.
                dev_obj.AddMethods("org.freedesktop.NetworkManager.Device", [
                    ("GetAppliedConnection", "u", "a{sa{sv}}t",
                     "ret = (dbus.Dictionary({'ipv4': dbus.Dictionary({}, signature='sv')},"
                     " signature='sa{sv}'), dbus.UInt64(1))"),
                    ("Reapply", "a{sa{sv}}tu", "", ""),
                ], dbus_interface=MOCK_IFACE)
                yield MockNM(conn, str(device))
    finally:
        if saved is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = saved


class FakeCloud:
    """Stands in for the probe: records which device it was asked to check."""

    def __init__(self) -> None:
        self.checked: list[str] = []

    async def __call__(self, device: DeviceInfo, proxy: ProxyConfig | None, password: str | None,
                       timeout_s: float) -> CheckOutcome:
        self.checked.append(device.ifname)
        return CheckOutcome(ResultCode.SERVER_CONNECTED, "fake cloud answered")


def connectwith(
    nic: dict[str, Any], store: FileStore, cloud: FakeCloud, timeout_s: float = 5.0
) -> uc.ConnectReport:
    async def main() -> uc.ConnectReport:
        async with system_bus() as bus:
            network = NetworkManagerBackend(bus, Config())
            gateway = GatewayLock(lock_path_for(store.state_path))
            return await uc.connectwith(parse_nic(nic), network=network, check=cloud, store=store, gateway=gateway,
                                        config=Config(), timeout_s=timeout_s)

    return asyncio.run(main())


def config_current(store: FileStore) -> config_uc.CurrentConfig:
    async def devices() -> list[DeviceInfo]:
        async with system_bus() as bus:
            return await NetworkManagerBackend(bus, Config()).devices()

    return asyncio.run(config_uc.config_current(store, devices))


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "state" / "state.json")


def test_wifi_ssid_and_key_are_sent_volatile_and_connect(mock_nm: MockNM, store: FileStore) -> None:
    cloud = FakeCloud()
    report = connectwith({"interface": "wl0", "wificonfig": {"ssid": SSID, "key": KEY}}, store, cloud)
    assert report.code == ResultCode.SERVER_CONNECTED
    assert report.exit_code == 0
    ((settings, device, _spec, options),) = mock_nm.calls("AddAndActivateConnection2")
    assert str(device) == mock_nm.device
    assert options == {"persist": "volatile"}
    assert bytes(bytearray(settings["802-11-wireless"]["ssid"])) == SSID.encode()
    assert settings["802-11-wireless-security"] == {"key-mgmt": "wpa-psk", "psk": KEY}
    assert settings["connection"]["autoconnect"] is False or settings["connection"]["autoconnect"] == 0
    assert cloud.checked == ["wlan0"]
    # The key is stored encrypted only.
    text = store.state_path.read_text()
    assert KEY not in text
    state = json.loads(text)
    assert set(state["pinned"]["wificonfig"]["key"]) == {"encrypted"}
    current = parse_nic(config_current(store).nic)
    assert current.wificonfig is not None
    assert store.decrypt(current.wificonfig.key, "key") == KEY
    # status shows the SSID and signal of the associated access point.
    (wifi,) = asyncio.run(read_inventory(Config()))
    assert (wifi.identifier, wifi.ssid, wifi.signal) == ("wl0", SSID, 73)


def test_open_network_has_no_security(mock_nm: MockNM, store: FileStore) -> None:
    report = connectwith({"interface": "wifi", "wificonfig": {"ssid": "cafe", "key": ""}}, store, FakeCloud())
    assert report.code == ResultCode.SERVER_CONNECTED
    ((settings, *_),) = mock_nm.calls("AddAndActivateConnection2")
    assert "802-11-wireless-security" not in settings


def test_association_failure_is_no_wifi_and_nothing_is_pinned(mock_nm: MockNM, store: FileStore) -> None:
    cloud = FakeCloud()
    report = connectwith({"interface": "wl0", "wificonfig": {"ssid": SSID, "key": "wrong-key-123"}}, store, cloud)
    (attempt,) = report.attempts
    assert attempt.code == ResultCode.NO_WIFI
    assert attempt.code_name == "NO_WIFI"
    assert attempt.stage == "activation"
    assert report.exit_code == 11
    assert cloud.checked == []
    state = json.loads(store.state_path.read_text())
    assert state["pinned"] is None
    assert state["current"] is None
    assert state["last_error"]["name"] == "NO_WIFI"
    assert "wrong-key-123" not in store.state_path.read_text()


def test_bare_wifi_nic_uses_the_stored_network(mock_nm: MockNM, store: FileStore) -> None:
    config_uc.config_wifi(store, SSID, KEY)
    assert KEY not in store.state_path.read_text()
    report = connectwith({"interface": "wl0"}, store, FakeCloud())
    assert report.code == ResultCode.SERVER_CONNECTED
    ((settings, *_),) = mock_nm.calls("AddAndActivateConnection2")
    assert bytes(bytearray(settings["802-11-wireless"]["ssid"])) == SSID.encode()
    assert settings["802-11-wireless-security"]["psk"] == KEY


def test_bare_wifi_nic_without_stored_network_fails_with_no_wifi(mock_nm: MockNM, store: FileStore) -> None:
    report = connectwith({"interface": "wl0"}, store, FakeCloud())
    (attempt,) = report.attempts
    assert attempt.code == ResultCode.NO_WIFI
    assert attempt.stage == "settings"
    assert "impctl config wifi" in attempt.reason
    assert mock_nm.calls("AddAndActivateConnection2") == []


def test_bus_without_networkmanager_is_service_unavailable() -> None:
    saved = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    try:
        with PrivateDBus(BusType.SYSTEM):
            with pytest.raises(ServiceUnavailable) as exc:
                asyncio.run(read_inventory(Config()))
            assert exc.value.message == "NetworkManager is not running on the system bus"
            assert int(exc.value.exit_code) == 5
    finally:
        if saved is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = saved


def replace_aac2(mock_nm: MockNM, code: str) -> None:
    manager = mock_nm.conn.get_object(NM_IFACE, "/org/freedesktop/NetworkManager")
    manager.AddMethod(NM_IFACE, "AddAndActivateConnection2", "a{sa{sv}}ooa{sv}", "ooa{sv}", code,
                      dbus_interface=MOCK_IFACE)


def test_permission_denied_is_exit_4_and_changes_nothing(mock_nm: MockNM, store: FileStore) -> None:
    replace_aac2(mock_nm, "raise dbus.exceptions.DBusException('not authorized',"
                          " name='org.freedesktop.NetworkManager.PermissionDenied')")
    with pytest.raises(PermissionDenied) as exc:
        connectwith({"interface": "wl0", "wificonfig": {"ssid": SSID, "key": KEY}}, store, FakeCloud())
    assert int(exc.value.exit_code) == 4
    assert "NetworkManager refused" in exc.value.message
    assert not store.state_path.exists() or json.loads(store.state_path.read_text())["pinned"] is None


def test_networkmanager_not_answering_is_a_timeout(mock_nm: MockNM, store: FileStore) -> None:
    replace_aac2(mock_nm, "import time; time.sleep(4)")
    with pytest.raises(OperationTimeout) as exc:
        connectwith({"interface": "wl0", "wificonfig": {"ssid": SSID, "key": KEY}}, store, FakeCloud(),
                    timeout_s=1.5)
    assert int(exc.value.exit_code) == 7
    assert "did not answer" in exc.value.message
