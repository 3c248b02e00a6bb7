"""A strict reader of the node_exporter textfile format, for the probe tests."""

from __future__ import annotations

import re

_LABEL = r'[a-z_]+="(?:[^"\\\n]|\\["\\n])*"'
SAMPLE = re.compile(rf"^([a-z_]+)(?:\{{({_LABEL}(?:,{_LABEL})*)\}})? (\S+)$")


def parse_textfile(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A strict reader of the exposition format as node_exporter's textfile collector takes it."""
    assert text.endswith("\n")
    families: dict[str, list[tuple[dict[str, str], float]]] = {}
    helped: set[str] = set()
    typed: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in helped, f"HELP twice for {name}"
            helped.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind == "gauge" and name in helped and name not in typed
            typed[name] = kind
            families[name] = []
        else:
            m = SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            name = m.group(1)
            assert name in typed, f"sample before its TYPE: {line!r}"
            labels = dict(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            families[name].append((labels, float(m.group(3))))
    return families
