"""The CLI end to end, as a script uses it: exit codes, one JSON document, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def impctl(*args: str, state: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "impctl", "--state", str(state), *args],
        input=stdin, capture_output=True, text=True, timeout=60, check=False,
    )


def one_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    doc = json.loads(proc.stdout)  # the whole of stdout is one document
    assert isinstance(doc, dict)
    assert doc["impctl_json_version"] == 1
    assert doc["exit_code"] == proc.returncode
    assert "Traceback" not in proc.stderr
    return doc


def test_issue_example_set_then_get(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    assert impctl("interfaces", "set", "wl0", "wifi", "eth0", "cell", state=state).returncode == 0
    proc = impctl("interfaces", "get", "--json", state=state)
    doc = one_json(proc)
    assert proc.returncode == 0 and doc["status"] == "ok"
    assert doc["data"]["sequence"] == ["wifi", "ethernet", "cell"]
    assert doc["data"]["index"] == 0


def test_clear_and_empty_set_give_the_default_order(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    impctl("interfaces", "set", "cell", state=state)
    doc = one_json(impctl("interfaces", "clear", "--json", state=state))
    assert doc["data"]["sequence"] == [] and doc["data"]["effective"] == ["ethernet", "wifi", "cell"]
    impctl("interfaces", "set", "cell", state=state)
    assert one_json(impctl("interfaces", "set", "--json", state=state))["data"]["sequence"] == []


def test_bad_identifier_exits_2_names_it_and_changes_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    impctl("interfaces", "set", "cell", state=state)
    before = state.read_bytes()
    proc = impctl("interfaces", "set", "wifi", "wlan", state=state)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "identifiers[1]" in proc.stderr and "'wlan'" in proc.stderr
    doc = one_json(impctl("interfaces", "set", "wifi", "wlan", "--json", state=state))
    assert doc["error"]["path"] == "identifiers[1]"
    assert state.read_bytes() == before


def test_state_option_env_and_corrupt_file(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text("{broken")
    proc = impctl("interfaces", "get", "--json", state=state)
    assert proc.returncode == 3
    assert "corrupt" in one_json(proc)["error"]["message"]
    assert state.read_text() == "{broken"
    env_state = tmp_path / "env.json"
    subprocess.run(
        [sys.executable, "-m", "impctl", "interfaces", "set", "cell"],
        env={"IMPCTL_STATE": str(env_state), "PATH": "/usr/bin:/bin"}, check=True, capture_output=True,
    )
    assert json.loads(env_state.read_text())["sequence"] == ["cell"]


def test_usage_error_in_json_mode_is_a_json_document(tmp_path: Path) -> None:
    proc = impctl("interfaces", "frobnicate", "--json", state=tmp_path / "s.json")
    assert proc.returncode == 2
    assert one_json(proc)["error"]["kind"] == "usage"


@pytest.mark.parametrize("name", ["wifi.json", "wifi-open.json", "ethernet-static-proxy.json", "cell.json",
                                  "ethernet.json"])
def test_nic_check_accepts_the_examples(tmp_path: Path, name: str) -> None:
    proc = impctl("nic", "check", str(EXAMPLES / name), "--json", state=tmp_path / "s.json")
    doc = one_json(proc)
    assert proc.returncode == 0, doc
    assert doc["data"]["interface"] == json.loads((EXAMPLES / name).read_text())["interface"]
    for secret in ("verybadpassw0rd!", "lab-proxy-secret"):
        assert secret not in proc.stdout


def test_nic_check_from_stdin_and_errors(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    ok = impctl("nic", "check", "-", stdin='{"interface": "cell0", "cellconfig": {"apn": "iot"}}', state=state)
    assert ok.returncode == 0 and "cellconfig.apn" in ok.stdout
    bad = impctl("nic", "check", str(EXAMPLES / "invalid-key.json"), state=state)
    assert bad.returncode == 2 and "wificonfig.key" in bad.stderr and "Traceback" not in bad.stderr
    garbage = impctl("nic", "check", "-", "--json", stdin="{nope", state=state)
    assert garbage.returncode == 2 and "not valid JSON" in one_json(garbage)["error"]["message"]
    missing = impctl("nic", "check", str(tmp_path / "absent.json"), state=state)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert not state.exists()  # checking a NIC never touches the state
