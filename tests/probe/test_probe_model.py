"""The pure probe model: which code a failed stage means, exit codes, JSON and
node_exporter renderings."""

from __future__ import annotations

import pytest
from probe_textfile_format import parse_textfile

from impctl.model.codes import ExitCode, ResultCode
from impctl.model.probe import (
    MODEM_STAGES,
    NETWORK_STAGES,
    Family,
    FamilyProbe,
    InterfaceProbe,
    ProbeReport,
    Stage,
    StageResult,
    conclude,
    conclude_families,
    conclude_family,
    failure_code,
    family_to_json,
    interface_to_json,
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
                        "duration_ms", "stages", "details", "reaches", "families", "warnings"}
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
        "impctl_probe_last_run_timestamp_seconds", "impctl_probe_family_success",
        "impctl_probe_family_result_code",
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


# ---------------------------------------------------------------- address families

LINK = [ok(Stage.LINK)]
V4_OK = conclude_family(Family.IPV4, [ok(Stage.ADDRESS), ok(Stage.DNS), ok(Stage.TCP), ok(Stage.TLS)],
                        via_modem=False, details={"resolved": "198.19.0.10"})
V6_OK = conclude_family(Family.IPV6, [ok(Stage.ADDRESS), ok(Stage.DNS), ok(Stage.TCP), ok(Stage.TLS)],
                        via_modem=False, details={"resolved": "2001:db8:ff::10"})
V6_DNS = conclude_family(Family.IPV6, [ok(Stage.ADDRESS), bad(Stage.DNS)], via_modem=False)
V6_OFF = conclude_family(Family.IPV6, [bad(Stage.ADDRESS)], via_modem=False, configured=False)
V4_NOADDR = conclude_family(Family.IPV4, [bad(Stage.ADDRESS)], via_modem=False)


def both(v4: FamilyProbe, v6: FamilyProbe, require: str) -> InterfaceProbe:
    return conclude_families("eth0", "eth0", "ethernet", LINK, [v4, v6], require, via_modem=False, duration_ms=5)


def test_an_ipv4_only_uplink_reads_as_before_under_any_and_ipv4() -> None:
    for require in ("any", "ipv4"):
        r = both(V4_OK, V6_OFF, require)
        assert r.connected and r.warnings == () and r.reaches == (Family.IPV4,)
        assert [s.name for s in r.stages] == ["link", "address", "dns", "tcp", "tls"]
        assert r.details == {"resolved": "198.19.0.10"}
    assert V6_OFF.status == "not configured" and V6_DNS.status == "failed" and V4_OK.status == "connected"


@pytest.mark.parametrize("require", ["all", "ipv6"])
def test_ipv6_not_configured_fails_where_ipv6_is_required(require: str) -> None:
    r = both(V4_OK, V6_OFF, require)
    assert r.code == ResultCode.NO_IP_ADDRESS and r.reason == "address: address broke"
    assert r.warnings == ()  # the IPv4 family worked: nothing to warn about


def test_one_family_failing_is_a_warning_under_any_with_its_code_and_stage() -> None:
    r = both(V4_OK, V6_DNS, "any")
    assert r.connected and r.reaches == (Family.IPV4,)
    assert r.warnings == ("ipv6: NOT_RESOLVED (3) dns: dns broke",)


def test_an_ipv6_only_uplink_is_connected_under_any_with_the_ipv4_failure_as_warning() -> None:
    r = both(V4_NOADDR, V6_OK, "any")
    assert r.connected and r.details["resolved"] == "2001:db8:ff::10"
    assert r.warnings == ("ipv4: NO_IP_ADDRESS (2) address: address broke",)
    assert not both(V4_NOADDR, V6_OK, "ipv4").connected
    assert not both(V4_NOADDR, V6_OK, "all").connected


@pytest.mark.parametrize("require", ["all", "ipv6"])
def test_the_failed_family_decides_under_all_and_its_own_policy(require: str) -> None:
    r = both(V4_OK, V6_DNS, require)
    assert r.code == ResultCode.NOT_RESOLVED and r.reason == "dns: dns broke"
    assert [s.name for s in r.stages] == ["link", "address", "dns"]


def test_both_families_failing_report_ipv4_and_warn_of_ipv6() -> None:
    r = both(V4_NOADDR, V6_DNS, "any")
    assert r.code == ResultCode.NO_IP_ADDRESS and r.warnings == ("ipv6: NOT_RESOLVED (3) dns: dns broke",)


def test_family_json_and_textfile_carry_the_family() -> None:
    r = both(V4_OK, V6_DNS, "any")
    doc = interface_to_json(r)
    assert doc["reaches"] == ["ipv4"] and doc["warnings"] == ["ipv6: NOT_RESOLVED (3) dns: dns broke"]
    assert [f["family"] for f in doc["families"]] == ["ipv4", "ipv6"]
    assert family_to_json(V6_OFF, "ethernet")["status"] == "not configured"
    report = ProbeReport((r,), "cloud.imp.lab:443", True, None, 1795000000.5, 25.0, require_family="any")
    assert report_to_json(report)["require_family"] == "any"
    fams = parse_textfile(render_prometheus(report))
    ok_s = {s[0]["family"]: (s[0]["status"], s[1]) for s in fams["impctl_probe_family_success"]}
    assert ok_s == {"ipv4": ("connected", 1), "ipv6": ("failed", 0)}
    codes = {s[0]["family"]: s[1] for s in fams["impctl_probe_family_result_code"]}
    assert codes == {"ipv4": 5, "ipv6": 3}
