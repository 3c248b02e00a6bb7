"""Probe results: the stages of a cloud-reachability probe, the code each failure means,
and the two machine renderings (JSON data, node_exporter textfile).

Pure: no I/O. The use case (`impctl.usecases.probe`) runs the stages and builds
these objects; the CLI renders them.

Stages, in the order they run (a probe stops at the first that fails):

    cellular (an MM modem):  modem, sim, registration, bearer, then the network stages
    network:                 link, address, dns, proxy (eth/wifi, when configured), tcp, tls

Which code a failure means depends on the stage and on whether the interface is
a modem: any network stage failing behind a connected bearer is
PPP_NO_CONNECTIVITY, as impOS reports it. A cell-class interface that is not a
modem (a HiLink-style USB stick, or a lab veth given the `cell` class) has no
modem stages to run: they are recorded as skipped and its network stages read
as on a wired link (NO_LINK, NO_IP_ADDRESS, ...), which names what actually
failed instead of hiding it behind PPP_NO_CONNECTIVITY.

Address families: after the link stage, the address, dns, proxy, tcp and tls
stages run once per family (IPv4 and IPv6) at the same time, each family on its
own: its own address and default route, its record (A or AAAA) asked of the
interface's DNS servers of that family, TCP and TLS over that family. The
config's `probe.require_family` (`decide`) says which families must reach the
cloud; the interface's `stages` are the deciding family's, and the other
family's failure is a warning. An interface with IPv6 disabled (no IPv6
address at all, not even link-local) has IPv6 "not configured": no warning,
and a failure only where IPv6 is required (`all`, `ipv6`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import field, replace
from enum import StrEnum
from typing import Any

from impctl.model.codes import ExitCode, ResultCode, code_name, exit_code_for
from impctl.model.errors import ImpctlError
from impctl.model.record import record

PROBE_JSON_VERSION = 1


class Stage(StrEnum):
    MODEM = "modem"
    SIM = "sim"
    REGISTRATION = "registration"
    BEARER = "bearer"
    LINK = "link"
    ADDRESS = "address"
    DNS = "dns"
    PROXY = "proxy"
    TCP = "tcp"
    TLS = "tls"


MODEM_STAGES = (Stage.MODEM, Stage.SIM, Stage.REGISTRATION, Stage.BEARER)
NETWORK_STAGES = (Stage.LINK, Stage.ADDRESS, Stage.DNS, Stage.PROXY, Stage.TCP, Stage.TLS)

# The code a failed stage means on an Ethernet/WiFi link (and a modem-less cell).
# LINK is resolved per class (NO_WIFI/NO_LINK share the value 1; the name differs).
_NETWORK_CODES = {
    Stage.LINK: ResultCode.NO_LINK,
    Stage.ADDRESS: ResultCode.NO_IP_ADDRESS,
    Stage.DNS: ResultCode.NOT_RESOLVED,
    Stage.PROXY: ResultCode.NO_PROXY,
    Stage.TCP: ResultCode.NO_SERVER,
    Stage.TLS: ResultCode.NO_SERVER,
}

_MODEM_CODES = {
    Stage.MODEM: ResultCode.NO_MODEM,
    Stage.SIM: ResultCode.SIM_ERROR,
    Stage.REGISTRATION: ResultCode.NO_REGISTRATION,
    Stage.BEARER: ResultCode.NO_PPP_CONNECTION,
}


def failure_code(stage: Stage, *, via_modem: bool, rejected: bool = False) -> ResultCode:
    """The impOS code for `stage` failing.

    `via_modem`: the interface is a ModemManager modem (its network stages then
    mean PPP_NO_CONNECTIVITY). `rejected`: the far end answered "no" rather than
    not answering — the network denied registration, or the proxy refused the
    credentials (impOS: the proxy returned a 4xx status).
    """
    if stage in _MODEM_CODES:
        if stage is Stage.REGISTRATION and rejected:
            return ResultCode.REGISTRATION_DENIED
        return _MODEM_CODES[stage]
    if via_modem:
        return ResultCode.PPP_NO_CONNECTIVITY
    if stage is Stage.PROXY and rejected:
        return ResultCode.NOT_AUTHORISED
    return _NETWORK_CODES[stage]


@record
class StageResult:
    stage: Stage
    ok: bool
    duration_ms: float
    detail: str
    rejected: bool = False  # see failure_code
    skipped: bool = False  # not applicable here (a modem stage on a modem-less cell uplink)

    @property
    def name(self) -> str:
        return self.stage.value


class Family(StrEnum):
    IPV4 = "ipv4"
    IPV6 = "ipv6"


@record
class FamilyProbe:
    """One address family's network stages (address .. tls) on one interface."""

    family: Family
    code: ResultCode
    stages: tuple[StageResult, ...] = ()
    reason: str | None = None
    configured: bool = True  # False: IPv6 disabled on the interface (see the module's doc)
    details: dict[str, str] = field(default_factory=dict)

    @property
    def connected(self) -> bool:
        return self.code == ResultCode.SERVER_CONNECTED

    @property
    def failed_stage(self) -> StageResult | None:
        return next((s for s in self.stages if not s.ok and not s.skipped), None)

    @property
    def status(self) -> str:
        """connected | failed | not configured: what the family did, in a word or two."""
        if self.connected:
            return "connected"
        return "failed" if self.configured else "not configured"


def conclude_family(family: Family, stages: Sequence[StageResult], *, via_modem: bool,
                    configured: bool = True, details: dict[str, str] | None = None) -> FamilyProbe:
    """A family's result from its stages: the first failure decides the code."""
    for stage in stages:
        if not stage.ok and not stage.skipped:
            code = failure_code(stage.stage, via_modem=via_modem, rejected=stage.rejected)
            return FamilyProbe(family, code, tuple(stages), f"{stage.name}: {stage.detail}",
                               configured, dict(details or {}))
    return FamilyProbe(family, ResultCode.SERVER_CONNECTED, tuple(stages), None, configured,
                       dict(details or {}))


def family_warning(result: FamilyProbe, iface_class: str) -> str:
    """The one line naming a family's failure: its family, impOS code and stage, and why."""
    name = code_name(result.code, iface_class)
    return f"{result.family.value}: {name} ({int(result.code)}) {result.reason or ''}".rstrip()


def decide(families: Sequence[FamilyProbe], require: str) -> tuple[FamilyProbe, tuple[FamilyProbe, ...]]:
    """The family whose result is the interface's under `require` (REQUIRE_FAMILIES), and
    the failed families to warn about.

    any: the first connected family, else IPv4 (as an IPv4-only probe reports);
    all: the first family that failed, a not configured one included;
    ipv4/ipv6: that family. A not configured family is warned about only where
    it is the deciding one's failure (never under any/ipv4).
    """
    by_family = {f.family: f for f in families}
    first = families[0]
    if require in (Family.IPV4, Family.IPV6) and require in by_family:
        chosen = by_family[Family(require)]
    elif require == "all":
        chosen = next((f for f in families if not f.connected), first)
    else:
        chosen = next((f for f in families if f.connected), first)
    warn = tuple(f for f in families if f is not chosen and not f.connected and f.configured)
    return chosen, warn


@record
class InterfaceProbe:
    identifier: str
    ifname: str
    iface_class: str
    code: ResultCode
    stages: tuple[StageResult, ...] = ()
    reason: str | None = None  # one line naming what was tried; None when connected
    duration_ms: float = 0.0
    via_modem: bool = False
    details: dict[str, str] = field(default_factory=dict)  # e.g. resolved address, tls version
    families: tuple[FamilyProbe, ...] = ()  # per family, when the probe got past the link stage
    warnings: tuple[str, ...] = ()  # the failures of the families that did not decide the result

    def family(self, family: Family) -> FamilyProbe | None:
        return next((f for f in self.families if f.family is family), None)

    @property
    def reaches(self) -> tuple[Family, ...]:
        """The families through which the cloud answered."""
        return tuple(f.family for f in self.families if f.connected)

    @property
    def code_name(self) -> str:
        return code_name(self.code, self.iface_class)

    @property
    def connected(self) -> bool:
        return self.code == ResultCode.SERVER_CONNECTED

    @property
    def failed_stage(self) -> StageResult | None:
        for stage in self.stages:
            if not stage.ok and not stage.skipped:
                return stage
        return None


def conclude(
    identifier: str,
    ifname: str,
    iface_class: str,
    stages: Sequence[StageResult],
    *,
    via_modem: bool,
    duration_ms: float,
    details: dict[str, str] | None = None,
) -> InterfaceProbe:
    """The result of a probe from the stages it ran: the first failure decides the code."""
    for stage in stages:
        if not stage.ok and not stage.skipped:
            code = failure_code(stage.stage, via_modem=via_modem, rejected=stage.rejected)
            return InterfaceProbe(
                identifier, ifname, iface_class, code, tuple(stages),
                reason=f"{stage.name}: {stage.detail}", duration_ms=duration_ms,
                via_modem=via_modem, details=dict(details or {}),
            )
    return InterfaceProbe(
        identifier, ifname, iface_class, ResultCode.SERVER_CONNECTED, tuple(stages),
        reason=None, duration_ms=duration_ms, via_modem=via_modem, details=dict(details or {}),
    )


def conclude_families(
    identifier: str,
    ifname: str,
    iface_class: str,
    common: Sequence[StageResult],
    families: Sequence[FamilyProbe],
    require: str,
    *,
    via_modem: bool,
    duration_ms: float,
) -> InterfaceProbe:
    """The interface's result once its families ran: the common stages (modem .. link)
    and the deciding family's stages, its details, the others' failures as warnings."""
    chosen, warn = decide(families, require)
    base = conclude(identifier, ifname, iface_class, [*common, *chosen.stages], via_modem=via_modem,
                    duration_ms=duration_ms, details=chosen.details)
    return replace(base, families=tuple(families),
                   warnings=tuple(family_warning(f, iface_class) for f in warn))


def probe_exit_code(results: Sequence[InterfaceProbe]) -> int:
    """0 when every probed interface reaches the cloud; 10 + code for a single
    interface; SOME_FAILED (9) when several were probed and any failed."""
    if all(r.connected for r in results):
        return int(ExitCode.OK)
    if len(results) == 1:
        return exit_code_for(results[0].code)
    return int(ExitCode.SOME_FAILED)


# ---------------------------------------------------------------- JSON


def stage_to_json(stage: StageResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": stage.name,
        "ok": stage.ok,
        "duration_ms": round(stage.duration_ms, 3),
        "detail": stage.detail,
    }
    if stage.skipped:
        out["skipped"] = True
    return out


def family_to_json(result: FamilyProbe, iface_class: str) -> dict[str, Any]:
    return {
        "family": result.family.value,
        "status": result.status,
        "configured": result.configured,
        "connected": result.connected,
        "code": int(result.code),
        "code_name": code_name(result.code, iface_class),
        "reason": result.reason,
        "stages": [stage_to_json(s) for s in result.stages],
        "details": dict(result.details),
    }


def interface_to_json(result: InterfaceProbe) -> dict[str, Any]:
    return {
        "identifier": result.identifier,
        "ifname": result.ifname,
        "class": result.iface_class,
        "code": int(result.code),
        "code_name": result.code_name,
        "connected": result.connected,
        "reason": result.reason,
        "duration_ms": round(result.duration_ms, 3),
        "stages": [stage_to_json(s) for s in result.stages],
        "details": dict(result.details),
        "reaches": [f.value for f in result.reaches],
        "families": [family_to_json(f, result.iface_class) for f in result.families],
        "warnings": list(result.warnings),
    }


@record
class ProbeReport:
    """One run of `impctl probe` over one or more interfaces."""

    results: tuple[InterfaceProbe, ...]
    cloud: str  # "host:port"
    tls: bool
    proxy: str | None  # "host:port" of the proxy used on Ethernet/WiFi, if any
    started_at: float  # Unix time
    duration_ms: float
    require_family: str = "any"

    @property
    def exit_code(self) -> int:
        return probe_exit_code(self.results)


def report_to_json(report: ProbeReport) -> dict[str, Any]:
    """The `data` of `impctl probe --json` (inside the impctl JSON envelope)."""
    return {
        "probe_version": PROBE_JSON_VERSION,
        "cloud": {"endpoint": report.cloud, "tls": report.tls},
        "require_family": report.require_family,
        "proxy": report.proxy,
        "started_at": round(report.started_at, 3),
        "duration_ms": round(report.duration_ms, 3),
        "all_connected": all(r.connected for r in report.results),
        "interfaces": [interface_to_json(r) for r in report.results],
    }


# ---------------------------------------------------------------- Prometheus

PROM_PREFIX = "impctl_probe"


def _label_value(text: str) -> str:
    # node_exporter textfile: backslash, double quote and newline are escaped.
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{k}="{_label_value(v)}"' for k, v in pairs) + "}"


def _num(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def render_prometheus(report: ProbeReport) -> str:
    """The node_exporter textfile-collector document for one probe run.

    Labels are stable per interface (identifier, ifname, class) so a series
    survives a change of result; the code's name is a value of its own metric.
    Every stage that ran gets a duration sample; stages not reached have none.
    """
    metrics: list[tuple[str, str, str, list[tuple[list[tuple[str, str]], float]]]] = []
    code_s: list[tuple[list[tuple[str, str]], float]] = []
    ok_s: list[tuple[list[tuple[str, str]], float]] = []
    dur_s: list[tuple[list[tuple[str, str]], float]] = []
    stage_s: list[tuple[list[tuple[str, str]], float]] = []
    stage_ok_s: list[tuple[list[tuple[str, str]], float]] = []
    info_s: list[tuple[list[tuple[str, str]], float]] = []
    for r in report.results:
        base = [("identifier", r.identifier), ("ifname", r.ifname), ("class", r.iface_class)]
        code_s.append((base, int(r.code)))
        ok_s.append((base, 1 if r.connected else 0))
        dur_s.append((base, r.duration_ms / 1000.0))
        info_s.append((
            [*base, ("code_name", r.code_name), ("failed_stage", r.failed_stage.name if r.failed_stage else "")],
            1,
        ))
        for st in r.stages:
            if st.skipped:
                continue
            stage_s.append(([*base, ("stage", st.name)], st.duration_ms / 1000.0))
            stage_ok_s.append(([*base, ("stage", st.name)], 1 if st.ok else 0))
    fam_ok_s: list[tuple[list[tuple[str, str]], float]] = []
    fam_code_s: list[tuple[list[tuple[str, str]], float]] = []
    for r in report.results:
        base = [("identifier", r.identifier), ("ifname", r.ifname), ("class", r.iface_class)]
        for f in r.families:
            labels = [*base, ("family", f.family.value)]
            fam_ok_s.append(([*labels, ("status", f.status)], 1 if f.connected else 0))
            fam_code_s.append((labels, int(f.code)))
    metrics.append((f"{PROM_PREFIX}_result_code", "gauge",
                    "impOS result code of the last probe (5 = SERVER_CONNECTED).", code_s))
    metrics.append((f"{PROM_PREFIX}_success", "gauge",
                    "1 when the last probe reached the cloud through the interface, else 0.", ok_s))
    metrics.append((f"{PROM_PREFIX}_result_info", "gauge",
                    "Always 1; the result code's name and the failed stage as labels.", info_s))
    metrics.append((f"{PROM_PREFIX}_duration_seconds", "gauge",
                    "Wall time of the last probe of the interface.", dur_s))
    metrics.append((f"{PROM_PREFIX}_stage_duration_seconds", "gauge",
                    "Duration of each stage the last probe ran.", stage_s))
    metrics.append((f"{PROM_PREFIX}_stage_success", "gauge",
                    "1 when the stage succeeded, 0 when it failed.", stage_ok_s))
    metrics.append((f"{PROM_PREFIX}_family_success", "gauge",
                    "1 when the last probe reached the cloud over the address family, else 0; "
                    "status: connected, failed or not configured.", fam_ok_s))
    metrics.append((f"{PROM_PREFIX}_family_result_code", "gauge",
                    "impOS result code of the address family's own stages.", fam_code_s))
    lines: list[str] = []
    for name, mtype, help_text, samples in metrics:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {mtype}")
        for labels, value in samples:
            lines.append(f"{name}{_labels(labels)} {_num(value)}")
    lines.append(f"# HELP {PROM_PREFIX}_last_run_timestamp_seconds Unix time the probe run started.")
    lines.append(f"# TYPE {PROM_PREFIX}_last_run_timestamp_seconds gauge")
    lines.append(f"{PROM_PREFIX}_last_run_timestamp_seconds {_num(round(report.started_at, 3))}")
    return "\n".join(lines) + "\n"


class StageFailed(ImpctlError):
    """A stage did not succeed: `detail` says what was tried and what happened.

    `stage` is set when the backend knows better than the caller which stage
    the failure belongs to (the proxy's CONNECT exchange can fail as the proxy
    or as the cloud behind it); `rejected` when the far end said no (HTTP 4xx).
    """

    kind = "stage_failed"

    def __init__(self, detail: str, *, stage: Stage | None = None, rejected: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.stage = stage
        self.rejected = rejected
