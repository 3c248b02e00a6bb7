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

    [identifiers]      # identifier -> ifname, overriding the stable order
    eth0 = "enp3s0"

    [probe]            # per-stage timeouts, seconds
    dns_timeout_s = 2.0

    [daemon]
    probe_interval_s = 5.0
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from impctl.model.errors import ConfigError

CLASSES = ("ethernet", "wifi", "cell")

# Out of the box, on an ordinary connected machine, this answers TCP and TLS.
DEFAULT_CLOUD_HOST = "cloudflare.com"
DEFAULT_CLOUD_PORT = 443


@dataclass(frozen=True)
class CloudEndpoint:
    host: str = DEFAULT_CLOUD_HOST
    port: int = DEFAULT_CLOUD_PORT
    tls: bool = True
    ca_file: str | None = None
    server_name: str | None = None

    @property
    def tls_name(self) -> str:
        return self.server_name or self.host


@dataclass(frozen=True)
class ProbeSettings:
    link_timeout_s: float = 1.0
    dns_timeout_s: float = 2.0
    proxy_timeout_s: float = 3.0
    connect_timeout_s: float = 3.0
    tls_timeout_s: float = 3.0
    total_timeout_s: float = 10.0


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Config:
    cloud: CloudEndpoint = field(default_factory=CloudEndpoint)
    classes: dict[str, str] = field(default_factory=dict)
    identifiers: dict[str, str] = field(default_factory=dict)
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)


def parse_host_port(text: str, where: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{where}: expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port_text)


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return value


def _typed(cls: type[Any], raw: dict[str, Any], name: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{name}.{key}: unknown setting")
        default = getattr(cls(), key)
        if isinstance(default, bool) or key == "tls" or key == "failback":
            if not isinstance(value, bool):
                raise ConfigError(f"{name}.{key}: must be true or false")
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"{name}.{key}: must be a positive number")
            value = float(value)
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name}.{key}: must be a positive integer")
        elif value is not None and not isinstance(value, str):
            raise ConfigError(f"{name}.{key}: must be a string")
        kwargs[key] = value
    return cls(**kwargs)


def parse_config(raw: dict[str, Any]) -> Config:
    for key in raw:
        if key not in ("cloud", "classes", "identifiers", "probe", "daemon"):
            raise ConfigError(f"[{key}]: unknown section")
    cloud = _typed(CloudEndpoint, _section(raw, "cloud"), "cloud")
    if not cloud.host:
        raise ConfigError("cloud.host: must not be empty")
    if not 0 < cloud.port < 65536:
        raise ConfigError("cloud.port: must be 1-65535")
    classes = {}
    for ifname, cls in _section(raw, "classes").items():
        if cls not in CLASSES:
            raise ConfigError(f"classes.{ifname}: must be one of {', '.join(CLASSES)}")
        classes[ifname] = cls
    # Imported here to keep the identifier grammar in one place.
    from impctl.model.identifiers import parse_specific

    identifiers = {}
    for ident, ifname in _section(raw, "identifiers").items():
        if parse_specific(ident) is None:
            raise ConfigError(f"identifiers.{ident}: not a specific identifier (eth0, wl0, cell0, ...)")
        if not isinstance(ifname, str) or not ifname:
            raise ConfigError(f"identifiers.{ident}: must be an interface name")
        identifiers[ident] = ifname
    return Config(
        cloud=cloud,
        classes=classes,
        identifiers=identifiers,
        probe=_typed(ProbeSettings, _section(raw, "probe"), "probe"),
        daemon=_typed(DaemonSettings, _section(raw, "daemon"), "daemon"),
    )
