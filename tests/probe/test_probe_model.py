"""The pure probe model: which code a failed stage means, exit codes, JSON and
node_exporter renderings."""

from __future__ import annotations

import pytest
from probe_textfile_format import parse_textfile

from impctl.model.codes import ExitCode, ResultCode
from impctl.model.probe import (
    MODEM_STAGES,
    NETWORK_STAGES,
    InterfaceProbe,
    ProbeReport,
    Stage,
    StageResult,
    conclude,
    failure_code,
    probe_exit_code,
    render_prometheus,
    report_to_json,
)


@pytest.mark.parametrize(
    ("stage", "via_modem", "rejected", "code"),
    [
        (Stage.LINK, False, False, ResultCode.NO_LINK),
        (Stage.ADDRESS, False, False, ResultCode.NO_IP_ADDRESS),
        (Stage.DNS, False, False, ResultCode.NOT_RESOLVED),
        (Stage.PROXY, False, False, ResultCode.NO_PROXY),
        (Stage.PROXY, False, True, ResultCode.NOT_AUTHORISED),
        (Stage.TCP, False, False, ResultCode.NO_SERVER),
        (Stage.TLS, False, False, ResultCode.NO_SERVER),
        (Stage.MODEM, True, False, ResultCode.NO_MODEM),
        (Stage.SIM, True, False, ResultCode.SIM_ERROR),
        (Stage.REGISTRATION, True, False, ResultCode.NO_REGISTRATION),
        (Stage.REGISTRATION, True, True, ResultCode.REGISTRATION_DENIED),
        (Stage.BEARER, True, False, ResultCode.NO_PPP_CONNECTION),
        (Stage.LINK, True, False, ResultCode.PPP_NO_CONNECTIVITY),
        (Stage.ADDRESS, True, False, ResultCode.PPP_NO_CONNECTIVITY),
        (Stage.DNS, True, False, ResultCode.PPP_NO_CONNECTIVITY),
        (Stage.TCP, True, False, ResultCode.PPP_NO_CONNECTIVITY),
        (Stage.TLS, True, False, ResultCode.PPP_NO_CONNECTIVITY),
    ],
)
def test_failure_code(stage: Stage, via_modem: bool, rejected: bool, code: ResultCode) -> None:
    assert failure_code(stage, via_modem=via_modem, rejected=rejected) == code


def test_every_stage_has_a_code() -> None:
    for stage in (*MODEM_STAGES, *NETWORK_STAGES):
        for via_modem in (False, True):
            assert failure_code(stage, via_modem=via_modem) != ResultCode.SERVER_CONNECTED


def ok(stage: Stage, ms: float = 1.0) -> StageResult:
    return StageResult(stage, True, ms, f"{stage.value} fine")


def bad(stage: Stage, ms: float = 2.0, rejected: bool = False) -> StageResult:
    return StageResult(stage, False, ms, f"{stage.value} broke", rejected=rejected)


def test_conclude_takes_the_first_failure_and_names_value_1_by_class() -> None:
    wifi = conclude("wl0", "wlan0", "wifi", [bad(Stage.LINK)], via_modem=False, duration_ms=3)
    eth = conclude("eth0", "eth0", "ethernet", [bad(Stage.LINK)], via_modem=False, duration_ms=3)
    assert wifi.code == eth.code == ResultCode.NO_WIFI
    assert (wifi.code_name, eth.code_name) == ("NO_WIFI", "NO_LINK")
    assert wifi.reason == "link: link broke"
    r = conclude("eth0", "eth0", "ethernet", [ok(Stage.LINK), bad(Stage.DNS), bad(Stage.TCP)],
                 via_modem=False, duration_ms=3)
    assert r.code == ResultCode.NOT_RESOLVED and r.failed_stage is not None and r.failed_stage.stage is Stage.DNS


def test_conclude_ignores_skipped_stages() -> None:
    skipped = StageResult(Stage.MODEM, False, 0.0, "not a modem", skipped=True)
    r = conclude("cell0", "wwan0", "cell", [skipped, *(ok(s) for s in NETWORK_STAGES)],
                 via_modem=False, duration_ms=5)
    assert r.connected and r.code_name == "SERVER_CONNECTED" and r.reason is None


def result(code: ResultCode, ident: str = "eth0") -> InterfaceProbe:
    return InterfaceProbe(ident, ident, "ethernet", code)


def test_exit_codes() -> None:
    connected = result(ResultCode.SERVER_CONNECTED)
    assert probe_exit_code([connected]) == 0
    assert probe_exit_code([connected, result(ResultCode.SERVER_CONNECTED, "eth1")]) == 0
    assert probe_exit_code([result(ResultCode.NOT_AUTHORISED)]) == 17
    assert probe_exit_code([result(ResultCode.PPP_NO_CONNECTIVITY)]) == 23
    assert probe_exit_code([result(ResultCode.NO_LINK)]) == 11
    assert probe_exit_code([connected, result(ResultCode.NO_SERVER, "eth1")]) == ExitCode.SOME_FAILED == 9


def sample_report() -> ProbeReport:
    eth = conclude("eth0", "eth0", "ethernet", [ok(Stage.LINK, 1.5), ok(Stage.ADDRESS), ok(Stage.DNS),
                   ok(Stage.TCP), ok(Stage.TLS, 12.25)], via_modem=False, duration_ms=20,
                   details={"resolved": "198.19.0.10"})
    wl = conclude('w"l\\0', "wlan0", "wifi", [ok(Stage.LINK), ok(Stage.ADDRESS), ok(Stage.DNS),
                  bad(Stage.PROXY, rejected=True)], via_modem=False, duration_ms=9)
    cell = conclude("cell0", "wwan0", "cell", [ok(Stage.MODEM, 0), ok(Stage.SIM, 0), bad(Stage.REGISTRATION, 0,
                    rejected=True)], via_modem=True, duration_ms=0.5)
    return ProbeReport((eth, wl, cell), "cloud.imp.lab:443", True, "proxy.imp.lab:8888", 1795000000.5, 25.0)


def test_json_shape() -> None:
    doc = report_to_json(sample_report())
    assert doc["probe_version"] == 1
    assert doc["cloud"] == {"endpoint": "cloud.imp.lab:443", "tls": True}
    assert doc["proxy"] == "proxy.imp.lab:8888" and doc["all_connected"] is False
    assert [i["code_name"] for i in doc["interfaces"]] == ["SERVER_CONNECTED", "NOT_AUTHORISED",
                                                           "REGISTRATION_DENIED"]
    eth = doc["interfaces"][0]
    assert set(eth) == {"identifier", "ifname", "class", "code", "code_name", "connected", "reason",
                        "duration_ms", "stages", "details"}
    assert eth["code"] == 5 and eth["connected"] is True and eth["reason"] is None
    assert [s["name"] for s in eth["stages"]] == ["link", "address", "dns", "tcp", "tls"]
    assert eth["stages"][0] == {"name": "link", "ok": True, "duration_ms": 1.5, "detail": "link fine"}
    cell = doc["interfaces"][2]
    assert cell["code"] == 11 and cell["reason"] == "registration: registration broke"


def test_prometheus_shape() -> None:
    families = parse_textfile(render_prometheus(sample_report()))
    assert set(families) == {
        "impctl_probe_result_code", "impctl_probe_success", "impctl_probe_result_info",
        "impctl_probe_duration_seconds", "impctl_probe_stage_duration_seconds", "impctl_probe_stage_success",
        "impctl_probe_last_run_timestamp_seconds",
    }
    codes = {s[0]["ifname"]: s[1] for s in families["impctl_probe_result_code"]}
    assert codes == {"eth0": 5, "wlan0": 7, "wwan0": 11}
    success = {s[0]["ifname"]: s[1] for s in families["impctl_probe_success"]}
    assert success == {"eth0": 1, "wlan0": 0, "wwan0": 0}
    eth_labels = families["impctl_probe_success"][0][0]
    assert eth_labels == {"identifier": "eth0", "ifname": "eth0", "class": "ethernet"}
    # label values are escaped
    assert families["impctl_probe_success"][1][0]["identifier"] == 'w\\"l\\\\0'
    stages = {(s[0]["ifname"], s[0]["stage"]): s[1] for s in families["impctl_probe_stage_duration_seconds"]}
    assert stages[("eth0", "tls")] == pytest.approx(0.01225)
    assert stages[("eth0", "link")] == pytest.approx(0.0015)
    assert ("eth0", "proxy") not in stages  # not run: no sample
    stage_ok = {(s[0]["ifname"], s[0]["stage"]): s[1] for s in families["impctl_probe_stage_success"]}
    assert stage_ok[("wlan0", "proxy")] == 0 and stage_ok[("wlan0", "dns")] == 1
    info = {s[0]["ifname"]: s[0] for s in families["impctl_probe_result_info"]}
    assert info["wwan0"]["code_name"] == "REGISTRATION_DENIED" and info["wwan0"]["failed_stage"] == "registration"
    assert info["eth0"]["failed_stage"] == ""
    assert families["impctl_probe_last_run_timestamp_seconds"] == [({}, 1795000000.5)]
