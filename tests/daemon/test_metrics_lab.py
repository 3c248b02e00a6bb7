"""Fleet metrics with the real parts: the daemon in the lab, a real Prometheus scraping it, and a
real node_exporter reading the daemon's textfile and `impctl probe`'s.

Prometheus (Debian's 2.42) and node_exporter run in the gateway namespace on
its loopback (tests/daemon/promlab.py), Prometheus scraping every second
with the shipped alert rules loaded. After a carrier loss on the primary,
PromQL over Prometheus's HTTP API must show the switch counted and wlan0 as
the active uplink, from the daemon's endpoint and from its textfile alike.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from labdaemon import DaemonProcess, is_event, write_config
from prometheus_client.parser import text_string_to_metric_families
from promlab import NODE_EXPORTER_PORT, PROMETHEUS_PORT, NodeExporter, Prometheus, http_get

from impctl.lab import Lab

pytestmark = pytest.mark.lab

METRICS_PORT = 9563


def value(result: list[dict[str, object]]) -> float:
    assert len(result) == 1, result
    sample = result[0]["value"]
    assert isinstance(sample, list)
    return float(sample[1])


@pytest.fixture
def textfile_dir(tmp_path: Path) -> Path:
    path = tmp_path / "textfile"
    path.mkdir()
    return path


@pytest.fixture
def metrics_daemon(lab: Lab, tmp_path: Path, textfile_dir: Path) -> Iterator[DaemonProcess]:
    config = write_config(lab, tmp_path / "impctl.toml", daemon={
        "metrics_listen": f"127.0.0.1:{METRICS_PORT}", "metrics_textfile": str(textfile_dir / "impctl.prom")})
    proc = DaemonProcess(lab, config, tmp_path / "state" / "state.json")
    try:
        proc.wait_for(is_event("metrics", listen=f"127.0.0.1:{METRICS_PORT}"), 15.0, "the metrics endpoint")
        proc.wait_for(is_event("connected", ifname="eth0"), 15.0, "connection through eth0 at start")
        yield proc
    finally:
        proc.stop()
        print("\n".join(proc.raw))


def test_prometheus_sees_the_switch_and_the_new_active_uplink(
        lab: Lab, tmp_path: Path, textfile_dir: Path, metrics_daemon: DaemonProcess) -> None:
    node = NodeExporter(lab, tmp_path / "node", textfile_dir)
    prom = Prometheus(lab, tmp_path / "prometheus", {
        "impctl": f"127.0.0.1:{METRICS_PORT}", "node": f"127.0.0.1:{NODE_EXPORTER_PORT}"})
    try:
        prom.wait_query('impctl_active_uplink{job="impctl",ifname="eth0"} == 1', 15.0, "eth0 active")
        prom.wait_query('impctl_active_uplink{job="node",ifname="eth0"} == 1', 15.0, "eth0 active (textfile)")
        assert value(prom.query('impctl_switches_total{job="impctl",reason="no_carrier"}')) == 0
        assert value(prom.query('impctl_uplink_up{job="impctl",ifname="eth0"}')) == 1

        lab.fault("eth0", "link-down")
        metrics_daemon.wait_for(is_event("connected", ifname="wlan0"), 5.0, "failover to wlan0")

        prom.wait_query('increase(impctl_switches_total{job="impctl",reason="no_carrier"}[1m]) > 0', 10.0,
                        "the switch counted")
        prom.wait_query('impctl_active_uplink{job="impctl",ifname="wlan0"} == 1', 10.0, "wlan0 active")
        # Active from the switch on; verified a probe later (a scrape may fall in between).
        prom.wait_query('impctl_uplink_probes_total{job="impctl",ifname="wlan0",purpose="verify",result="ok"} >= 1',
                        5.0, "wlan0's verification")
        active = prom.query('impctl_active_uplink{job="impctl"} == 1')
        assert [r["metric"]["ifname"] for r in active] == ["wlan0"]  # type: ignore[index]
        assert value(prom.query('impctl_uplink_up{job="impctl",ifname="eth0"}')) == 0
        assert value(prom.query('impctl_uplink_health{job="impctl",ifname="eth0",state="down"}')) == 1
        took = value(prom.query('impctl_last_switch_duration_seconds{job="impctl"}'))
        assert 0 < took < 1.0  # a carrier loss: about 60 ms in the lab
        assert value(prom.query('impctl_uplink_receive_bytes_total{job="impctl",ifname="wlan0"}')) > 0
        assert value(prom.query('impctl_uplink_probe_bytes_total{job="impctl",ifname="wlan0"}')) >= 3055
        # The textfile tells the same through node_exporter.
        prom.wait_query('impctl_active_uplink{job="node",ifname="wlan0"} == 1', 10.0, "wlan0 active (textfile)")
        prom.wait_query('impctl_switches_total{job="node",reason="no_carrier"} == 1', 10.0, "the switch (textfile)")
        # The shipped rules load and evaluate in the real server.
        status, body = http_get(lab, PROMETHEUS_PORT, "/api/v1/rules")
        assert status == 200 and body.count('"health":"ok"') == 5, body
    finally:
        prom.stop()
        node.stop()
    assert metrics_daemon.stop() == 0
    # A clean stop leaves a textfile saying so.
    left = {f.name: f for f in text_string_to_metric_families((textfile_dir / "impctl.prom").read_text())}
    assert left["impctl_up"].samples[0].value == 0


def test_node_exporter_reads_the_probes_textfile(lab: Lab, tmp_path: Path, textfile_dir: Path) -> None:
    prom_file = textfile_dir / "impctl-probe.prom"

    def probe() -> None:
        lab.run([sys.executable, "-m", "impctl", "probe", "--all", "--prometheus", str(prom_file)], timeout=30)

    probe()
    node = NodeExporter(lab, tmp_path / "node", textfile_dir)
    try:
        families = {f.name: f for f in text_string_to_metric_families(node.metrics())}
        assert families["node_textfile_scrape_error"].samples[0].value == 0
        success = {s.labels["ifname"]: s.value for s in families["impctl_probe_success"].samples}
        assert success == {"eth0": 1.0, "wlan0": 1.0, "wwan0": 1.0}
        lab.fault("wlan0", "dns-off")
        probe()  # rewritten atomically while node_exporter serves it
        families = {f.name: f for f in text_string_to_metric_families(node.metrics())}
        codes = {s.labels["ifname"]: s.value for s in families["impctl_probe_result_code"].samples}
        assert codes == {"eth0": 5.0, "wlan0": 3.0, "wwan0": 5.0}  # 3 = NOT_RESOLVED
        info = [s.labels for s in families["impctl_probe_result_info"].samples if s.labels["ifname"] == "wlan0"]
        assert info[0]["code_name"] == "NOT_RESOLVED" and info[0]["failed_stage"] == "dns"
        assert families["node_textfile_scrape_error"].samples[0].value == 0
    finally:
        node.stop()
