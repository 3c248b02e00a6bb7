"""The lab's plan: names, addresses and paths, all derived from a root directory and a prefix.

Nothing here touches the machine; every other lab module works from a `Topology`.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from impctl.lab import files
from impctl.lab.proc import Bind, netns_argv
from impctl.model.errors import LabError
from impctl.model.record import record

DEFAULT_ROOT = Path("/run/impctl-lab")
DEFAULT_PREFIX = "imp"

CLOUD_HOST = "cloud.imp.lab"
PROXY_HOST = "proxy.imp.lab"
CLOUD_IP = "198.19.0.10"
CLOUD_PORT = 443
CLOUD_HTTP_PORT = 80
# The cloud's session service (impctl.lab.cloud.session), for the applications of tests and benches.
CLOUD_SESSION_PORT = 1883
PROXY_PORT = 8888
PROXY_USER = "lab"
PROXY_PASSWORD = "lab-proxy-secret"
# What the ISPs' DNS and the cloud's hosts file answer.
DNS_RECORDS = ((CLOUD_HOST, CLOUD_IP), (PROXY_HOST, CLOUD_IP))

# The dual-stack lab (ipv6=True): documentation addresses only (2001:db8::/32).
CLOUD_IP6 = "2001:db8:ff::10"
# A name of the cloud with an A record only: an IPv6-only uplink reaches it through NAT64.
V4ONLY_HOST = "v4only.imp.lab"
# name -> IPv4 and, where it has one, IPv6 (AAAA) address.
DNS_RECORDS_DUAL = ((CLOUD_HOST, CLOUD_IP, CLOUD_IP6), (PROXY_HOST, CLOUD_IP, CLOUD_IP6),
                    (V4ONLY_HOST, CLOUD_IP, None))
# NAT64 in the IPv6-only uplink's ISP (LAB-NOTES: tayga refuses 198.18/15 under the
# well-known prefix, so it translates a documentation prefix that an nft DNAT maps
# 64:ff9b::/96 onto). The pool sits in that ISP's own subnet, outside its DHCP range.
NAT64_WKP = "64:ff9b::/96"
NAT64_PREFIX = "2001:db8:64::/96"
NAT64_TUN = "nat64"
NAT64_IPV4 = "198.18.3.225"
NAT64_POOL = "198.18.3.224/27"
# Where the DNS64 resolver's upstream (that ISP's dnsmasq) answers, inside the ISP only.
DNS64_UPSTREAM_PORT = 5353

# NM's default is 6000 ms; see files.nm_config.
CARRIER_WAIT_MS = 1000

UP_TIMEOUT_S = 15.0
# ModemManager probes the simulated modem in ~3 s with the u-blox plugin only.
MODEM_TIMEOUT_S = 30.0
LEASE_TIMEOUT_S = 15.0
ISP_IFNAME = "down0"
ISP_UPLINK_IFNAME = "up0"

# ifname, class, letter, route metric (NM's defaults for ethernet, wifi, cell)
UPLINK_PLAN = (("eth0", "ethernet", "a", 100), ("wlan0", "wifi", "b", 600),
               ("wwan0", "cell", "c", 700))

# The LAN behind the gateway: the gateway's port, served by NM's shared mode (its
# dnsmasq, its NAT), and the one device on it, in its own namespace.
LAN_IFNAME = "lan0"
LAN_DEVICE_IFNAME = "eth0"  # in the LAN device's namespace
LAN_PROFILE_ID = "lab-lan0"
# NM's default for ipv4.method=shared when the profile sets no address.
LAN_SUBNET = "10.42.0.0/24"
LAN_GATEWAY_IP = "10.42.0.1"
# Where impctl.lab.lanhooks writes the LAN device's resolv.conf.
LAN_RESOLV_CONF_ENV = "IMPCTL_LAB_RESOLV_CONF"

# The modem's net port (a veth in the gateway) and the carrier behind it: the bearer's
# gateway and DNS is the carrier's router_ip, the bearer's address BEARER_IP (static, as
# +CGCONTRDP hands it to ModemManager; no DHCP on the net port in bridge mode).
MODEM_NET_IFNAME = "usb0"
CARRIER_INDEX = 64
BEARER_IP = f"198.18.{CARRIER_INDEX}.2"
MODEM_APN = "internet"

# Daemons of every lab, then those only a modem lab has (names in lab.json and logs/).
BASE_DAEMONS = ("cloud", "tinyproxy", "dbus", "NetworkManager", "lan-dhcp")
MODEM_DAEMONS = ("dnsmasq-m", "polkit", "modem", "ModemManager")


@record
class Uplink:
    """One gateway uplink and the ISP namespace at its other end."""

    ifname: str  # in the gateway namespace
    cls: str  # the class impctl is told it plays: ethernet, wifi, cell
    letter: str  # a, b, c
    isp_netns: str
    subnet: str
    router_ip: str  # the ISP's router, DHCP and DNS server
    metric: int
    profile_id: str
    profile_uuid: str
    isp_ifname: str = ISP_IFNAME
    # Families the gateway's profile configures; the ISP serves IPv6 whenever `ipv6`.
    ipv4: bool = True
    ipv6: bool = False

    @property
    def index(self) -> int:
        return int(self.subnet.split(".")[2])

    @property
    def prefix6(self) -> str:
        """The ISP's customer /64 (router advertisements, source validation)."""
        return f"2001:db8:{self.index}::/64"

    @property
    def router_ip6(self) -> str:
        """The ISP's router and IPv6 DNS server on the customer link."""
        return f"2001:db8:{self.index}::1"

    @property
    def transit_isp_ip6(self) -> str:
        return f"2001:db8:10{self.index}::1"

    @property
    def transit_cloud_ip6(self) -> str:
        return f"2001:db8:10{self.index}::2"

    @property
    def nat64(self) -> bool:
        """IPv6-only: its ISP runs DNS64 (unbound) and NAT64 (tayga)."""
        return self.ipv6 and not self.ipv4

    @property
    def unbound(self) -> str:
        return f"unbound-{self.letter}"

    @property
    def tayga(self) -> str:
        return f"tayga-{self.letter}"

    @property
    def transit_isp_ip(self) -> str:
        return f"198.19.{self.index}.1"

    @property
    def transit_cloud_ip(self) -> str:
        return f"198.19.{self.index}.2"

    @property
    def cloud_ifname(self) -> str:
        return f"isp{self.letter}"

    @property
    def dnsmasq(self) -> str:
        """The name of this ISP's dnsmasq among the lab's daemons."""
        return f"dnsmasq-{self.letter}"


def make_uplinks(prefix: str, ipv6: bool = False) -> tuple[Uplink, ...]:
    """The three uplinks; with `ipv6` every ISP dual-stack and the cellular one IPv6-only
    on the gateway's side, as on an IPv6-only APN."""
    return tuple(
        Uplink(
            ifname=ifname, cls=cls, letter=letter, isp_netns=f"{prefix}-isp{letter}",
            subnet=f"198.18.{i}.0/24", router_ip=f"198.18.{i}.1", metric=metric,
            profile_id=f"lab-{ifname}", profile_uuid=files.profile_uuid(prefix, ifname),
            ipv4=not (ipv6 and cls == "cell"), ipv6=ipv6,
        )
        for i, (ifname, cls, letter, metric) in enumerate(UPLINK_PLAN, start=1)
    )


def make_carrier(prefix: str) -> Uplink:
    """The modem's carrier, shaped as an ISP (so its veths, source validation, NAT and
    faults are built as an ISP's) but not one of the lab's NM uplinks: NM reaches it only
    through the modem's bearer."""
    i = CARRIER_INDEX
    return Uplink(ifname=MODEM_NET_IFNAME, cls="cell", letter="m", isp_netns=f"{prefix}-carrier",
                  subnet=f"198.18.{i}.0/24", router_ip=f"198.18.{i}.1", metric=700,
                  profile_id="", profile_uuid="")


class Topology:
    """A lab at `root` whose namespaces are named `{prefix}-gw`, `{prefix}-ispa`, ..."""

    def __init__(self, root: Path = DEFAULT_ROOT, prefix: str = DEFAULT_PREFIX, *,
                 modem: bool = False, connectivity_uri: str | None = None,
                 ipv6: bool = False) -> None:
        if not prefix or len(prefix) > 12 or not prefix.isalnum():
            raise LabError(f"bad lab prefix {prefix!r}: use 1-12 letters or digits")
        self.root = Path(root).absolute()
        if any(c in str(self.root) for c in ":,\\"):
            # The root ends up in an overlay's lowerdir option, where these are separators.
            raise LabError(f"bad lab root {self.root}: no ':', ',' or '\\' in its path")
        self.prefix = prefix
        self.modem = modem
        self.ipv6 = ipv6
        self.connectivity_uri = connectivity_uri
        self.gw_netns = f"{prefix}-gw"
        self.cloud_netns = f"{prefix}-cloud"
        self.lan_netns = f"{prefix}-lan"
        self.lan_ifname = LAN_IFNAME
        self.lan_device_ifname = LAN_DEVICE_IFNAME
        self.lan_subnet = LAN_SUBNET
        self.lan_gateway_ip = LAN_GATEWAY_IP
        self.lan_profile_id = LAN_PROFILE_ID
        self.lan_profile_uuid = files.profile_uuid(prefix, LAN_IFNAME)
        self.uplinks = make_uplinks(prefix, ipv6)
        self.carrier = make_carrier(prefix) if modem else None
        self.cloud_host = CLOUD_HOST
        self.cloud_ip = CLOUD_IP
        self.cloud_ip6 = CLOUD_IP6 if ipv6 else None
        self.cloud_port = CLOUD_PORT
        self.cloud_http_port = CLOUD_HTTP_PORT
        self.proxy_host = PROXY_HOST
        self.proxy_port = PROXY_PORT
        self.proxy_user = PROXY_USER
        self.proxy_password = PROXY_PASSWORD

    @property
    def namespaces(self) -> list[str]:
        return [self.gw_netns, *(u.isp_netns for u in self.uplinks), self.cloud_netns,
                self.lan_netns, *([self.carrier.isp_netns] if self.carrier else [])]

    @property
    def daemon_names(self) -> list[str]:
        """Every daemon a complete lab runs."""
        return [*(u.dnsmasq for u in self.uplinks),
                *(n for u in self.uplinks if u.nat64 for n in (u.unbound, u.tayga)),
                *BASE_DAEMONS,
                *(MODEM_DAEMONS if self.modem else ())]

    @property
    def gw_dir(self) -> Path:
        return self.root / "gw"

    @property
    def cloud_dir(self) -> Path:
        return self.root / "cloud"

    @property
    def isp_dir(self) -> Path:
        return self.root / "isp"

    @property
    def lan_dir(self) -> Path:
        """The LAN device's files: its DHCP lease and the resolv.conf written from it."""
        return self.root / "lan"

    @property
    def lan_resolv_conf(self) -> Path:
        return self.lan_dir / "resolv.conf"

    @property
    def lan_keyfile_path(self) -> Path:
        return self.keyfile_dir / f"{self.lan_profile_id}.nmconnection"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def bus_socket(self) -> Path:
        # Under the directory NM sees as /run, so /run/dbus/system_bus_socket also works there.
        return self.gw_dir / "run" / "dbus" / "system_bus_socket"

    @property
    def bus_address(self) -> str:
        return f"unix:path={self.bus_socket}"

    @property
    def keyfile_dir(self) -> Path:
        """NM's keyfile directory (host path); NM sees it as /etc/NetworkManager/system-connections."""
        return self.gw_dir / "etc-nm" / "system-connections"

    def keyfile_path(self, u: Uplink) -> Path:
        return self.keyfile_dir / f"{u.profile_id}.nmconnection"

    @property
    def config_path(self) -> Path:
        return self.root / "impctl.toml"

    @property
    def state_path(self) -> Path:
        return self.root / "impctl-state" / "state.json"

    @property
    def ca_file(self) -> Path:
        return self.cloud_dir / "ca.pem"

    @property
    def lab_file(self) -> Path:
        return self.root / "lab.json"

    @property
    def lock_path(self) -> Path:
        # Next to the lab dir, not inside it: `down` removes the dir.
        return self.root.parent / f".{self.root.name}.lock"

    @property
    def modem_dir(self) -> Path:
        return self.root / "modem"

    @property
    def mm_dir(self) -> Path:
        """Modem files ModemManager reads after its /run is bound: it sees this as /run/mm."""
        return self.gw_dir / "run" / "mm"

    @property
    def modem_control(self) -> Path:
        """The responder's control file (see impctl.lab.modem.STATES)."""
        return self.modem_dir / "control.json"

    def uplink(self, ifname: str) -> Uplink:
        for u in self.uplinks:
            if u.ifname == ifname:
                return u
        names = ", ".join(u.ifname for u in self.uplinks)
        raise LabError(f"no lab uplink {ifname!r}: use one of {names}" +
                       (" or modem" if self.modem else ""))

    def env(self) -> dict[str, str]:
        """Variables that point impctl (and nmcli/mmcli) at the lab."""
        return {
            "DBUS_SYSTEM_BUS_ADDRESS": self.bus_address,
            "IMPCTL_CONFIG": str(self.config_path),
            "IMPCTL_STATE": str(self.state_path),
        }

    @property
    def nm_resolv_conf(self) -> Path:
        """The resolv.conf NM writes (host path); NM itself sees it as /run/NetworkManager/resolv.conf."""
        return self.gw_dir / "run" / "NetworkManager" / "resolv.conf"

    def gw_etc_layer(self, own_run: bool) -> Path:
        """What the gateway's /etc shows over the machine's: hosts, and resolv.conf as a
        symlink to NM's file, by the path it has where /run is the lab's (`own_run`, as
        NM and ModemManager see it) or the machine's (every other gateway process)."""
        return self.gw_dir / ("etc-run" if own_run else "etc")

    def binds(self, where: str, *, own_run: bool = False) -> list[Bind]:
        """The lab's hosts and resolv.conf of `where` (gw, cloud, isp) over the system's.

        The gateway's /etc is a read-only overlay: the lab's layer over the
        machine's /etc. NM replaces resolv.conf by rename, which a bind-mounted
        file refuses (EBUSY); a symlink into NM's run directory follows every
        rename, and read-only means nothing in the gateway can write the
        machine's /etc, whatever NM's rc-manager would try.
        """
        if where in ("gw", "lan"):
            top = self.gw_etc_layer(own_run) if where == "gw" else self.lan_dir / "etc"
            layer = shlex.quote(f"lowerdir={top}:/etc")
            return [f"mount -t overlay -o ro -o {layer} impctl-lab-etc /etc"]
        d = self.root / where
        return [(d / "hosts", "/etc/hosts"), (d / "resolv.conf", "/etc/resolv.conf")]

    def exec_argv(self, argv: Sequence[str], netns: str | None = None) -> list[str]:
        """argv running `argv` in the gateway netns (or `netns`: the LAN device's, an ISP's,
        the cloud's) with that namespace's hosts/resolv.conf."""
        ns = netns or self.gw_netns
        where = {self.gw_netns: "gw", self.cloud_netns: "cloud", self.lan_netns: "lan"}.get(ns, "isp")
        return netns_argv(ns, argv, self.binds(where))

    def lan_exec_argv(self, argv: Sequence[str]) -> list[str]:
        """argv running `argv` on the LAN device behind the gateway."""
        return self.exec_argv(argv, self.lan_netns)
