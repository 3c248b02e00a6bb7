"""A real Prometheus server and node_exporter inside a lab namespace, for the fleet-metrics tests.

Both run in the gateway namespace on its loopback (nothing of the host's
network is used) from the Debian packages `prometheus` and
`prometheus-node-exporter`, with their storage in the test's tmp dir. The
test talks to them over sockets opened in that namespace.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from impctl.lab import Lab

REQUIRE_ENV = "IMPCTL_REQUIRE_LAB"
PROMETHEUS_PORT = 9090
NODE_EXPORTER_PORT = 9100
RULES = Path(__file__).resolve().parents[2] / "contrib" / "prometheus" / "impctl.rules.yml"


def need(binary: str, package: str) -> str:
    """The binary's path; skipped without it (failed where CI demands the lab)."""
    path = shutil.which(binary)
    if path is None:
        why = f"{binary} is missing (Debian package {package}: scripts/bootstrap installs it)"
        if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    return path


def http_get(lab: Lab, port: int, path: str, timeout_s: float = 5.0) -> tuple[int, str]:
    """GET http://127.0.0.1:port/path from inside the gateway namespace."""
    sock = lab.open_socket()
    sock.settimeout(timeout_s)
    try:
        sock.connect(("127.0.0.1", port))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
        conn.sock = sock
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        sock.close()


def wait_http(lab: Lab, port: int, path: str, proc: subprocess.Popen[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[-1] if isinstance(proc.args, list) else proc.args} exited "
                                 f"{proc.returncode}")
        try:
            status, _ = http_get(lab, port, path, 1.0)
            if status == 200:
                return
            last = status
        except OSError as err:
            last = err
        time.sleep(0.1)
    raise AssertionError(f"nothing answered on 127.0.0.1:{port}{path} in {timeout_s} s: {last}")


class Server:
    """A process started in the gateway netns, stopped by its own pid."""

    def __init__(self, lab: Lab, argv: list[str], log: Path) -> None:
        self.log = log
        self._out = log.open("w")
        self.proc: subprocess.Popen[str] = subprocess.Popen(lab.exec_argv(argv), stdout=self._out,
                                                             stderr=subprocess.STDOUT, text=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


class Prometheus(Server):
    """Prometheus scraping `targets` (job -> host:port) every second, with impctl's rules loaded."""

    def __init__(self, lab: Lab, workdir: Path, targets: dict[str, str]) -> None:
        binary = need("prometheus", "prometheus")
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}
                               for job, target in targets.items()],
        }
        path = workdir / "prometheus.yml"
        path.write_text(json.dumps(config))  # JSON is YAML
        super().__init__(lab, [binary, f"--config.file={path}", f"--storage.tsdb.path={workdir / 'data'}",
                               f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}", "--log.level=warn"],
                         workdir / "prometheus.log")
        self.lab = lab
        wait_http(lab, PROMETHEUS_PORT, "/-/ready", self.proc, 30.0)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant PromQL query over the HTTP API: its vector's samples."""
        status, body = http_get(self.lab, PROMETHEUS_PORT, "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        data = json.loads(body)
        assert status == 200 and data["status"] == "success", body
        result: list[dict[str, Any]] = data["data"]["result"]
        return result

    def wait_query(self, expr: str, timeout_s: float, what: str) -> list[dict[str, Any]]:
        """The query's samples once it returns any (a PromQL filter like `== 1` makes it a condition)."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus: no {what} ({expr}) within {timeout_s} s;"
                                     f" log:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.2)


class NodeExporter(Server):
    """node_exporter with only its textfile collector, reading `directory`."""

    def __init__(self, lab: Lab, workdir: Path, directory: Path) -> None:
        binary = need("prometheus-node-exporter", "prometheus-node-exporter")
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(lab, [binary, "--collector.disable-defaults", "--collector.textfile",
                               f"--collector.textfile.directory={directory}",
                               f"--web.listen-address=127.0.0.1:{NODE_EXPORTER_PORT}", "--log.level=warn"],
                         workdir / "node_exporter.log")
        self.lab = lab
        wait_http(lab, NODE_EXPORTER_PORT, "/metrics", self.proc, 15.0)

    def metrics(self) -> str:
        status, body = http_get(self.lab, NODE_EXPORTER_PORT, "/metrics")
        assert status == 200, body
        return body
