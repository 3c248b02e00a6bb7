"""Start-up benchmark of the `impctl` command (not a timed test).

Runs each command --runs times, interleaved round by round so that load from
other processes falls on every command alike, and reports the median wall
time and its ratio to a baseline measured in the same run:

- `impctl --version`, `interfaces get`, `interfaces set wifi cell` and
  `nic check FILE` against `python -c pass` (the same interpreter as the
  `impctl` console script, so both pay for the venv's site start-up);
- `impctl status --json` against `nmcli device status`, both run inside the
  lab's gateway namespace through `Lab.exec_argv` (so both pay for the
  namespace wrapper, `ip netns exec` + `unshare` + `sh`; the wrapper alone is
  measured too, and the ratios without it are shown).

The goals (from the shape-and-hardening issue) are checked and printed; the
exit status is 0 whatever they say: it is a measurement, not a test.

Bytecode: an installed impctl runs from compiled .pyc files (pip writes them),
so the commands run without PYTHONDONTWRITEBYTECODE, which would otherwise make
an editable checkout compile its modules on every run; the warm-up round
writes them. To compare two versions, install each in a venv of its own
(`pip install .` of a checkout) and run this script with that venv's python:
it times the `impctl` beside the python that runs it.

Measured (2026-12-01, 2 vCPUs shared with other test sessions, load ~1.8,
`--runs 20`, medians; "before" is 3089306 with typer 0.29.2, "after" c693e40
(branch cli) with typer 0.28.0, each `pip install .`-ed in a venv of
its own; "dev" is the editable checkout, whose `python -c pass` pays ~12 ms
for setuptools' editable finder, as in the issue's figures):

                                    before          after           dev (after)
    python -c pass                  17.8 ms         18.3 ms         37.7 ms
    impctl --version                387.5 (21.7x)   31.1 (1.7x)     39.0 (1.0x)
    impctl --state S --version      399.5 (22.4x)   120.0 (6.6x)    116.5 (3.1x)
    impctl interfaces get           555.0 (31.1x)   176.3 (9.6x)    168.0 (4.5x)
    impctl interfaces set wifi cell 552.1 (30.9x)   178.1 (9.7x)    163.3 (4.3x)
    impctl nic check FILE           543.3 (30.5x)   187.7 (10.2x)   183.1 (4.9x)
    nmcli device status (lab)       26.2 ms         25.9 ms         24.6 ms
    impctl status --json (lab)      545.6 (20.8x)   269.5 (10.4x)   272.2 (11.1x)
    import typer, asyncio, dbus_next 166.4 (6.3x)   178.0 (6.9x)    176.3 (7.2x)

What is left of a command's start-up is mostly importing Typer (its Click
included) and, for people's output, rich: ~100 ms together on this machine,
against 13-18 ms for the bare interpreter. `status` also needs asyncio and
dbus-next, whose import alone is ~7x `nmcli device status`; the model modules
it loads (dataclasses, enums, regexes) and its D-Bus round trips are the rest.

Usage (root for the lab part; builds a private lab and removes it afterwards):

    .venv/bin/python bench/startup_bench.py [--runs 15]
    .venv/bin/python bench/startup_bench.py --lab-root /run/impctl-lab   # a lab already up
    .venv/bin/python bench/startup_bench.py --no-lab                     # no status/nmcli
    .venv/bin/python bench/startup_bench.py --compare 97f0610 .              # old against new
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@dataclass
class Command:
    name: str
    argv: list[str]
    env: dict[str, str]
    baseline: str | None = None  # name of the command it is compared with
    goal: float | None = None  # at most this many times the baseline
    times_ms: list[float] = field(default_factory=list)

    def median(self) -> float:
        return statistics.median(self.times_ms)


def impctl_path() -> str:
    """The console script of this interpreter's installation (what a user runs)."""
    script = Path(sys.executable).parent / "impctl"
    if not script.exists():
        raise SystemExit(f"no impctl console script beside {sys.executable}: pip install -e .")
    return str(script)


def time_once(cmd: Command) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd.argv, env=cmd.env, stdin=subprocess.DEVNULL, capture_output=True,
                          check=False)
    took = (time.perf_counter() - started) * 1000
    if proc.returncode != 0:
        raise SystemExit(f"{cmd.name} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-500:]}")
    return took


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("PYTHONDONTWRITEBYTECODE", "COLUMNS", "IMPCTL_DEBUG"):
        env.pop(name, None)
    return env


def local_commands(tmp: Path) -> list[Command]:
    impctl = impctl_path()
    env = {**base_env(), "IMPCTL_STATE": str(tmp / "state.json"), "IMPCTL_CONFIG": str(tmp / "none.toml")}
    nic = tmp / "nic.json"
    nic.write_text((EXAMPLES / "wifi.json").read_text())
    return [
        Command("python -c pass", [sys.executable, "-c", "pass"], env),
        Command("impctl --version", [impctl, "--version"], env, "python -c pass", 3.0),
        # --version anywhere else goes through Typer: its import is most of a command's start-up.
        Command("impctl --state S --version", [impctl, "--state", str(tmp / "state.json"), "--version"], env,
                "python -c pass"),
        Command("impctl interfaces get", [impctl, "interfaces", "get"], env, "python -c pass", 5.0),
        Command("impctl interfaces set wifi cell", [impctl, "interfaces", "set", "wifi", "cell"], env,
                "python -c pass", 5.0),
        Command("impctl nic check FILE", [impctl, "nic", "check", str(nic)], env, "python -c pass", 5.0),
    ]


def export_tree(rev: str, into: Path) -> Path:
    """The `impctl` package of git revision `rev` (or the working tree for "."), under `into`."""
    root = Path(__file__).resolve().parents[1]
    into.mkdir(parents=True)
    if rev == ".":
        subprocess.run(["cp", "-r", str(root / "impctl"), str(into)], check=True)
    else:
        archive = subprocess.run(["git", "-C", str(root), "archive", rev, "impctl"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def compare_commands(lab: Any, revs: list[str], tmp: Path) -> list[Command]:
    """`status --json` of each revision, run from an exported tree by this interpreter."""
    env = {**base_env(), **lab.env(), "LC_ALL": "C"}
    out = []
    for i, rev in enumerate(revs):
        tree = export_tree(rev, tmp / f"rev{i}")
        code = (f"import sys; sys.path.insert(0, {str(tree)!r}); sys.argv = ['impctl', 'status', '--json']; "
                "from impctl.cli.entry import main; main()")
        out.append(Command(f"status --json of {rev} (lab)", lab.exec_argv([sys.executable, "-c", code]), env,
                           "nmcli device status (lab)"))
    return out


def lab_commands(lab: Any) -> list[Command]:
    impctl = impctl_path()
    env = {**base_env(), **lab.env(), "LC_ALL": "C"}
    return [
        Command("lab wrapper (true)", lab.exec_argv(["true"]), env),
        Command("nmcli device status (lab)", lab.exec_argv(["nmcli", "device", "status"]), env),
        Command("impctl status --json (lab)", lab.exec_argv([impctl, "status", "--json"]), env,
                "nmcli device status (lab)", 8.0),
        # The floor: only importing what status cannot do without (Typer, asyncio, dbus-next).
        Command("import typer, asyncio, dbus_next (lab)",
                lab.exec_argv([sys.executable, "-c", "import typer, asyncio, dbus_next.aio"]), env,
                "nmcli device status (lab)"),
    ]


def report(commands: list[Command], runs: int) -> dict[str, Any]:
    by_name = {c.name: c for c in commands}
    wrapper = by_name.get("lab wrapper (true)")
    rows: list[dict[str, Any]] = []
    for c in commands:
        row: dict[str, Any] = {"command": c.name, "median_ms": round(c.median(), 1),
                               "min_ms": round(min(c.times_ms), 1)}
        if c.baseline is not None:
            base = by_name[c.baseline]
            ratio = c.median() / base.median()
            row.update(baseline=c.baseline, ratio=round(ratio, 2))
            if c.goal is not None:
                row.update(goal=c.goal, meets_goal=ratio <= c.goal)
            if wrapper is not None and c.name.endswith("(lab)"):
                # The same ratio with the namespace wrapper's own time taken off both sides.
                net = (c.median() - wrapper.median()) / (base.median() - wrapper.median())
                row["ratio_without_wrapper"] = round(net, 2)
        rows.append(row)
    return {"runs": runs, "python": sys.version.split()[0], "load_avg": [round(x, 2) for x in os.getloadavg()],
            "results": rows}


def print_table(doc: dict[str, Any]) -> None:
    print(f"runs {doc['runs']}, Python {doc['python']}, load {doc['load_avg']}")
    print(f"{'command':40} {'median':>9} {'min':>9} {'ratio':>7} {'goal':>6}")
    for r in doc["results"]:
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else ""
        goal = f"<={r['goal']:g}" if r.get("goal") else ""
        mark = "" if "meets_goal" not in r else (" ok" if r["meets_goal"] else " MISSED")
        net = f"  (without wrapper {r['ratio_without_wrapper']:.2f})" if "ratio_without_wrapper" in r else ""
        print(f"{r['command']:40} {r['median_ms']:7.1f}ms {r['min_ms']:7.1f}ms {ratio:>7} {goal:>6}{mark}{net}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--lab-root", type=Path, help="use the lab already up at this root")
    ap.add_argument("--no-lab", action="store_true", help="only the commands that need no lab")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--compare", nargs="+", metavar="REV",
                    help="also time `status --json` of these git revisions ('.' is the working tree), "
                         "each exported and run from its own directory, interleaved with the rest")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="startup-bench-") as tmp_name:
        tmp = Path(tmp_name)
        commands = local_commands(tmp)
        lab = None
        own_lab = False
        if not args.no_lab:
            from impctl.lab import Lab

            if args.lab_root:
                lab = Lab.load(args.lab_root)
            else:
                lab = Lab(tmp / "lab", f"impsb{os.getpid() % 10000}")
                lab.up(replace=True)
                own_lab = True
            commands += lab_commands(lab)
            if args.compare:
                commands += compare_commands(lab, args.compare, tmp / "compare")
        try:
            for c in commands:  # warm the page cache and the bytecode caches
                time_once(c)
            for _ in range(args.runs):
                for c in commands:
                    c.times_ms.append(time_once(c))
        finally:
            if own_lab and lab is not None:
                lab.down()
    doc = report(commands, args.runs)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print_table(doc)


if __name__ == "__main__":
    main()
