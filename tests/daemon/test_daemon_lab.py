"""`impctl daemon` against the lab's real NetworkManager (a subprocess in the gateway netns).

Short intervals from a test config (labdaemon.FAST_DAEMON: probe every 1 s,
2 failures, hold 3 s, dwell 2 s) keep these fast. "Traffic" is where the
kernel sends unbound packets: the default route with the lowest metric.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from labdaemon import DaemonProcess, is_event, primary_uplink, restart_networkmanager, settles, write_config

from impctl.backends.statefile import load_state, update_state
from impctl.lab import Lab
from impctl.model.codes import ExitCode
from impctl.model.state import Pin, State

pytestmark = pytest.mark.lab

FAST = 1.0  # probe_interval_s
FAILURES = 2
HOLD = 3.0


def daemon_view(state: Path) -> dict[str, Any]:
    view = load_state(state).daemon
    assert view is not None, "the daemon published no view"
    return view.to_json()


def test_link_down_on_the_primary_moves_traffic_to_the_next_uplink(lab: Lab, daemon: DaemonProcess) -> None:
    assert primary_uplink(lab) == "eth0"
    lab.fault("eth0", "link-down")
    event = daemon.wait_for(is_event("connected", ifname="wlan0"), 5.0, "failover to wlan0")
    assert event["from"] == "eth0" and "no carrier" in event["reason"]
    assert float(event["took_ms"]) < 1000  # "about a second", measured from the netlink event
    assert primary_uplink(lab) == "wlan0"
    # Verified before declared connected: the verification probe came first.
    verify = [e for e in daemon.events("probe") if e.get("ifname") == "wlan0" and e.get("purpose") == "verify"]
    assert verify and verify[-1]["ok"] == "true"
    time.sleep(PUBLISH_WAIT_S)
    view = daemon_view(daemon.state_path)
    assert view["active"] == "wlan0" and view["phase"] == "connected"
    health = {u["ifname"]: u["health"] for u in view["uplinks"]}  # type: ignore[attr-defined]
    assert health["eth0"] == "down" and health["wlan0"] == "up"
    last = view["switches"][-1]  # type: ignore[index]
    assert (last["from"], last["to"], last["verified"]) == ("eth0", "wlan0", True)
    current = load_state(daemon.state_path).current
    assert current is not None and current.ifname == "wlan0" and current.by == "daemon"
    # impctl status shows the daemon's view next to NetworkManager's.
    status = lab.run([sys.executable, "-m", "impctl", "--state", str(daemon.state_path), "status", "--json"])
    shown = json.loads(status.stdout)["data"]["daemon"]
    assert shown["running"] is True and shown["active"] == "wlan0"
    assert shown["switches"][-1]["to"] == "wlan0"
    assert "wlan0" in lab.run([sys.executable, "-m", "impctl", "--state", str(daemon.state_path), "status"]).stdout


PUBLISH_WAIT_S = 0.3


def test_blackhole_on_the_primary_moves_within_interval_times_failures(lab: Lab, daemon: DaemonProcess) -> None:
    started = time.time()
    lab.fault("eth0", "blackhole")
    switch = daemon.wait_for(is_event("switch", **{"from": "eth0"}), 6.0, "switch away from eth0")
    took = float(switch["ts"]) - started
    # interval x failures, plus one liveness probe's budget (interval / failures) of slack.
    assert took <= FAST * FAILURES + FAST / FAILURES + 0.3, took
    assert switch["to"] == "wlan0" and "2 probes failed" in switch["reason"]
    daemon.wait_for(is_event("connected", ifname="wlan0"), 3.0, "wlan0 verified")
    assert primary_uplink(lab) == "wlan0"
    # Not before the second failure: one lost probe is not a dead uplink.
    failures = [e for e in daemon.events("probe") if e.get("ifname") == "eth0" and e.get("ok") == "false"]
    assert len(failures) >= FAILURES


def test_restore_fails_back_after_the_hold_time(lab: Lab, daemon: DaemonProcess) -> None:
    lab.fault("eth0", "link-down")
    daemon.wait_for(is_event("connected", ifname="wlan0"), 5.0, "failover to wlan0")
    lab.restore("eth0")
    usable = daemon.wait_for(lambda e: e.get("event") == "health" and e.get("ifname") == "eth0"
                             and e.get("old") == "down", 10.0, "eth0 usable again")
    back = daemon.wait_for(is_event("connected", ifname="eth0"), HOLD + 8.0, "failback to eth0")
    assert back["from"] == "wlan0" and back["reason"].startswith("failback")
    held = float(back["ts"]) - float(usable["ts"])
    assert HOLD <= held <= HOLD + 2 * FAST, held
    assert primary_uplink(lab) == "eth0"
    # The uplink it replaces gets its own metric back just after the traffic moved.
    daemon.wait_for(is_event("route", ifname="wlan0", role="standby"), 5.0, "wlan0 put back")
    # NM syncs the kernel's routes just after its Reapply answer.
    assert settles(lambda: {r["dev"]: r["metric"] for r in lab.default_routes()}.get("wlan0") == 600)


def test_link_flapping_every_second_for_30_s_switches_only_as_hysteresis_allows(
        lab: Lab, daemon: DaemonProcess) -> None:
    """The link changes state every second for 30 s.

    The kernel delivers carrier changes of a flapping link late (rate-limited
    linkwatch) and may fold a short down/up into none, so how many flaps the
    gateway sees varies; the bound does not: at most one switch away while it
    flaps (each loss restarts the failback hold) and one back once steady.
    """
    isp = lab.uplink("eth0").isp_netns
    end = time.monotonic() + 30.0
    up = False
    last_up = time.time()
    while time.monotonic() < end:
        subprocess.run(["ip", "-n", isp, "link", "set", "down0", "up" if up else "down"], check=True)
        if up:
            last_up = time.time()
        up = not up
        time.sleep(1.0)
    if up:  # the last toggle took it down: bring it up for good
        subprocess.run(["ip", "-n", isp, "link", "set", "down0", "up"], check=True)
        last_up = time.time()
    away = [e for e in daemon.events("switch") if e.get("from") == "eth0"]
    back = [e for e in daemon.events("switch") if e.get("to") == "eth0" and e.get("from")]
    assert len(away) <= 1, away
    assert back == [], back  # never handed back while it flaps
    downs = [e for e in daemon.events("link") if e.get("ifname") == "eth0" and e.get("state") == "down"]
    assert len(downs) >= 3, "the gateway did not see the link flap"
    assert len(away) == 1  # it did see it go: the traffic moved off it once
    lab.wait_uplinks(["eth0"])
    event = daemon.wait_for(is_event("connected", ifname="eth0"), HOLD + 8.0, "failback once steady")
    # Steady from its last carrier-up on: back after the hold, not before.
    assert float(event["ts"]) - last_up >= HOLD - 0.1
    assert len([e for e in daemon.events("switch") if e.get("from")]) == 2
    assert primary_uplink(lab) == "eth0"


def test_networkmanager_restart_mid_run_is_survived(lab: Lab, daemon: DaemonProcess) -> None:
    restart_networkmanager(lab)
    daemon.wait_for(is_event("nm-started"), 10.0, "NetworkManager seen back")
    daemon.wait_for(is_event("route", ifname="eth0", role="primary"), 10.0, "primary metric re-applied")
    assert daemon.proc.poll() is None
    assert primary_uplink(lab) == "eth0"
    # One default route per uplink again: no stray route from before the restart.
    assert settles(lambda: sorted((r["dev"], r["metric"]) for r in lab.default_routes())
                   == [("eth0", 20), ("wlan0", 600), ("wwan0", 700)])
    # And it still fails over through the new NetworkManager.
    lab.fault("eth0", "link-down")
    daemon.wait_for(is_event("connected", ifname="wlan0"), 5.0, "failover after the restart")
    assert primary_uplink(lab) == "wlan0"
    assert daemon.stop() == 0


def test_manual_mode_reports_loss_and_does_not_switch(lab: Lab, files: tuple[Path, Path]) -> None:
    config, state = files

    def pin(s: State) -> None:
        s.pinned = Pin("eth0")

    update_state(state, pin)
    proc = DaemonProcess(lab, config, state)
    try:
        proc.wait_for(is_event("connected", ifname="eth0"), 15.0, "connected through the pinned eth0")
        lab.fault("eth0", "link-down")
        lost = proc.wait_for(is_event("lost", ifname="eth0"), 5.0, "loss reported")
        assert "manual mode" in lost["reason"]
        time.sleep(2 * FAST)
        assert proc.events("switch") == [] and proc.events("route") == []
        assert {r["dev"]: r["metric"] for r in lab.default_routes()}.get("wlan0") == 600
        time.sleep(PUBLISH_WAIT_S)
        view = daemon_view(state)
        assert view["mode"] == "manual" and view["phase"] == "lost" and view["active"] == "eth0"
        lab.restore("eth0")
        proc.wait_for(is_event("connected", ifname="eth0", reason="recovered"), 10.0, "recovery reported")
        assert proc.events("switch") == []
    finally:
        assert proc.stop() == 0


def test_sighup_reloads_the_sequence_and_hooks_run_on_a_switch(lab: Lab, tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    out = tmp_path / "hook.out"
    script = hooks / "10-record"
    script.write_text(f"#!/bin/sh\necho \"$IMPCTL_EVENT $IMPCTL_FROM $IMPCTL_TO $IMPCTL_REASON\" >> {out}\n")
    script.chmod(0o755)
    config = write_config(lab, tmp_path / "impctl.toml", daemon={"hooks_dir": str(hooks)})
    state = tmp_path / "state" / "state.json"
    proc = DaemonProcess(lab, config, state)
    try:
        proc.wait_for(is_event("connected", ifname="eth0"), 15.0, "start")

        def prefer_wifi(s: State) -> None:
            s.set_sequence(["wifi", "ethernet"])

        update_state(state, prefer_wifi)
        proc.signal(signal.SIGHUP)
        proc.wait_for(is_event("plan", order="wlan0,eth0,wwan0"), 5.0, "new order after SIGHUP")
        # The new first choice takes over after its hold, as a failback.
        event = proc.wait_for(is_event("connected", ifname="wlan0"), HOLD + 8.0, "wlan0 preferred")
        assert event["from"] == "eth0"
        assert primary_uplink(lab) == "wlan0"
        proc.wait_for(is_event("hook", hook="10-record"), 5.0, "the hook ran")
        lines = out.read_text().splitlines()
        assert lines and lines[-1].startswith("switch eth0 wlan0 failback")
    finally:
        assert proc.stop() == 0
    view = json.loads(state.read_text())["daemon"]
    assert view["running"] is False  # SIGTERM: a clean stop, recorded
    assert proc.events("stopped")


def test_sighup_with_a_broken_config_keeps_the_old_one_and_keeps_running(lab: Lab, tmp_path: Path) -> None:
    config = write_config(lab, tmp_path / "impctl.toml")
    good = config.read_text()
    state = tmp_path / "state" / "state.json"
    proc = DaemonProcess(lab, config, state)
    try:
        proc.wait_for(is_event("connected", ifname="eth0"), 15.0, "start")
        write_config(lab, tmp_path / "wrong-type.toml", daemon={"probe_interval_s": "often"})
        for broken, named in (((tmp_path / "wrong-type.toml").read_text(), "daemon.probe_interval_s"),
                              (good + "[daemon\n", "not valid TOML")):
            config.write_text(broken)
            proc.signal(signal.SIGHUP)
            error = proc.wait_for(is_event("reload-error"), 5.0, "reload-error after SIGHUP")
            assert named in error["reason"] and "\n" not in error["reason"]
        config.unlink()  # gone (the path was given explicitly): an unreadable config
        proc.signal(signal.SIGHUP)
        error = proc.wait_for(is_event("reload-error"), 5.0, "reload-error for a missing file")
        assert "does not exist" in error["reason"]
        assert proc.proc.poll() is None
        # Still at work on the settings it had: failover within the old probe interval.
        lab.fault("eth0", "blackhole")
        switch = proc.wait_for(is_event("switch", **{"from": "eth0"}), 6.0, "failover on the old settings")
        assert f"{FAILURES} probes failed" in switch["reason"]
    finally:
        assert proc.stop() == 0


def test_start_with_a_broken_config_exits_with_the_config_code_in_one_line(lab: Lab, tmp_path: Path) -> None:
    config = tmp_path / "impctl.toml"
    config.write_text(lab.config_path.read_text() + "\n[daemon]\nfailback = \"yes\"\n")
    argv = lab.exec_argv([sys.executable, "-m", "impctl", "daemon"])
    env = {**lab.env(), "IMPCTL_CONFIG": str(config), "IMPCTL_STATE": str(tmp_path / "state.json")}
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env},
                          timeout=20)
    assert done.returncode == int(ExitCode.STATE_ERROR), done
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "daemon.failback" in lines[0], done.stderr


def test_the_lan_port_is_no_uplink_of_the_daemon(lab: Lab, daemon: DaemonProcess) -> None:
    assert settles(lambda: daemon.state_path.exists() and load_state(daemon.state_path).daemon is not None)
    view = daemon_view(daemon.state_path)
    assert [u["ifname"] for u in view["uplinks"]] == ["eth0", "wlan0", "wwan0"]  # type: ignore[attr-defined]
    # The LAN losing its carrier is nothing the daemon switches for, or even logs as a link.
    subprocess.run(["ip", "-n", lab.lan_netns, "link", "set", lab.lan_device_ifname, "down"], check=True)
    try:
        assert settles(lambda: not lab.carriers().get(lab.lan_ifname, True))
        time.sleep(FAST * (FAILURES + 1))
    finally:
        subprocess.run(["ip", "-n", lab.lan_netns, "link", "set", lab.lan_device_ifname, "up"],
                       check=True)
    assert not [e for e in daemon.lines if e.get("ifname") == lab.lan_ifname]
    # The only switch is the one at start, onto eth0.
    assert [e.get("from") for e in daemon.events("switch")] == [None]
    assert primary_uplink(lab) == "eth0"
