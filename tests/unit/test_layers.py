"""The layer contract, checked on the source: model → backends → use cases → CLI.

- model: pure; imports only the model and the standard library, and none of
  the standard library's I/O, process or clock modules.
- use cases: see only the model, their own Protocols and the standard library.
- backends: the model and other backends, never a use case or the CLI.
- dbus-next is imported in exactly one module.
Every import counts, also one inside a function (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "impctl"
STDLIB = sys.stdlib_module_names
MODEL_FORBIDDEN_STDLIB = {"asyncio", "subprocess", "os", "shutil", "pathlib", "fcntl", "select",
                          "threading", "time", "tempfile", "signal", "multiprocessing"}


def _modules() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        imports: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imports.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imports.add(node.module)
        out[name] = imports
    return out


MODULES = _modules()


def _top(module: str) -> str:
    return module.split(".")[0]


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _violations(layer: str, allowed_layers: set[str], forbidden_stdlib: set[str] = frozenset()) -> list[str]:
    found = []
    for module, imports in MODULES.items():
        if _layer(module) != layer:
            continue
        for imp in sorted(imports):
            if _top(imp) == "impctl":
                if _layer(imp) not in allowed_layers:
                    found.append(f"{module} imports {imp}")
            elif _top(imp) == "__future__":
                continue
            elif _top(imp) not in STDLIB or _top(imp) in forbidden_stdlib:
                found.append(f"{module} imports {imp}")
    return found


def test_the_source_was_found() -> None:
    # The checks below would pass vacuously on an empty walk.
    assert {"impctl.model.nic", "impctl.usecases.connect", "impctl.cli.main"} <= MODULES.keys()


def test_model_is_pure() -> None:
    assert _violations("model", {"model"}, MODEL_FORBIDDEN_STDLIB) == []


def test_use_cases_see_only_the_model() -> None:
    assert _violations("usecases", {"model", "usecases"}) == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) == "backends"))
def test_backends_do_not_reach_up(module: str) -> None:
    up = [i for i in MODULES[module] if _top(i) == "impctl" and _layer(i) not in ("model", "backends")]
    assert up == []


def test_dbus_next_is_imported_in_one_module() -> None:
    users = [m for m, imports in MODULES.items() if any(_top(i) == "dbus_next" for i in imports)]
    assert len(users) == 1, users


def test_prometheus_client_is_imported_in_one_backend() -> None:
    # The daemon imports that backend only when its metrics are on: ~3 MiB otherwise saved.
    users = [m for m, imports in MODULES.items() if any(_top(i) == "prometheus_client" for i in imports)]
    assert users == ["impctl.backends.metrics"]


def test_the_checker_sees_a_forbidden_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MODULES, "impctl.usecases.fake", {"impctl.backends.nm.bus", "pyroute2"})
    assert _violations("usecases", {"model", "usecases"}) == [
        "impctl.usecases.fake imports impctl.backends.nm.bus", "impctl.usecases.fake imports pyroute2",
    ]
