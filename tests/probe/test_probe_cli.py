"""`impctl probe` option checks that need no gateway: they fail before any I/O."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from impctl.cli.main import main


@pytest.mark.parametrize(
    ("argv", "path"),
    [
        (["probe", "--all", "eth0"], "--all"),
        (["probe", "--proxy-user", "u"], "--proxy-user"),
        (["probe", "--proxy", "p:8080", "--no-proxy"], "--no-proxy"),
        (["probe", "--count", "2"], "--count"),
        (["probe", "--proxy", "no-port"], "--proxy"),
    ],
)
def test_conflicting_options_are_bad_input(argv: list[str], path: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--json"])
    assert exc.value.code == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["command"] == "probe" and doc["status"] == "error"
    assert doc["error"]["kind"] == "invalid_input" and doc["error"]["path"] == path


def test_cloud_override_must_be_host_port(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "impctl.toml"
    config.write_text('[cloud]\nhost = "cloud.imp.lab"\n')
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(config), "probe", "--cloud", "nohost", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert exc.value.code == 3 and doc["error"]["kind"] == "config_error"
    assert "--cloud" in doc["error"]["message"] and "HOST:PORT" in doc["error"]["message"]
