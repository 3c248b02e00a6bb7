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
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import field
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

    @property
    def exit_code(self) -> int:
        return probe_exit_code(self.results)


def report_to_json(report: ProbeReport) -> dict[str, Any]:
    """The `data` of `impctl probe --json` (inside the impctl JSON envelope)."""
    return {
        "probe_version": PROBE_JSON_VERSION,
        "cloud": {"endpoint": report.cloud, "tls": report.tls},
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
