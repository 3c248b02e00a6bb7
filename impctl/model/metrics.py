"""The daemon's fleet metrics (Prometheus): what is counted, and the families rendered from it.

Pure: no I/O, no clock, no prometheus_client. The daemon feeds a
`MetricsTally` what happens (the policy's actions, probe results) with the
monotonic time it happened; `daemon_families` renders the tally together
with the policy's current view into plain `Family` values, which a backend
(`impctl.backends.metrics`) turns into the exposition format, served over
HTTP or written as a node_exporter textfile.

Conventions (https://prometheus.io/docs/practices/naming/): the `impctl_`
prefix, base units (seconds, bytes), `_total` for counters, `_timestamp_seconds`
for Unix times. Every uplink's series carry the same three labels (`ifname`,
`identifier`, `class`), stable whatever its health, so a series survives a
change of result; states and reasons are label values of one-hot or
counted families, bounded sets each, never free text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from impctl.model.failover import (
    Action,
    FailoverPolicy,
    Health,
    HealthChange,
    Phase,
    Purpose,
    Switch,
)
from impctl.model.netfacts import Counters
from impctl.model.probe import InterfaceProbe, Stage
from impctl.model.record import record

PREFIX = "impctl"

# Why a switch happened, as a bounded label value (the reason text names interfaces and
# probe details: one series per distinct text would grow without end).
SWITCH_REASONS = ("start", "recovered", "no_carrier", "no_address", "probes_failed", "verify_failed",
                  "failback", "other")

# What one probe sends and receives on the wire, by the stages it ran. The lab measured 574 B
# for DNS + TCP connect + close and 3055 B with the TLS handshake (README, daemon); DNS is one
# query and answer (~170 B of it). A real cloud's certificate chain makes the TLS part larger:
# an estimate for data budgets, not a measurement of each probe.
PROBE_STAGE_BYTES: Mapping[Stage, int] = {
    Stage.DNS: 170,
    Stage.PROXY: 404,  # a TCP connection to the proxy; its CONNECT exchange is in TCP's share
    Stage.TCP: 404,
    Stage.TLS: 2481,
}


@record
class Sample:
    labels: tuple[tuple[str, str], ...]
    value: float


@record
class Family:
    name: str  # counters without `_total`: the exposition adds it
    kind: str  # "gauge" | "counter"
    help: str
    samples: tuple[Sample, ...]


def switch_reason(reason: str, *, failback: bool = False) -> str:
    """The label value of a switch's reason (`SWITCH_REASONS`), from the policy's reason text."""
    if failback or reason.startswith("failback:"):
        return "failback"
    if reason in ("start", "recovered"):
        return reason
    detail = reason.partition(": ")[2]
    if detail.startswith("no carrier"):
        return "no_carrier"
    if detail.startswith("no IPv4 address"):
        return "no_address"
    if detail.startswith("verification probe failed"):
        return "verify_failed"
    if " failed in a row" in detail:
        return "probes_failed"
    return "other"


def probe_bytes(result: InterfaceProbe | None) -> int:
    """Estimated bytes of one probe (`PROBE_STAGE_BYTES`): only the stages it ran sent anything."""
    if result is None:
        return 0
    return sum(PROBE_STAGE_BYTES.get(s.stage, 0) for s in result.stages if not s.skipped)


@dataclass
class UplinkTally:
    probes: dict[tuple[str, str], int] = field(default_factory=dict)  # (purpose, result) -> count
    probe_bytes: int = 0
    last_probe: InterfaceProbe | None = None
    last_probe_ok: bool | None = None
    last_probe_at: float | None = None
    health: Health | None = None
    health_since: float | None = None


class MetricsTally:
    """What the daemon counted since it started (monotonic times)."""

    def __init__(self) -> None:
        self.uplinks: dict[str, UplinkTally] = {}
        self.switches: dict[str, int] = dict.fromkeys(SWITCH_REASONS, 0)

    def _uplink(self, ifname: str) -> UplinkTally:
        return self.uplinks.setdefault(ifname, UplinkTally())

    def on_actions(self, actions: Sequence[Action], now: float) -> None:
        for action in actions:
            if isinstance(action, Switch):
                kind = switch_reason(action.reason, failback=action.failback)
                self.switches[kind] = self.switches.get(kind, 0) + 1
            elif isinstance(action, HealthChange):
                u = self._uplink(action.ifname)
                u.health, u.health_since = action.new, now

    def on_probe(self, ifname: str, purpose: Purpose, result: InterfaceProbe | None, at: float) -> None:
        """A probe came back (`result` None: it raised before giving one)."""
        u = self._uplink(ifname)
        ok = result is not None and result.connected
        key = (purpose.value, "ok" if ok else "failed")
        u.probes[key] = u.probes.get(key, 0) + 1
        u.probe_bytes += probe_bytes(result)
        u.last_probe, u.last_probe_ok, u.last_probe_at = result, ok, at

    def health_since(self, ifname: str, health: Health, now: float) -> float:
        """Since when `ifname` has had `health`; a change not seen as an action counts from now."""
        u = self._uplink(ifname)
        if u.health != health or u.health_since is None:
            u.health, u.health_since = health, now
        return u.health_since

    def forget_except(self, ifnames: Sequence[str]) -> None:
        # An uplink gone from the plan (a modem's wwan1 is a new name) must not keep its series.
        for name in [n for n in self.uplinks if n not in ifnames]:
            del self.uplinks[name]


@record
class BuildInfo:
    version: str
    python: str


def _g(name: str, help_text: str, samples: list[Sample]) -> Family:
    return Family(f"{PREFIX}_{name}", "gauge", help_text, tuple(samples))


def _c(name: str, help_text: str, samples: list[Sample]) -> Family:
    return Family(f"{PREFIX}_{name}", "counter", help_text, tuple(samples))


def daemon_families(policy: FailoverPolicy, tally: MetricsTally, *, now: float, wall_now: float,
                    started_wall: float, counters: Mapping[str, Counters], build: BuildInfo,
                    running: bool = True) -> list[Family]:
    """Every family the daemon exports, as of `now` (monotonic) / `wall_now` (Unix time).

    `counters`: the kernel's byte counters of the uplinks that could be read
    (an uplink without an entry has no byte samples rather than a false 0).
    The tally learns from it: a health change it was not told of starts
    counting now, and uplinks gone from the policy's order are forgotten.
    """

    def wall(t: float) -> float:
        return round(wall_now - (now - t), 3)

    up: list[Sample] = []
    health: list[Sample] = []
    health_s: list[Sample] = []
    active: list[Sample] = []
    code: list[Sample] = []
    success: list[Sample] = []
    probe_at: list[Sample] = []
    probe_s: list[Sample] = []
    stage_s: list[Sample] = []
    probes: list[Sample] = []
    pbytes: list[Sample] = []
    rx: list[Sample] = []
    tx: list[Sample] = []
    tally.forget_except(policy.order)
    for name in policy.order:
        spec = policy.uplinks[name].spec
        base = (("ifname", spec.ifname), ("identifier", spec.identifier), ("class", spec.iface_class))
        h = policy.health(name)
        up.append(Sample(base, 1.0 if h == Health.UP else 0.0))
        health.extend(Sample((*base, ("state", s.value)), 1.0 if s == h else 0.0) for s in Health)
        health_s.append(Sample(base, round(max(0.0, now - tally.health_since(name, h, now)), 3)))
        active.append(Sample(base, 1.0 if name == policy.active else 0.0))
        u = tally.uplinks[name]
        for purpose in Purpose:
            for result in ("ok", "failed"):
                probes.append(Sample((*base, ("purpose", purpose.value), ("result", result)),
                                     float(u.probes.get((purpose.value, result), 0))))
        pbytes.append(Sample(base, float(u.probe_bytes)))
        if u.last_probe_at is not None:
            success.append(Sample(base, 1.0 if u.last_probe_ok else 0.0))
            probe_at.append(Sample(base, wall(u.last_probe_at)))
        if u.last_probe is not None:
            code.append(Sample(base, float(int(u.last_probe.code))))
            probe_s.append(Sample(base, round(u.last_probe.duration_ms / 1000.0, 6)))
            stage_s.extend(Sample((*base, ("stage", st.name)), round(st.duration_ms / 1000.0, 6))
                           for st in u.last_probe.stages if not st.skipped)
        c = counters.get(name)
        if c is not None:
            rx.append(Sample(base, float(c.rx_bytes)))
            tx.append(Sample(base, float(c.tx_bytes)))

    verified = next((s for s in reversed(policy.switches) if s.took_s is not None), None)
    ended = next((s for s in reversed(policy.switches) if s.sessions_ended is not None), None)
    last = policy.switches[-1] if policy.switches else None
    families = [
        _g("up", "1 while the daemon runs (0 in the textfile it leaves at a clean stop).",
           [Sample((), 1.0 if running else 0.0)]),
        _g("build_info", "Always 1; impctl's version and the Python it runs on as labels.",
           [Sample((("version", build.version), ("python", build.python)), 1.0)]),
        _g("daemon_start_time_seconds", "Unix time the daemon started.", [Sample((), round(started_wall, 3))]),
        _g("daemon_phase", "1 for the daemon's phase (starting, verifying, connected, lost), else 0.",
           [Sample((("phase", p.value),), 1.0 if p == policy.phase else 0.0) for p in Phase]),
        _g("active_uplink", "1 for the uplink carrying the gateway's traffic (the primary route), else 0.", active),
        _g("uplink_up", "1 when the uplink is up: link, address, and its latest probe reached the cloud.", up),
        _g("uplink_health", "1 for the uplink's health state (unknown, up, degraded, failed, down), else 0.", health),
        _g("uplink_health_seconds", "Seconds the uplink has been in its current health state.", health_s),
        _g("uplink_last_probe_code", "impOS result code of the uplink's latest probe (5 = SERVER_CONNECTED).", code),
        _g("uplink_last_probe_success", "1 when the uplink's latest probe reached the cloud, else 0.", success),
        _g("uplink_last_probe_timestamp_seconds", "Unix time the uplink's latest probe came back.", probe_at),
        _g("uplink_last_probe_duration_seconds", "Wall time of the uplink's latest probe.", probe_s),
        _g("uplink_last_probe_stage_seconds", "Duration of each stage the uplink's latest probe ran.", stage_s),
        _c("uplink_probes", "Probes of the uplink by purpose (verify, liveness, standby) and result.", probes),
        _c("uplink_probe_bytes", "Estimated bytes the daemon's probes sent and received through the uplink"
           " (per stage run, as measured in the lab).", pbytes),
        _c("uplink_receive_bytes", "Bytes the uplink's interface received (kernel counter).", rx),
        _c("uplink_transmit_bytes", "Bytes the uplink's interface sent (kernel counter).", tx),
        _c("switches", "Switches of the primary uplink by reason (start, recovered, no_carrier, no_address,"
           " probes_failed, verify_failed, failback, other).",
           [Sample((("reason", k),), float(v)) for k, v in tally.switches.items()]),
    ]
    if last is not None:
        families.append(_g("last_switch_timestamp_seconds", "Unix time of the latest switch.",
                           [Sample((), wall(last.at))]))
    if verified is not None and verified.took_s is not None:
        families.append(_g("last_switch_duration_seconds", "From the cause of the latest verified switch to its"
                           " verification probe passing.", [Sample((), round(verified.took_s, 6))]))
    if ended is not None and ended.sessions_ended is not None:
        sockets, conntrack, took_s = ended.sessions_ended
        families.append(_g("last_switch_flows_ended", "Flows ended when the latest switch left an uplink: the"
                           " gateway's sockets and the LAN's conntrack entries.",
                           [Sample((("kind", "socket"),), float(sockets)),
                            Sample((("kind", "conntrack"),), float(conntrack))]))
        families.append(_g("last_switch_flows_ended_seconds", "How long ending those flows took.",
                           [Sample((), round(took_s, 6))]))
    return families
