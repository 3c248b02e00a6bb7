"""A failover as the gateway's applications feel it, in the lab whose ISPs validate sources and NAT.

The applications are impctl.lab.apps processes in the gateway namespace,
unbound (their traffic follows the default route and resolv.conf) unless a
test binds one to a device on purpose. Without impctl ending the left
uplink's sessions, an unbound session opened through eth0 keeps eth0's
source address after the switch; the next ISP drops it and TCP retransmits
for ~15 minutes (shared/LAB-NOTES.md).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from labdaemon import DaemonProcess, is_event, settles

from impctl.lab import Lab
from impctl.lab.apps import App, app_argv

pytestmark = pytest.mark.lab

FAST = 1.0  # the test config's probe_interval_s (labdaemon.FAST_DAEMON)
HOLD = 3.0  # its failback_hold_s


def address_of(lab: Lab, ifname: str) -> str:
    addresses = lab.addresses().get(ifname, [])
    assert addresses, f"{ifname} has no address: {lab.addresses()}"
    return addresses[0].split("/")[0]


@pytest.fixture
def apps(lab: Lab) -> Iterator[list[App]]:
    started: list[App] = []
    yield started
    for app in started:
        app.stop()
        print("\n".join(json.dumps(line) for line in app.seen[-30:]))


def start(lab: Lab, apps: list[App], app: str, *args: str) -> App:
    proc = App(lab.exec_argv(app_argv(app, *args)))
    apps.append(proc)
    return proc


def carrier_lost(daemon: DaemonProcess, fault_applied: float) -> float:
    """When the kernel told the gateway that eth0 lost its carrier (the daemon's `link` event).

    Not when the fault was applied: the kernel announces a physical carrier change at most
    once a second machine-wide (linkwatch), and other labs on the machine, or this one's
    last reset, can hold it back by up to that second. A gateway sees the same delay after
    another link change; its NetworkManager learns of the loss no sooner.
    """
    lost = [e for e in daemon.events("link") if e.get("ifname") == "eth0" and e.get("state") == "down"]
    assert lost, "the daemon never saw eth0's carrier loss"
    announced = float(lost[-1]["ts"])
    assert announced - fault_applied < 1.2, "the daemon saw the carrier loss late"
    return announced


def echo_via(local: str) -> Any:
    return lambda e: e["event"] == "echo" and e["local"] == local


def test_an_unbound_session_on_a_blackholed_primary_is_ended_and_reconnects_through_the_new_one(
        lab: Lab, daemon: DaemonProcess, apps: list[App]) -> None:
    eth0, wlan0 = address_of(lab, "eth0"), address_of(lab, "wlan0")
    session = start(lab, apps, "session")
    assert session.wait(echo_via(eth0), 10.0), "the session never exchanged data through eth0"
    lab.fault("eth0", "blackhole")
    ended = daemon.wait_for(is_event("sessions-ended", ifname="eth0"), 8.0, "eth0's sessions ended")
    assert int(ended["sockets"]) >= 1 and ended["to"] == "wlan0"
    error = session.wait(lambda e: e["event"] == "error", 2.0)
    assert error is not None and "aborted" in error["error"].lower(), error
    assert error["t"] - float(ended["ts"]) < 0.5
    back = session.wait(echo_via(wlan0), 3.0)
    assert back is not None, "the session did not come back through wlan0"
    # The cloud sees wlan0's ISP, not the gateway: the ISP NATs (like CGNAT).
    assert back["seen_as"] != wlan0
    assert back["t"] - float(ended["ts"]) < 1.5


def test_a_session_bound_to_a_standby_on_purpose_survives_the_switch(
        lab: Lab, daemon: DaemonProcess, apps: list[App]) -> None:
    wwan0 = address_of(lab, "wwan0")
    bound = start(lab, apps, "session", "--bind-device", "wwan0", "--every", "0.2")
    assert bound.wait(echo_via(wwan0), 10.0)
    lab.fault("eth0", "link-down")
    daemon.wait_for(is_event("connected", ifname="wlan0"), 5.0, "wlan0 verified")
    daemon.wait_for(is_event("sessions-ended", ifname="eth0"), 8.0, "eth0's sessions ended")
    # Data keeps flowing on the same connection: no error, no reconnect.
    for _ in range(5):
        assert bound.wait(echo_via(wwan0), 2.0)
    assert not [e for e in bound.seen if e["event"] in ("error", "connected")][1:]


def test_failback_from_cellular_ends_the_cellular_sessions_within_a_second(
        lab: Lab, daemon: DaemonProcess, apps: list[App]) -> None:
    eth0, wwan0 = address_of(lab, "eth0"), address_of(lab, "wwan0")
    lab.fault("eth0", "link-down")
    lab.fault("wlan0", "link-down")
    daemon.wait_for(is_event("connected", ifname="wwan0"), 10.0, "failover to wwan0")
    session = start(lab, apps, "session")
    assert session.wait(echo_via(wwan0), 10.0), "the session did not start on the cellular uplink"
    lab.restore("eth0")
    switch = daemon.wait_for(lambda e: e.get("event") == "switch" and e.get("from") == "wwan0"
                             and e.get("reason", "").startswith("failback"), HOLD + 15.0, "failback to eth0")
    error = session.wait(lambda e: e["event"] == "error", 3.0)
    assert error is not None, "the cellular session was left on the cellular link"
    assert error["t"] - float(switch["ts"]) < 1.0
    assert session.wait(echo_via(eth0), 3.0), "the session did not come back through eth0"


def test_the_resolvers_first_server_after_a_switch_is_the_new_primarys(
        lab: Lab, daemon: DaemonProcess) -> None:
    def nameservers() -> list[str]:
        text = lab.run(["cat", "/etc/resolv.conf"]).stdout
        return [line.split()[1] for line in text.splitlines() if line.startswith("nameserver ")]

    assert settles(lambda: nameservers()[:1] == ["198.18.1.1"]), nameservers()  # eth0 is primary: its ISP first
    lab.fault("eth0", "blackhole")
    daemon.wait_for(is_event("connected", ifname="wlan0"), 8.0, "failover to wlan0")
    daemon.wait_for(is_event("route", ifname="wlan0", metric="20"), 3.0, "wlan0 at the primary metric")
    assert settles(lambda: nameservers()[:1] == ["198.18.2.1"]), nameservers()


def test_connectwith_moving_the_uplink_ends_the_old_uplinks_sessions(lab: Lab, apps: list[App]) -> None:
    eth0, wlan0 = address_of(lab, "eth0"), address_of(lab, "wlan0")
    session = start(lab, apps, "session")
    assert session.wait(echo_via(eth0), 10.0)
    proc = lab.run([sys.executable, "-m", "impctl", "connectwith", "--nic", "-", "--json"],
                   input=json.dumps({"interface": "wl0"}), timeout=90)
    doc = json.loads(proc.stdout)
    assert doc["exit_code"] == 0, proc.stdout + proc.stderr
    details = doc["data"]["attempts"][-1]["details"]
    assert details["previous_taken_down"] == "eth0"
    assert details["sessions_ended"]["sockets"] >= 1 and details["sessions_ended"]["errors"] == []
    assert session.wait(lambda e: e["event"] == "error", 3.0)
    assert session.wait(echo_via(wlan0), 5.0), "the session did not come back through wlan0"


def lan_session(lab: Lab, apps: list[App]) -> App:
    proc = App(lab.lan_exec_argv(app_argv("session")))
    apps.append(proc)
    return proc


def echo_seen_as(address: str) -> Any:
    return lambda e: e["event"] == "echo" and e["seen_as"] == address


@pytest.mark.parametrize("fault", ["link-down", "blackhole"])
def test_a_lan_devices_session_follows_the_primary_through_the_gateways_nat(
        lab: Lab, daemon: DaemonProcess, apps: list[App], fault: str) -> None:
    isp_a, isp_b = lab.uplink("eth0").transit_isp_ip, lab.uplink("wlan0").transit_isp_ip
    session = lan_session(lab, apps)
    assert session.wait(echo_seen_as(isp_a), 10.0), "the LAN device never reached the cloud through eth0"
    lab.fault("eth0", fault)
    started = time.time()  # in effect by now: for link-down, lab.fault waits for the carrier loss
    switch = daemon.wait_for(is_event("switch", **{"from": "eth0"}), 8.0, "switch away from eth0")
    back = session.wait(echo_seen_as(isp_b), 8.0)
    assert back is not None, "the LAN device's session did not come back through wlan0"
    # Within a second of the switch. After a blackhole the device's TCP is in retransmission
    # back-off by then; the nudge (a SYN, answered with an ACK that the cloud resets) makes it
    # hear of the new path at once instead of at its next retransmission.
    assert back["t"] - float(switch["ts"]) < 1.0, back["t"] - float(switch["ts"])
    if fault == "link-down":
        assert back["t"] - carrier_lost(daemon, started) < 1.0
    else:
        ended = daemon.wait_for(is_event("sessions-ended", ifname="eth0"), 5.0, "eth0's sessions ended")
        assert int(ended["conntrack"]) >= 1 and int(ended["nudged"]) >= 1, ended
        assert float(ended["lan_dns_wait_ms"]) < 2500, ended  # its resolver followed before the nudge


def test_a_lan_flow_snatd_to_a_fixed_address_is_moved_by_deleting_its_conntrack_entry(
        lab: Lab, daemon: DaemonProcess, apps: list[App]) -> None:
    eth0 = address_of(lab, "eth0")
    isp_b = lab.uplink("wlan0").transit_isp_ip
    # SNAT to eth0's address, before NM's masquerade: the kernel keeps such an entry when the route moves.
    rules = ("table ip impt_snat {\n  chain post {\n    type nat hook postrouting priority srcnat - 10;\n"
             f'    ip saddr 10.42.0.0/24 oifname "eth0" snat to {eth0}\n  }}\n}}\n')
    lab.run(["nft", "-f", "-"], input=rules, check=True)
    try:
        session = lan_session(lab, apps)
        assert session.wait(lambda e: e["event"] == "echo", 10.0)
        lab.fault("eth0", "blackhole")
        ended = daemon.wait_for(is_event("sessions-ended", ifname="eth0"), 8.0, "eth0's sessions ended")
        assert int(ended["conntrack"]) >= 1, ended
        back = session.wait(echo_seen_as(isp_b), 5.0)
        assert back is not None, "the SNAT'd LAN session did not come back through wlan0"
        assert int(ended["nudged"]) >= 1, ended
        assert back["t"] - float(ended["ts"]) < 1.0
    finally:
        lab.run(["nft", "delete", "table", "ip", "impt_snat"])


def test_probe_and_status_end_nothing(lab: Lab, apps: list[App]) -> None:
    eth0 = address_of(lab, "eth0")
    session = start(lab, apps, "session", "--every", "0.2")
    assert session.wait(echo_via(eth0), 10.0)
    for argv in (["probe", "--all", "--json"], ["status", "--json"], ["connect", "--json"]):
        proc = lab.run([sys.executable, "-m", "impctl", *argv], timeout=60)
        assert json.loads(proc.stdout)["exit_code"] == 0, proc.stdout + proc.stderr
    for _ in range(3):
        assert session.wait(echo_via(eth0), 2.0)
    assert [e["event"] for e in session.seen if e["event"] in ("connected", "error")] == ["connected"]


@pytest.mark.parametrize("fault", ["link-down", "blackhole"])
def test_new_connections_by_name_and_a_session_come_back_through_the_next_uplink(
        lab: Lab, daemon: DaemonProcess, apps: list[App], fault: str) -> None:
    eth0, wlan0 = address_of(lab, "eth0"), address_of(lab, "wlan0")
    attempts = start(lab, apps, "attempts", "--every", "0.1", "--timeout", "10")
    session = start(lab, apps, "session")
    assert session.wait(echo_via(eth0), 10.0)
    lab.fault("eth0", fault)
    started = time.time()  # in effect by now: for link-down, lab.fault waits for the carrier loss
    switch = daemon.wait_for(is_event("switch", **{"from": "eth0"}), 8.0, "switch away from eth0")
    moved = float(switch["ts"])
    # A new connection by name, started after the switch, through wlan0 and its resolver.
    ok = attempts.wait(lambda e: e["event"] == "ok" and e["started"] >= moved and e["local"] == wlan0, 5.0)
    assert ok is not None, "no new connection by name through wlan0"
    back = session.wait(echo_via(wlan0), 5.0)
    assert back is not None, "the session did not come back through wlan0"
    # Within a second of the switch (link loss: of the fault, which the daemon sees in milliseconds).
    assert ok["t"] - moved < 1.0 and back["t"] - moved < 1.0, (ok["t"] - moved, back["t"] - moved)
    if fault == "link-down":
        assert back["t"] - carrier_lost(daemon, started) < 1.0
