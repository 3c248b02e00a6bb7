"""`impctl probe` in the gateway lab: every code the lab can produce, each from its
real fault, and the JSON / node_exporter outputs of real runs.

Faults are combined where they do not interfere (one per uplink), so one probe
run checks several codes and, at the same time, that a fault on one uplink does
not change another's result.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from probe_textfile_format import parse_textfile

from impctl.backends.secrets import encrypt_secret, key_path_for
from impctl.backends.statefile import write_state
from impctl.lab import Lab
from impctl.model.nic import Secret
from impctl.model.state import state_from_dict

pytestmark = pytest.mark.lab

CLOUD_BY_ADDRESS = "198.19.0.10:443"  # the lab cloud's certificate names its address too


def probe(lab: Lab, *args: str) -> tuple[int, dict[str, Any]]:
    """Run `impctl probe --json ARGS` in the gateway namespace; (exit code, data)."""
    proc = lab.run([sys.executable, "-m", "impctl", "probe", "--json", *args], timeout=30)
    doc = json.loads(proc.stdout)
    assert doc["exit_code"] == proc.returncode, proc.stderr
    return proc.returncode, doc["data"]


def probe_doc(lab: Lab, *args: str) -> tuple[int, dict[str, Any]]:
    """The whole JSON envelope, for runs that end in an error."""
    proc = lab.run([sys.executable, "-m", "impctl", "probe", "--json", *args], timeout=30)
    return proc.returncode, json.loads(proc.stdout)


def by_id(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["identifier"]: i for i in data["interfaces"]}


def codes(data: dict[str, Any]) -> dict[str, str]:
    return {i["identifier"]: i["code_name"] for i in data["interfaces"]}


def stages(item: dict[str, Any]) -> list[str]:
    return [s["name"] for s in item["stages"]]


def store_proxy(lab: Lab, password: str, pinned: dict[str, Any] | None = None) -> None:
    """The state a user gets from `impctl config proxy ...` (password encrypted)."""
    key = key_path_for(lab.state_path)
    enc = encrypt_secret(Secret(plain=password), key)
    assert enc is not None
    stored = {"address": lab.proxy_host, "port": lab.proxy_port, "username": lab.proxy_user,
              "password": enc.to_json()}
    write_state(lab.state_path, state_from_dict({"schema_version": 2, "stored": {"proxy": stored}, "pinned": pinned}))


def test_healthy_lab_reaches_the_cloud_everywhere(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prom = tmp_path / "impctl.prom"
    routes_before = lab.default_routes()
    rc, data = probe(lab, "--prometheus", str(prom))
    assert lab.default_routes() == routes_before  # a probe changes no route
    assert rc == 0 and data["all_connected"] is True
    assert codes(data) == {"eth0": "SERVER_CONNECTED", "wl0": "SERVER_CONNECTED", "cell0": "SERVER_CONNECTED"}
    items = by_id(data)
    assert {i["ifname"] for i in items.values()} == {"eth0", "wlan0", "wwan0"}
    assert stages(items["eth0"]) == ["link", "address", "dns", "tcp", "tls"]
    # the lab's cell uplink is a veth given the cell class: modem stages skipped, then the network
    assert stages(items["cell0"]) == ["modem", "link", "address", "dns", "tcp", "tls"]
    assert items["cell0"]["stages"][0].get("skipped") is True
    for item in items.values():
        assert item["code"] == 5 and item["reason"] is None
        assert all(s["ok"] and s["duration_ms"] >= 0 for s in item["stages"])
        dns = next(s for s in item["stages"] if s["name"] == "dns")
        subnet = {"eth0": "198.18.1.", "wlan0": "198.18.2.", "wwan0": "198.18.3."}[item["ifname"]]
        # resolved by the uplink's own ISP resolver, and the address stage found its own lease
        assert f"DNS {subnet}1" in dns["detail"] and item["details"]["address"].startswith(subnet)
    assert data["cloud"] == {"endpoint": "cloud.imp.lab:443", "tls": True} and data["proxy"] is None

    families = parse_textfile(prom.read_text())
    assert {s[0]["identifier"]: s[1] for s in families["impctl_probe_success"]} == \
        {"eth0": 1, "wl0": 1, "cell0": 1}
    assert {s[0]["stage"] for s in families["impctl_probe_stage_duration_seconds"]} == \
        {"link", "address", "dns", "tcp", "tls"}
    assert prom.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["impctl.prom"]  # no temporary file left

    # one interface: exit code 0 too; people get a table
    proc = lab.run([sys.executable, "-m", "impctl", "probe", "cell0"], timeout=30)
    assert proc.returncode == 0 and "SERVER_CONNECTED" in proc.stdout and "wwan0" in proc.stdout
    assert "wlan0" not in proc.stdout
    rc, doc = probe_doc(lab, "wl7")
    assert rc == 6 and doc["error"]["kind"] == "no_such_interface"

    # the cloud endpoint from the environment (the certificate also names the address)
    monkeypatch.setenv("IMPCTL_CLOUD", CLOUD_BY_ADDRESS)
    rc, data = probe(lab, "eth0")
    assert rc == 0 and data["cloud"]["endpoint"] == CLOUD_BY_ADDRESS
    assert "198.19.0.10 is an address" in data["interfaces"][0]["stages"][2]["detail"]

    # --watch: one compact document per probe
    proc = lab.run([sys.executable, "-m", "impctl", "probe", "--json", "--watch", "1", "--count", "2", "eth0"],
                   timeout=30)
    docs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0 and len(docs) == 2
    assert all(d["data"]["interfaces"][0]["code_name"] == "SERVER_CONNECTED" for d in docs)


def test_one_fault_per_uplink_gives_each_its_own_code(lab: Lab) -> None:
    lab.fault("eth0", "dhcp-off")
    lab.fault("wlan0", "link-down")
    lab.fault("wwan0", "dns-off")
    rc, data = probe(lab)
    assert rc == 9  # several probed, some failed
    assert codes(data) == {"eth0": "NO_IP_ADDRESS", "wl0": "NO_WIFI", "cell0": "NOT_RESOLVED"}
    items = by_id(data)
    assert items["wl0"]["code"] == 1 and stages(items["wl0"]) == ["link"]
    assert "no carrier" in items["wl0"]["reason"]
    assert items["eth0"]["code"] == 2 and "no IPv4 address" in items["eth0"]["reason"]
    assert items["cell0"]["code"] == 3 and "DNS 198.18.3.1 refused" in items["cell0"]["reason"]

    rc, data = probe(lab, "eth0")  # one interface: 10 + its code
    assert rc == 12 and codes(data) == {"eth0": "NO_IP_ADDRESS"}


def test_tls_with_a_ca_that_did_not_sign_the_cloud_is_no_server(lab: Lab, tmp_path: Path) -> None:
    # the lab's config without its CA: the system's CAs do not know the lab cloud
    config = tmp_path / "impctl.toml"
    config.write_text("\n".join(line for line in lab.config_path.read_text().splitlines()
                                 if not line.startswith("ca_file")) + "\n")
    proc = lab.run([sys.executable, "-m", "impctl", "--config", str(config), "probe", "--json", "eth0"],
                   timeout=30)
    (item,) = json.loads(proc.stdout)["data"]["interfaces"]
    assert proc.returncode == 14 and item["code_name"] == "NO_SERVER"
    assert stages(item)[-2:] == ["tcp", "tls"] and "does not verify" in item["reason"]


def test_a_fault_on_one_uplink_leaves_the_others_alone(lab: Lab) -> None:
    lab.fault("eth0", "link-down")
    rc, data = probe(lab)
    assert rc == 9
    assert codes(data) == {"eth0": "NO_LINK", "wl0": "SERVER_CONNECTED", "cell0": "SERVER_CONNECTED"}
    rc, data = probe(lab, "eth0")
    assert rc == 11
    lab.restore("eth0")

    # closed port and upstream blackhole; the cloud by address so that the blackhole,
    # which also eats DNS, is met by the TCP stage
    lab.fault("eth0", "cloud-closed")
    lab.fault("wlan0", "blackhole")
    rc, data = probe(lab, "--cloud", CLOUD_BY_ADDRESS)
    assert rc == 9
    assert codes(data) == {"eth0": "NO_SERVER", "wl0": "NO_SERVER", "cell0": "SERVER_CONNECTED"}
    items = by_id(data)
    assert "refused" in items["eth0"]["reason"]
    tcp = items["wl0"]["stages"][-1]
    assert tcp["name"] == "tcp" and not tcp["ok"] and "did not accept a TCP connection in 3.0 s" in tcp["detail"]
    assert 2900 <= tcp["duration_ms"] <= 3300  # the stage timeout (3 s default), not more
    assert data["duration_ms"] < 3600

    # the blackhole with the cloud by name: its DNS goes unanswered
    rc, data = probe(lab, "wl0")
    assert rc == 13 and "DNS 198.18.2.1 did not answer in 2.0 s" in data["interfaces"][0]["reason"]


def test_proxy_codes_from_the_stored_and_pinned_proxy(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    store_proxy(lab, lab.proxy_password)
    rc, data = probe(lab)
    assert rc == 0 and data["proxy"] == f"{lab.proxy_host}:{lab.proxy_port}"
    items = by_id(data)
    assert stages(items["eth0"]) == ["link", "address", "dns", "proxy", "tcp", "tls"]
    assert "proxy.imp.lab is 198.19.0.10" in items["eth0"]["stages"][2]["detail"]
    assert "proxy" not in stages(items["cell0"])  # impOS: no proxy on cellular

    # the pinned NIC (connectwith) carries its own proxy, with a wrong password, for wl0;
    # eth0's path to the proxy is cut
    wrong = encrypt_secret(Secret(plain="wrong-password"), key_path_for(lab.state_path))
    assert wrong is not None
    pinned = {"interface": "wl0", "proxyconfig": {"address": lab.proxy_host, "port": lab.proxy_port,
                                                   "username": lab.proxy_user, "password": wrong.to_json()}}
    store_proxy(lab, lab.proxy_password, pinned=pinned)
    lab.fault("eth0", "proxy-down")
    rc, data = probe(lab)
    assert codes(data) == {"eth0": "NO_PROXY", "wl0": "NOT_AUTHORISED", "cell0": "SERVER_CONNECTED"}
    items = by_id(data)
    assert "refused" in items["eth0"]["reason"] and items["eth0"]["code"] == 6
    assert items["wl0"]["code"] == 7 and "with the configured credentials" in items["wl0"]["reason"]
    rc, data = probe(lab, "wl0")
    assert rc == 17

    # a proxy given on the command line (password from the environment) replaces the stored ones
    monkeypatch.setenv("IMPCTL_PROXY_PASSWORD", lab.proxy_password)
    rc, data = probe(lab, "--proxy", f"{lab.proxy_host}:{lab.proxy_port}", "--proxy-user", lab.proxy_user, "wl0")
    assert rc == 0 and stages(data["interfaces"][0])[3] == "proxy"

    # --no-proxy: straight to the cloud again
    rc, data = probe(lab, "--no-proxy", "eth0")
    assert rc == 0 and "proxy" not in stages(data["interfaces"][0])


def test_hung_servers_never_overrun_the_timeout(lab: Lab) -> None:
    for u in ("eth0", "wlan0", "wwan0"):
        lab.fault(u, "blackhole")
    started = time.monotonic()
    rc, data = probe(lab, "--timeout", "1.2")
    wall = time.monotonic() - started
    assert rc == 9 and set(codes(data).values()) == {"NOT_RESOLVED"}
    assert data["duration_ms"] < 1200
    for item in data["interfaces"]:
        # the DNS stage (2 s by default) cut to what was left of the 1.2 s
        assert re.search(r"did not answer in (0\.\d|1\.[01]) s", item["reason"]), item["reason"]
    assert wall < 1.2 + 2.0  # interpreter start-up aside, the command ends on time
