"""The exporter (impctl.backends.metrics): prometheus_client's exposition over the daemon's own loop.

A real HTTP endpoint on 127.0.0.1 (an ephemeral port), read with a real HTTP
client; the exposition checked by prometheus_client's parser and by the real
`promtool check metrics` (the Debian package `prometheus`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from test_metrics_model import started

from impctl.backends.metrics import (
    CONTENT_TYPE,
    MAX_REQUEST_BYTES,
    PrometheusExporter,
    exposition,
    registry_of,
    text_format,
)
from impctl.model.errors import ImpctlError
from impctl.model.metrics import Family, Sample
from impctl.model.netfacts import Counters

REQUIRE_ENV = "IMPCTL_REQUIRE_LAB"


def families() -> list[Family]:
    d = started()
    return list(d.families(10.0, {"eth0": Counters(1000, 2000, 1, 2)}).values())


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        why = "promtool is missing (Debian package prometheus: scripts/bootstrap installs it)"
        if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    return path


def test_the_exposition_parses_and_passes_promtool_check_metrics() -> None:
    text = exposition(families()).decode()
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    assert parsed["impctl_switches"].type == "counter"
    assert {s.name for s in parsed["impctl_switches"].samples} == {"impctl_switches_total"}
    start = [s for s in parsed["impctl_switches"].samples if s.labels == {"reason": "start"}]
    assert [s.value for s in start] == [1.0]
    active = {s.labels["ifname"]: s.value for s in parsed["impctl_active_uplink"].samples}
    assert active == {"eth0": 1.0, "wlan0": 0.0}
    assert "_created" not in text  # custom families carry no creation samples
    lint = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    # promtool prints one line per convention broken (and exits 3 for lint problems).
    assert lint.returncode == 0 and lint.stdout.strip() == "" and lint.stderr.strip() == "", lint


def test_the_text_format_is_what_prometheus_clients_generate_latest_writes() -> None:
    odd = Family("impctl_odd", "gauge", 'help with \\ and \n and "quotes"', (
        Sample((("ifname", 'a"b\\c\nd'), ("class", "é€")), 1e-7),
        Sample((("ifname", "x"), ("class", "y")), 123456789012.0),
        Sample((("ifname", "z"), ("class", "w")), float("nan")),
    ))
    count = Family("impctl_count", "counter", "c.", (Sample((), 3.0),))
    registry = registry_of([*families(), odd, count])
    assert text_format(registry.collect()) == generate_latest(registry)


def test_the_daemon_loads_only_prometheus_clients_data_model() -> None:
    # A fresh interpreter, as the daemon is: none of the exposition module's 2.4 MiB of imports.
    code = (
        "import sys\n"
        "from impctl.cli.daemon_main import _metrics_exporter\n"
        "export = _metrics_exporter()\n"
        "from impctl.backends.metrics import exposition\n"
        "assert export.version and exposition([]) == b''\n"
        "heavy = sorted(m for m in ('prometheus_client.exposition', 'http.server', 'wsgiref', 'urllib.request',"
        " 'email', 'prometheus_client.metrics') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_textfile_is_written_whole_and_without_process_metrics(tmp_path: Path) -> None:
    path = tmp_path / "impctl.prom"
    PrometheusExporter("0.1.0").write_textfile(str(path), families())
    text = path.read_text()
    assert "impctl_uplink_probes_total{" in text and "process_" not in text
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir()] == ["impctl.prom"]  # no temporary left behind
    with pytest.raises(ImpctlError) as err:
        PrometheusExporter("0.1.0").write_textfile(str(tmp_path / "missing" / "impctl.prom"), families())
    assert "cannot write" in err.value.message


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, method: str = "GET") -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_the_endpoint_serves_what_the_loop_collects_at_each_scrape() -> None:
    port = _free_port()
    scrapes = 0

    async def collect() -> Sequence[Family]:
        nonlocal scrapes
        scrapes += 1
        await asyncio.sleep(0)  # a collection may await (netlink counters)
        return families()

    async def main() -> None:
        export = PrometheusExporter("0.1.0")
        await export.listen("127.0.0.1", port, collect)
        try:
            base = f"http://127.0.0.1:{port}"
            status, ctype, body = await asyncio.to_thread(_get, base + "/metrics")
            assert (status, ctype) == (200, CONTENT_TYPE)
            assert 'impctl_active_uplink{class="ethernet",identifier="eth0",ifname="eth0"} 1.0' in body
            assert "process_resident_memory_bytes" in body  # the daemon's own RSS, for the fleet
            assert (await asyncio.to_thread(_get, base + "/metrics?x=1"))[0] == 200
            assert scrapes == 2
            assert (await asyncio.to_thread(_get, base + "/metrics", "HEAD"))[2] == ""
            assert (await asyncio.to_thread(_get, base + "/nope"))[0] == 404
            assert (await asyncio.to_thread(_get, base + "/metrics", "POST"))[0] == 405
            assert (await asyncio.to_thread(_raw, port, b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
            # A request larger than any scraper's is dropped without an answer; the server goes on.
            assert await asyncio.to_thread(_raw, port, b"GET /metrics HTTP/1.1\r\nX: " +
                                           b"a" * MAX_REQUEST_BYTES + b"\r\n\r\n") == b""
            assert (await asyncio.to_thread(_get, base + "/metrics"))[0] == 200
            # A second exporter on the same address: a project error naming it, not an OSError.
            other = PrometheusExporter("0.1.0")
            with pytest.raises(ImpctlError) as err:
                await other.listen("127.0.0.1", port, collect)
            assert f"metrics: cannot listen on 127.0.0.1:{port}" in err.value.message
        finally:
            await export.close()
        with pytest.raises(OSError):
            await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")

    asyncio.run(main())


def test_a_failing_collection_is_that_scrapes_500_and_the_next_one_works() -> None:
    port = _free_port()
    fail = True

    async def collect() -> Sequence[Family]:
        if fail:
            raise RuntimeError("netlink went away")
        return families()

    async def main() -> None:
        nonlocal fail
        export = PrometheusExporter("0.1.0")
        await export.listen("127.0.0.1", port, collect)
        try:
            status, _, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
            assert status == 500 and "netlink went away" in body
            fail = False
            assert (await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics"))[0] == 200
        finally:
            await export.close()

    asyncio.run(main())
