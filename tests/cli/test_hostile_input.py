"""Hostile input through the real CLI (subprocesses): documented exit code, one line, never a traceback.

The findings of the hardening review each have a test here; then a modest,
derandomized fuzz drives `nic check` (file and stdin), `interfaces get`,
`daemon --status`, `config show` with a bad `--state`, and `status` with a
bad `--config`.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

DEEP_NIC = '{"interface": "eth0", "proxyconfig": ' + "[" * 1000 + "]" * 1000 + "}"
BIG_INT_NIC = '{"interface": "eth0", "proxyconfig": {"address": "p.example", "port": ' + "9" * 5000 + "}}"
SURROGATE_NIC = '{"interface": "wl0", "wificonfig": {"ssid": "caf\\udce9", "key": null}}'
ESCAPE_NIC = json.dumps({"interface": "eth0", "proxyconfig": {
    "address": "p.example", "port": 8080, "username": "\x1b]0;owned\x07\x1b[2J[bold]x[/]"}})


def impctl(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    full_env.pop("IMPCTL_DEBUG", None)  # it would let tracebacks out on purpose
    proc = subprocess.run(
        [sys.executable, "-m", "impctl", *args], input=stdin, capture_output=True, timeout=60, check=False,
        env=full_env,
    )
    # Bytes in, strict UTF-8 out: whatever impctl printed must be encodable text.
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def assert_one_line_error(proc: Any, code: int, *words: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert not any(ord(c) < 0x20 and c != "\n" for c in proc.stderr), repr(proc.stderr)
    for word in words:
        assert word in proc.stderr, proc.stderr
    return proc.stderr


def one_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    doc = json.loads(proc.stdout)
    assert isinstance(doc, dict) and doc["exit_code"] == proc.returncode
    assert "Traceback" not in proc.stderr
    assert "internal" not in json.dumps(doc["error"])
    return doc


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    return path


# ---------------------------------------------------------------- the findings


def test_a_nic_nested_1000_deep_is_exit_2_in_one_line(tmp_path: Path) -> None:
    nic = write(tmp_path / "nic.json", DEEP_NIC)
    assert_one_line_error(impctl("nic", "check", str(nic)), 2, "nested deeper than 32 levels")
    assert_one_line_error(impctl("nic", "check", "-", stdin=DEEP_NIC.encode()), 2, "NIC on stdin is nested")
    state = tmp_path / "state.json"
    assert_one_line_error(impctl("--state", str(state), "connectwith", "--nic", str(nic)), 2, "nested deeper")
    assert not state.exists()  # refused before anything was stored
    doc = one_json(impctl("nic", "check", str(nic), "--json"))
    assert doc["error"]["kind"] == "invalid_input"


def test_a_5000_digit_integer_is_exit_2(tmp_path: Path) -> None:
    nic = write(tmp_path / "nic.json", BIG_INT_NIC)
    assert_one_line_error(impctl("nic", "check", str(nic)), 2, "number with more than 40 characters")


def test_a_surrogate_ssid_never_crashes_human_output(tmp_path: Path) -> None:
    nic = write(tmp_path / "nic.json", SURROGATE_NIC)
    err = assert_one_line_error(impctl("nic", "check", str(nic)), 2, "wificonfig.ssid", "surrogate")
    assert "\\udce9" in err  # shown as an escape
    doc = one_json(impctl("nic", "check", str(nic), "--json"))
    assert doc["error"]["path"] == "wificonfig.ssid"
    # Raw bytes that are not UTF-8 (what a C-locale stdin would turn into surrogates) too.
    raw = b'{"interface": "wl0", "wificonfig": {"ssid": "caf\xe9", "key": null}}'
    assert_one_line_error(impctl("nic", "check", "-", stdin=raw, env={"LC_ALL": "C"}), 2, "not UTF-8")


def test_escape_sequences_in_a_proxy_username_are_shown_escaped(tmp_path: Path) -> None:
    nic = write(tmp_path / "nic.json", ESCAPE_NIC)
    proc = impctl("nic", "check", str(nic))
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout
    assert "\\x1b]0;owned\\x07\\x1b[2J[bold]x[/]" in proc.stdout  # every character, markup literal
    doc = one_json(impctl("nic", "check", str(nic), "--json"))
    assert doc["data"]["proxyconfig"]["username"] == "\x1b]0;owned\x07\x1b[2J[bold]x[/]"  # JSON: exact


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ("[probe]\nconnect_timeout_s = nan\n", "probe.connect_timeout_s: nan is out of range: must be 0.1-3600 s"),
        ("[daemon]\nprobe_failures = 99999999999999999999\n", "daemon.probe_failures: 99999999999999999999 is out"),
        ("[daemon]\nprimary_route_metric = 4294967296\n", "daemon.primary_route_metric: 4294967296 is out of range"),
        ('[cloud]\nca_file = "\\u0000"\n', "cloud.ca_file: '\\x00' holds a NUL or control character"),
        ("[daemon]\nprobe_failures = " + "9" * 5000 + "\n", "more than 40 digits"),
        ("a = " + "[" * 1000 + "]" * 1000 + "\n", "nested deeper than 32 levels"),
    ],
)
def test_each_bad_config_value_is_exit_3_naming_the_key(tmp_path: Path, toml: str, words: str) -> None:
    config = write(tmp_path / "impctl.toml", toml)
    proc = impctl("--config", str(config), "--state", str(tmp_path / "state.json"), "status",
                  env={"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus"})
    assert_one_line_error(proc, 3, words)


def test_a_state_file_nested_1000_deep_is_exit_3(tmp_path: Path) -> None:
    state = write(tmp_path / "state.json", '{"schema_version": 1, "daemon": ' + "[" * 1000 + "]" * 1000 + "}")
    assert_one_line_error(impctl("--state", str(state), "interfaces", "get"), 3, "nested deeper than 64 levels",
                          "move it aside")


def test_a_corrupt_gateway_key_is_exit_3_in_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    write(tmp_path / "secret.key", b"")
    proc = impctl("--state", str(state), "config", "wifi", "--ssid", "depot", "--key", "correct horse")
    assert_one_line_error(proc, 3, "secret.key is corrupt (empty)", "remove it and re-enter the stored secrets")
    assert not state.exists()


def test_markup_in_a_command_name_is_a_usage_error_not_a_crash() -> None:
    proc = impctl("[/x]\x1b[2J")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "\x1b" not in proc.stderr
    assert "[/x]\\x1b[2J" in proc.stderr


# ---------------------------------------------------------------- fuzz through the CLI

CLI_FUZZ = settings(
    max_examples=4, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

hostile_text = st.one_of(
    st.text(st.characters(codec=None, exclude_categories=()), max_size=8),
    st.sampled_from(["[bold]", "[/x]", "\x1b[2J", "\ud800", "\x00", "\\", "\n"]),
)
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), hostile_text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(hostile_text, inner, max_size=3)),
    max_leaves=8,
)


@st.composite
def hostile_document(draw: st.DrawFn, top_keys: tuple[str, ...], fixed: dict[str, Any]) -> bytes:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.binary(max_size=100))
    if kind == 1:
        depth = draw(st.sampled_from([33, 65, 1000, 20_000]))
        return ("[" * depth + "]" * depth).encode()
    if kind == 2:
        return ('{"' + top_keys[0] + '": ' + "7" * draw(st.sampled_from([41, 4301, 5000])) + "}").encode()
    doc = {**fixed, **{k: draw(values) for k in draw(st.lists(st.sampled_from(top_keys), unique=True, max_size=3))}}
    return json.dumps(doc, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


NIC_TOP = ("interface", "wificonfig", "staticconfig", "proxyconfig", "cellconfig")
STATE_TOP = ("sequence", "sequence_index", "pinned", "stored", "current", "last_error", "daemon", "schema_version")


class Outcome:
    """What one CLI run gave, however it was run."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def in_subprocess(args: list[str], stdin: bytes | None, env: dict[str, str]) -> Outcome:
    proc = impctl(*args, stdin=stdin, env=env)
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """The entry point called directly: the same code path, milliseconds instead of a second a run."""
    from impctl.cli.main import main

    def call(args: list[str], stdin: bytes | None, env: dict[str, str]) -> Outcome:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin or b"")))
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        out = capsys.readouterr()  # capsys's streams are strict UTF-8: a surrogate printed is an error
        return Outcome(int(exit_info.value.code or 0), out.out, out.err)

    return call


def check_nic(run: Any, tmp: Path, data: bytes, via_stdin: bool) -> None:
    if via_stdin:
        out = run(["nic", "check", "-"], data, {})
    else:
        out = run(["nic", "check", str(write(tmp / "nic.json", data))], None, {})
    if out.returncode != 0:
        assert_one_line_error(out, 2)
    else:
        assert out.stderr == "" and "\x1b" not in out.stdout


def check_state(run: Any, tmp: Path, data: bytes, command: tuple[str, ...]) -> None:
    state = write(tmp / "state.json", data)
    out = run(["--state", str(state), *command], None, {})
    if out.returncode != 0:
        # config show also validates the stored settings it shows: a bad one is exit 2
        assert_one_line_error(out, 2 if out.returncode == 2 and command == ("config", "show") else 3)
    else:
        assert out.stderr == "" and "\x1b" not in out.stdout
    assert state.read_bytes() == data


def check_config(run: Any, tmp: Path, data: bytes) -> None:
    config = write(tmp / "impctl.toml", data)
    out = run(["--config", str(config), "--state", str(tmp / "state.json"), "status"], None,
              {"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp}/no-bus"})
    # A config that passes goes on to the (absent) bus: exit 5, with its hint line.
    if out.returncode != 5:
        assert_one_line_error(out, 3)
    else:
        assert "D-Bus" in out.stderr and "Traceback" not in out.stderr


@st.composite
def hostile_config(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=100))
    if kind == 1:
        return draw(st.sampled_from(["a." * 20_000 + "b = 1", "a = " + "{b=" * 1000 + "1" + "}" * 1000,
                                     "[daemon]\nprobe_interval_s = -0.0", "[cloud]\nhost = '\t'"])).encode()
    section = draw(st.sampled_from(["cloud", "probe", "daemon"]))
    key = draw(st.sampled_from(["port", "host", "ca_file", "dns_timeout_s", "probe_failures", "hooks_dir",
                                "primary_route_metric", "failback"]))
    value = draw(st.one_of(st.integers(-(2**70), 2**70), st.floats().map(lambda f: str(f).replace("e", "E")),
                           hostile_text.map(json.dumps), st.sampled_from(["nan", "-inf", "true", "[1, [2]]"])))
    return f"[{section}]\n{key} = {value}\n".encode("utf-8", "surrogatepass")


nic_documents = hostile_document(NIC_TOP, {"interface": "eth0"})
state_documents = hostile_document(STATE_TOP, {"schema_version": 1})
state_commands = st.sampled_from([("interfaces", "get"), ("daemon", "--status"), ("config", "show")])


@CLI_FUZZ
@given(data=nic_documents, via_stdin=st.booleans())
def test_fuzz_nic_check(tmp_path_factory: pytest.TempPathFactory, data: bytes, via_stdin: bool) -> None:
    check_nic(in_subprocess, tmp_path_factory.mktemp("nic"), data, via_stdin)


@CLI_FUZZ
@given(data=state_documents, command=state_commands)
def test_fuzz_state_readers(tmp_path_factory: pytest.TempPathFactory, data: bytes, command: tuple[str, ...]) -> None:
    check_state(in_subprocess, tmp_path_factory.mktemp("state"), data, command)


@CLI_FUZZ
@given(data=hostile_config())
def test_fuzz_config_reader(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    check_config(in_subprocess, tmp_path_factory.mktemp("config"), data)


INPROCESS_FUZZ = settings(CLI_FUZZ, max_examples=40)


@INPROCESS_FUZZ
@given(nic=nic_documents, via_stdin=st.booleans(), state=state_documents, command=state_commands,
       config=hostile_config())
def test_fuzz_every_reader_in_process(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    nic: bytes, via_stdin: bool, state: bytes, command: tuple[str, ...], config: bytes,
) -> None:
    run = in_process(monkeypatch, capsys)
    check_nic(run, tmp_path_factory.mktemp("nic"), nic, via_stdin)
    check_state(run, tmp_path_factory.mktemp("state"), state, command)
    check_config(run, tmp_path_factory.mktemp("config"), config)


@pytest.mark.parametrize(("option", "code"), [("--cloud", 3), ("--proxy", 2)])  # --cloud overrides the config
def test_a_port_int_cannot_parse_is_an_error_not_a_crash(tmp_path: Path, option: str, code: int) -> None:
    for port in ("9" * 5000, "²"):
        proc = impctl("--state", str(tmp_path / "state.json"), "probe", option, f"x:{port}", "--json")
        doc = one_json(proc)
        assert proc.returncode == code and "expected HOST:PORT" in doc["error"]["message"]
