"""Every config setting has a finite, documented range; errors name the key, the value and the range."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import pytest

from impctl.model.config import (
    SETTING_RANGES,
    CloudEndpoint,
    DaemonSettings,
    ProbeSettings,
    parse_config,
    parse_host_port,
    parse_listen,
    ranges_markdown,
)
from impctl.model.errors import ConfigError

SECTIONS: dict[str, Any] = {"cloud": CloudEndpoint(), "probe": ProbeSettings(), "daemon": DaemonSettings()}


def error_of(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    return err.value.message


def test_every_numeric_setting_has_a_range_holding_its_default() -> None:
    numeric = {
        f"{name}.{f.name}"
        for name, obj in SECTIONS.items()
        for f in fields(obj)
        if isinstance(getattr(obj, f.name), int | float) and not isinstance(getattr(obj, f.name), bool)
    }
    assert numeric == set(SETTING_RANGES)
    for key, rng in SETTING_RANGES.items():
        section, name = key.split(".")
        default = getattr(SECTIONS[section], name)
        assert rng.low <= default <= rng.high, key
        assert math.isfinite(rng.low) and math.isfinite(rng.high) and 0 < rng.low < rng.high
        assert rng.why


@pytest.mark.parametrize("key", sorted(SETTING_RANGES))
@pytest.mark.parametrize("bad", ["low", "high", "nan", "inf", "-inf", "tiny", "huge"])
def test_each_bad_value_names_key_value_and_range(key: str, bad: str) -> None:
    section, name = key.split(".")
    rng = SETTING_RANGES[key]
    is_int = isinstance(getattr(SECTIONS[section], name), int)
    value: Any = {
        "low": rng.low - 1 if is_int else rng.low / 2,
        "high": rng.high + 1 if is_int else rng.high * 2,
        "nan": math.nan, "inf": math.inf, "-inf": -math.inf, "tiny": 1e-300, "huge": 10**20,
    }[bad]
    if is_int and isinstance(value, float):
        value = 10**30 if bad != "-inf" else -(10**30)  # an integer setting: the integer forms
    message = error_of({section: {name: value}})
    assert message.startswith(f"{key}: ")
    assert rng.text() in message
    assert repr(value) in message  # repr(nan) is "nan", repr(inf) "inf"


def test_the_findings() -> None:
    assert "probe.connect_timeout_s: nan is out of range: must be 0.1-3600 s" in error_of(
        {"probe": {"connect_timeout_s": math.nan}}
    )
    assert "daemon.probe_failures: 99999999999999999999 is out of range: must be 1-10" in error_of(
        {"daemon": {"probe_failures": 99999999999999999999}}
    )
    assert "daemon.primary_route_metric: 4294967296 is out of range: must be 1-99" in error_of(
        {"daemon": {"primary_route_metric": 4294967296}}
    )
    assert "cloud.ca_file: '\\x00' holds a NUL or control character" in error_of({"cloud": {"ca_file": "\x00"}})
    # Past 4300 digits str() of an int fails: the message must not need it.
    assert "hex digits is out of range" in error_of({"daemon": {"probe_failures": 16**5000}})


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"cloud": {"host": "a b"}}, "cloud.host: 'a b' is not a host name"),
        ({"cloud": {"host": "x" * 254}}, "cloud.host:"),
        ({"cloud": {"host": ""}}, "cloud.host: must not be empty"),
        ({"cloud": {"server_name": "a\x1bb"}}, "cloud.server_name: 'a\\x1bb' holds a NUL or control"),
        ({"cloud": {"ca_file": "/etc/\ud800"}}, "cloud.ca_file:"),
        ({"cloud": {"ca_file": "/" + "a" * 4096}}, "cloud.ca_file: a path must be at most 4096 bytes"),
        ({"daemon": {"hooks_dir": "/x\n/y"}}, "daemon.hooks_dir: '/x\\n/y' holds a NUL or control"),
        ({"cloud": {"port": 0}}, "cloud.port: 0 is out of range: must be 1-65535"),
        ({"cloud": {"port": 65536}}, "cloud.port: 65536 is out of range"),
        ({"probe": {"dns_timeout_s": "2"}}, "probe.dns_timeout_s: must be a number of seconds (0.1-3600 s)"),
        ({"daemon": {"probe_failures": 2.0}}, "daemon.probe_failures: must be an integer (1-10)"),
        ({"daemon": {"probe_failures": True}}, "daemon.probe_failures: must be an integer"),
        ({"classes": {"eth 0": "wifi"}}, "classes.'eth 0': not an interface name"),
        ({"classes": {"eth0": ["wifi"]}}, "classes.eth0: must be one of"),
        ({"identifiers": {"eth0": "a/b"}}, "identifiers.eth0: must be an interface name"),
        ({"daemon": {"\x1b[31m": 1}}, "daemon.'\\x1b[31m': unknown setting"),
        ({"\x1b": {}}, "['\\x1b']: unknown section"),
    ],
)
def test_strings_and_types(raw: dict[str, Any], words: str) -> None:
    message = error_of(raw)
    assert words in message
    assert "\n" not in message and "\x1b" not in message and "\x00" not in message


def test_values_at_the_edges_are_accepted() -> None:
    config = parse_config({
        "probe": {"link_timeout_s": 0.1, "total_timeout_s": 3600},
        "daemon": {"probe_failures": 10, "primary_route_metric": 99, "cell_standby_probe_interval_s": 86400},
        "cloud": {"port": 1, "ca_file": "/etc/impctl/ca.pem", "host": "cloud.example"},
    })
    assert config.probe.total_timeout_s == 3600.0 and isinstance(config.probe.total_timeout_s, float)
    assert config.daemon.probe_failures == 10 and config.daemon.primary_route_metric == 99


def test_the_markdown_table_lists_every_setting() -> None:
    table = ranges_markdown()
    for key, rng in SETTING_RANGES.items():
        assert f"| `{key}` |" in table and rng.text() in table
    assert "`cloud.ca_file`" in table and "`cloud.host`" in table


@pytest.mark.parametrize(
    "text", ["x:" + "9" * 5000, "x:²", "x:٣", "x:0", "x:65536", ":443", "x", "a b:443", "\x1b[2J:443", "x:-1"]
)
def test_host_port_refuses_what_int_or_a_terminal_would_choke_on(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_host_port(text, "--cloud")
    assert err.value.message.startswith("--cloud: expected HOST:PORT, got ")
    assert "\x1b" not in err.value.message and len(err.value.message) < 120


def test_host_port_accepts_names_and_bracketed_addresses() -> None:
    assert parse_host_port("cloud.example:443", "x") == ("cloud.example", 443)
    assert parse_host_port("[2001:db8::1]:8443", "x") == ("2001:db8::1", 8443)


@pytest.mark.parametrize(("given", "listen"), [
    ("9563", ("127.0.0.1", 9563)), (9563, ("127.0.0.1", 9563)), ("localhost:9563", ("127.0.0.1", 9563)),
    ("127.0.0.1:1", ("127.0.0.1", 1)), ("0.0.0.0:65535", ("0.0.0.0", 65535)), ("[::1]:9563", ("::1", 9563)),
    ("[::]:80", ("::", 80)),
])
def test_metrics_listen_takes_a_port_or_an_address_and_port(given: object, listen: tuple[str, int]) -> None:
    config = parse_config({"daemon": {"metrics_listen": given}})
    assert config.daemon.metrics_listen is not None
    assert parse_listen(config.daemon.metrics_listen, "daemon.metrics_listen") == listen


@pytest.mark.parametrize("bad", [":9563", "::1:9563", "cloud.example:9563", "0", "65536", "1.2.3.4:",
                                 "[1.2.3.4]:80", "1.2.3.4:0x50", "1.2.3.4:٣", -1, 70000, 10**30, " 9563"])
def test_a_bad_metrics_listen_is_one_line_naming_the_setting_and_the_range(bad: object) -> None:
    message = error_of({"daemon": {"metrics_listen": bad}})
    assert message.startswith("daemon.metrics_listen: expected PORT or ADDRESS:PORT")
    assert "port 1-65535" in message and "\n" not in message


def test_metrics_settings_are_off_by_default_and_documented() -> None:
    assert DaemonSettings().metrics_listen is None and DaemonSettings().metrics_textfile is None
    table = ranges_markdown()
    assert "`daemon.metrics_listen` | off |" in table and "`daemon.metrics_textfile` | off |" in table
    assert error_of({"daemon": {"metrics_textfile": "/run/impctl/metrics.txt"}}) == (
        "daemon.metrics_textfile: '/run/impctl/metrics.txt' must end in .prom (node_exporter reads only those)")
    assert error_of({"daemon": {"metrics_listen": True}}) == "daemon.metrics_listen: must be a string"


@pytest.mark.parametrize("value", ["any", "all", "ipv4", "ipv6"])
def test_require_family_takes_its_documented_values(value: str) -> None:
    assert parse_config({"probe": {"require_family": value}}).probe.require_family == value


@pytest.mark.parametrize("bad", ["both", "IPv6", "", 6])
def test_require_family_refuses_anything_else_naming_the_choices(bad: object) -> None:
    message = error_of({"probe": {"require_family": bad}})
    assert message.startswith("probe.require_family: ")
    assert "any, all, ipv4, ipv6" in message or "must be a string" in message or "empty" in message
