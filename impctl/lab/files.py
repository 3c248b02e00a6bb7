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


def _ethernet_keyfile(prefix: str, profile_id: str, ifname: str, ipv4: str,
                      ipv6: str = "method=disabled\n") -> str:
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
{ipv6}"""


def lan_keyfile(prefix: str, profile_id: str, ifname: str) -> str:
    """The gateway's LAN port: NM shares its uplinks (DHCP and DNS by its dnsmasq, NAT)."""
    return _ethernet_keyfile(prefix, profile_id, ifname, "method=shared\n")


def keyfile(prefix: str, profile_id: str, ifname: str, metric: int, *,
            ipv4: bool = True, ipv6: bool = False) -> str:
    """A DHCP profile per uplink, activated at NM start, with NM's per-type route metric.

    With `ipv6`, SLAAC too, with the IPv4 metric set explicitly (NM would pick its own,
    e.g. 103/104) and no privacy addresses (the source the cloud sees is the SLAAC one);
    a family that is the only one may not fail.
    """
    v4 = (f"method=auto\nroute-metric={metric}\nmay-fail=false\n" if ipv4
          else "method=disabled\n")
    if not ipv6:
        return _ethernet_keyfile(prefix, profile_id, ifname, v4)
    v6 = (f"method=auto\nroute-metric={metric}\nip6-privacy=0\n"
          f"may-fail={'true' if ipv4 else 'false'}\n")
    return _ethernet_keyfile(prefix, profile_id, ifname, v4, v6)


def dnsmasq_argv(*, ifname: str, router_ip: str, pool: tuple[str, str], lease_file: str,
                 pid_file: str, log_file: str, records: Sequence[tuple[str, str]],
                 records6: Sequence[tuple[str, str, str | None]] = (),
                 router_ip6: str | None = None, dns_port: int | None = None,
                 dhcp: bool = True) -> list[str]:
    """An ISP's DHCP and DNS server; answers the lab names, nothing else, never upstream.

    With `router_ip6`, also router advertisements with RDNSS and stateless DHCPv6
    naming that address as DNS server, and `records6` (name, IPv4, IPv6 or None)
    instead of `records`. With `dns_port`, DNS only on 127.0.0.1 at that port (for
    the ISP's DNS64 resolver; DHCP and RAs still on `ifname`). Without `dhcp`, DNS only
    (the modem's carrier: the bearer's address comes over AT, not DHCP).
    """
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
        *([f"--dhcp-range={pool[0]},{pool[1]},255.255.255.0,1h",
           f"--dhcp-option=option:router,{router_ip}",
           f"--dhcp-option=option:dns-server,{router_ip}",
           f"--dhcp-leasefile={lease_file}",
           "--dhcp-authoritative"] if dhcp else []),
        "--local=/imp.lab/",
        f"--log-facility={log_file}",
        "--log-dhcp",
    ]
    if router_ip6 is None:
        argv += [f"--host-record={name},{ip}" for name, ip in records]
        return argv
    argv += [
        "--enable-ra",
        f"--dhcp-range=::,constructor:{ifname},ra-stateless,64,1h",
        f"--dhcp-option=option6:dns-server,[{router_ip6}]",
    ]
    argv += [f"--host-record={name},{ip4}" + (f",{ip6}" if ip6 else "")
             for name, ip4, ip6 in records6]
    if dns_port is not None:
        # The DNS64 resolver answers the customers; this one only it, on loopback.
        argv += [f"--port={dns_port}", "--listen-address=127.0.0.1"]
    return argv


def unbound_config(*, listen_ip: str, upstream: str, dns64_prefix: str, directory: str,
                   pid_file: str) -> str:
    """The IPv6-only ISP's DNS64 resolver: synthesises AAAA from A under `dns64_prefix`
    for names that have no AAAA, asking only the ISP's own dnsmasq (`upstream`, ip@port).

    Everything under the lab's directory: no chroot, no user switch, no control socket,
    no trust anchor, logs to stderr (the lab's log file); the host's /etc/unbound unread.
    """
    return f"""# Written by `impctl lab up --ipv6`.
server:
  interface: {listen_ip}
  port: 53
  interface-automatic: no
  do-ip4: yes
  do-ip6: yes
  access-control: ::/0 allow
  access-control: 0.0.0.0/0 allow
  username: ""
  chroot: ""
  directory: "{directory}"
  pidfile: "{pid_file}"
  use-syslog: no
  logfile: ""
  verbosity: 1
  module-config: "dns64 iterator"
  dns64-prefix: {dns64_prefix}
  do-not-query-localhost: no
  domain-insecure: "imp.lab."
forward-zone:
  name: "."
  forward-addr: {upstream}
remote-control:
  control-enable: no
"""


def tayga_config(*, tun: str, ipv4_addr: str, prefix: str, pool: str, data_dir: str) -> str:
    """NAT64 (tayga): IPv6 under `prefix` to IPv4, sources mapped into `pool`."""
    return f"""# Written by `impctl lab up --ipv6`.
tun-device {tun}
ipv4-addr {ipv4_addr}
prefix {prefix}
dynamic-pool {pool}
data-dir {data_dir}
"""


def tinyproxy_config(*, listen_ip: str | None, port: int, user: str, password: str,
                     pid_file: str, log_file: str, connect_ports: Sequence[int]) -> str:
    lines = [
        "# Written by `impctl lab up`.",
        f"Port {port}",
        # tinyproxy listens on one address or on all: None means both families.
        *([f"Listen {listen_ip}"] if listen_ip else []),
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


def hosts(records: Sequence[tuple[str, str]],
          records6: Sequence[tuple[str, str, str | None]] = ()) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{ip}\t{name}" for name, ip in records]
    lines += [f"{ip}\t{name}" for name, ip4, ip6 in records6 for ip in (ip4, ip6) if ip]
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
