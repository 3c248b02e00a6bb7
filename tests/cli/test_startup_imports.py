"""What a run imports: a command loads its own module and its own needs only.

Start-up time itself is measured by bench/startup_bench.py, not here; this
checks the cause: the modules in sys.modules when `impctl` exits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import impctl

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Each costs tens of milliseconds to import; pydantic comes with Typer from 0.29 on.
HEAVY = ("asyncio", "dbus_next", "pyroute2", "cryptography", "pydantic")

# Runs impctl's entry point as the console script does, then writes the names
# of the imported modules to the file named in argv[1] (also after sys.exit).
WRAPPER = """
import atexit, json, sys
out, preload, args = sys.argv[1], sys.argv[2], sys.argv[3:]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
exec(preload)
sys.argv = ["impctl", *args]
from impctl.cli.entry import main
main()
"""


def modules_after(tmp_path: Path, *args: str, preload: str = "", ok: bool = True) -> set[str]:
    out = tmp_path / "modules.json"
    env = {**os.environ, "IMPCTL_STATE": str(tmp_path / "state.json"), "IMPCTL_CONFIG": str(tmp_path / "no.toml")}
    proc = subprocess.run([sys.executable, "-c", WRAPPER, str(out), preload, *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert (proc.returncode == 0) == ok, proc.stderr
    assert "Traceback" not in proc.stderr
    return set(json.loads(out.read_text()))


def heavy(modules: set[str]) -> list[str]:
    return sorted({m.split(".")[0] for m in modules} & set(HEAVY))


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["--state", "/nonexistent/state.json", "--version"],  # through Typer
        ["nic", "check", str(EXAMPLES / "wifi.json")],
        ["nic", "check", str(EXAMPLES / "cell.json"), "--json"],
        ["interfaces", "get"],
        ["interfaces", "set", "wifi", "cell", "--json"],
    ],
    ids=lambda args: " ".join(Path(a).name for a in args),
)
def test_light_commands_import_no_heavy_backend(tmp_path: Path, args: list[str]) -> None:
    modules = modules_after(tmp_path, *args)
    assert "impctl.cli.entry" in modules  # the run went through the console script's entry
    assert heavy(modules) == []


def test_a_command_imports_only_its_own_module(tmp_path: Path) -> None:
    modules = modules_after(tmp_path, "nic", "check", str(EXAMPLES / "wifi.json"))
    cli = sorted(m for m in modules if m.startswith("impctl.cli."))
    assert cli == ["impctl.cli.context", "impctl.cli.entry", "impctl.cli.layout", "impctl.cli.main", "impctl.cli.nic",
                   "impctl.cli.output"]


def test_version_and_json_output_do_not_load_rich(tmp_path: Path) -> None:
    assert not any(m.startswith("rich") for m in modules_after(tmp_path, "--state", "/x", "--version"))
    json_modules = modules_after(tmp_path, "nic", "check", str(EXAMPLES / "wifi.json"), "--json")
    assert not any(m.startswith("rich") for m in json_modules)


def test_the_check_sees_a_heavy_import(tmp_path: Path) -> None:
    # The same run with one heavy import slipped in before the entry point must be caught.
    modules = modules_after(tmp_path, "--version", preload="import asyncio")
    assert heavy(modules) == ["asyncio"]


def test_version_is_answered_before_typer_loads_and_says_the_same(tmp_path: Path) -> None:
    assert not any(m.startswith("typer") for m in modules_after(tmp_path, "--version"))

    def version(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "impctl", *args], capture_output=True, text=True,
                              timeout=60, check=False)

    fast, typer_path = version("--version"), version("--state", "/x", "--version")
    assert fast.returncode == typer_path.returncode == 0
    assert fast.stdout == typer_path.stdout == f"impctl {impctl.__version__}\n"


def test_status_loads_no_connection_machinery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No system bus at this address: status fails at the bus, after importing all it needs.
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    modules = modules_after(tmp_path, "status", "--json", ok=False)
    assert "impctl.backends.nm.devices" in modules  # it got as far as reading devices
    # Connection settings, activation and atomic writes are for the commands that change things.
    unneeded = {"impctl.model.nmsettings", "impctl.backends.nm.activation", "impctl.backends.nm.trial",
                "impctl.backends.secrets", "cryptography", "tempfile", "pyroute2"}
    assert sorted(unneeded & {m if m.startswith("impctl") else m.split(".")[0] for m in modules}) == []
