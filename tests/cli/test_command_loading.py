"""The root group imports a command's module only when the command is looked up:
help, completion and the Typer app as tests drive it must still see every command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from impctl.cli.main import COMMANDS, app, main

EXPECTED = ["probe", "daemon", "connectwith", "connect", "disconnect", "status", "info",
            "interfaces", "nic", "config", "lab"]


def help_text(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main([*args, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_root_help_lists_every_command_with_its_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(COMMANDS) == EXPECTED
    out = help_text(capsys)
    listed = [line.split()[1] for line in out.splitlines()
              if line.startswith("│ ") and len(line.split()) > 2 and line.split()[1] in COMMANDS]
    assert listed == EXPECTED
    assert "Every interface, the active one and the last error" in out
    assert "Alias of status (imp.net.info)." in out
    assert "--version" in out and "--state" in out


@pytest.mark.parametrize("name", EXPECTED)
def test_each_command_has_its_own_help(capsys: pytest.CaptureFixture[str], name: str) -> None:
    out = help_text(capsys, name)
    assert f"Usage: impctl {name} " in out


def test_group_help_lists_its_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    out = help_text(capsys, "config")
    for sub in ("wifi", "static", "proxy", "clear", "show", "current"):
        assert f"│ {sub} " in out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    assert "No such command 'frobnicate'" in capsys.readouterr().err


def test_a_typo_gets_a_suggestion_from_every_command_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["stauts"])
    assert exc.value.code == 2
    assert "Did you mean 'status'?" in capsys.readouterr().err


def test_the_typer_app_still_runs_every_command() -> None:
    result = CliRunner().invoke(app, ["interfaces", "--help"])
    assert result.exit_code == 0 and "set" in result.output and "clear" in result.output


def complete(words: str) -> list[str]:
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    env = {**os.environ, "_IMPCTL_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    proc = subprocess.run([sys.executable, "-m", "impctl"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_shell_completion_of_commands_subcommands_and_options() -> None:
    assert complete("impctl ") == EXPECTED
    assert complete("impctl inter") == ["interfaces"]
    assert complete("impctl interfaces ") == ["set", "get", "clear"]
    assert "--watch" in complete("impctl probe --")
