"""The daemon's fleet metrics as pure values (impctl.model.metrics), from a real FailoverPolicy.

The policy is driven by hand through a start, a carrier loss and a failback,
as the daemon drives it; the tally hears the same actions. Then the families
are checked by name, label and value, and against Prometheus's conventions.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from impctl.model.codes import ResultCode
from impctl.model.config import DaemonSettings
from impctl.model.failover import Action, FailoverPolicy, Health, Purpose, Switch, UplinkSpec
from impctl.model.metrics import (
    PROBE_STAGE_BYTES,
    SWITCH_REASONS,
    BuildInfo,
    Family,
    MetricsTally,
    daemon_families,
    probe_bytes,
    switch_reason,
)
from impctl.model.netfacts import Counters
from impctl.model.probe import InterfaceProbe, Stage, StageResult, conclude

ETH = UplinkSpec("eth0", "eth0", "ethernet")
WL = UplinkSpec("wlan0", "wl0", "wifi")
SETTINGS = DaemonSettings(probe_interval_s=1.0, failback_hold_s=3.0, min_switch_interval_s=1.0)
WALL0 = 1_800_000_000.0  # Unix time at monotonic 0


def result(spec: UplinkSpec, ok: bool, *, tls: bool = False) -> InterfaceProbe:
    stages = [StageResult(Stage.LINK, True, 0.1, "carrier"), StageResult(Stage.ADDRESS, True, 0.1, "addr"),
              StageResult(Stage.DNS, True, 2.5, "answered")]
    stages.append(StageResult(Stage.TCP, ok, 1.5 if ok else 500.0, "connected" if ok else "timed out"))
    if tls and ok:
        stages.append(StageResult(Stage.TLS, True, 12.0, "TLSv1.3"))
    return conclude(spec.identifier, spec.ifname, spec.iface_class, stages, via_modem=False,
                    duration_ms=sum(s.duration_ms for s in stages))


class Driven:
    """A policy and a tally fed the same way the daemon feeds them."""

    def __init__(self) -> None:
        self.policy = FailoverPolicy(SETTINGS, [ETH, WL])
        self.tally = MetricsTally()
        self.specs = {ETH.ifname: ETH, WL.ifname: WL}

    def feed(self, actions: list[Action], now: float) -> list[Action]:
        self.tally.on_actions(actions, now)
        for a in actions:
            if isinstance(a, Switch):
                self.feed(self.policy.routes_applied(a.to_ifname, now), now)
        return actions

    def probe(self, ifname: str, ok: bool, now: float, purpose: Purpose) -> list[Action]:
        self.policy.probe_started(ifname, now - 0.01, purpose)
        r = result(self.specs[ifname], ok, tls=purpose == Purpose.VERIFY)
        self.tally.on_probe(ifname, purpose, r, now)
        return self.feed(self.policy.on_probe(ifname, ok, now, code=int(r.code), reason=r.reason,
                                              purpose=purpose), now)

    def families(self, now: float, counters: dict[str, Counters] | None = None) -> dict[str, Family]:
        fams = daemon_families(self.policy, self.tally, now=now, wall_now=WALL0 + now, started_wall=WALL0,
                               counters=counters or {}, build=BuildInfo("0.1.0", "3.11.2"))
        return {f.name: f for f in fams}


def value(fam: Family, **labels: str) -> float:
    found = [s.value for s in fam.samples if all(dict(s.labels).get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (fam.name, labels, fam.samples)
    return found[0]


def started() -> Driven:
    d = Driven()
    for spec in (ETH, WL):
        d.feed(d.policy.on_link(spec.ifname, True, 0.0), 0.0)
        d.feed(d.policy.on_ip(spec.ifname, True, 0.0), 0.0)
    d.feed(d.policy.start(0.0), 0.0)
    d.probe("eth0", True, 0.05, Purpose.VERIFY)
    d.probe("wlan0", True, 0.06, Purpose.STANDBY)
    return d


def test_a_started_daemon_exports_its_uplinks_and_the_start() -> None:
    d = started()
    f = d.families(10.0, {"eth0": Counters(1000, 2000, 10, 20)})
    assert value(f["impctl_active_uplink"], ifname="eth0", identifier="eth0", **{"class": "ethernet"}) == 1
    assert value(f["impctl_active_uplink"], ifname="wlan0") == 0
    assert value(f["impctl_uplink_up"], ifname="eth0") == 1
    assert value(f["impctl_uplink_health"], ifname="eth0", state="up") == 1
    assert value(f["impctl_uplink_health"], ifname="eth0", state="down") == 0
    assert value(f["impctl_uplink_last_probe_code"], ifname="eth0") == int(ResultCode.SERVER_CONNECTED)
    assert value(f["impctl_uplink_last_probe_success"], ifname="eth0") == 1
    assert value(f["impctl_uplink_last_probe_timestamp_seconds"], ifname="eth0") == WALL0 + 0.05
    assert value(f["impctl_uplink_last_probe_stage_seconds"], ifname="eth0", stage="tls") == 0.012
    assert value(f["impctl_uplink_last_probe_duration_seconds"], ifname="eth0") == pytest.approx(0.0162)
    assert value(f["impctl_uplink_probes"], ifname="eth0", purpose="verify", result="ok") == 1
    assert value(f["impctl_uplink_probes"], ifname="wlan0", purpose="standby", result="ok") == 1
    assert value(f["impctl_uplink_probes"], ifname="eth0", purpose="liveness", result="failed") == 0
    assert value(f["impctl_uplink_probe_bytes"], ifname="eth0") == 3055  # the lab's figure with TLS
    assert value(f["impctl_uplink_probe_bytes"], ifname="wlan0") == 574  # and without
    assert value(f["impctl_uplink_receive_bytes"], ifname="eth0") == 1000
    assert value(f["impctl_uplink_transmit_bytes"], ifname="eth0") == 2000
    assert [s.labels for s in f["impctl_uplink_receive_bytes"].samples] == [
        (("ifname", "eth0"), ("identifier", "eth0"), ("class", "ethernet"))]  # no counters read: no sample
    assert value(f["impctl_switches"], reason="start") == 1
    assert {dict(s.labels)["reason"] for s in f["impctl_switches"].samples} == set(SWITCH_REASONS)
    assert value(f["impctl_daemon_phase"], phase="connected") == 1
    assert value(f["impctl_last_switch_duration_seconds"]) == pytest.approx(0.05)
    assert value(f["impctl_last_switch_timestamp_seconds"]) == WALL0
    assert value(f["impctl_build_info"], version="0.1.0", python="3.11.2") == 1
    assert value(f["impctl_up"]) == 1
    assert "impctl_last_switch_flows_ended" not in f  # nothing ended yet


def test_a_carrier_loss_counts_a_switch_and_moves_the_active_uplink() -> None:
    d = started()
    d.policy.switches[-1].sessions_ended = None
    d.feed(d.policy.on_link("eth0", False, 20.0), 20.0)
    d.probe("wlan0", True, 20.03, Purpose.VERIFY)
    d.policy.switches[-1].sessions_ended = (3, 2, 0.0173)  # as the daemon records it
    f = d.families(25.0)
    assert value(f["impctl_switches"], reason="no_carrier") == 1
    assert value(f["impctl_active_uplink"], ifname="wlan0") == 1
    assert value(f["impctl_active_uplink"], ifname="eth0") == 0
    assert value(f["impctl_uplink_health"], ifname="eth0", state="down") == 1
    assert value(f["impctl_uplink_up"], ifname="eth0") == 0
    # Down since the loss at 20.0, as the HealthChange said: 5 s at 25.0.
    assert value(f["impctl_uplink_health_seconds"], ifname="eth0") == 5.0
    assert value(f["impctl_last_switch_duration_seconds"]) == pytest.approx(0.03)
    assert value(f["impctl_last_switch_timestamp_seconds"]) == WALL0 + 20.0
    assert value(f["impctl_last_switch_flows_ended"], kind="socket") == 3
    assert value(f["impctl_last_switch_flows_ended"], kind="conntrack") == 2
    assert value(f["impctl_last_switch_flows_ended_seconds"]) == 0.0173


def test_failback_and_failed_probes_have_their_own_reasons() -> None:
    d = started()
    d.feed(d.policy.on_link("eth0", False, 20.0), 20.0)
    d.probe("wlan0", True, 20.03, Purpose.VERIFY)
    d.feed(d.policy.on_link("eth0", True, 21.0), 21.0)
    d.feed(d.policy.on_ip("eth0", True, 21.0), 21.0)
    switched = d.probe("eth0", True, 24.5, Purpose.STANDBY)  # healthy for the 3 s hold
    assert any(isinstance(a, Switch) and a.failback for a in switched)
    d.probe("eth0", True, 24.55, Purpose.VERIFY)
    d.probe("eth0", False, 30.0, Purpose.LIVENESS)
    d.probe("eth0", False, 30.5, Purpose.LIVENESS)  # the second in a row: failed over
    d.probe("wlan0", True, 30.55, Purpose.VERIFY)
    f = d.families(31.0)
    assert value(f["impctl_switches"], reason="failback") == 1
    assert value(f["impctl_switches"], reason="probes_failed") == 1
    assert value(f["impctl_uplink_probes"], ifname="eth0", purpose="liveness", result="failed") == 2
    assert value(f["impctl_uplink_last_probe_code"], ifname="eth0") == int(ResultCode.NO_SERVER)
    assert value(f["impctl_uplink_last_probe_success"], ifname="eth0") == 0
    assert value(f["impctl_uplink_health"], ifname="eth0", state="failed") == 1
    assert value(f["impctl_active_uplink"], ifname="wlan0") == 1


def test_health_seconds_of_a_change_not_seen_as_an_action_count_from_the_first_look() -> None:
    d = Driven()
    d.policy.on_link("eth0", True, 0.0)  # the daemon's initial facts: their actions are not fed
    assert value(d.families(5.0)["impctl_uplink_health_seconds"], ifname="eth0") == 0.0
    assert value(d.families(7.5)["impctl_uplink_health_seconds"], ifname="eth0") == 2.5
    assert d.policy.health("eth0") == Health.DOWN


def test_an_uplink_gone_from_the_plan_leaves_no_series() -> None:
    d = started()
    d.policy.set_uplinks([WL])
    f = d.families(10.0)
    assert {dict(s.labels)["ifname"] for s in f["impctl_uplink_probes"].samples} == {"wlan0"}
    assert "eth0" not in d.tally.uplinks


@pytest.mark.parametrize(("reason", "failback", "kind"), [
    ("start", False, "start"),
    ("recovered", False, "recovered"),
    ("eth0: no carrier", False, "no_carrier"),
    ("eth0: no IPv4 address or default route", False, "no_address"),
    ("eth0: 2 probes failed in a row: tcp: timed out", False, "probes_failed"),
    ("eth0: 1 probe failed in a row: dns: no answer", False, "probes_failed"),
    ("eth0: verification probe failed: tls: bad certificate", False, "verify_failed"),
    ("failback: eth0 healthy for 30 s", True, "failback"),
    ("eth0: not ready", False, "other"),
    ("eth0: no carrier", True, "failback"),
])
def test_switch_reasons_are_a_bounded_set(reason: str, failback: bool, kind: str) -> None:
    assert switch_reason(reason, failback=failback) == kind
    assert kind in SWITCH_REASONS


def test_probe_bytes_count_only_the_stages_run() -> None:
    assert probe_bytes(None) == 0
    no_link = conclude("eth0", "eth0", "ethernet", [StageResult(Stage.LINK, False, 0.1, "no carrier")],
                       via_modem=False, duration_ms=0.1)
    assert probe_bytes(no_link) == 0
    assert probe_bytes(result(ETH, True)) == PROBE_STAGE_BYTES[Stage.DNS] + PROBE_STAGE_BYTES[Stage.TCP] == 574
    assert probe_bytes(result(ETH, True, tls=True)) == 3055
    skipped = replace(result(ETH, True), stages=(StageResult(Stage.DNS, True, 1.0, "x", skipped=True),))
    assert probe_bytes(skipped) == 0


NAME = re.compile(r"^impctl_[a-z_]+$")
UNIT_SUFFIXES = ("_seconds", "_bytes", "_info", "_code", "_success", "_up", "_health", "_phase", "_uplink",
                 "_ended", "_probes", "_switches")


def test_names_follow_prometheus_conventions() -> None:
    d = started()
    fams = list(d.families(10.0, {"eth0": Counters(1, 2, 3, 4), "wlan0": Counters(1, 2, 3, 4)}).values())
    names = [f.name for f in fams]
    assert len(names) == len(set(names))
    for f in fams:
        assert NAME.match(f.name), f.name
        assert not f.name.endswith("_total"), "the exposition adds _total to counters"
        assert f.name.endswith(UNIT_SUFFIXES) or f.name == "impctl_up", f.name
        assert f.kind in ("gauge", "counter") and f.help.endswith((".", ")")), f.name
        if "_timestamp_" in f.name or f.name.endswith("_time_seconds"):
            assert f.kind == "gauge"
        keys = {tuple(k for k, _ in s.labels) for s in f.samples}
        assert len(keys) <= 1, f"{f.name}: every sample has the same label names"
        for s in f.samples:
            assert s.value == s.value and s.value >= 0, (f.name, s)  # no NaN, nothing negative
        if f.kind == "counter":
            assert all(float(s.value).is_integer() for s in f.samples)
