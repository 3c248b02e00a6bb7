"""Fuzzing the readers of untrusted input in-process: a NIC, the state file, the config.

Whatever the bytes, the only exceptions allowed out are the project's own
(ImpctlError subclasses, each with its documented exit code). Hypothesis is
derandomized and keeps no database, so CI sees the same examples every run.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from impctl.backends.config_file import load_config
from impctl.backends.statefile import load_state
from impctl.backends.store import FileStore
from impctl.model.codes import ExitCode
from impctl.model.config import parse_config, parse_listen
from impctl.model.errors import ImpctlError, ValidationError
from impctl.model.inventory import DeviceInfo
from impctl.model.nic import NIC_KEYS, nic_summary, nic_to_json, parse_nic, parse_nic_text
from impctl.usecases import config as config_uc
from impctl.usecases.interfaces import get_sequence

FUZZ = settings(
    max_examples=150, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Text as hostile as it gets: controls, lone surrogates, markup, huge code points.
nasty_text = st.one_of(
    st.text(st.characters(codec=None, exclude_categories=()), max_size=12),
    st.sampled_from(["", "[bold]", "[/x]", "\x1b[2J", "\ud800", "a\udfffb", "\x00", "\\", "é" * 17, "x" * 40,
                     "eth0", "wl0", "cell0", "wifi", "ethernet", "cell", "http", "192.0.2.1", "255.255.255.0",
                     "9563", "127.0.0.1:9563", "[::1]:9563", ":9563", "::1:9563", "0.0.0.0:0", "x.prom"]),
)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1, 65535, 65536, 2**31, 2**32, 10**20, 1e-300, 1e300]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, nasty_text)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(nasty_text, inner, max_size=4)),
    max_leaves=12,
)

SUB_KEYS = {
    "wificonfig": ("ssid", "key"),
    "staticconfig": ("ip", "netmask", "gateway", "dns"),
    "proxyconfig": ("type", "address", "port", "username", "password"),
    "cellconfig": ("apn", "username", "password"),
}


@st.composite
def nic_like(draw: st.DrawFn) -> Any:
    """Mostly the right shape with wrong contents: every branch of the validator gets reached."""
    doc: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(NIC_KEYS), unique=True, max_size=3)):
        if key == "interface" or draw(st.booleans()) is False:
            doc[key] = draw(st.one_of(nasty_text, json_values))
            continue
        sub = {k: draw(st.one_of(scalars, json_values, st.fixed_dictionaries({"encrypted": nasty_text})))
               for k in draw(st.lists(st.sampled_from(SUB_KEYS[key]), unique=True))}
        doc[key] = sub
    if draw(st.booleans()):
        doc["interface"] = draw(st.sampled_from(["eth0", "wl0", "cell0", "wifi", "enp3s0", "cell"]))
    return doc


def serialise(doc: Any, how: int) -> bytes:
    """A document's bytes: ensure_ascii escapes, raw UTF-8 (surrogates as invalid bytes), or mangled."""
    if how == 0:
        return json.dumps(doc).encode()
    text = json.dumps(doc, ensure_ascii=False)
    data = text.encode("utf-8", "surrogatepass")
    if how == 1:
        return data
    return data[: len(data) // 2]  # truncated mid-document


@st.composite
def hostile_json_bytes(draw: st.DrawFn, shape: st.SearchStrategy[Any]) -> bytes:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:  # deep nesting, arrays or objects, maybe unterminated
        depth = draw(st.sampled_from([31, 32, 33, 64, 65, 1000, 20_000]))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        inner = "1" if opener != "[" else ""
        tail = closer * depth if draw(st.booleans()) else ""
        return (opener * depth + inner + tail).encode()
    if kind == 2:  # a huge or odd number literal somewhere
        literal = draw(st.sampled_from(
            ["9" * 5000, "-" + "1" * 4301, "1e99999", "NaN", "-Infinity", "0." + "3" * 5000]
        ))
        return ('{"interface": "eth0", "schema_version": ' + literal + "}").encode()
    return serialise(draw(shape), draw(st.integers(0, 2)))


def assert_project_error(exc: BaseException) -> None:
    assert isinstance(exc, ImpctlError), f"{type(exc).__name__}: {exc}"
    assert "\n" not in exc.message


@FUZZ
@given(hostile_json_bytes(st.one_of(nic_like(), json_values)))
def test_nic_text_raises_only_validation_errors(data: bytes) -> None:
    try:
        nic = parse_nic_text(data)
    except ValidationError as exc:
        assert exc.exit_code == ExitCode.BAD_INPUT
        assert_project_error(exc)
        return
    nic_summary(nic)  # what nic check shows for whatever was accepted
    if all(s is None or s.encrypted is not None for s in _secrets(nic)):
        json.dumps(nic_to_json(nic))


def _secrets(nic: Any) -> list[Any]:
    return [getattr(c, a, None) for c in (nic.wificonfig, nic.proxyconfig, nic.cellconfig) if c
            for a in ("key", "password")]


@FUZZ
@given(nic_like())
def test_parse_nic_on_decoded_documents(doc: Any) -> None:
    try:
        nic = parse_nic(doc)
    except ValidationError as exc:
        assert_project_error(exc)
        return
    for value in (nic.interface, nic.wificonfig and nic.wificonfig.ssid):
        assert not (isinstance(value, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in value))


STATE_FIELDS = ("schema_version", "sequence", "sequence_index", "pinned", "stored", "current", "last_error",
                "last_results", "daemon")


@st.composite
def state_like(draw: st.DrawFn) -> Any:
    doc: dict[str, Any] = {"schema_version": draw(st.sampled_from([1, 1, 1, 0, 2, "1", None, 1.0, True]))}
    for key in draw(st.lists(st.sampled_from(STATE_FIELDS[1:]), unique=True)):
        if key == "stored" and draw(st.booleans()):
            doc[key] = {k: draw(st.one_of(nic_like(), json_values))
                        for k in draw(st.lists(st.sampled_from(["wifi", "static", "proxy", "x"]), unique=True))}
        elif key == "pinned" and draw(st.booleans()):
            doc[key] = draw(nic_like())
        elif key == "sequence" and draw(st.booleans()):
            doc[key] = draw(st.lists(st.sampled_from(["wifi", "eth0", "cell", "bogus", 3]), max_size=4))
        else:
            doc[key] = draw(json_values)
    return doc


@FUZZ
@given(hostile_json_bytes(state_like()))
def test_state_file_and_its_readers_raise_only_project_errors(tmp_path_factory: Any, data: bytes) -> None:
    path = Path(tmp_path_factory.mktemp("fuzzstate")) / "state.json"
    path.write_bytes(data)
    async def no_devices() -> list[DeviceInfo]:
        return []

    store = FileStore(path)
    for read in (lambda: load_state(path), lambda: get_sequence(store), lambda: config_uc.config_show(store),
                 lambda: asyncio.run(config_uc.config_current(store, no_devices))):
        try:
            read()
        except ImpctlError as exc:
            assert_project_error(exc)
    assert path.read_bytes() == data  # a reader never rewrites the file


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # its escapes are TOML's too; a \ud800 escape TOML must refuse
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    return '""'


CONFIG_KEYS = {
    "cloud": ("host", "port", "tls", "ca_file", "server_name"),
    "probe": ("link_timeout_s", "dns_timeout_s", "proxy_timeout_s", "connect_timeout_s", "tls_timeout_s",
              "total_timeout_s", "require_family"),
    "daemon": ("probe_interval_s", "probe_failures", "standby_probe_interval_s", "cell_standby_probe_interval_s",
               "failback", "failback_hold_s", "min_switch_interval_s", "hooks_dir", "cell_probe_interval_s",
               "primary_route_metric", "liveness_tls", "metrics_listen", "metrics_textfile"),
    "classes": ("eth0", "wlan0", "bad name"),
    "identifiers": ("eth0", "wl0", "x"),
}


@st.composite
def config_like(draw: st.DrawFn) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for section in draw(st.lists(st.sampled_from([*CONFIG_KEYS, "nope"]), unique=True)):
        keys = CONFIG_KEYS.get(section, ("k",))
        raw[section] = {k: draw(st.one_of(scalars, json_values))
                        for k in draw(st.lists(st.sampled_from(keys), unique=True, max_size=4))}
    return raw


def config_text(raw: dict[str, Any]) -> str:
    lines = []
    for section, values in raw.items():
        lines.append(f"[{json.dumps(section)}]")
        lines.extend(f"{json.dumps(k)} = {toml_value(v)}" for k, v in values.items() if v is not None)
    return "\n".join(lines) + "\n"


@FUZZ
@given(config_like())
def test_parse_config_raises_only_config_errors(raw: dict[str, Any]) -> None:
    try:
        config = parse_config(raw)
    except ImpctlError as exc:
        assert exc.exit_code == ExitCode.STATE_ERROR
        assert_project_error(exc)
        return
    for value in (config.probe.total_timeout_s, config.daemon.probe_interval_s):
        assert math.isfinite(value) and value >= 0.1
    assert 1 <= config.daemon.probe_failures <= 10 and 1 <= config.daemon.primary_route_metric <= 99
    if config.daemon.metrics_listen is not None:  # what the daemon will bind: it parses, in range
        assert 0 < parse_listen(config.daemon.metrics_listen, "x")[1] < 65536
    assert config.daemon.metrics_textfile is None or config.daemon.metrics_textfile.endswith(".prom")


@st.composite
def hostile_toml_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:
        depth = draw(st.sampled_from([32, 33, 1000, 20_000]))
        form = draw(st.sampled_from(["a = " + "[" * depth + "]" * depth, "a = " + "{b=" * depth + "1" + "}" * depth,
                                     "a." * depth + "b = 1", "[" + "a." * depth + "b]", "a = " + "[" * depth]))
        return form.encode()
    if kind == 2:
        return draw(st.sampled_from(["[daemon]\nprobe_failures = " + "9" * 5000,
                                     "[daemon]\nprobe_failures = 0x" + "f" * 5000,
                                     "[probe]\ndns_timeout_s = 1e999", 'a = """' + "[" * 5000])).encode()
    return config_text(draw(config_like())).encode("utf-8", "surrogatepass")


@FUZZ
@given(hostile_toml_bytes())
def test_config_file_raises_only_project_errors(tmp_path_factory: Any, data: bytes) -> None:
    path = Path(tmp_path_factory.mktemp("fuzzconfig")) / "impctl.toml"
    path.write_bytes(data)
    try:
        load_config(path, explicit=True)
    except ImpctlError as exc:
        assert exc.exit_code == ExitCode.STATE_ERROR
        assert_project_error(exc)
