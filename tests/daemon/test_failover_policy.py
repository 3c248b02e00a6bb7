"""The pure failover policy (impctl.model.failover), driven by a simulated clock.

`World` plays the network: per uplink, whether the link is up and whether the
cloud answers through it. `Sim` runs the policy against it the way the daemon
does: link changes become `on_link`/`on_ip`, due probes complete after a
short latency with what the world says at that moment, a switch's routes are
in place (`routes_applied`) a moment after it, and time jumps to the next
event or to `next_deadline` (never polling).
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest

from impctl.model.config import DaemonSettings
from impctl.model.failover import (
    Connected,
    FailoverPolicy,
    Health,
    HealthChange,
    Lost,
    Phase,
    Purpose,
    Switch,
    UplinkSpec,
    pinned_uplink,
    plan_uplinks,
    probes_per_day,
)
from impctl.model.inventory import DeviceInfo

ETH = UplinkSpec("eth0", "eth0", "ethernet")
WL = UplinkSpec("wlan0", "wl0", "wifi")
CELL = UplinkSpec("wwan0", "cell0", "cell")
ORDER = [ETH, WL, CELL]

FAST = DaemonSettings(
    probe_interval_s=1.0, probe_failures=2, standby_probe_interval_s=5.0,
    cell_standby_probe_interval_s=20.0, cell_probe_interval_s=4.0, failback=True,
    failback_hold_s=3.0, min_switch_interval_s=2.0,
)
PROBE_LATENCY_S = 0.02
ROUTE_LATENCY_S = 0.005  # NM's Reapply and the kernel's route: usually before the probe is back


@dataclass
class World:
    link: dict[str, bool] = field(default_factory=lambda: {u.ifname: True for u in ORDER})
    reachable: dict[str, bool] = field(default_factory=lambda: {u.ifname: True for u in ORDER})


class Sim:
    def __init__(self, policy: FailoverPolicy, world: World | None = None, start: float = 0.0,
                 route_latency_s: float = ROUTE_LATENCY_S) -> None:
        self.policy = policy
        self.world = world or World()
        self.route_latency_s = route_latency_s
        self.now = start
        self.actions: list[tuple[float, object]] = []
        self.probes: list[tuple[float, str, Purpose]] = []
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        for u in policy.uplinks.values():
            up = self.world.link[u.ifname]
            self._record(policy.on_link(u.ifname, up, self.now))
            self._record(policy.on_ip(u.ifname, up, self.now))
        self._record(policy.start(self.now))

    def _record(self, actions: list[object]) -> None:
        for a in actions:
            self.actions.append((self.now, a))
            if isinstance(a, Switch):
                self.at(self.now + self.route_latency_s,
                        lambda to=a.to_ifname: self._record(self.policy.routes_applied(to, self.now)))

    def at(self, t: float, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (t, self._seq, fn))

    def set_link(self, t: float, ifname: str, up: bool) -> None:
        def go() -> None:
            self.world.link[ifname] = up
            self._record(self.policy.on_link(ifname, up, self.now))
            # The address comes back a moment after the carrier (DHCP), goes with it.
            if up:
                self.at(self.now + 0.01, lambda: self._ip(ifname))
            else:
                self._record(self.policy.on_ip(ifname, False, self.now))

        self.at(t, go)

    def _ip(self, ifname: str) -> None:
        if self.world.link[ifname]:
            self._record(self.policy.on_ip(ifname, True, self.now))

    def set_reachable(self, t: float, ifname: str, ok: bool) -> None:
        self.at(t, lambda: self.world.reachable.__setitem__(ifname, ok))

    def _start_probes(self) -> None:
        for req in self.policy.due_probes(self.now):
            self.policy.probe_started(req.ifname, self.now, req.purpose)
            self.probes.append((self.now, req.ifname, req.purpose))

            def done(name: str = req.ifname, purpose: Purpose = req.purpose) -> None:
                ok = self.world.link[name] and self.world.reachable[name]
                self._record(self.policy.on_probe(name, ok, self.now, code=5 if ok else 4,
                                                  reason=None if ok else "timed out", purpose=purpose))

            self.at(self.now + PROBE_LATENCY_S, done)

    def run_until(self, end: float) -> None:
        steps_at_now = 0
        while True:
            self._start_probes()
            deadline = self.policy.next_deadline(self.now)
            nxt = min(self._queue[0][0] if self._queue else math.inf, deadline)
            if nxt > end:
                self.now = end
                return
            steps_at_now = steps_at_now + 1 if nxt <= self.now else 0
            assert steps_at_now < 1000, f"the policy spins at t={self.now}: a deadline that never passes"
            self.now = max(self.now, nxt)
            if self._queue and self._queue[0][0] <= self.now:
                _t, _s, fn = heapq.heappop(self._queue)
                fn()
            else:
                self._record(self.policy.decide(self.now))

    def of(self, kind: type) -> list[tuple[float, object]]:
        return [(t, a) for t, a in self.actions if isinstance(a, kind)]

    def switches(self) -> list[tuple[float, Switch]]:
        return [(t, a) for t, a in self.actions if isinstance(a, Switch)]


def started(settings: DaemonSettings = FAST, order: list[UplinkSpec] = ORDER, world: World | None = None,
            manual: bool = False) -> Sim:
    sim = Sim(FailoverPolicy(settings, order, manual=manual), world)
    sim.run_until(0.5)
    return sim


# ---------------------------------------------------------------- start


def test_start_takes_the_first_uplink_of_the_order_and_verifies_it() -> None:
    sim = started()
    switches = sim.switches()
    assert [(s.from_ifname, s.to_ifname, s.reason) for _t, s in switches] == [(None, "eth0", "start")]
    connected = sim.of(Connected)
    assert len(connected) == 1 and connected[0][1].ifname == "eth0"  # type: ignore[attr-defined]
    assert sim.policy.phase == Phase.CONNECTED and sim.policy.active == "eth0"
    # The first probe of the new primary is a verification probe.
    assert ("eth0", Purpose.VERIFY) in [(n, p) for _t, n, p in sim.probes]


def test_start_skips_uplinks_without_link() -> None:
    world = World()
    world.link["eth0"] = False
    sim = started(world=world)
    assert sim.policy.active == "wlan0"
    assert sim.policy.health("eth0") == Health.DOWN


def test_sequence_decides_the_order() -> None:
    devices = [
        DeviceInfo("eth0", 20, 100, "ethernet", identifier="eth0"),
        DeviceInfo("eth1", 20, 100, "ethernet", identifier="eth1"),
        DeviceInfo("wlan0", 20, 100, "wifi", identifier="wl0"),
        DeviceInfo("wwan0", 20, 100, "cell", identifier="cell0"),
    ]
    assert [u.ifname for u in plan_uplinks(devices, ["cell", "wifi"])] == ["wwan0", "wlan0", "eth0", "eth1"]
    assert [u.ifname for u in plan_uplinks(devices, [])] == ["eth0", "eth1", "wlan0", "wwan0"]
    assert pinned_uplink(devices, "wl0") == UplinkSpec("wlan0", "wl0", "wifi")
    assert pinned_uplink(devices, "ethernet") == UplinkSpec("eth0", "eth0", "ethernet")
    assert pinned_uplink(devices, "cell1") is None


# ---------------------------------------------------------------- link loss


def test_link_loss_on_the_primary_switches_at_once_to_the_next_uplink() -> None:
    sim = started()
    sim.set_link(1.234, "eth0", False)
    sim.run_until(2.0)
    (t_switch, switch), = [(t, s) for t, s in sim.switches() if s.from_ifname == "eth0"]
    assert t_switch == pytest.approx(1.234)  # the same instant: no probe, no delay
    assert switch.to_ifname == "wlan0" and switch.reason == "eth0: no carrier"
    connected = [a for _t, a in sim.of(Connected) if a.ifname == "wlan0"]  # type: ignore[attr-defined]
    assert len(connected) == 1
    assert connected[0].from_ifname == "eth0"  # type: ignore[attr-defined]
    # Time taken runs from the loss to the passing verification probe.
    assert connected[0].took_s == pytest.approx(PROBE_LATENCY_S)  # type: ignore[attr-defined]


def test_loss_of_every_uplink_reports_lost_and_recovers() -> None:
    sim = started()
    for name in ("wwan0", "wlan0"):
        sim.set_link(1.0, name, False)
    sim.set_link(2.0, "eth0", False)
    sim.run_until(3.0)
    lost = sim.of(Lost)
    assert len(lost) == 1 and sim.policy.phase == Phase.LOST
    assert "no other uplink" in lost[0][1].reason  # type: ignore[attr-defined]
    sim.set_link(4.0, "wlan0", True)
    sim.run_until(5.0)
    assert sim.policy.active == "wlan0" and sim.policy.phase == Phase.CONNECTED


def test_the_active_uplink_coming_back_while_lost_is_verified_then_connected() -> None:
    sim = started(order=[ETH])
    sim.set_link(1.0, "eth0", False)
    sim.set_link(2.0, "eth0", True)
    sim.run_until(3.0)
    assert [type(a).__name__ for _t, a in sim.actions if isinstance(a, Lost | Connected)] == [
        "Connected", "Lost", "Connected"]
    assert sim.policy.phase == Phase.CONNECTED
    # Nothing to switch to and from: only the start.
    assert len(sim.switches()) == 1


# ---------------------------------------------------------------- silent upstream loss


def test_blackhole_is_confirmed_by_consecutive_failures_then_switches() -> None:
    sim = started()
    sim.set_reachable(1.05, "eth0", False)
    sim.run_until(6.0)
    changes = [(t, a) for t, a in sim.of(HealthChange)
               if a.ifname == "eth0" and t > 1.05]  # type: ignore[attr-defined]
    assert [a.new for _t, a in changes][:2] == [Health.DEGRADED, Health.FAILED]  # type: ignore[attr-defined]
    (t_switch, switch), = [(t, s) for t, s in sim.switches() if s.from_ifname == "eth0"]
    assert switch.to_ifname == "wlan0" and "2 probes failed" in switch.reason
    # Within interval x failures of the fault (plus the probe latency).
    assert t_switch - 1.05 <= FAST.probe_interval_s * FAST.probe_failures + PROBE_LATENCY_S
    # One failed probe alone does not switch.
    t_degraded = changes[0][0]
    assert t_switch > t_degraded


def test_a_single_failed_probe_does_not_switch() -> None:
    sim = started()
    sim.set_reachable(1.05, "eth0", False)
    sim.set_reachable(1.3, "eth0", True)
    sim.run_until(8.0)
    assert [s.to_ifname for _t, s in sim.switches()] == ["eth0"]
    assert sim.policy.health("eth0") == Health.UP


def test_failed_verification_moves_on_to_the_next_candidate() -> None:
    sim = started()
    # wlan0 keeps its link but its upstream dies after its first (passing) standby probe:
    # only the verification probe can tell.
    sim.set_reachable(0.9, "wlan0", False)
    sim.set_link(4.0, "eth0", False)
    sim.run_until(4.5)
    targets = [s.to_ifname for _t, s in sim.switches()]
    assert targets == ["eth0", "wlan0", "wwan0"]
    connected = [a for _t, a in sim.of(Connected) if a.ifname == "wwan0"]  # type: ignore[attr-defined]
    assert len(connected) == 1
    # The time taken of the chain counts from the original loss.
    assert connected[0].took_s == pytest.approx(2 * PROBE_LATENCY_S)  # type: ignore[attr-defined]
    assert sim.policy.health("wlan0") == Health.FAILED
    records = list(sim.policy.switches)
    assert [r.verified for r in records] == [True, False, True]
    # One probe failed, and the reason says which one, not "2 probes failed".
    assert records[-1].reason == "wlan0: verification probe failed: timed out"
    assert sim.policy.snapshot(sim.now, lambda t: t)["uplinks"][1]["failures"] == 1


def test_the_reason_counts_the_probes_that_failed() -> None:
    sim = started(replace(FAST, probe_failures=1))
    sim.set_reachable(1.0, "eth0", False)
    sim.run_until(3.0)
    (reason,) = [s.reason for _t, s in sim.switches() if s.from_ifname == "eth0"]
    assert reason == "eth0: 1 probe failed in a row: timed out"


# ---------------------------------------------------------------- failback


def test_failback_after_the_hold_time_not_before() -> None:
    sim = started()
    sim.set_link(1.0, "eth0", False)
    sim.set_link(10.0, "eth0", True)
    sim.run_until(30.0)
    back = [(t, s) for t, s in sim.switches() if s.to_ifname == "eth0" and s.from_ifname]
    assert len(back) == 1
    t_back, switch = back[0]
    assert "failback" in switch.reason
    usable_at = 10.0 + 0.01  # the address arrives just after the carrier
    assert usable_at + FAST.failback_hold_s <= t_back <= usable_at + FAST.failback_hold_s + 2 * PROBE_LATENCY_S
    assert sim.policy.active == "eth0" and sim.policy.phase == Phase.CONNECTED


def test_failback_off_stays_and_moves_on_along_the_list_wrapping() -> None:
    settings = replace(FAST, failback=False)
    sim = started(settings)
    sim.set_link(1.0, "eth0", False)
    sim.set_link(3.0, "eth0", True)
    sim.run_until(20.0)
    assert sim.policy.active == "wlan0"  # no failback
    # wlan0 dies: the next after it is wwan0, although eth0 (more preferred) is fine.
    sim.set_link(21.0, "wlan0", False)
    sim.run_until(22.0)
    assert sim.policy.active == "wwan0"
    # wwan0 dies: wrap around to eth0.
    sim.set_link(23.0, "wwan0", False)
    sim.run_until(24.0)
    assert sim.policy.active == "eth0"


def test_failback_waits_for_min_switch_interval() -> None:
    settings = replace(FAST, failback_hold_s=0.5, min_switch_interval_s=6.0)
    sim = started(settings)
    sim.set_link(1.0, "eth0", False)
    sim.set_link(1.5, "eth0", True)
    sim.run_until(12.0)
    back = [t for t, s in sim.switches() if s.to_ifname == "eth0" and s.from_ifname]
    assert len(back) == 1
    assert back[0] >= 1.0 + 6.0  # the switch away was at 1.0


def test_failback_needs_a_passing_probe_after_the_hold() -> None:
    sim = started()
    sim.set_reachable(1.0, "eth0", False)
    sim.run_until(5.0)
    assert sim.policy.active == "wlan0"
    # eth0 keeps link but its upstream stays dead: it must never get the traffic back.
    sim.run_until(60.0)
    assert sim.policy.active == "wlan0"
    sim.set_reachable(60.0, "eth0", True)
    sim.run_until(90.0)
    assert sim.policy.active == "eth0"
    assert sum(1 for _t, s in sim.switches() if s.to_ifname == "eth0") == 2  # start + failback


# ---------------------------------------------------------------- hysteresis


def test_flapping_primary_for_30_s_switches_once_away_and_once_back() -> None:
    """The issue's scenario: a link flapping every second for 30 s."""
    sim = started()
    t = 1.0
    up = False
    while t < 31.0:
        sim.set_link(t, "eth0", up)
        up = not up
        t += 0.5  # down 0.5 s, up 0.5 s: one flap per second
    sim.run_until(30.5)
    during = [s for _t, s in sim.switches() if s.from_ifname]
    assert len(during) == 1 and during[0].to_ifname == "wlan0"
    sim.run_until(40.0)
    after = [(t, s) for t, s in sim.switches() if s.from_ifname and t >= 30.5]
    assert len(after) == 1 and after[0][1].to_ifname == "eth0"
    # Up for good from 30.5 (the last flap): back after the hold, not before.
    assert after[0][0] >= 30.5 + FAST.failback_hold_s
    assert len(sim.policy.uplinks["eth0"].losses) >= 30


def test_flapping_standby_is_not_chosen_over_a_steady_one() -> None:
    sim = started()
    # wlan0 flaps; when eth0 dies the steady wwan0 is taken although wlan0 is up at that instant.
    t = 1.0
    up = False
    while t < 8.0:
        sim.set_link(t, "wlan0", up)
        up = not up
        t += 0.5
    sim.set_link(8.0, "wlan0", True)
    sim.set_link(8.2, "eth0", False)
    sim.run_until(8.5)
    assert [s.to_ifname for _t, s in sim.switches() if s.from_ifname == "eth0"] == ["wwan0"]


def test_two_flapping_uplinks_cannot_make_it_thrash_beyond_their_losses() -> None:
    sim = started()
    for i in range(30):
        base = 1.0 + i
        sim.set_link(base, "eth0", False)
        sim.set_link(base + 0.5, "eth0", True)
    sim.run_until(32.0)
    # Every switch but the start is the single switch away from eth0: wwan0/wlan0 steady.
    assert len([s for _t, s in sim.switches() if s.from_ifname]) == 1


# ---------------------------------------------------------------- manual mode


def test_manual_mode_reports_loss_and_never_switches() -> None:
    sim = started(order=[WL], manual=True)
    assert sim.switches() == []
    assert sim.policy.active == "wlan0" and sim.policy.phase == Phase.CONNECTED
    sim.set_link(1.0, "wlan0", False)
    sim.run_until(3.0)
    lost = sim.of(Lost)
    assert len(lost) == 1 and "manual mode" in lost[0][1].reason  # type: ignore[attr-defined]
    assert sim.switches() == [] and sim.policy.phase == Phase.LOST
    sim.set_link(4.0, "wlan0", True)
    sim.run_until(5.0)
    assert sim.policy.phase == Phase.CONNECTED and sim.switches() == []
    assert [a.reason for _t, a in sim.of(Connected)][-1] == "recovered"  # type: ignore[attr-defined]


def test_manual_mode_probes_only_the_pinned_uplink() -> None:
    sim = started(order=[WL], manual=True)
    sim.run_until(10.0)
    assert {n for _t, n, _p in sim.probes} == {"wlan0"}


def test_manual_blackhole_is_reported_not_acted_on() -> None:
    sim = started(order=[ETH], manual=True)
    sim.set_reachable(1.0, "eth0", False)
    sim.run_until(5.0)
    assert sim.policy.phase == Phase.LOST and sim.switches() == []
    assert sim.policy.health("eth0") == Health.FAILED


# ---------------------------------------------------------------- probing cadence


def probes_of(sim: Sim, name: str, since: float = 0.0) -> list[float]:
    return [t for t, n, _p in sim.probes if n == name and t >= since]


def test_active_probed_every_interval_standby_sparingly_cell_least() -> None:
    sim = started()
    sim.run_until(100.5)
    active = probes_of(sim, "eth0", 1.0)
    assert len(active) == pytest.approx(100 / FAST.probe_interval_s, abs=2)
    gaps = {round(b - a, 3) for a, b in itertools.pairwise(active)}
    assert gaps == {FAST.probe_interval_s}  # a steady cadence, no bursts
    assert len(probes_of(sim, "wlan0", 1.0)) == pytest.approx(100 / FAST.standby_probe_interval_s, abs=1)
    assert len(probes_of(sim, "wwan0", 1.0)) == pytest.approx(100 / FAST.cell_standby_probe_interval_s, abs=1)


def test_active_cell_uses_the_cell_interval() -> None:
    sim = started(order=[CELL, ETH])
    sim.run_until(40.5)
    assert sim.policy.active == "wwan0"
    assert len(probes_of(sim, "wwan0", 0.5)) == pytest.approx(40 / FAST.cell_probe_interval_s, abs=1)


def test_down_uplinks_are_not_probed_and_nothing_polls() -> None:
    world = World()
    for name in ("wlan0", "wwan0"):
        world.link[name] = False
    sim = started(world=world)
    sim.run_until(50.0)
    assert probes_of(sim, "wlan0") == [] and probes_of(sim, "wwan0") == []
    policy = FailoverPolicy(FAST, [ETH])
    policy.on_link("eth0", False, 0.0)
    policy.on_ip("eth0", False, 0.0)
    assert policy.next_deadline(0.0) == math.inf  # nothing to wait for but events


def test_probes_per_day_figures() -> None:
    settings = DaemonSettings()
    assert probes_per_day(settings, "ethernet", active=True) == pytest.approx(86400 / settings.probe_interval_s)
    assert probes_per_day(settings, "cell", active=True) == pytest.approx(86400 / settings.cell_probe_interval_s)
    assert probes_per_day(settings, "cell", active=False) == pytest.approx(
        86400 / settings.cell_standby_probe_interval_s)


# ---------------------------------------------------------------- reload, status


def test_reload_keeps_health_and_applies_the_new_order_without_switching() -> None:
    sim = started()
    policy = sim.policy
    policy.set_uplinks([CELL, WL, ETH])
    assert policy.active == "eth0" and policy.health("eth0") == Health.UP
    assert policy.decide(sim.now) == []  # a new sequence takes effect at the next connection
    # With failback on, the new first choice takes over after its hold.
    sim.run_until(20.0)
    assert policy.active == "wwan0"


def test_active_device_vanishing_reselects() -> None:
    sim = started()
    sim.policy.set_uplinks([WL, CELL])
    sim._record(sim.policy.decide(sim.now))
    sim.run_until(2.0)
    assert sim.policy.active == "wlan0" and sim.policy.phase == Phase.CONNECTED


def test_snapshot_is_json_and_names_everything_status_shows() -> None:
    sim = started()
    sim.set_link(1.0, "eth0", False)
    sim.run_until(2.0)
    snap = sim.policy.snapshot(sim.now, lambda t: 1_700_000_000.0 + t)
    json.dumps(snap)
    assert snap["active"] == "wlan0" and snap["phase"] == "connected" and "mode" not in snap
    health = {u["ifname"]: u["health"] for u in snap["uplinks"]}
    assert health == {"eth0": "down", "wlan0": "up", "wwan0": "up"}
    last = snap["switches"][-1]
    assert (last["from"], last["to"], last["verified"]) == ("eth0", "wlan0", True)
    assert last["at"] == pytest.approx(1_700_000_001.0)
    assert last["took_s"] == pytest.approx(PROBE_LATENCY_S)


def test_a_periodic_probe_in_flight_at_a_switch_does_not_conclude_it() -> None:
    policy = FailoverPolicy(FAST, ORDER)
    for u in ORDER:
        policy.on_link(u.ifname, True, 0.0)
        policy.on_ip(u.ifname, True, 0.0)
    policy.start(0.0)
    policy.routes_applied("eth0", 0.005)
    policy.probe_started("eth0", 0.0, Purpose.VERIFY)
    policy.on_probe("eth0", True, 0.01, purpose=Purpose.VERIFY)
    # A standby probe of wlan0 is under way when eth0 dies and wlan0 takes over.
    policy.probe_started("wlan0", 0.5, Purpose.STANDBY)
    (switch,) = [a for a in policy.on_link("eth0", False, 0.6) if isinstance(a, Switch)]
    assert switch.to_ifname == "wlan0" and policy.phase == Phase.VERIFYING
    actions = policy.on_probe("wlan0", True, 0.61, purpose=Purpose.STANDBY)
    assert not any(isinstance(a, Connected) for a in actions)
    assert policy.phase == Phase.VERIFYING
    assert [r.purpose for r in policy.due_probes(0.61) if r.ifname == "wlan0"] == [Purpose.VERIFY]
    policy.probe_started("wlan0", 0.61, Purpose.VERIFY)
    policy.routes_applied("wlan0", 0.62)
    actions = policy.on_probe("wlan0", True, 0.63, purpose=Purpose.VERIFY)
    assert [a.ifname for a in actions if isinstance(a, Connected)] == ["wlan0"]


# ---------------------------------------------------------------- routes before "connected"


def policy_on(order: list[UplinkSpec] = ORDER) -> FailoverPolicy:
    policy = FailoverPolicy(FAST, order)
    for u in order:
        policy.on_link(u.ifname, True, 0.0)
        policy.on_ip(u.ifname, True, 0.0)
    return policy


def test_a_passing_verification_waits_for_the_routes_and_the_switch_takes_until_they_moved() -> None:
    sim = Sim(FailoverPolicy(FAST, ORDER), route_latency_s=0.3)  # a slow Reapply
    sim.run_until(0.1)
    assert sim.of(Connected) == [] and sim.policy.phase == Phase.VERIFYING
    assert sim.policy.routes_pending == "eth0"
    sim.run_until(0.5)
    ((at, connected),) = sim.of(Connected)
    assert at == pytest.approx(0.3) and sim.policy.routes_pending is None
    # Connected once the traffic moved too: the slow route change, not the quick probe.
    assert connected.took_s == pytest.approx(0.3) and PROBE_LATENCY_S < 0.3  # type: ignore[attr-defined]


def test_a_failed_verification_also_waits_for_the_routes() -> None:
    world = World()
    world.reachable["eth0"] = False
    sim = Sim(FailoverPolicy(FAST, ORDER), world, route_latency_s=0.3)
    sim.run_until(0.2)
    assert [s.to_ifname for _t, s in sim.switches()] == ["eth0"]
    sim.run_until(0.35)
    assert [(round(t, 3), s.to_ifname) for t, s in sim.switches()] == [(0.0, "eth0"), (0.3, "wlan0")]
    sim.run_until(1.0)
    assert sim.policy.active == "wlan0" and sim.policy.phase == Phase.CONNECTED


def test_only_the_verification_of_the_new_primary_waits() -> None:
    policy = policy_on()
    (switch,) = policy.start(0.0)
    assert isinstance(switch, Switch) and policy.routes_pending == "eth0"
    policy.probe_started("wlan0", 0.0, Purpose.STANDBY)
    policy.probe_started("eth0", 0.0, Purpose.VERIFY)
    policy.on_probe("wlan0", True, 0.01, purpose=Purpose.STANDBY)
    assert policy.health("wlan0") == Health.UP  # a standby result counts at once
    assert policy.on_probe("eth0", True, 0.02, purpose=Purpose.VERIFY) == []
    assert policy.health("eth0") == Health.UNKNOWN and policy.phase == Phase.VERIFYING


def test_a_stale_routes_report_does_not_release_the_verification() -> None:
    policy = policy_on()
    policy.start(0.0)
    policy.probe_started("eth0", 0.0, Purpose.VERIFY)
    policy.on_probe("eth0", True, 0.02, purpose=Purpose.VERIFY)
    assert policy.routes_applied("wlan0", 0.03) == []  # the route worker's previous target
    assert policy.routes_applied(None, 0.03) == []
    assert policy.phase == Phase.VERIFYING
    (connected,) = [a for a in policy.routes_applied("eth0", 0.04) if isinstance(a, Connected)]
    assert connected.ifname == "eth0" and connected.took_s == pytest.approx(0.04)  # the routes', later
    assert policy.routes_applied("eth0", 0.05) == []  # once only


def test_a_switch_on_drops_the_previous_targets_waiting_result_and_probes_it_again() -> None:
    policy = policy_on()
    policy.start(0.0)
    policy.probe_started("eth0", 0.0, Purpose.VERIFY)
    policy.on_probe("eth0", True, 0.02, purpose=Purpose.VERIFY)  # waits for eth0's routes
    # eth0 fails before its routes are in place: the traffic goes to wlan0 instead.
    switches = [a for a in policy.on_link("eth0", False, 0.03) if isinstance(a, Switch)]
    assert [s.to_ifname for s in switches] == ["wlan0"] and policy.routes_pending == "wlan0"
    assert [a for a in policy.routes_applied("wlan0", 0.04) if isinstance(a, Connected)] == []
    # eth0's old result is gone, and eth0 is not left "probing" for ever: once back, it is probed.
    policy.on_link("eth0", True, 0.05)
    policy.on_ip("eth0", True, 0.05)
    assert "eth0" in [r.ifname for r in policy.due_probes(FAST.standby_probe_interval_s)]


def test_manual_mode_never_waits_for_routes() -> None:
    sim = started(order=[ETH], manual=True)
    assert sim.policy.routes_pending is None
    assert [a.ifname for _t, a in sim.of(Connected)] == ["eth0"]  # type: ignore[attr-defined]


def test_a_failed_probe_without_text_is_named_by_its_result_code() -> None:
    policy = policy_on()
    policy.start(0.0)
    policy.routes_applied("eth0", 0.0)
    policy.probe_started("eth0", 0.0, Purpose.VERIFY)
    policy.on_probe("eth0", True, 0.01, purpose=Purpose.VERIFY)
    policy.probe_started("eth0", 1.0, Purpose.LIVENESS)
    (change,) = [a for a in policy.on_probe("eth0", False, 1.01, code=1) if isinstance(a, HealthChange)]
    assert change.reason == "probe failed: NO_LINK"  # impOS's name for 1 on a wired uplink
    policy.probe_started("wlan0", 1.0, Purpose.STANDBY)
    (change,) = [a for a in policy.on_probe("wlan0", False, 1.02, code=99, purpose=Purpose.STANDBY)
                 if isinstance(a, HealthChange)]
    assert change.reason == "probe failed: result code 99"
