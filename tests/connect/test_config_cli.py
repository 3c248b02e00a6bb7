"""`impctl config …` and the errors of the connection commands, end to end, without a lab."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from impctl.cli.main import main

KEY = "correct horse battery"
PROXY_PASSWORD = "s3cret-proxy"


@pytest.fixture
def impctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run impctl in-process (as its entry point does) with a private state file."""
    monkeypatch.setenv("IMPCTL_STATE", str(tmp_path / "state" / "state.json"))
    monkeypatch.delenv("IMPCTL_CONFIG", raising=False)  # /etc/impctl/impctl.toml: absent, defaults

    def call(*args: str, json_out: bool = True) -> tuple[int, dict[str, Any], str]:
        with pytest.raises(SystemExit) as exit_info:
            main([*args, *(["--json"] if json_out else [])])
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        doc = json.loads(captured.out) if json_out else {}
        if json_out:
            assert doc["exit_code"] == exit_info.value.code
        return int(exit_info.value.code or 0), doc, captured.out + captured.err

    return call


def state_text(tmp_path: Path) -> str:
    return (tmp_path / "state" / "state.json").read_text()


def test_stored_secrets_are_encrypted_and_never_shown(impctl: Any, tmp_path: Path) -> None:
    rc, doc, out = impctl("config", "wifi", "--ssid", "depot", "--key", KEY)
    assert rc == 0
    assert doc["data"]["stored"]["wifi"] == {"ssid": "depot", "security": "wpa-psk", "key": "encrypted"}
    rc, doc, out2 = impctl("config", "proxy", "--address", "proxy.example", "--port", "3128",
                           "--username", "gw", "--password", PROXY_PASSWORD, "--interface", "eth0")
    assert rc == 0
    assert doc["data"]["stored"]["proxy"]["password"] == "encrypted"
    assert doc["data"]["stored"]["proxy"]["interface"] == "eth0"
    rc, doc, out3 = impctl("config", "show")
    text = state_text(tmp_path)
    for secret in (KEY, PROXY_PASSWORD):
        assert secret not in out + out2 + out3
        assert secret not in text
    stored = json.loads(text)["stored"]
    assert set(stored["wifi"]["key"]) == {"encrypted"}
    assert set(stored["proxy"]["password"]) == {"encrypted"}
    # The gateway key beside the state file is root-only.
    assert (tmp_path / "state" / "secret.key").stat().st_mode & 0o077 == 0


def test_static_then_clear_one_kind_then_all_with_the_sequence(impctl: Any, tmp_path: Path) -> None:
    rc, _, _ = impctl("config", "static", "--ip", "192.168.1.20", "--netmask", "255.255.255.0",
                      "--gateway", "192.168.1.1", "--dns", "192.168.1.1", "--dns", "9.9.9.9")
    assert rc == 0
    rc, _, _ = impctl("config", "wifi", "--ssid", "open-net")
    assert rc == 0
    rc, _, _ = impctl("interfaces", "set", "wifi", "cell")
    assert rc == 0
    rc, doc, _ = impctl("config", "clear", "static")
    assert rc == 0
    assert doc["data"]["cleared"] == ["static"]
    assert set(doc["data"]["stored"]) == {"wifi"}
    assert doc["data"]["sequence"] == ["wifi", "cell"]
    rc, doc, _ = impctl("config", "clear", "all")
    assert rc == 0
    assert doc["data"]["cleared"] == ["wifi", "sequence"]
    state = json.loads(state_text(tmp_path))
    assert state["stored"] == {}
    assert state["sequence"] == []


@pytest.mark.parametrize(
    "args",
    [
        ("config", "wifi", "--ssid", "depot", "--key", "short"),
        ("config", "static", "--ip", "192.168.1.20", "--netmask", "255.255.255.0", "--gateway", "10.0.0.1",
         "--dns", "1.1.1.1"),
        ("config", "proxy", "--address", "proxy.example", "--port", "99999"),
        ("config", "proxy", "--address", "p.example", "--port", "8080", "--interface", "cell0"),
        ("config", "clear", "everything"),
    ],
)
def test_bad_input_changes_nothing(impctl: Any, tmp_path: Path, args: tuple[str, ...]) -> None:
    rc, _, _ = impctl("config", "wifi", "--ssid", "depot", "--key", KEY)
    assert rc == 0
    before = state_text(tmp_path)
    rc, doc, _ = impctl(*args)
    assert rc == 2
    assert doc["status"] == "error"
    assert state_text(tmp_path) == before


def test_config_current_when_not_connected(impctl: Any, tmp_path: Path) -> None:
    rc, doc, _ = impctl("config", "current")
    assert rc == 10
    assert doc["data"] == {"nic": None}


@pytest.mark.parametrize("command", [("status",), ("connect",), ("disconnect",)])
def test_no_system_bus_is_a_one_line_service_error(
    impctl: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    rc, doc, _ = impctl(*command)
    assert rc == 5
    assert doc["error"]["kind"] == "service_unavailable"
    assert "D-Bus system bus" in doc["error"]["message"]
    rc, _, out = impctl(*command, json_out=False)
    assert rc == 5
    assert out.startswith("error: cannot connect to the D-Bus system bus")
    assert len(out.strip().splitlines()) == 2  # the error and its hint, no traceback
