"""The configuration file's schema (`/etc/impctl/impctl.toml`), parsed from a plain dict.

Pure: the TOML is read by `impctl.backends.config_file`; this module only
validates and gives typed settings with defaults.

    [cloud]
    host = "cloud.example.com"   # the cloud endpoint probed through each interface
    port = 443
    tls = true                    # TLS handshake after TCP (verifies the certificate)
    ca_file = "/etc/impctl/ca.pem"  # optional CA bundle; default: the system's
    server_name = "cloud.example.com"  # optional TLS name, default: host

    [classes]          # ifname -> class, overriding NM's device type
    uplink1 = "wifi"
    lan0 = "lan"       # a LAN port, never an uplink

    [identifiers]      # identifier -> ifname, overriding the stable order
    eth0 = "enp3s0"

    [probe]            # per-stage timeouts, seconds
    dns_timeout_s = 2.0
    require_family = "any"  # any | all | ipv4 | ipv6: the families that must reach the cloud

    [daemon]
    probe_interval_s = 5.0
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import field, fields
from typing import Any

from impctl.model.errors import ConfigError
from impctl.model.identifiers import is_ifname, parse_specific
from impctl.model.record import record

CLASSES = ("ethernet", "wifi", "cell")
# What [classes] may say of an interface: an uplink class, or "lan", a port that is never an
# uplink whatever state it is in (NM's shared profile is only recognised while it is applied).
LAN_CLASS = "lan"
CLASS_OVERRIDES = (*CLASSES, LAN_CLASS)

# Out of the box, on an ordinary connected machine, this answers TCP and TLS.
DEFAULT_CLOUD_HOST = "cloudflare.com"
DEFAULT_CLOUD_PORT = 443


@record
class CloudEndpoint:
    host: str = DEFAULT_CLOUD_HOST
    port: int = DEFAULT_CLOUD_PORT
    tls: bool = True
    ca_file: str | None = None
    server_name: str | None = None

    @property
    def tls_name(self) -> str:
        return self.server_name or self.host


@record
class ProbeSettings:
    link_timeout_s: float = 1.0
    dns_timeout_s: float = 2.0
    proxy_timeout_s: float = 3.0
    connect_timeout_s: float = 3.0
    tls_timeout_s: float = 3.0
    total_timeout_s: float = 10.0
    # Which address families must reach the cloud for an uplink to count as SERVER_CONNECTED
    # (one of REQUIRE_FAMILIES); the other family's failure is a warning.
    require_family: str = "any"


# "any": either family; "all": every family, IPv6 included even where it is not configured.
REQUIRE_FAMILIES = ("any", "all", "ipv4", "ipv6")


@record
class DaemonSettings:
    # After a failed probe the next come `probe_failures` times faster: with 2 failures a
    # silent upstream loss is confirmed within ~1.5 intervals, 3 s by default.
    probe_interval_s: float = 2.0
    probe_failures: int = 2
    standby_probe_interval_s: float = 60.0
    cell_standby_probe_interval_s: float = 900.0
    failback: bool = True
    failback_hold_s: float = 30.0
    min_switch_interval_s: float = 5.0
    hooks_dir: str | None = None
    # The active uplink when it is cellular: probes cost data (see README, daemon).
    cell_probe_interval_s: float = 60.0
    # The route metric the daemon gives the primary uplink (below NM's 100/600/700 defaults).
    primary_route_metric: int = 20
    # Periodic and standby probes stop after TCP (no TLS handshake): ~5x fewer bytes.
    liveness_tls: bool = False
    # The DNS priority of the primary uplink, set in the same Reapply as its metric: NM
    # orders resolv.conf by it (lower first), not by route metric. Below the 100 NM gives
    # every other connection, above the 50 of VPNs, whose servers still come first.
    primary_dns_priority: int = 90
    # At a switch away from an uplink, end the gateway's sockets on its addresses and the
    # LAN flows NAT'd to it (impctl.model.sessions), so applications reconnect at once.
    end_sessions: bool = True
    # ... and at a failback too, for the classes listed: see impctl.model.sessions.end_on_switch.
    end_sessions_on_failback: tuple[str, ...] = CLASSES
    # Fleet metrics (impctl.model.metrics): "ADDRESS:PORT" or a port (then 127.0.0.1) to serve
    # them over HTTP, and/or a node_exporter textfile (`*.prom`) rewritten with the state file.
    metrics_listen: str | None = None
    metrics_textfile: str | None = None


@record
class Config:
    cloud: CloudEndpoint = field(default_factory=CloudEndpoint)
    classes: dict[str, str] = field(default_factory=dict)
    identifiers: dict[str, str] = field(default_factory=dict)
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)


def parse_host_port(text: str, where: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    # ASCII digits, at most 5: str.isdigit() takes "²" and 5000-digit runs, which int() refuses.
    ok_port = re.fullmatch(r"[0-9]{1,5}", port_text) is not None and 0 < int(port_text) < 65536
    host = host.strip("[]")
    if not sep or not host or not ok_port or len(host) > MAX_HOST_CHARS or not host.isprintable() or " " in host:
        raise ConfigError(f"{where}: expected HOST:PORT, got {_show_value(text)}")
    return host, int(port_text)


METRICS_PORT_EXAMPLE = 9563
LOCALHOST = "127.0.0.1"


def parse_listen(text: str, where: str) -> tuple[str, int]:
    """`[daemon] metrics_listen`: "PORT" (on 127.0.0.1), "ADDRESS:PORT" or "[IPv6]:PORT".

    An IP address, not a name: the daemon binds before the network may resolve anything.
    """
    hint = (f"{where}: expected PORT or ADDRESS:PORT (e.g. {METRICS_PORT_EXAMPLE} or"
            f" {LOCALHOST}:{METRICS_PORT_EXAMPLE}; [::1]:PORT for IPv6; port 1-65535), got {_show_value(text)}")
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host = LOCALHOST
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            raise ConfigError(hint)
    elif ":" in host:  # an IPv6 address without brackets: its last group would read as the port
        raise ConfigError(hint)
    if host == "localhost":
        host = LOCALHOST
    if re.fullmatch(r"[0-9]{1,5}", port_text) is None or not 0 < int(port_text) < 65536:
        raise ConfigError(hint)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(hint) from None
    return host, int(port_text)


@record
class Range:
    """The values a numeric setting accepts, inclusive, and why those."""

    low: float
    high: float
    why: str
    unit: str = "s"

    def text(self) -> str:
        def num(v: float) -> str:
            return f"{v:g}" if isinstance(v, float) else str(v)

        return f"{num(self.low)}-{num(self.high)}" + (f" {self.unit}" if self.unit else "")


_TIMEOUT = Range(0.1, 3600.0, "one probe stage: under 0.1 s nothing answers, over 1 h is a hang")
_INTERVAL = Range(0.5, 86400.0, "probes more often than every 0.5 s cost CPU and data; a day is the longest useful")

# Every numeric setting's range, enforced by parse_config (and shown in the README): NaN, inf
# and absurd values otherwise pass `> 0` and break the daemon quietly.
SETTING_RANGES: dict[str, Range] = {
    "cloud.port": Range(1, 65535, "a TCP port", unit=""),
    "probe.link_timeout_s": _TIMEOUT,
    "probe.dns_timeout_s": _TIMEOUT,
    "probe.proxy_timeout_s": _TIMEOUT,
    "probe.connect_timeout_s": _TIMEOUT,
    "probe.tls_timeout_s": _TIMEOUT,
    "probe.total_timeout_s": Range(0.1, 3600.0, "a whole probe: the stages' sum is usually 10 s"),
    "daemon.probe_interval_s": _INTERVAL,
    "daemon.probe_failures": Range(
        1, 10, "failures in a row before failover; after a failure probes come interval/probe_failures apart,"
        " so more would both delay failover and flood the uplink", unit="",
    ),
    "daemon.standby_probe_interval_s": _INTERVAL,
    "daemon.cell_standby_probe_interval_s": _INTERVAL,
    "daemon.cell_probe_interval_s": _INTERVAL,
    "daemon.failback_hold_s": Range(0.1, 86400.0, "how long the preferred uplink must stay healthy"),
    "daemon.min_switch_interval_s": Range(0.1, 3600.0, "damps flapping; over 1 h would strand a dead uplink"),
    "daemon.primary_dns_priority": Range(
        1, 99, "below NetworkManager's 100 for every other connection so the primary's servers come first;"
        " 0 means NM's default and a negative value drops the other uplinks' servers", unit="",
    ),
    "daemon.primary_route_metric": Range(
        1, 99, "must stay below NetworkManager's default metrics (ethernet 100, wifi 600, wwan 700) so"
        " the primary holds the default route; the daemon uses metric-1 while switching", unit="",
    ),
}

# Strings: host names (RFC 1035 length) and paths (PATH_MAX), printable, no NUL.
MAX_HOST_CHARS = 253
MAX_PATH_BYTES = 4096
_HOST_KEYS = ("cloud.host", "cloud.server_name")
_PATH_KEYS = ("cloud.ca_file", "daemon.hooks_dir", "daemon.metrics_textfile")


def ranges_markdown() -> str:
    """The settings' ranges as a markdown table, for the README and `--help` texts."""
    rows = ["| setting | default | range | why |", "| --- | --- | --- | --- |"]
    defaults = {"cloud": CloudEndpoint(), "probe": ProbeSettings(), "daemon": DaemonSettings()}
    for key, rng in SETTING_RANGES.items():
        section, name = key.split(".")
        rows.append(f"| `{key}` | {getattr(defaults[section], name)} | {rng.text()} | {rng.why} |")
    for key in _HOST_KEYS:
        rows.append(f"| `{key}` | | 1-{MAX_HOST_CHARS} characters | a DNS name or address; no spaces or controls |")
    for key in _PATH_KEYS:
        if key == "daemon.metrics_textfile":
            continue  # its own row below
        rows.append(f"| `{key}` | | a path, 1-{MAX_PATH_BYTES} bytes | no NUL or control characters |")
    rows.append(f"| `daemon.metrics_listen` | off | PORT (on {LOCALHOST}) or ADDRESS:PORT, port 1-65535 |"
                " an IP address ([::1]:PORT for IPv6) to serve the fleet metrics on; 0.0.0.0 for every address |")
    rows.append(f"| `daemon.metrics_textfile` | off | a path ending in `.prom`, 1-{MAX_PATH_BYTES} bytes |"
                " node_exporter's textfile collector reads only `*.prom` files |")
    rows.append(f"| `probe.require_family` | any | one of {', '.join(REQUIRE_FAMILIES)} |"
                " which address families must reach the cloud for SERVER_CONNECTED; any: either |")
    rows.append(f"| `daemon.end_sessions_on_failback` | {list(CLASSES)} | a list of {', '.join(CLASSES)} |"
                " the classes whose sessions a failback ends (a switch away from a failed uplink always does) |")
    return "\n".join(rows)


def _show_value(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**40:
        return f"an integer of {len(hex(value)) - 2} hex digits"  # str() would refuse past 4300 digits
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_range(key: str, value: float) -> None:
    rng = SETTING_RANGES.get(key)
    if rng is None:
        return
    # `not low <= v <= high` is true for NaN too: NaN compares false with everything.
    if not rng.low <= value <= rng.high:
        raise ConfigError(f"{key}: {_show_value(value)} is out of range: must be {rng.text()}")


def _check_string(key: str, value: str) -> None:
    if not value:
        raise ConfigError(f"{key}: must not be empty")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or 0xD800 <= ord(c) < 0xE000 for c in value):
        raise ConfigError(f"{key}: {_show_value(value)} holds a NUL or control character")
    if key in _HOST_KEYS and (len(value) > MAX_HOST_CHARS or any(c.isspace() for c in value)):
        raise ConfigError(f"{key}: {_show_value(value)} is not a host name (1-{MAX_HOST_CHARS} characters, no spaces)")
    if key in _PATH_KEYS and len(value.encode("utf-8")) > MAX_PATH_BYTES:
        raise ConfigError(f"{key}: a path must be at most {MAX_PATH_BYTES} bytes")
    if key == "daemon.metrics_listen":
        parse_listen(value, key)
    if key == "probe.require_family" and value not in REQUIRE_FAMILIES:
        raise ConfigError(f"{key}: {_show_value(value)} must be one of {', '.join(REQUIRE_FAMILIES)}")
    if key == "daemon.metrics_textfile" and not value.endswith(".prom"):
        raise ConfigError(f"{key}: {_show_value(value)} must end in .prom (node_exporter reads only those)")


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return value


def _typed(cls: type[Any], raw: dict[str, Any], name: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        full = f"{name}.{key}"
        if key not in known:
            raise ConfigError(f"{name}.{_key(key)}: unknown setting")
        default = getattr(cls(), key)
        if isinstance(default, bool) or key == "tls" or key == "failback":
            if not isinstance(value, bool):
                raise ConfigError(f"{full}: must be true or false")
        elif isinstance(default, tuple):
            value = _classes_list(full, value)
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{full}: must be a number of seconds ({SETTING_RANGES[full].text()})")
            _check_range(full, value)
            value = float(value)
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{full}: must be an integer ({SETTING_RANGES[full].text()})")
            _check_range(full, value)
        elif value is not None:
            if key == "metrics_listen" and isinstance(value, int) and not isinstance(value, bool):
                # `metrics_listen = 9563`: a port, as TOML writes a number (str() of a huge int fails).
                value = str(value) if -1 < value < 65536 else _show_value(value)
            if not isinstance(value, str):
                raise ConfigError(f"{full}: must be a string")
            _check_string(full, value)
        kwargs[key] = value
    return cls(**kwargs)


def _classes_list(full: str, value: Any) -> tuple[str, ...]:
    choices = ", ".join(f'"{c}"' for c in CLASSES)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{full}: must be a list of interface classes ({choices}), got {_show_value(value)}")
    for v in value:
        if v not in CLASSES:
            raise ConfigError(f"{full}: {_show_value(v)} is not an interface class ({choices})")
    return tuple(dict.fromkeys(value))


def _key(key: object) -> str:
    """A key from the file, printable in one line."""
    text = str(key)
    return text if text.isidentifier() and text.isascii() else _show_value(text)


def parse_config(raw: dict[str, Any]) -> Config:
    for key in raw:
        if key not in ("cloud", "classes", "identifiers", "probe", "daemon"):
            raise ConfigError(f"[{_key(key)}]: unknown section")
    cloud = _typed(CloudEndpoint, _section(raw, "cloud"), "cloud")
    if not cloud.host:
        raise ConfigError("cloud.host: must not be empty")
    classes = {}
    for ifname, cls in _section(raw, "classes").items():
        if not is_ifname(ifname):
            raise ConfigError(f"classes.{_key(ifname)}: not an interface name")
        if not isinstance(cls, str) or cls not in CLASS_OVERRIDES:
            raise ConfigError(f"classes.{ifname}: must be one of {', '.join(CLASS_OVERRIDES)}")
        classes[ifname] = cls
    identifiers = {}
    for ident, ifname in _section(raw, "identifiers").items():
        if parse_specific(ident) is None:
            raise ConfigError(f"identifiers.{_key(ident)}: not a specific identifier (eth0, wl0, cell0, ...)")
        if not isinstance(ifname, str) or not is_ifname(ifname):
            raise ConfigError(f"identifiers.{ident}: must be an interface name (got {_show_value(ifname)})")
        identifiers[ident] = ifname
    return Config(
        cloud=cloud,
        classes=classes,
        identifiers=identifiers,
        probe=_typed(ProbeSettings, _section(raw, "probe"), "probe"),
        daemon=_typed(DaemonSettings, _section(raw, "daemon"), "daemon"),
    )
