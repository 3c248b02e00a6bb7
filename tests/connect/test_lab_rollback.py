"""connectwith's undo is NetworkManager's checkpoint, against the lab's real NetworkManager.

A failed attempt rolls back at once (CheckpointRollback); an impctl killed
mid-attempt is rolled back by NM itself when the checkpoint's timeout
expires. Each test starts from a reset lab (three uplinks on their lab
profiles, metrics 100/600/700).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from impctl.backends.nm.trial import rollback_timeout_s
from impctl.lab import Lab

pytestmark = pytest.mark.lab

ATTEMPT_TIMEOUT_S = 8.0


def impctl(lab: Lab, *args: str, nic: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    argv = [sys.executable, "-m", "impctl", *args, "--nic", "-", "--json"]
    proc = lab.run(argv, input=json.dumps(nic), timeout=90)
    print(proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def routes(lab: Lab) -> dict[str, int]:
    return {r["dev"]: r.get("metric", 0) for r in lab.default_routes()}


def keyfiles(lab: Lab) -> set[str]:
    return {p.name for p in lab.keyfile_dir.iterdir()}


def static_nic(lab: Lab, ifname: str, ident: str, host: int) -> dict[str, Any]:
    u = lab.uplink(ifname)
    prefix = u.subnet.rsplit(".", 1)[0]
    return {"interface": ident, "staticconfig": {"ip": f"{prefix}.{host}", "netmask": "255.255.255.0",
                                                 "gateway": u.router_ip, "dns": [u.router_ip]}}


def wait_until(lab: Lab, what: str, timeout_s: float, done: Any) -> float:
    """Poll `done()` until true; the monotonic time it became true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done():
            return time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout_s:g} s; NM's devices: {lab.nm_devices()}")


def test_failed_attempt_over_a_volatile_profile_gives_it_back_in_memory(lab: Lab) -> None:
    rc, _ = impctl(lab, "connectwith", nic={"interface": "wl0"})
    assert rc == 0
    # wlan0 is now on impctl's volatile profile (DHCP), the primary uplink.
    before = (lab.nm_devices()["wlan0"], routes(lab), lab.addresses()["wlan0"], keyfiles(lab))
    assert before[0] == ("connected", "impctl-wlan0")
    lab.fault("wlan0", "cloud-closed")
    rc, doc = impctl(lab, "connectwith", "--timeout", "20", nic=static_nic(lab, "wlan0", "wl0", 78))
    assert rc == 10 + 4, doc  # NO_SERVER
    assert doc["data"]["attempts"][0]["stage"] == "cloud"
    # The rollback re-added the profile NM had deleted with the attempt: same
    # profile, its DHCP address and metric, and still not on disk (NM 1.42
    # writes a re-added profile to disk; the trial moves it back to memory).
    after = (lab.nm_devices()["wlan0"], routes(lab), lab.addresses()["wlan0"], keyfiles(lab))
    assert after == before
    out = lab.nmcli("-t", "-f", "NAME,FILENAME", "connection", "show").stdout
    assert "impctl-wlan0:/run/NetworkManager/system-connections/impctl-wlan0.nmconnection" in out.splitlines()


def test_killed_connectwith_is_rolled_back_by_networkmanager(lab: Lab) -> None:
    before = (lab.nm_devices(), routes(lab), lab.addresses(), keyfiles(lab))
    # Static addressing, so the activation succeeds; the blackhole makes the cloud check hang.
    lab.fault("wlan0", "blackhole")
    nic = static_nic(lab, "wlan0", "wl0", 79)
    argv = lab.exec_argv([sys.executable, "-m", "impctl", "connectwith", "--timeout", f"{ATTEMPT_TIMEOUT_S:g}",
                          "--nic", "-", "--json"])
    env = {**os.environ, **lab.env()}
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    try:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(nic))
        proc.stdin.close()
        started = time.monotonic()
        wait_until(lab, "the trial's profile active", ATTEMPT_TIMEOUT_S,
                   lambda: lab.nm_devices().get("wlan0") == ("connected", "impctl-wlan0"))
        activated = time.monotonic()
        assert proc.poll() is None, "connectwith ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    # impctl is gone; nothing but NM's checkpoint timeout can undo the attempt.
    assert lab.nm_devices()["wlan0"] == ("connected", "impctl-wlan0")
    assert routes(lab)["wlan0"] == 20000  # the trial's metric
    rollback_s = rollback_timeout_s(ATTEMPT_TIMEOUT_S)
    # Back on its own profile (still under the blackhole, so maybe still waiting for DHCP).
    lab_profile = before[0]["wlan0"][1]
    restored = wait_until(lab, "NM's rollback", rollback_s + 5.0,
                          lambda: lab.nm_devices().get("wlan0", ("", ""))[1] == lab_profile)
    print(f"activation seen {activated - started:.2f} s after start, killed {killed - activated:.2f} s later, "
          f"rolled back {restored - killed:.2f} s after the kill, {restored - started:.2f} s after start "
          f"(rollback timeout {rollback_s} s)")
    # At once: the trial's volatile profile, its static address and its route are gone.
    assert "impctl-wlan0" not in lab.nmcli("-t", "-f", "NAME", "connection", "show").stdout.split()
    assert nic["staticconfig"]["ip"] + "/24" not in lab.addresses().get("wlan0", [])
    assert routes(lab).get("wlan0") in (None, before[1]["wlan0"])
    # NM's timer, not anything else: not before the checkpoint could have expired.
    assert restored - started >= rollback_s - 1.0
    # Lifting the fault lets the lab profile's DHCP finish: everything as before.
    lab.restore("wlan0")
    assert (lab.nm_devices(), routes(lab), lab.addresses(), keyfiles(lab)) == before


def nm_call(lab: Lab, method: str, signature: str, *args: str) -> str:
    """A call on NM's manager object with busctl (not impctl's D-Bus code)."""
    proc = subprocess.run(["busctl", f"--address={lab.bus_address}", "call", "org.freedesktop.NetworkManager",
                           "/org/freedesktop/NetworkManager", "org.freedesktop.NetworkManager", method,
                           signature, *args], capture_output=True, text=True, timeout=20, check=True)
    return proc.stdout.strip()


def test_when_another_checkpoint_holds_the_device_the_snapshot_undoes_the_attempt(lab: Lab) -> None:
    before = (lab.nm_devices(), routes(lab), lab.addresses(), keyfiles(lab))
    device = lab.nmcli("-g", "GENERAL.DBUS-PATH", "device", "show", "wlan0").stdout.strip()
    # Someone else's (nmstate's, say) pending rollback on wlan0: NM refuses impctl an overlapping one.
    reply = nm_call(lab, "CheckpointCreate", "aouu", "1", device, "120", "0")
    theirs = reply.split()[-1].strip('"')
    assert theirs.startswith("/org/freedesktop/NetworkManager/Checkpoint/"), reply
    try:
        lab.fault("wlan0", "cloud-closed")
        rc, doc = impctl(lab, "connectwith", "--timeout", "20", nic=static_nic(lab, "wlan0", "wl0", 80))
        assert rc == 10 + 4, doc
        # Back at once, by impctl's snapshot (cloud-closed leaves DHCP alone: nothing for the lab to heal).
        assert (lab.nm_devices(), routes(lab), lab.addresses(), keyfiles(lab)) == before
    finally:
        nm_call(lab, "CheckpointDestroy", "o", theirs)


def test_an_impctl_profile_left_on_disk_goes_back_to_memory(lab: Lab) -> None:
    original = keyfiles(lab)
    rc, _ = impctl(lab, "connectwith", nic={"interface": "wl0"})
    assert rc == 0
    # What NM's timeout rollback of a killed impctl leaves when the previous profile was
    # impctl's volatile one: that profile re-added on disk. nmcli's modify writes it there too.
    lab.nmcli("connection", "modify", "impctl-wlan0", "connection.autoconnect", "no")
    assert keyfiles(lab) == original | {"impctl-wlan0.nmconnection"}
    lab.fault("wlan0", "cloud-closed")
    rc, doc = impctl(lab, "connectwith", "--timeout", "20", nic=static_nic(lab, "wlan0", "wl0", 82))
    assert rc == 10 + 4, doc
    assert lab.nm_devices()["wlan0"] == ("connected", "impctl-wlan0")
    assert keyfiles(lab) == original


def test_a_connectwith_right_after_a_killed_one_waits_for_its_rollback_and_then_stays(lab: Lab) -> None:
    # A connectwith killed mid-attempt leaves NM's checkpoint of wlan0 pending.
    lab.fault("wlan0", "blackhole")
    argv = lab.exec_argv([sys.executable, "-m", "impctl", "connectwith", "--timeout", f"{ATTEMPT_TIMEOUT_S:g}",
                          "--nic", "-", "--json"])
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            text=True, env={**os.environ, **lab.env()}, start_new_session=True)
    try:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(static_nic(lab, "wlan0", "wl0", 83)))
        proc.stdin.close()
        wait_until(lab, "the trial's profile active", ATTEMPT_TIMEOUT_S,
                   lambda: lab.nm_devices().get("wlan0") == ("connected", "impctl-wlan0"))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    killed = time.monotonic()
    lab.restore("wlan0")
    # At once a new connectwith on the same device: it must not start over the pending
    # checkpoint (whose expiry would undo it), but wait until NM has rolled that back.
    rc, doc = impctl(lab, "connectwith", "--timeout", "60", nic={"interface": "wl0"})
    done = time.monotonic()
    assert rc == 0, doc
    assert done - killed >= rollback_timeout_s(ATTEMPT_TIMEOUT_S) - 2.0
    # And it stays: past the old checkpoint's time, wlan0 is still impctl's and the primary.
    time.sleep(3.0)
    assert lab.nm_devices()["wlan0"] == ("connected", "impctl-wlan0")
    assert min(routes(lab), key=lambda dev: routes(lab)[dev]) == "wlan0"
    print(f"the second connectwith finished {done - killed:.1f} s after the kill")
