"""The failover policy of `impctl daemon`: which uplink carries the traffic, and when to change.

Pure: no I/O and no clock. The daemon (`impctl.usecases.daemon`) feeds it
what it observes — link and address events from netlink, probe results —
with the time they happened (a monotonic clock), and carries out what it
returns: `Switch` (make another uplink primary, then verify it with a probe),
and reports (`Connected`, `Lost`, `HealthChange`) to log and publish. It also
says which uplinks to probe (`due_probes`) and when something next falls due
(`next_deadline`), so the daemon sleeps until then instead of polling.

The rules, and why:

* An uplink is *usable* while it has carrier, an IPv4 address and a default
  route through it, and fewer than `probe_failures` consecutive failed probes.
  Losing carrier or the address is known from netlink within milliseconds, so
  it counts at once; a silent upstream loss only shows in probes, so it takes
  `probe_failures` of them in a row (one lost probe is not a dead uplink).
* Loss of the active uplink fails over at once, never delayed by hysteresis:
  staying on a dead uplink helps nobody. The target is chosen along the
  effective order (impOS: the failover sequence, then the default order):
  with failback on, the most preferred usable uplink; with failback off, the
  next one after the active, wrapping, as impOS moves on along its list.
  Uplinks that have been usable for a while are preferred over ones that
  came back a moment ago, and verified ones over unverified, so a flapping
  link is not chosen while it happens to be up.
* A switch is not "connected" until a probe through the new primary passes
  (`Connected`). If that probe fails, the target is marked failed and the
  next candidate is tried.
* Nor before the traffic has moved: the verification probe is bound to the
  new primary, so it can pass while the kernel still routes through the old
  one. Its result waits until the daemon reports the new primary's routes in
  place (`routes_applied`), then counts as of when it came back.
* Failback (impOS has none): once the active uplink is healthy again, a more
  preferred uplink takes over when it has been usable without a break for
  `failback_hold_s`, its latest probe passed, and the last switch is at least
  `min_switch_interval_s` old. Any loss restarts its hold: a link flapping
  faster than the hold never gets the traffic back, so flapping costs one
  switch away, and one back once it has been steady for the hold.
* Manual mode (a pinned NIC, impOS's connectwith): the policy reports loss
  and recovery of the pinned uplink and never switches (RETURN_ON_ERROR).
* Probing is sparing: the active uplink every `probe_interval_s` (a cellular
  one every `cell_probe_interval_s`), quicker after a failure so a dead
  upstream is confirmed within about two intervals; standby uplinks every
  `standby_probe_interval_s` (cellular: `cell_standby_probe_interval_s`),
  plus one probe when a more preferred uplink's hold is over. Uplinks without
  link or address are never probed: netlink says when they come back.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from impctl.model.codes import ResultCode, code_name
from impctl.model.config import DaemonSettings
from impctl.model.identifiers import resolve
from impctl.model.inventory import DeviceInfo
from impctl.model.record import record
from impctl.model.sequence import effective_order

DAEMON_STATE_VERSION = 1
# How many switches `snapshot` keeps for `impctl status`.
SWITCH_HISTORY = 20


class Health(StrEnum):
    UNKNOWN = "unknown"  # link and address fine, never probed yet
    UP = "up"  # link and address fine, latest probe passed
    DEGRADED = "degraded"  # latest probe(s) failed, fewer than probe_failures in a row
    FAILED = "failed"  # probe_failures probes in a row failed (or the verification probe)
    DOWN = "down"  # no carrier, or no address / default route


class Phase(StrEnum):
    STARTING = "starting"  # nothing chosen yet
    VERIFYING = "verifying"  # routes moved to the active uplink, its probe not back yet
    CONNECTED = "connected"  # the active uplink's latest probe passed
    LOST = "lost"  # no usable uplink (automatic) / the pinned one is down (manual)


class Purpose(StrEnum):
    VERIFY = "verify"  # a new primary, before it is declared connected: full probe
    LIVENESS = "liveness"  # the active uplink, periodically
    STANDBY = "standby"  # a standby uplink, sparingly


@record
class UplinkSpec:
    ifname: str
    identifier: str
    iface_class: str


# ---------------------------------------------------------------- what the policy returns


@record
class Switch:
    """Make `to_ifname` the primary uplink, then probe it (Purpose.VERIFY)."""

    from_ifname: str | None
    to_ifname: str
    reason: str
    cause_at: float  # when what caused the switch was observed
    # Away from an uplink that still works (the preferred one is back), not from a failed one.
    failback: bool = False


@record
class Connected:
    """The active uplink passed its verification probe."""

    ifname: str
    from_ifname: str | None
    reason: str
    took_s: float  # from the cause of the switch to the passing probe


@record
class Lost:
    """No uplink carries traffic to the cloud: manual mode's pinned one, or every one."""

    ifname: str | None
    reason: str


@record
class HealthChange:
    ifname: str
    old: Health
    new: Health
    reason: str


Action = Switch | Connected | Lost | HealthChange


@record
class ProbeRequest:
    ifname: str
    purpose: Purpose


@record
class ProbeResult:
    """A probe's outcome as `on_probe` takes it (kept while a verification waits for routes)."""

    ifname: str
    ok: bool
    at: float
    code: int | None
    reason: str | None
    purpose: Purpose


@dataclass
class SwitchRecord:
    at: float
    from_ifname: str | None
    to_ifname: str
    reason: str
    took_s: float | None = None  # set once verified
    verified: bool | None = None  # None while verifying
    # What ending the left uplink's sessions did (the daemon sets it; None: nothing was ended).
    sessions_ended: tuple[int, int, float] | None = None  # sockets, conntrack entries, seconds


# ---------------------------------------------------------------- per-uplink record


@dataclass
class UplinkHealth:
    spec: UplinkSpec
    link_up: bool | None = None  # carrier and administratively up; None: not known yet
    ip_ready: bool | None = None  # an IPv4 address and a default route through it
    failures: int = 0  # consecutive failed probes
    # A new primary's verification failed: failed at once, whatever `failures` says.
    verify_failed: bool = False
    last_ok: bool | None = None
    last_code: int | None = None
    last_reason: str | None = None
    last_probe_started: float | None = None
    last_probe_at: float | None = None  # when the latest result came back
    verified_at: float | None = None  # the latest passing probe
    usable_since: float | None = None  # usable without a break since then
    probing: bool = False
    losses: deque[float] = field(default_factory=lambda: deque(maxlen=64))

    @property
    def ifname(self) -> str:
        return self.spec.ifname

    @property
    def is_cell(self) -> bool:
        return self.spec.iface_class == "cell"


# ---------------------------------------------------------------- the order of uplinks


def plan_uplinks(devices: Sequence[DeviceInfo], sequence: Iterable[str]) -> list[UplinkSpec]:
    """Uplinks in failover order: the classes of `effective_order`, and within a
    class its devices by identifier (eth0 before eth1), as `build_inventory` lists them."""
    order = effective_order(sequence, {d.iface_class for d in devices})
    out: list[UplinkSpec] = []
    for cls in order:
        for dev in devices:
            if dev.iface_class == cls:
                out.append(UplinkSpec(dev.ifname, dev.identifier or dev.ifname, cls))
    return out


def pinned_uplink(devices: Sequence[DeviceInfo], interface: str) -> UplinkSpec | None:
    """The uplink a pinned NIC's `interface` (identifier or ifname) designates, if present."""
    assignment = {d.ifname: d.identifier for d in devices}
    classes = {d.ifname: d.iface_class for d in devices}
    names = resolve(interface, assignment, classes)
    for dev in devices:
        if names and dev.ifname == names[0]:
            return UplinkSpec(dev.ifname, dev.identifier or dev.ifname, dev.iface_class)
    return None


# ---------------------------------------------------------------- the policy


class FailoverPolicy:
    """The daemon's decisions. Every method takes `now` (monotonic seconds)."""

    def __init__(self, settings: DaemonSettings, uplinks: Sequence[UplinkSpec], *, manual: bool = False) -> None:
        self.settings = settings
        self.manual = manual
        self.uplinks: dict[str, UplinkHealth] = {}
        self.order: list[str] = []
        self.active: str | None = None
        self.phase = Phase.STARTING
        self.switches: deque[SwitchRecord] = deque(maxlen=SWITCH_HISTORY)
        self._pending: SwitchRecord | None = None  # the switch being verified
        self._pending_cause: float = 0.0
        self._verify_needed = False  # the active uplink's verification probe is not started yet
        self._routes_pending: str | None = None  # switched to, its routes not in place yet
        self._deferred: ProbeResult | None = None  # its verification result, waiting for them
        self._last_switch_at: float | None = None
        self._lost_reason: str | None = None
        self._started = False
        self.set_uplinks(uplinks)

    def start(self, now: float) -> list[Action]:
        """Decide for the first time, once the initial facts of every uplink are in.

        Before this, observations are recorded but nothing is decided, so the
        daemon's first choice rests on all uplinks, not on the first one read.
        """
        self._started = True
        return self.decide(now)

    # ---- configuration ------------------------------------------------------------------

    def set_uplinks(self, uplinks: Sequence[UplinkSpec], *, manual: bool | None = None) -> None:
        """A new order (SIGHUP, a device appeared or vanished); health of known uplinks is kept.

        Nothing switches here: the next event or `decide` applies the new order,
        as impOS applies a new sequence at the next connection.
        """
        if manual is not None:
            self.manual = manual
        kept = {u.ifname: self.uplinks[u.ifname] for u in uplinks if u.ifname in self.uplinks}
        self.uplinks = {}
        for spec in uplinks:
            record = kept.get(spec.ifname) or UplinkHealth(spec)
            record.spec = spec
            self.uplinks[spec.ifname] = record
        self.order = [u.ifname for u in uplinks]
        if self.active is not None and self.active not in self.uplinks:
            # The active device is gone from the plan: treat it as lost.
            self.active = None
            self.phase = Phase.STARTING
            self._pending = None
            self._verify_needed = False
            self._drop_deferred()

    def set_settings(self, settings: DaemonSettings) -> None:
        self.settings = settings

    # ---- derived facts -------------------------------------------------------------------

    def _failed(self, u: UplinkHealth) -> bool:
        return u.verify_failed or u.failures >= self.settings.probe_failures

    def _usable(self, u: UplinkHealth) -> bool:
        return bool(u.link_up) and bool(u.ip_ready) and not self._failed(u)

    def health(self, ifname: str) -> Health:
        u = self.uplinks[ifname]
        if not u.link_up or not u.ip_ready:
            return Health.DOWN
        if self._failed(u):
            return Health.FAILED
        if u.failures > 0:
            return Health.DEGRADED
        return Health.UP if u.last_ok else Health.UNKNOWN

    def _down_reason(self, u: UplinkHealth) -> str:
        if u.link_up is False:
            return "no carrier"
        if u.ip_ready is False:
            return "no IPv4 address or default route"
        detail = u.last_reason or self._code(u, u.last_code)
        if u.verify_failed:
            return f"verification probe failed: {detail}"
        if self._failed(u):
            return f"{u.failures} probe{'s' if u.failures != 1 else ''} failed in a row: {detail}"
        return "not ready"

    def _verified(self, u: UplinkHealth) -> bool:
        return (u.last_ok is True and u.verified_at is not None and u.usable_since is not None
                and u.verified_at >= u.usable_since)

    def _rank(self, ifname: str) -> int:
        return self.order.index(ifname) if ifname in self.order else len(self.order)

    # ---- observations --------------------------------------------------------------------

    def _track(self, u: UplinkHealth, now: float, before: Health, why: str) -> list[Action]:
        """Bookkeeping after any change to `u`: usable_since, losses, a HealthChange."""
        usable = self._usable(u)
        if usable and u.usable_since is None:
            u.usable_since = now
        elif not usable and u.usable_since is not None:
            u.usable_since = None
            u.losses.append(now)
        after = self.health(u.ifname)
        if after == before:
            return []
        return [HealthChange(u.ifname, before, after, why)]

    def on_link(self, ifname: str, up: bool, now: float) -> list[Action]:
        """Carrier (and admin state) of an uplink, from a netlink link event."""
        u = self.uplinks.get(ifname)
        if u is None or u.link_up == up:
            return []
        before = self.health(ifname)
        u.link_up = up
        if not up:
            # Whatever the probes said belongs to the link that went away.
            u.failures = 0
            u.verify_failed = False
            u.last_ok = None
        actions = self._track(u, now, before, "carrier up" if up else "carrier lost")
        return actions + self.decide(now)

    def on_ip(self, ifname: str, ready: bool, now: float) -> list[Action]:
        """Whether the uplink has an IPv4 address and a default route, from netlink."""
        u = self.uplinks.get(ifname)
        if u is None or u.ip_ready == ready:
            return []
        before = self.health(ifname)
        u.ip_ready = ready
        if not ready:
            u.failures = 0
            u.verify_failed = False
            u.last_ok = None
        why = "address and default route" if ready else "address or default route gone"
        actions = self._track(u, now, before, why)
        return actions + self.decide(now)

    def probe_started(self, ifname: str, now: float, purpose: Purpose = Purpose.VERIFY) -> None:
        u = self.uplinks.get(ifname)
        if u is None:
            return
        u.probing = True
        u.last_probe_started = now
        if ifname == self.active and purpose == Purpose.VERIFY:
            self._verify_needed = False

    def on_probe(self, ifname: str, ok: bool, now: float, *, code: int | None = None,
                 reason: str | None = None, purpose: Purpose = Purpose.LIVENESS) -> list[Action]:
        """The result of a probe through `ifname` (started with `probe_started`)."""
        u = self.uplinks.get(ifname)
        if u is None:
            return []
        if purpose == Purpose.VERIFY and ifname == self.active and ifname == self._routes_pending:
            # Bound to the new primary, it says nothing yet about where the traffic goes.
            self._deferred = ProbeResult(ifname, ok, now, code, reason, purpose)
            return []
        u.probing = False
        before = self.health(ifname)
        u.last_probe_at = now
        u.last_ok = ok
        u.last_code = code
        u.last_reason = reason
        actions: list[Action] = []
        verifying = (self.phase == Phase.VERIFYING and ifname == self.active
                     and purpose == Purpose.VERIFY)
        if ok:
            u.failures = 0
            u.verify_failed = False
            u.verified_at = now
        else:
            u.failures += 1
            # A new primary that fails its very first probe is not given a second
            # chance: the traffic is on it, and the next candidate may be fine.
            u.verify_failed = u.verify_failed or verifying
        why = "probe passed" if ok else f"probe failed: {reason or self._code(u, code)}"
        actions += self._track(u, now, before, why)
        # Only the verification probe concludes a switch: a periodic probe started
        # before it (still in flight when the traffic moved) does not count.
        concludes = verifying or self.phase in (Phase.LOST, Phase.STARTING)
        if ok and ifname == self.active and concludes:
            actions.append(self._connected(ifname, now, "start" if self.phase == Phase.STARTING else "recovered"))
        return actions + self.decide(now)

    def routes_applied(self, ifname: str | None, now: float) -> list[Action]:
        """The daemon has put `ifname`'s routes in place as the primary (or tried to: a failed
        route change is logged by the daemon, and the probe then decides alone).

        A report for an uplink that is no longer the one switched to is stale and ignored.
        A verification result that waited concludes the switch now: the gateway is connected
        through the new uplink once both its probe passed and its traffic moved, so `took_s`
        is the later of the two.
        """
        if ifname is None or ifname != self._routes_pending:
            return []
        self._routes_pending = None
        deferred, self._deferred = self._deferred, None
        if deferred is None:
            return []
        return self.on_probe(deferred.ifname, deferred.ok, max(deferred.at, now),
                             code=deferred.code, reason=deferred.reason, purpose=deferred.purpose)

    @property
    def lost_reason(self) -> str | None:
        """Why nothing carries the traffic (None unless the phase is LOST)."""
        return self._lost_reason

    @property
    def routes_pending(self) -> str | None:
        """The uplink switched to whose routes are not in place yet (None: none)."""
        return self._routes_pending

    def _drop_deferred(self) -> None:
        # A result kept for an earlier target no longer concludes anything; its uplink
        # must not stay marked as probing, or it would never be probed again.
        deferred, self._deferred = self._deferred, None
        self._routes_pending = None
        if deferred is not None and deferred.ifname in self.uplinks:
            self.uplinks[deferred.ifname].probing = False

    @staticmethod
    def _code(u: UplinkHealth, code: int | None) -> str:
        """A result code as impOS names it (NO_LINK on a wired uplink), for a reason without text."""
        try:
            return code_name(ResultCode(code), u.spec.iface_class) if code is not None else "no detail"
        except ValueError:
            return f"result code {code}"

    def _connected(self, ifname: str, now: float, otherwise: str) -> Connected:
        self.phase = Phase.CONNECTED
        self._lost_reason = None
        pending = self._pending
        self._pending = None
        if pending is not None and pending.to_ifname == ifname:
            pending.took_s = now - self._pending_cause
            pending.verified = True
            return Connected(ifname, pending.from_ifname, pending.reason, pending.took_s)
        return Connected(ifname, None, otherwise, 0.0)

    # ---- decisions -----------------------------------------------------------------------

    def _candidates(self, now: float, exclude: str | None) -> list[UplinkHealth]:
        usable = [self.uplinks[n] for n in self.order if n != exclude and self._usable(self.uplinks[n])]
        if not self.settings.failback and self.active in self.order:
            # impOS: move on along the list from the current interface, wrapping.
            start = self.order.index(self.active) + 1
            rotated = self.order[start:] + self.order[:start]
            usable.sort(key=lambda u: rotated.index(u.ifname))
        settle = self.settings.min_switch_interval_s

        def tier(u: UplinkHealth) -> int:
            stable = u.usable_since is not None and now - u.usable_since >= settle
            if stable and self._verified(u):
                return 0
            if stable:
                return 1
            return 2 if self._verified(u) else 3

        return sorted(usable, key=tier)  # sort is stable: the order within a tier stays

    def _switch(self, to: str, reason: str, now: float, cause_at: float, *, failback: bool = False) -> Switch:
        record = SwitchRecord(at=now, from_ifname=self.active, to_ifname=to, reason=reason)
        chained = self._pending is not None and self._pending.verified is None
        if self._pending is not None and chained:
            self._pending.verified = False
        else:
            self._pending_cause = cause_at
        # A switch chained on a failed verification keeps the original cause: the
        # time taken is what the outage cost, however many candidates it took.
        self.switches.append(record)
        self._drop_deferred()
        self._routes_pending = to
        action = Switch(self.active, to, reason, cause_at, failback)
        self._pending = record
        self.active = to
        self.phase = Phase.VERIFYING
        self._verify_needed = True
        self._last_switch_at = now
        return action

    def decide(self, now: float) -> list[Action]:
        """What to do now; called after every observation and on `next_deadline`."""
        if not self._started:
            return []
        if self.manual:
            return self._decide_manual(now)
        active = self.uplinks.get(self.active) if self.active else None
        if active is None or not self._usable(active):
            candidates = self._candidates(now, self.active)
            if candidates:
                if active is None:
                    reason = "start" if self.phase == Phase.STARTING else "recovered"
                else:
                    reason = f"{active.ifname}: {self._down_reason(active)}"
                cause = self._loss_time(active, now)
                return [self._switch(candidates[0].ifname, reason, now, cause)]
            if self.phase != Phase.LOST:
                why = (f"{active.ifname}: {self._down_reason(active)}; no other uplink is usable"
                       if active else "no uplink is usable")
                self.phase = Phase.LOST
                self._lost_reason = why
                if self._pending is not None and self._pending.verified is None:
                    self._pending.verified = False
                self._pending = None
                return [Lost(self.active, why)]
            return []
        if self.phase == Phase.LOST:
            # The active uplink is usable again but not proven: probe it (LIVENESS due now).
            return []
        if self.phase == Phase.CONNECTED and self.settings.failback:
            target = self._failback_target(now)
            if target is not None:
                return [self._switch(target, f"failback: {target} healthy for "
                                     f"{self.settings.failback_hold_s:g} s", now, now, failback=True)]
        return []

    def _loss_time(self, active: UplinkHealth | None, now: float) -> float:
        if active is not None and active.losses:
            return active.losses[-1]
        return now

    def _failback_target(self, now: float) -> str | None:
        if self.active is None:
            return None
        if self._last_switch_at is not None and now - self._last_switch_at < self.settings.min_switch_interval_s:
            return None
        for name in self.order[: self._rank(self.active)]:
            u = self.uplinks[name]
            if (self._usable(u) and u.usable_since is not None
                    and now - u.usable_since >= self.settings.failback_hold_s
                    and self._verified(u) and u.verified_at is not None
                    and u.verified_at >= u.usable_since + self.settings.failback_hold_s):
                return name
        return None

    def _decide_manual(self, now: float) -> list[Action]:
        pinned = self.order[0] if self.order else None
        if pinned is None:
            if self.phase != Phase.LOST:
                self.phase = Phase.LOST
                self._lost_reason = "the pinned interface is not present"
                return [Lost(None, self._lost_reason)]
            return []
        self.active = pinned
        u = self.uplinks[pinned]
        if not self._usable(u):
            if self.phase != Phase.LOST:
                self.phase = Phase.LOST
                self._lost_reason = f"{pinned}: {self._down_reason(u)} (manual mode: not switching)"
                return [Lost(pinned, self._lost_reason)]
            return []
        return []

    # ---- time ----------------------------------------------------------------------------

    def _interval(self, u: UplinkHealth) -> float:
        s = self.settings
        if u.ifname == self.active or self.phase == Phase.LOST:
            base = s.cell_probe_interval_s if u.is_cell else s.probe_interval_s
            if u.failures > 0 or self.phase == Phase.LOST:
                # Confirm a failure quickly: probe_failures probes fit in one more interval.
                return base / max(1, s.probe_failures)
            return base
        return s.cell_standby_probe_interval_s if u.is_cell else s.standby_probe_interval_s

    def _due_at(self, u: UplinkHealth) -> tuple[float, Purpose] | None:
        if u.probing or not u.link_up or not u.ip_ready:
            return None
        if u.ifname == self.active:
            if self._verify_needed:
                return (-math.inf, Purpose.VERIFY)
            purpose = Purpose.VERIFY if self.phase != Phase.CONNECTED else Purpose.LIVENESS
            if u.last_probe_started is None:
                return (-math.inf, purpose)
            return (u.last_probe_started + self._interval(u), purpose)
        if self.manual:
            return None  # manual mode uses one interface: no standby traffic at all
        due = (u.last_probe_started + self._interval(u)) if u.last_probe_started is not None else -math.inf
        # A more preferred uplink nearing the end of its failback hold gets one probe
        # then, so failback rests on a fresh result.
        if (self.settings.failback and self.active is not None and u.usable_since is not None
                and self._rank(u.ifname) < self._rank(self.active)):
            hold_end = u.usable_since + self.settings.failback_hold_s
            if u.last_probe_started is None or u.last_probe_started < hold_end:
                due = min(due, hold_end)
        return (due, Purpose.STANDBY)

    def due_probes(self, now: float) -> list[ProbeRequest]:
        """Uplinks to probe now; call `probe_started` for each one started."""
        out = []
        for name in self.order:
            due = self._due_at(self.uplinks[name])
            if due is not None and due[0] <= now:
                out.append(ProbeRequest(name, due[1]))
        return out

    def next_deadline(self, now: float) -> float:
        """The next instant at which `due_probes` or `decide` may have something new (inf: none).

        A probe already due gives `now` (the caller starts it, then it is in
        flight and no longer due); hold and dwell timers count only while ahead.
        """
        times = [math.inf]
        for u in self.uplinks.values():
            due = self._due_at(u)
            if due is not None:
                times.append(max(due[0], now))
        if self.phase == Phase.CONNECTED and self.settings.failback and self.active in self.order:
            timers = [self.uplinks[n].usable_since for n in self.order[: self._rank(self.active)]
                      if self._usable(self.uplinks[n])]
            ends = [t + self.settings.failback_hold_s for t in timers if t is not None]
            if self._last_switch_at is not None:
                ends.append(self._last_switch_at + self.settings.min_switch_interval_s)
            times += [t for t in ends if t > now]
        return min(times)

    # ---- the view for `impctl status` -----------------------------------------------------

    def snapshot(self, now: float, to_wall: Callable[[float], float]) -> dict[str, Any]:
        """The daemon's view as a JSON-able dict (state.daemon); times as Unix time."""

        def wall(t: float | None) -> float | None:
            return None if t is None else round(to_wall(t), 3)

        uplinks = []
        for name in self.order:
            u = self.uplinks[name]
            uplinks.append({
                "ifname": u.ifname,
                "identifier": u.spec.identifier,
                "class": u.spec.iface_class,
                "health": self.health(name).value,
                "active": name == self.active,
                "link": u.link_up,
                "ip_ready": u.ip_ready,
                "failures": u.failures,
                "last_code": u.last_code,
                "last_reason": u.last_reason,
                "last_probe_at": wall(u.last_probe_at),
                "usable_since": wall(u.usable_since),
                "losses": len(u.losses),
            })
        return {
            "daemon_state_version": DAEMON_STATE_VERSION,
            "phase": self.phase.value,
            "active": self.active,
            "lost_reason": self._lost_reason,
            "failback": self.settings.failback,
            "uplinks": uplinks,
            "switches": [
                {"at": wall(s.at), "from": s.from_ifname, "to": s.to_ifname, "reason": s.reason,
                 "took_s": None if s.took_s is None else round(s.took_s, 4), "verified": s.verified,
                 **({} if s.sessions_ended is None else {"sessions_ended": {
                     "sockets": s.sessions_ended[0], "conntrack": s.sessions_ended[1],
                     "ms": round(s.sessions_ended[2] * 1000, 1)}})}
                for s in self.switches
            ],
        }


def probes_per_day(settings: DaemonSettings, iface_class: str, *, active: bool) -> float:
    """How many probes a day the daemon sends through one healthy uplink (for data budgets).

    Multiply by the bytes of one probe (README: measured in the lab) for the
    daily traffic. Failures add a few quicker probes; down uplinks send none.
    """
    if active:
        interval = settings.cell_probe_interval_s if iface_class == "cell" else settings.probe_interval_s
    else:
        interval = (settings.cell_standby_probe_interval_s if iface_class == "cell"
                    else settings.standby_probe_interval_s)
    return 86400.0 / interval
