"""NIC tables (server.connectwith's first argument), parsed and validated.

A NIC is a JSON object: `interface` (required) plus optional `wificonfig`,
`staticconfig`, `proxyconfig` and `cellconfig`. Validation follows the impOS
pages; every error names the JSON path of the offending field. Parsing never
raises anything but `ValidationError`, whatever the input.

Secrets (WiFi key, proxy and cellular passwords) are `Secret`s: either plain
text as the user wrote it, or encrypted with the gateway's key (the form
`impctl config current` prints, `{"encrypted": "<token>"}`), which the model
carries without being able to read. Neither form prints in clear.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from impctl.model.bounded import DocumentError, Limits, load_json, show
from impctl.model.errors import ValidationError
from impctl.model.identifiers import check_identifier, class_of
from impctl.model.record import record

# A NIC is a few hundred bytes, nested 3 deep ({"wificonfig": {"key": {"encrypted": ...}}});
# 64 KiB and 32 levels leave room for any real one and bound the work a hostile one causes.
NIC_LIMITS = Limits(max_bytes=64 * 1024, max_depth=32)

# Pattern strings, compiled by `re` on first use (and cached there): most runs that
# import this module (status, probe) never validate a key or a host name.
_HEX64 = r"^[0-9A-Fa-f]{64}$"
_HOSTNAME = (
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*\.?$"
)
_ENC_TOKEN = r"^[A-Za-z0-9_\-=.:]{1,4096}$"
_SURROGATE = "[\ud800-\udfff]"
_PLAIN_KEY = r"[A-Za-z_][A-Za-z0-9_\-]{0,63}"

NIC_KEYS = ("interface", "wificonfig", "staticconfig", "proxyconfig", "cellconfig")


@record
class Secret:
    """A secret value: plain text or a gateway-encrypted token. Never shown in clear."""

    plain: str | None = None
    encrypted: str | None = None

    def __repr__(self) -> str:
        return "Secret(<encrypted>)" if self.encrypted is not None else "Secret(<hidden>)"

    __str__ = __repr__

    @property
    def is_empty(self) -> bool:
        return self.encrypted is None and not self.plain

    def to_json(self) -> dict[str, str]:
        """The only serialisable form: encrypted. Plain secrets must be encrypted first."""
        if self.encrypted is None:
            raise ValueError("a plain secret cannot be serialised; encrypt it first")
        return {"encrypted": self.encrypted}


@record
class WifiConfig:
    ssid: str
    key: Secret | None  # None: open network

    @property
    def is_open(self) -> bool:
        return self.key is None or self.key.is_empty


@record
class StaticConfig:
    ip: str
    netmask: str
    gateway: str
    dns: tuple[str, ...]

    @property
    def prefix(self) -> int:
        return ipaddress.IPv4Network(f"0.0.0.0/{self.netmask}").prefixlen


@record
class ProxyConfig:
    address: str
    port: int
    type: str = "http"
    username: str | None = None
    password: Secret | None = None


@record
class CellConfig:
    apn: str | None = None
    username: str | None = None
    password: Secret | None = None


@record
class Nic:
    interface: str
    wificonfig: WifiConfig | None = None
    staticconfig: StaticConfig | None = None
    proxyconfig: ProxyConfig | None = None
    cellconfig: CellConfig | None = None

    @property
    def iface_class(self) -> str | None:
        """The class the identifier names, None for a plain ifname (known only on the gateway)."""
        return class_of(self.interface)

    @property
    def is_bare(self) -> bool:
        """Names only an interface: stored settings apply (server.connectwith)."""
        return not (self.wificonfig or self.staticconfig or self.proxyconfig or self.cellconfig)


def _obj(value: Any, path: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(path, "must be an object")
    for key in value:
        if key not in keys:
            # A key is user data: quoted unless plain, so the path stays one printable line.
            if isinstance(key, str) and re.fullmatch(_PLAIN_KEY, key):
                where = f"{path}.{key}" if path else key
            else:
                where = f"{path}[{show(str(key))}]"
            raise ValidationError(where, f"unknown key (expected one of {', '.join(keys)})")
    return value


def _str(value: Any, path: str, *, max_len: int | None = None, min_len: int = 1) -> str:
    if not isinstance(value, str):
        raise ValidationError(path, "must be a string")
    if len(value) < min_len:
        raise ValidationError(path, "must not be empty")
    if max_len is not None and len(value) > max_len:
        raise ValidationError(path, f"must be at most {max_len} characters (got {len(value)})")
    _text(value, path)
    return value


def _text(value: str, path: str, *, secret: bool = False) -> None:
    """Strings that can never be valid anywhere in a NIC: NUL, lone surrogates (not Unicode text)."""
    if "\x00" in value:
        raise ValidationError(path, "must not contain NUL characters")
    if re.search(_SURROGATE, value):
        where = "" if secret else f" in {show(value)}"  # a secret is never echoed, not even a bad one
        raise ValidationError(path, f"must be Unicode text (got a lone UTF-16 surrogate{where})")


def _ipv4(value: Any, path: str) -> ipaddress.IPv4Address:
    if not isinstance(value, str) or not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", value):
        raise ValidationError(path, f"must be a dotted-quad IPv4 address (got {_show(value)})")
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise ValidationError(path, f"{value!r} is not a valid IPv4 address") from None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _secret(value: Any, path: str) -> Secret:
    if isinstance(value, dict):
        obj = _obj(value, path, ("encrypted",))
        token = obj.get("encrypted")
        if not isinstance(token, str) or not re.match(_ENC_TOKEN, token):
            raise ValidationError(f"{path}.encrypted", "must be an encrypted token from 'impctl config current'")
        return Secret(encrypted=token)
    if not isinstance(value, str):
        raise ValidationError(path, "must be a string, or {\"encrypted\": ...}")
    _text(value, path, secret=True)
    return Secret(plain=value)


def parse_wifi(value: Any, path: str = "wificonfig") -> WifiConfig:
    obj = _obj(value, path, ("ssid", "key"))
    if "ssid" not in obj:
        raise ValidationError(f"{path}.ssid", "is required")
    ssid = _str(obj["ssid"], f"{path}.ssid")
    if not 1 <= len(ssid.encode("utf-8")) <= 32:
        raise ValidationError(f"{path}.ssid", "must be 1-32 bytes")
    if "key" not in obj:
        raise ValidationError(f"{path}.key", 'is required (null or "" for an open network)')
    raw_key = obj["key"]
    if raw_key is None or raw_key == "":
        return WifiConfig(ssid=ssid, key=None)
    key = _secret(raw_key, f"{path}.key")
    if key.plain is not None:
        text = key.plain
        if not (8 <= len(text) <= 63 and text.isprintable() and text.isascii()) and not re.match(_HEX64, text):
            raise ValidationError(
                f"{path}.key",
                "must be a WPA passphrase of 8-63 printable ASCII characters or 64 hex digits"
                f" (got {len(text)} characters)",
            )
    return WifiConfig(ssid=ssid, key=key)


def parse_static(value: Any, path: str = "staticconfig") -> StaticConfig:
    obj = _obj(value, path, ("ip", "netmask", "gateway", "dns"))
    for key in ("ip", "netmask", "gateway", "dns"):
        if key not in obj:
            raise ValidationError(f"{path}.{key}", "is required")
    ip = _ipv4(obj["ip"], f"{path}.ip")
    mask = _ipv4(obj["netmask"], f"{path}.netmask")
    try:
        prefix = ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
    except ValueError:
        raise ValidationError(f"{path}.netmask", f"{mask} is not a valid netmask (contiguous ones)") from None
    if prefix == 0:
        raise ValidationError(f"{path}.netmask", "0.0.0.0 is not a usable netmask")
    gateway = _ipv4(obj["gateway"], f"{path}.gateway")
    net = ipaddress.IPv4Network(f"{ip}/{prefix}", strict=False)
    if prefix < 31 and ip in (net.network_address, net.broadcast_address):
        raise ValidationError(f"{path}.ip", f"{ip} is the network or broadcast address of {net}")
    if gateway not in net:
        raise ValidationError(f"{path}.gateway", f"{gateway} is not in the subnet {net}")
    if gateway == ip:
        raise ValidationError(f"{path}.gateway", "must differ from ip")
    dns_raw = obj["dns"]
    if not isinstance(dns_raw, list) or not 1 <= len(dns_raw) <= 2:
        raise ValidationError(f"{path}.dns", "must be a list of 1 or 2 IPv4 addresses")
    dns = tuple(str(_ipv4(d, f"{path}.dns[{i}]")) for i, d in enumerate(dns_raw))
    return StaticConfig(ip=str(ip), netmask=str(mask), gateway=str(gateway), dns=dns)


def parse_proxy(value: Any, path: str = "proxyconfig") -> ProxyConfig:
    obj = _obj(value, path, ("type", "address", "port", "username", "password"))
    ptype = obj.get("type", "http")
    if ptype != "http":
        raise ValidationError(f"{path}.type", f'must be "http" (got {_show(ptype)})')
    if "address" not in obj:
        raise ValidationError(f"{path}.address", "is required")
    address = _str(obj["address"], f"{path}.address", max_len=64)
    if not re.match(_HOSTNAME, address):
        raise ValidationError(f"{path}.address", f"{address!r} is not a host name or IPv4 address")
    if "port" not in obj:
        raise ValidationError(f"{path}.port", "is required")
    port = obj["port"]
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValidationError(f"{path}.port", f"must be an integer 0-65535 (got {_show(port)})")
    username = obj.get("username")
    if username is not None:
        username = _str(username, f"{path}.username", max_len=32, min_len=0) or None
    password: Secret | None = None
    if obj.get("password") not in (None, ""):
        password = _secret(obj["password"], f"{path}.password")
        if password.plain is not None and len(password.plain) > 32:
            raise ValidationError(f"{path}.password", "must be at most 32 characters")
    if password is not None and username is None:
        raise ValidationError(f"{path}.username", "is required when a password is given")
    return ProxyConfig(address=address, port=port, type=ptype, username=username, password=password)


def parse_cell(value: Any, path: str = "cellconfig") -> CellConfig:
    obj = _obj(value, path, ("apn", "username", "password"))
    apn = obj.get("apn")
    if apn is not None:
        apn = _str(apn, f"{path}.apn", max_len=100)
        if not re.fullmatch(r"[A-Za-z0-9.\-_]+", apn):
            raise ValidationError(f"{path}.apn", "may hold only letters, digits, '.', '-' and '_'")
    username = obj.get("username")
    if username is not None:
        username = _str(username, f"{path}.username", max_len=64)
    password = None
    if obj.get("password") not in (None, ""):
        password = _secret(obj["password"], f"{path}.password")
        if password.plain is not None and len(password.plain) > 64:
            raise ValidationError(f"{path}.password", "must be at most 64 characters")
    return CellConfig(apn=apn, username=username, password=password)


def parse_nic_text(data: bytes | str, source: str = "NIC") -> Nic:
    """Decode and parse a NIC document (a file's bytes) within NIC_LIMITS. Raises only ValidationError."""
    try:
        doc = load_json(data, NIC_LIMITS)
    except DocumentError as exc:
        raise ValidationError(exc.path, f"{source} {exc.reason}" if not exc.path else exc.reason) from None
    return parse_nic(doc)


def parse_nic(value: Any) -> Nic:
    """Parse a NIC table (already JSON-decoded). Raises only ValidationError."""
    obj = _obj(value, "", NIC_KEYS)
    if "interface" not in obj:
        raise ValidationError("interface", "is required")
    interface = check_identifier(obj["interface"], "interface")
    cls = class_of(interface)
    wifi = static = proxy = cell = None
    if obj.get("wificonfig") is not None:
        if cls is not None and cls != "wifi":
            raise ValidationError("wificonfig", f"applies only to WiFi interfaces, not {interface!r}")
        wifi = parse_wifi(obj["wificonfig"])
    if obj.get("staticconfig") is not None:
        if cls == "cell":
            raise ValidationError("staticconfig", "does not apply to cellular interfaces")
        static = parse_static(obj["staticconfig"])
    if obj.get("proxyconfig") is not None:
        if cls == "cell":
            raise ValidationError("proxyconfig", "does not apply to cellular interfaces")
        proxy = parse_proxy(obj["proxyconfig"])
    if obj.get("cellconfig") is not None:
        if cls is not None and cls != "cell":
            raise ValidationError("cellconfig", f"applies only to cellular interfaces, not {interface!r}")
        cell = parse_cell(obj["cellconfig"])
    return Nic(interface=interface, wificonfig=wifi, staticconfig=static, proxyconfig=proxy, cellconfig=cell)


def check_nic_for_class(nic: Nic, iface_class: str) -> None:
    """The checks that need the interface's class, for a NIC naming a plain ifname."""
    if nic.wificonfig is not None and iface_class != "wifi":
        raise ValidationError("wificonfig", f"applies only to WiFi interfaces; {nic.interface} is {iface_class}")
    if nic.cellconfig is not None and iface_class != "cell":
        raise ValidationError("cellconfig", f"applies only to cellular interfaces; {nic.interface} is {iface_class}")
    if iface_class == "cell" and (nic.staticconfig or nic.proxyconfig):
        raise ValidationError(
            "staticconfig" if nic.staticconfig else "proxyconfig", "does not apply to cellular interfaces"
        )


def _secret_json(secret: Secret | None) -> Any:
    if secret is None:
        return None
    return secret.to_json()


def nic_to_json(nic: Nic) -> dict[str, Any]:
    """The NIC as JSON; secrets must already be encrypted (see impctl.backends.secrets)."""
    out: dict[str, Any] = {"interface": nic.interface}
    if nic.wificonfig:
        out["wificonfig"] = {"ssid": nic.wificonfig.ssid, "key": _secret_json(nic.wificonfig.key)}
    if nic.staticconfig:
        s = nic.staticconfig
        out["staticconfig"] = {"ip": s.ip, "netmask": s.netmask, "gateway": s.gateway, "dns": list(s.dns)}
    if nic.proxyconfig:
        p = nic.proxyconfig
        proxy: dict[str, Any] = {"type": p.type, "address": p.address, "port": p.port}
        if p.username is not None:
            proxy["username"] = p.username
        if p.password is not None:
            proxy["password"] = _secret_json(p.password)
        out["proxyconfig"] = proxy
    if nic.cellconfig:
        c = nic.cellconfig
        cellj: dict[str, Any] = {}
        if c.apn is not None:
            cellj["apn"] = c.apn
        if c.username is not None:
            cellj["username"] = c.username
        if c.password is not None:
            cellj["password"] = _secret_json(c.password)
        out["cellconfig"] = cellj
    return out


def describe_secret(secret: Secret | None) -> str:
    """What output may say about a secret: never its value."""
    if secret is None or secret.is_empty:
        return "none"
    return "encrypted" if secret.encrypted is not None else "set (hidden)"


def nic_summary(nic: Nic) -> dict[str, Any]:
    """What `impctl nic check` shows: everything understood, secrets masked."""
    out: dict[str, Any] = {"interface": nic.interface, "class": nic.iface_class}
    if nic.wificonfig:
        out["wificonfig"] = {
            "ssid": nic.wificonfig.ssid,
            "security": "open" if nic.wificonfig.is_open else "wpa-psk",
            "key": describe_secret(nic.wificonfig.key),
        }
    if nic.staticconfig:
        s = nic.staticconfig
        out["staticconfig"] = {
            "ip": s.ip, "netmask": s.netmask, "prefix": s.prefix, "gateway": s.gateway, "dns": list(s.dns)
        }
    if nic.proxyconfig:
        p = nic.proxyconfig
        out["proxyconfig"] = {
            "type": p.type, "address": p.address, "port": p.port,
            "username": p.username, "password": describe_secret(p.password),
        }
    if nic.cellconfig:
        c = nic.cellconfig
        out["cellconfig"] = {"apn": c.apn, "username": c.username, "password": describe_secret(c.password)}
    return out
