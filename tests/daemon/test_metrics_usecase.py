"""The daemon's fleet metrics (impctl.usecases.metrics) through its real loop, with fake backends.

The fakes of test_daemon_usecase stand in for NetworkManager, netlink and
the probe; the exporter is the real one (impctl.backends.metrics), serving
on an ephemeral port of 127.0.0.1 and writing a textfile in a tmp dir.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from test_daemon_usecase import SETTINGS, Rig, make_rig, run_async, started, stop

from impctl.backends.metrics import PrometheusExporter
from impctl.model.config import Config
from impctl.model.errors import NoSuchInterface
from impctl.model.inventory import DeviceInfo
from impctl.model.netfacts import Counters
from impctl.usecases.daemon import Daemon

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def get(samples: Samples, name: str, **labels: str) -> float | None:
    found = [v for (n, ls), v in samples.items() if n == name and all((k, v) in ls for k, v in labels.items())]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


async def scrape(port: int) -> Samples:
    def fetch() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    return parse(await asyncio.to_thread(fetch))


def with_metrics(rig: Rig, listen: str | None, textfile: Path | None) -> Rig:
    settings = dataclasses.replace(SETTINGS, metrics_listen=listen,
                                   metrics_textfile=str(textfile) if textfile else None)
    rig.config[0] = Config(daemon=settings)
    reads: list[str] = []

    async def counters(ifname: str) -> Counters:
        reads.append(ifname)
        if ifname == "wwan0":
            raise NoSuchInterface("no interface 'wwan0' in this network namespace")
        return Counters(1000 * len(reads), 2000, 10, 20)

    rig.daemon = Daemon(dataclasses.replace(rig.daemon.d, metrics=lambda: PrometheusExporter("test"),
                                            counters=counters))
    return rig


async def until(check: object, timeout_s: float = 3.0) -> None:
    assert callable(check)
    async with asyncio.timeout(timeout_s):
        while not await check():
            await asyncio.sleep(0.02)


@run_async
async def test_a_scrape_shows_the_switch_and_the_textfile_follows(tmp_path: Path) -> None:
    port = free_port()
    textfile = tmp_path / "impctl.prom"
    rig = with_metrics(make_rig(), f"127.0.0.1:{port}", textfile)
    task = await started(rig)
    line = await rig.wait_line("event=metrics")
    assert f"listen=127.0.0.1:{port}" in line
    first = await scrape(port)
    assert get(first, "impctl_active_uplink", ifname="eth0") == 1
    assert get(first, "impctl_switches_total", reason="start") == 1
    assert get(first, "impctl_switches_total", reason="no_carrier") == 0
    assert get(first, "impctl_uplink_receive_bytes_total", ifname="eth0") is not None
    # An interface whose counters cannot be read has no byte samples, and the scrape still works.
    assert get(first, "impctl_uplink_receive_bytes_total", ifname="wwan0") is None
    assert get(first, "impctl_build_info", version="test") == 1

    rig.link("eth0", False)
    await rig.wait_line("event=connected ifname=wlan0")

    async def switched() -> bool:
        s = await scrape(port)
        return (get(s, "impctl_switches_total", reason="no_carrier") == 1
                and get(s, "impctl_last_switch_flows_ended", kind="socket") == 2)

    await until(switched)
    after = await scrape(port)
    assert get(after, "impctl_active_uplink", ifname="wlan0") == 1
    assert get(after, "impctl_active_uplink", ifname="eth0") == 0
    assert get(after, "impctl_uplink_health", ifname="eth0", state="down") == 1
    assert get(after, "impctl_last_switch_flows_ended", kind="conntrack") == 1
    duration = get(after, "impctl_last_switch_duration_seconds")
    assert duration is not None and 0 < duration < 1
    verify = get(after, "impctl_uplink_probes_total", ifname="wlan0", purpose="verify", result="ok")
    assert verify is not None and verify >= 1

    async def textfile_switched() -> bool:
        return textfile.exists() and get(parse(textfile.read_text()), "impctl_active_uplink", ifname="wlan0") == 1

    await until(textfile_switched)
    assert await stop(rig, task) == 0
    left = parse(textfile.read_text())
    assert get(left, "impctl_up") == 0 and get(left, "impctl_switches_total", reason="no_carrier") == 1
    assert get(left, "impctl_build_info", version="test") == 1
    try:
        await scrape(port)
    except OSError:
        pass
    else:
        raise AssertionError("the endpoint outlived the daemon")


@run_async
async def test_a_reload_moves_the_endpoint_and_a_taken_port_is_logged_not_fatal() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy_port = taken.getsockname()[1]
    try:
        rig = with_metrics(make_rig(), f"127.0.0.1:{busy_port}", None)
        task = await started(rig)  # connected all the same
        line = await rig.wait_line("event=metrics-error")
        assert f"cannot listen on 127.0.0.1:{busy_port}" in line
        port = free_port()
        rig.config[0] = Config(daemon=dataclasses.replace(rig.config[0].daemon, metrics_listen=str(port)))
        rig.daemon.request_reload()
        assert f"listen=127.0.0.1:{port}" in await rig.wait_line("event=metrics")
        assert get(await scrape(port), "impctl_active_uplink", ifname="eth0") == 1
        rig.config[0] = Config(daemon=dataclasses.replace(rig.config[0].daemon, metrics_listen=None))
        rig.daemon.request_reload()
        assert "listen=off" in await rig.wait_line("event=metrics")
        try:
            await scrape(port)
        except OSError:
            pass
        else:
            raise AssertionError("still served after metrics_listen was removed")
        assert await stop(rig, task) == 0
    finally:
        taken.close()


@run_async
async def test_a_textfile_that_cannot_be_written_is_one_line_and_the_daemon_goes_on(tmp_path: Path) -> None:
    rig = with_metrics(make_rig(), None, tmp_path / "missing" / "impctl.prom")
    task = await started(rig)
    line = await rig.wait_line("event=metrics-error")
    assert "cannot write" in line and "impctl.prom" in line
    rig.link("eth0", False)
    await rig.wait_line("event=connected ifname=wlan0")
    await asyncio.sleep(1.5)  # more publishes: no more lines about the same problem
    assert not [x for x in rig.lines if "event=metrics-error" in x]
    (tmp_path / "missing").mkdir()

    async def written() -> bool:
        return (tmp_path / "missing" / "impctl.prom").exists()

    rig.link("eth0", True)  # something to publish
    await until(written, 5.0)
    assert get(parse((tmp_path / "missing" / "impctl.prom").read_text()), "impctl_build_info", version="test") == 1
    assert "reason=\"written again\"" in await rig.wait_line("event=metrics textfile=")
    assert await stop(rig, task) == 0


@run_async
async def test_a_modems_bytes_are_read_from_its_ip_interface() -> None:
    port = free_port()
    rig = make_rig()
    devices = rig.nm.devices

    async def with_data_port() -> list[DeviceInfo]:
        # NM names a modem's device after its control port; IpInterface carries the traffic.
        return [dataclasses.replace(d, extra={**d.extra, "ip_ifname": "wwan0data"}) if d.ifname == "wwan0" else d
                for d in await devices()]

    rig.nm.devices = with_data_port  # type: ignore[method-assign]
    rig.config[0] = Config(daemon=dataclasses.replace(SETTINGS, metrics_listen=f"127.0.0.1:{port}"))
    read: list[str] = []

    async def counters(ifname: str) -> Counters:
        read.append(ifname)
        return Counters(7 if ifname == "wwan0data" else 1, 8, 1, 1)

    rig.daemon = Daemon(dataclasses.replace(rig.daemon.d, metrics=lambda: PrometheusExporter("test"),
                                            counters=counters))
    task = await started(rig)
    samples = await scrape(port)
    assert sorted(read) == ["eth0", "wlan0", "wwan0data"]
    assert get(samples, "impctl_uplink_receive_bytes_total", ifname="wwan0") == 7
    assert await stop(rig, task) == 0


def test_a_bad_metrics_setting_stops_the_daemon_at_start_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "impctl.toml"
    config.write_text('[daemon]\nmetrics_listen = "gateway.local:9563"\n')
    done = subprocess.run([sys.executable, "-m", "impctl.cli.daemon_main", "--state", str(tmp_path / "s.json"),
                           "--config", str(config), "--config-explicit"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert done.stderr == (f"error: {config}: daemon.metrics_listen: expected PORT or ADDRESS:PORT (e.g. 9563 or"
                           " 127.0.0.1:9563; [::1]:PORT for IPv6; port 1-65535), got 'gateway.local:9563'\n")
    assert done.stdout == ""
