"""Files the Debian package generates from impctl itself, so they cannot drift from the code.

Run by debian/rules with the package's venv python: `python debian/assets.py STAGE_DIR`.

- etc/impctl/impctl.toml: the conffile, every setting commented out at its default, with
  its range (impctl.model.config), so an empty file and this one mean the same.
- usr/share/man/man1/impctl.1: the man page, from the CLI's own help texts (click's tree
  under typer), one section per command.
- bash, zsh and fish completion scripts, from the CLI's completion mode.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import typer
from typer import _click as click
from typer.core import TyperGroup

from impctl import __version__
from impctl.cli.main import COMPLETE_ENV, app
from impctl.model.config import CLASSES, SETTING_RANGES, CloudEndpoint, DaemonSettings, ProbeSettings

CONFFILE_HEAD = """\
# impctl's configuration: the failover daemon (impctl.service) and the impctl command read it.
# Every setting below is commented out at its default; uncomment and change what your gateway
# needs, then `systemctl reload impctl` (a bad file is refused with one line in the journal and
# the daemon keeps its running config). `impctl config` stores network settings elsewhere (in
# the state), not here.
"""

SECTION_NOTES = {
    "cloud": "The cloud endpoint every uplink is probed against (TCP, then TLS).",
    "probe": "Per-stage timeouts of one probe, seconds.",
    "daemon": "The failover daemon.",
}

CLASSES_AND_IDENTIFIERS = f"""
[classes]
# ifname = class, overriding NetworkManager's device type: one of {", ".join(CLASSES)}, or "lan"
# (a LAN port, never an uplink).
# uplink1 = "wifi"
# lan0 = "lan"

[identifiers]
# identifier = ifname, overriding the stable order of the failover sequence.
# eth0 = "enp3s0"
"""


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def conffile() -> str:
    out = [CONFFILE_HEAD]
    for name, obj in (("cloud", CloudEndpoint()), ("probe", ProbeSettings()), ("daemon", DaemonSettings())):
        out.append(f"\n[{name}]\n# {SECTION_NOTES[name]}\n")
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            rng = SETTING_RANGES.get(f"{name}.{f.name}")
            note = f"  # {rng.text()}" if rng else ""
            if value is None:
                out.append(f"# {f.name} = (unset){note}\n")
            else:
                out.append(f"# {f.name} = {_toml(value)}{note}\n")
        if name == "cloud":
            out.append(CLASSES_AND_IDENTIFIERS)
    return "".join(out)


def _roff(text: str) -> str:
    lines = []
    for line in text.splitlines():
        line = line.replace("\\", "\\e")
        # A line starting with . or ' is a roff request.
        lines.append("\\&" + line if line[:1] in (".", "'") else line)
    return "\n".join(lines)


def _command_section(cmd: click.Command, path: list[str], ctx: click.Context) -> list[str]:
    out = [f".SS {' '.join(path)}"]
    usage = " ".join(cmd.collect_usage_pieces(ctx))
    out.append(f".B {' '.join(path)}\n{_roff(usage)}\n.PP")
    if cmd.help:
        out.append(_roff(textwrap.dedent(cmd.help).strip()).replace("\n\n", "\n.PP\n"))
    for param in cmd.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        out.append(f".TP\n.B {_roff(record[0])}\n{_roff(record[1])}")
    return out


def _walk(cmd: click.Command, path: list[str], parent: click.Context | None) -> list[str]:
    ctx = click.Context(cmd, info_name=path[-1], parent=parent)
    out: list[str] = []
    # Typer's vendored Click has no Group: its groups are TyperGroup.
    if isinstance(cmd, TyperGroup):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                out += _walk(sub, [*path, name], ctx)
        return out
    return _command_section(cmd, path, ctx)


def manpage() -> str:
    root = typer.main.get_command(app)
    ctx = click.Context(root, info_name="impctl")
    out = [
        f'.TH IMPCTL 1 "" "impctl {__version__}" "User Commands"',
        ".SH NAME",
        "impctl \\- connect a multi-interface Linux gateway to its cloud, and keep it connected",
        ".SH SYNOPSIS",
        ".B impctl",
        "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
        ".SH DESCRIPTION",
        _roff(textwrap.dedent(root.help or "").strip()),
        ".SH OPTIONS",
    ]
    for param in root.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is not None:
            out.append(f".TP\n.B {_roff(record[0])}\n{_roff(record[1])}")
    out.append(".SH COMMANDS")
    out += _walk(root, ["impctl"], None)
    out += [
        ".SH FILES",
        ".TP\n.I /etc/impctl/impctl.toml\nThe configuration (env IMPCTL_CONFIG).",
        ".TP\n.I /var/lib/impctl/state.json\nThe state: failover sequence, pin, stored NIC settings, the daemon's"
        " view (env IMPCTL_STATE).",
        ".SH SEE ALSO",
        "\\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1), \\fBnmcli\\fR(1)",
    ]
    return "\n".join(out) + "\n"


def completion(shell: str) -> str:
    # Not bin/impctl: its shebang already names /opt/impctl, which exists only once installed.
    env = {**os.environ, COMPLETE_ENV: f"source_{shell}"}
    argv = [sys.executable, "-m", "impctl"]
    return subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout


def main(stage: Path) -> None:
    files = {
        "etc/impctl/impctl.toml": conffile(),
        "usr/share/man/man1/impctl.1": manpage(),
        "usr/share/bash-completion/completions/impctl": completion("bash"),
        "usr/share/zsh/vendor-completions/_impctl": completion("zsh"),
        "usr/share/fish/vendor_completions.d/impctl.fish": completion("fish"),
    }
    for rel, text in files.items():
        path = stage / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o644)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
