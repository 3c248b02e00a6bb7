"""The shipped alert rules and dashboard (contrib/): the real promtool checks and unit-tests them.

`promtool` comes with the Debian package `prometheus` (scripts/bootstrap).
Every metric the rules and the dashboard name must be one the daemon exports.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from test_metrics_export import promtool
from test_metrics_model import started

from impctl.model.netfacts import Counters

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
RULES = CONTRIB / "prometheus" / "impctl.rules.yml"
RULE_TESTS = CONTRIB / "prometheus" / "impctl.rules.test.yml"
DASHBOARD = CONTRIB / "grafana" / "impctl.json"
ALERTS = {"ImpctlUplinkDown", "ImpctlGatewayLost", "ImpctlOnCellular", "ImpctlSwitchesFlapping",
          "ImpctlProbeBudgetExceeded"}


def exported_names() -> set[str]:
    d = started()
    d.policy.switches[-1].sessions_ended = (1, 0, 0.01)  # the families shown only after an ending
    fams = d.families(10.0, {"eth0": Counters(1, 2, 3, 4)}).values()
    return {f"{f.name}_total" if f.kind == "counter" else f.name for f in fams}


def promtool_run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_promtool_check_rules() -> None:
    done = promtool_run("check", "rules", str(RULES), cwd=RULES.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in done.stdout


def test_promtool_test_rules() -> None:
    done = promtool_run("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert tested == ALERTS, "every alert has a unit test"


def test_the_rule_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    # The same tests against rules with the cellular budget raised tenfold must fail.
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    text = RULES.read_text()
    assert text.count("> 2e6") == 1
    (tmp_path / RULES.name).write_text(text.replace("> 2e6", "> 2e7"))
    done = promtool_run("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert done.returncode != 0 and "ImpctlProbeBudgetExceeded" in done.stdout + done.stderr, done.stdout


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(impctl_[a-z_]+)\b", expr))


def test_rules_and_dashboard_name_only_exported_metrics() -> None:
    exported = exported_names()
    in_rules = _metric_names(RULES.read_text())
    assert in_rules and in_rules <= exported, in_rules - exported
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 6
    in_dashboard = set().union(*(_metric_names(e) for e in exprs))
    assert in_dashboard <= exported, in_dashboard - exported
    assert {"impctl_active_uplink", "impctl_switches_total", "impctl_uplink_up"} <= in_dashboard


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"]]
    # Grafana's variables, as Grafana substitutes them before the query reaches Prometheus.
    return [e.replace("$instance", ".*").replace("$__rate_interval", "1m") for e in exprs]


def test_the_dashboards_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses every expression of a rule file: the dashboard's queries as recording rules.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"impctl_dashboard_query_{i}", "expr": e} for i, e in enumerate(_dashboard_exprs())]}]}
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    done = promtool_run("check", "rules", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "broken.rules.yml"
    broken.write_text(json.dumps({"groups": [{"name": "x", "rules": [{"record": "a_b", "expr": "rate(x[1m]"}]}]}))
    assert promtool_run("check", "rules", str(broken), cwd=tmp_path).returncode != 0
