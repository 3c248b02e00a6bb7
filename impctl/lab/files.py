"""Text of the files the lab writes: daemon configs, keyfiles, impctl's config.

Pure functions of their arguments, so the layout can be read in one place.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

# Fixed namespace so a lab profile keeps its UUID from one `up` to the next.
_UUID_NS = uuid.UUID("7d1f3f2e-3c52-4d0c-9a39-6b8f3c1b9e10")


def profile_uuid(prefix: str, ifname: str) -> str:
    return str(uuid.uuid5(_UUID_NS, f"{prefix}/{ifname}"))


def dbus_config(socket_path: str) -> str:
    """A system bus that lets everyone own and call anything: the lab has one user, root."""
    return f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket_path}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""


def nm_config(ifnames: Sequence[str], carrier_wait_ms: int,
              connectivity_uri: str | None, connectivity_response: str,
              lan_ifname: str = "lan0") -> str:
    """NetworkManager.conf for the gateway: keyfiles only, hands off hostname and polkit.

    Paths are those NM sees inside its mount namespace, where lab directories
    are bound over /etc/NetworkManager, /var/lib/NetworkManager and /run.
    NM owns the gateway's DNS as on a real one: `dns=default` writes
    /run/NetworkManager/resolv.conf from the uplinks' DHCP servers in NM's
    order; the gateway's /etc/resolv.conf is a symlink to that file.
    `rc-manager=unmanaged`: NM never writes /etc/resolv.conf (`symlink`, which
    also leaves a symlink alone, still tries to clean up in /etc, read-only here).
    The LAN port's shared mode NATs with nftables (no iptables in the lab).
    """
    match = ",".join(f"interface-name:{name}" for name in ifnames)
    if connectivity_uri:
        connectivity = (f"[connectivity]\nenabled=true\nuri={connectivity_uri}\n"
                        f"response={connectivity_response}\ninterval=5\n")
    else:
        connectivity = "[connectivity]\nenabled=false\n"
    return f"""# Written by `impctl lab up`; the lab rewrites it at every up.
[main]
plugins=keyfile
dns=default
rc-manager=unmanaged
systemd-resolved=false
auth-polkit=false
hostname-mode=none
no-auto-default=*
dhcp=internal
firewall-backend=nftables

[keyfile]
path=/etc/NetworkManager/system-connections

[logging]
level=INFO

{connectivity}
# NM's default waits 6 s after a carrier loss before dropping the device's
# address and routes; the lab shortens it so faults take effect quickly.
[device-lab-uplinks]
match-device={match}
managed=1
carrier-wait-timeout={carrier_wait_ms}

[device-lab-lan]
match-device=interface-name:{lan_ifname}
managed=1
"""


# In NM's dnsmasq-shared.d: NM's dnsmasq pings an address before leasing it (~3 s).
DNSMASQ_SHARED_NO_PING = "# Written by `impctl lab up`: lease at once, as the ISPs do.\nno-ping\n"


def _ethernet_keyfile(prefix: str, profile_id: str, ifname: str, ipv4: str) -> str:
    return f"""[connection]
id={profile_id}
uuid={profile_uuid(prefix, ifname)}
type=ethernet
interface-name={ifname}
autoconnect=true
autoconnect-retries=0

[ethernet]

[ipv4]
{ipv4}
[ipv6]
method=disabled
"""


def lan_keyfile(prefix: str, profile_id: str, ifname: str) -> str:
    """The gateway's LAN port: NM shares its uplinks (DHCP and DNS by its dnsmasq, NAT)."""
    return _ethernet_keyfile(prefix, profile_id, ifname, "method=shared\n")


def keyfile(prefix: str, profile_id: str, ifname: str, metric: int) -> str:
    """A DHCP profile per uplink, activated at NM start, with NM's per-type route metric."""
    return _ethernet_keyfile(prefix, profile_id, ifname, f"method=auto\nroute-metric={metric}\nmay-fail=false\n")


def dnsmasq_argv(*, ifname: str, router_ip: str, pool: tuple[str, str], lease_file: str,
                 pid_file: str, log_file: str, records: Sequence[tuple[str, str]]) -> list[str]:
    """An ISP's DHCP and DNS server; answers the lab names, nothing else, never upstream."""
    argv = [
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--no-ping",  # without it every lease waits ~3 s for an ICMP echo
        "--bind-dynamic",
        f"--interface={ifname}",
        "--user=root",
        "--group=root",
        f"--pid-file={pid_file}",
        f"--dhcp-range={pool[0]},{pool[1]},255.255.255.0,1h",
        f"--dhcp-option=option:router,{router_ip}",
        f"--dhcp-option=option:dns-server,{router_ip}",
        f"--dhcp-leasefile={lease_file}",
        "--dhcp-authoritative",
        "--local=/imp.lab/",
        f"--log-facility={log_file}",
        "--log-dhcp",
    ]
    argv += [f"--host-record={name},{ip}" for name, ip in records]
    return argv


def tinyproxy_config(*, listen_ip: str, port: int, user: str, password: str,
                     pid_file: str, log_file: str, connect_ports: Sequence[int]) -> str:
    lines = [
        "# Written by `impctl lab up`.",
        f"Port {port}",
        f"Listen {listen_ip}",
        "Timeout 60",
        "MaxClients 100",
        f"PidFile \"{pid_file}\"",
        f"LogFile \"{log_file}\"",
        "LogLevel Info",
        "DisableViaHeader Yes",
        f"BasicAuth {user} {password}",
    ]
    lines += [f"ConnectPort {p}" for p in connect_ports]
    return "\n".join(lines) + "\n"


def hosts(records: Sequence[tuple[str, str]]) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{ip}\t{name}" for name, ip in records]
    return "\n".join(lines) + "\n"


def resolv_conf(servers: Sequence[str]) -> str:
    lines = ["# impctl lab: the ISPs' resolvers; nothing outside the lab"]
    lines += [f"nameserver {s}" for s in servers]
    lines.append("options timeout:1 attempts:1")
    return "\n".join(lines) + "\n"


def impctl_config(*, cloud_host: str, cloud_port: int, ca_file: str,
                  classes: dict[str, str], identifiers: dict[str, str]) -> str:
    """impctl's config inside the lab (format: impctl.model.config)."""
    out = [
        "# impctl's configuration for the lab, written by `impctl lab up`.",
        "[cloud]",
        f'host = "{cloud_host}"',
        f"port = {cloud_port}",
        "tls = true",
        f'ca_file = "{ca_file}"',
        "",
        "# The lab's uplinks are veths; these make them play ethernet, wifi and cell.",
        "[classes]",
    ]
    out += [f'{ifname} = "{cls}"' for ifname, cls in classes.items()]
    out += ["", "[identifiers]"]
    out += [f'{ident} = "{ifname}"' for ident, ifname in identifiers.items()]
    return "\n".join(out) + "\n"
