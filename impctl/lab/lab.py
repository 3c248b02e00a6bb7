"""The gateway lab: a real NetworkManager gateway in network namespaces.

Topology (prefix `imp`, the default)::

    imp-lan (a LAN device: DHCP client)
      eth0 ── lan0 (NM ipv4.method=shared: 10.42.0.1/24, NM's dnsmasq, NAT)
    imp-gw (NetworkManager, private D-Bus system bus)
      eth0  ── down0  imp-ispa  198.18.1.0/24, dnsmasq at .1 ── up0 ─┐
      wlan0 ── down0  imp-ispb  198.18.2.0/24, dnsmasq at .1 ── up0 ─┼─ imp-cloud 198.19.0.10
      wwan0 ── down0  imp-ispc  198.18.3.0/24, dnsmasq at .1 ── up0 ─┘   :80 HTTP, :443 TLS,
                                                                          :8888 tinyproxy

With `Lab(..., modem=True)` (`impctl lab up --modem`) the gateway also has a
simulated u-blox modem (impctl.lab.modem) under real ModemManager: AT port
ttyUSB0 (a pty) and net port usb0, a veth to `imp-carrier` (the bearer's
gateway and DNS 198.18.64.1, source validation, NAT, transit 198.19.64.1 to
the cloud); a gsm profile activated by NM connects a net-port bearer, and
usb0 gets 198.18.64.2/24 and a default route (metric 700). Modem states and
faults: `modem_state` / `fault("modem", kind)`, see impctl.lab.modemctl.

Every lab process runs inside a lab network namespace, in its own mount
namespace where lab files cover /etc/hosts and /etc/resolv.conf (and, for
NetworkManager, /etc/NetworkManager, /var/lib/NetworkManager, /run): the
machine's interfaces, routes and files are never touched. In the gateway /etc
is a read-only overlay whose resolv.conf is a symlink to the file NM writes.

With `Lab(..., ipv6=True)` (`impctl lab up --ipv6`) every ISP is dual-stack
(2001:db8:N::/64 by router advertisements with RDNSS and stateless DHCPv6,
IPv6 routed without NAT, IPv6 sources validated), the cloud is also
2001:db8:ff::10, and wwan0 is IPv6-only with DNS64 (unbound) and NAT64 (tayga)
in its ISP; the faults of impctl.lab.faults.FAULTS6 join the IPv4 ones.

The ISPs behave like real ones: each forwards only its customers' source
addresses (BCP38) and masquerades towards the cloud, so the cloud sees
198.19.N.1 and a reply comes back only through the ISP that carried the request. Tearing down is
"kill every process in the lab's namespaces, delete the namespaces", which
also cleans up after a crash.

Python API, for tests and benchmarks::

    lab = Lab(root=Path("/tmp/x/lab"), prefix="impt")
    lab.up()                       # builds it; LabError says what is missing
    lab.run([sys.executable, "-m", "impctl", "probe", "--json"])  # in the gw netns
    lab.fault("wlan0", "dns-off")  # see FAULTS
    lab.restore("wlan0")
    lab.run_lan(["curl", "-s", "http://cloud.imp.lab/"])  # on the LAN device behind the gateway
    lab.reset()                    # between tests: no faults, all three uplinks leased
    lab.down()

Attributes: `root`, `prefix`, `gw_netns`, `cloud_netns`, `lan_netns`, `lan_ifname`,
`lan_device_ifname`, `lan_subnet`, `lan_gateway_ip`, `bus_address`,
`config_path`, `state_path`, `keyfile_dir`, `ca_file`, `uplinks` (tuple of
`Uplink`: ifname, cls, isp_netns, subnet, router_ip, metric, profile_id,
profile_uuid), `cloud_host`, `cloud_ip`, `cloud_port`, `cloud_http_port`,
`proxy_host`, `proxy_port`, `proxy_user`, `proxy_password`; `ipv6`, `cloud_ip6`
(None unless dual-stack; each `Uplink` has `ipv4`, `ipv6`, `prefix6`, `router_ip6`).

Also: `env()`; `exec_argv(argv)` (the argv `run` uses, for Popen of
long-running processes such as `impctl daemon`); `run_lan(argv)`,
`lan_exec_argv(argv)` (the same on the LAN device), `lan_address()`, `wait_lan()`; `open_socket()`,
`bound_socket(ifname)`, `connect(ifname, ip, port)` (sockets created in the
gateway netns from a short-lived thread, usable from the caller's thread);
`nmcli(...)`, `mmcli(...)` (against the lab's bus); `addresses()`,
`default_routes()`, `addresses6()`, `default_routes6()` (dual-stack lab),
`carriers()`, `nm_devices()`, `uplink_healthy(u)` (every family of the uplink),
`wait_uplinks(ifnames)`; `faults()`, `status()`; `stop_networkmanager()`,
`start_networkmanager()`, `restart_networkmanager(down_s)`; with a modem:
`modem_state(state)`, `modem_info()`, `modem_observed()`, `modem_bearers()`, `carrier`
(the carrier, an `Uplink` shaped like an ISP; None without a modem).
`impctl.lab.checks` has bound TCP/TLS/proxy/DNS probes returning outcome words.

The default lab lives in /run/impctl-lab (tmpfs: it goes with a reboot, as
the namespaces do) with prefix `imp`.

`Lab` is a facade; each job lives in its own module of impctl.lab:
topology (the plan: names, addresses, paths, `Uplink`), labdir (the lab
directory, its files, lab.json, the lock), network (namespaces, veths,
sysctls; the gateway's addresses, routes, carriers), daemons (spawning and
readiness of dnsmasq, cloud, tinyproxy, the bus), nm (NetworkManager's
lifecycle, nmcli), health (uplinks healthy, waited for, healed), faults (the
pure nft table of faults) and faulting (applying it), modemctl (ModemManager
and the simulated modem, whose responder is impctl.lab.modem), status, prereq.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from impctl.lab import faulting, health, labdir, modemctl, network, nm, prereq, sockets, status
from impctl.lab.daemons import Daemons
from impctl.lab.faults import FAULTS, NFT_TABLE
from impctl.lab.labdir import LabFile
from impctl.lab.proc import netns_exists
from impctl.lab.status import DaemonStatus, LabStatus, UplinkStatus
from impctl.lab.topology import (
    CARRIER_WAIT_MS,
    CLOUD_HOST,
    CLOUD_HTTP_PORT,
    CLOUD_IP,
    CLOUD_PORT,
    DEFAULT_PREFIX,
    DEFAULT_ROOT,
    LEASE_TIMEOUT_S,
    PROXY_HOST,
    PROXY_PASSWORD,
    PROXY_PORT,
    PROXY_USER,
    Topology,
    Uplink,
)
from impctl.model.errors import LabError

__all__ = [
    "CARRIER_WAIT_MS", "CLOUD_HOST", "CLOUD_HTTP_PORT", "CLOUD_IP", "CLOUD_PORT", "DEFAULT_PREFIX",
    "DEFAULT_ROOT", "FAULTS", "NFT_TABLE", "PROXY_HOST", "PROXY_PASSWORD", "PROXY_PORT",
    "PROXY_USER", "DaemonStatus", "Lab", "LabStatus", "Uplink", "UplinkStatus",
]


class Lab(Topology):
    """A lab at `root` whose namespaces are named `{prefix}-gw`, `{prefix}-ispa`, ...

    The plan (names, addresses, paths) is the `Topology` it is; each action
    is done by the module of its job, composed here.
    """

    def __init__(self, root: Path = DEFAULT_ROOT, prefix: str = DEFAULT_PREFIX, *,
                 modem: bool = False, connectivity_uri: str | None = None,
                 ipv6: bool = False) -> None:
        super().__init__(root, prefix, modem=modem, connectivity_uri=connectivity_uri, ipv6=ipv6)
        self._labfile = LabFile(self)
        self._daemons = Daemons(self, self._labfile)

    @classmethod
    def load(cls, root: Path = DEFAULT_ROOT) -> Lab:
        """The lab described by `root`/lab.json (written by `up`)."""
        try:
            data = json.loads((Path(root) / "lab.json").read_text())
        except FileNotFoundError as err:
            raise LabError(f"no lab at {root}: start one with `impctl lab up`") from err
        except (OSError, ValueError) as err:
            raise LabError(f"{root}/lab.json unreadable ({err}): run `impctl lab down`") from err
        if not isinstance(data, dict):
            raise LabError(f"{root}/lab.json is not a lab's: run `impctl lab down`")
        return cls(Path(root), data.get("prefix", DEFAULT_PREFIX), modem=bool(data.get("modem")),
                   connectivity_uri=data.get("connectivity_uri"), ipv6=bool(data.get("ipv6")))

    # ---- processes and sockets inside the lab ---------------------------------------------

    def run(self, argv: Sequence[str], *, input: str | None = None, timeout: float = 60.0,
            check: bool = False, netns: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command in the gateway netns with env() set; returns its output as text."""
        env = {**os.environ, **self.env()}
        return subprocess.run(self.exec_argv(argv, netns), input=input, capture_output=True,
                              text=True, timeout=timeout, env=env, check=check)

    def nmcli(self, *args: str, check: bool = True,
              timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        """nmcli against the lab's NM (a D-Bus client: it needs no namespace, just the bus)."""
        return nm.nmcli(self, *args, check=check, timeout=timeout)

    def mmcli(self, *args: str, check: bool = True,
              timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        """mmcli against the lab's ModemManager."""
        return modemctl.mmcli(self, *args, check=check, timeout=timeout)

    def run_lan(self, argv: Sequence[str], *, input: str | None = None, timeout: float = 60.0,
                check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run a command on the LAN device behind the gateway (its netns, its resolv.conf)."""
        return self.run(argv, input=input, timeout=timeout, check=check, netns=self.lan_netns)

    def open_socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM,
                    proto: int = 0, *, netns: str | None = None) -> socket.socket:
        """A socket created in the gateway netns (or `netns`) that this thread can use."""
        return sockets.open_socket(netns or self.gw_netns, family, type, proto)

    def bound_socket(self, ifname: str, type: int = socket.SOCK_STREAM,
                     family: int = socket.AF_INET) -> socket.socket:
        """A gateway socket bound (SO_BINDTODEVICE) to an uplink."""
        return sockets.bound_socket(self.gw_netns, ifname, type, family)

    def connect(self, ifname: str, ip: str | None = None, port: int | None = None,
                timeout: float = 2.0) -> socket.socket:
        """A TCP connection from the gateway through `ifname` (default: to the cloud's TLS port;
        an IPv6 `ip` connects over IPv6)."""
        return sockets.connect(self.gw_netns, ifname, ip or self.cloud_ip,
                               port or self.cloud_port, timeout)

    # ---- building and removing ------------------------------------------------------------

    def check_prerequisites(self) -> None:
        """Root and every needed program; a LabError names the Debian package to install."""
        prereq.check(self)

    def leftovers(self) -> list[str]:
        """What exists of this lab: namespaces and the lab directory."""
        found = [ns for ns in self.namespaces if netns_exists(ns)]
        if self.lab_file.exists():
            found.append(str(self.lab_file))
        return found

    def up(self, *, replace: bool = False) -> None:
        """Build the lab; cleans up after a crashed one; `replace` also replaces a live one.

        On failure everything built so far is torn down again, the logs stay in
        `root`/logs, and a LabError says what failed.
        """
        self.check_prerequisites()
        with self._labfile.locked():
            if self.leftovers():
                if self.is_up() and not replace:
                    raise LabError(f"a lab is already up in {self.root} (prefix {self.prefix}): "
                                   "run `impctl lab down` first")
                self._teardown()
            try:
                self._build()
            except BaseException as err:
                self._teardown(keep_logs=True)
                self.lock_path.unlink(missing_ok=True)
                if isinstance(err, LabError):
                    raise LabError(f"{err.message} (logs in {self.log_dir})") from err
                raise

    def _build(self) -> None:
        labdir.make_dirs(self)
        # `complete` turns true last: a build cut short (killed, crashed) is never "up".
        self._labfile.write({"prefix": self.prefix, "modem": self.modem, "ipv6": self.ipv6,
                             "complete": False,
                             "pids": {}, "faults": {}, "connectivity_uri": self.connectivity_uri})
        labdir.write_files(self)
        network.build(self)
        self._daemons.start_services()
        nm.start(self, self._daemons)
        self._daemons.start_lan_client()
        self._daemons.wait_cloud()
        self.wait_uplinks([u.ifname for u in self.uplinks], LEASE_TIMEOUT_S)
        health.wait_lan(self, self._daemons)
        if self.modem:
            modemctl.start(self, self._daemons)
        self._labfile.set("complete", True)

    def down(self) -> None:
        """Kill every lab process, delete the namespaces and the lab directory."""
        prereq.require_root()
        with self._labfile.locked():
            self._teardown()
            # Nothing of the lab may stay outside its directory; the lock goes too.
            self.lock_path.unlink(missing_ok=True)

    def _teardown(self, keep_logs: bool = False) -> None:
        """Kill everything in the lab's namespaces, delete them, remove the lab directory.

        Works from any state: after a crash, with stale pid files, half-built.
        """
        self._daemons.kill_everything()
        network.remove(self)
        labdir.remove(self, keep_logs=keep_logs)

    def write_keyfile(self, u: Uplink) -> Path:
        """(Re)write an uplink's lab profile; keyfiles must be root-owned 0600 or NM skips them."""
        return labdir.write_keyfile(self, u)

    # ---- NetworkManager -------------------------------------------------------------------

    def stop_networkmanager(self) -> None:
        """Stop the lab's NetworkManager (SIGTERM; it leaves the uplinks configured)."""
        prereq.require_root()
        nm.stop(self, self._daemons)

    def start_networkmanager(self, *, wait: bool = True,
                             name_timeout_s: float = nm.BUS_NAME_TIMEOUT_S) -> None:
        """Start the lab's NetworkManager again, once its bus name is free (a LabError after
        `name_timeout_s`); with `wait`, until every uplink is connected."""
        prereq.require_root()
        nm.start(self, self._daemons, name_timeout_s=name_timeout_s)
        if wait:
            self.wait_uplinks([u.ifname for u in self.uplinks])

    def restart_networkmanager(self, down_s: float = 0.0, *, wait: bool = True) -> None:
        """Stop NM, wait `down_s`, start it again (it takes the lab profiles over)."""
        self.stop_networkmanager()
        if down_s > 0:
            time.sleep(down_s)
        self.start_networkmanager(wait=wait)

    def nm_devices(self) -> dict[str, tuple[str, str]]:
        """NM's device list: ifname -> (state, connection name), e.g. ("connected", "lab-eth0")."""
        return nm.nm_devices(self)

    # ---- health of the uplinks ------------------------------------------------------------

    def addresses(self) -> dict[str, list[str]]:
        """IPv4 addresses (CIDR) of every gateway interface."""
        return network.addresses(self)

    def default_routes(self) -> list[dict[str, Any]]:
        return network.default_routes(self)

    def carriers(self) -> dict[str, bool]:
        return network.carriers(self)

    def uplink_healthy(self, u: Uplink, addrs: dict[str, list[str]] | None = None,
                       routes: list[dict[str, Any]] | None = None) -> bool:
        """For each family of the uplink: address in the ISP's subnet (IPv6: its /64) and
        NM's default route via the ISP router with the uplink's metric."""
        _, _, addrs6, routes6 = health.snapshot(self)
        return health.uplink_healthy(u, self.addresses() if addrs is None else addrs,
                                     self.default_routes() if routes is None else routes,
                                     addrs6, routes6)

    def addresses6(self) -> dict[str, list[str]]:
        """Global, usable IPv6 addresses (CIDR) of every gateway interface."""
        return network.addresses6(self)

    def default_routes6(self) -> list[dict[str, Any]]:
        return network.default_routes6(self)

    def lan_address(self) -> str | None:
        """The LAN device's IPv4 address (CIDR), from the gateway's DHCP; None without one."""
        return network.lan_address(self)

    def wait_lan(self, timeout_s: float = LEASE_TIMEOUT_S) -> None:
        """Until NM shares on the LAN port and the LAN device has its lease and route."""
        health.wait_lan(self, self._daemons, timeout_s)

    def wait_uplinks(self, ifnames: Sequence[str], timeout_s: float = LEASE_TIMEOUT_S) -> None:
        """Wait until each uplink has its DHCP lease and default route."""
        health.wait_uplinks(self, self._daemons, ifnames, timeout_s)

    def activate(self, u: Uplink, *, wait: bool = True) -> None:
        """(Re-)activate an uplink's lab profile on its device."""
        health.activate(self, self._daemons, u, wait=wait)

    # ---- faults ---------------------------------------------------------------------------

    def faults(self) -> dict[str, list[str]]:
        """Active faults per uplink, as recorded by fault()/restore()."""
        return faulting.active(self._daemons)

    def fault(self, ifname: str, kind: str) -> None:
        """Apply a fault (see impctl.lab.faults) to one uplink, in its ISP namespace only;
        returns once it is in effect. `fault("modem", kind)` switches the simulated modem to
        a state or applies a modem fault (see modem_state)."""
        prereq.require_root()
        if ifname == "modem":
            self.modem_state(kind)
            return
        faulting.add(self, self._daemons, ifname, kind)

    def restore(self, ifname: str) -> None:
        """Undo every fault of an uplink and wait until it has its lease and default route.

        `restore("modem")` puts the simulated modem back to registered.
        """
        prereq.require_root()
        if ifname == "modem":
            self.modem_state("registered")
            return
        faulting.restore(self, self._daemons, ifname)

    def reset(self) -> None:
        """Back to a fresh lab between tests.

        Restores every fault, deletes NM profiles that are not the lab's,
        re-activates every lab profile not active and healthy, waits until all
        three uplinks have leases and default routes, puts the modem (if any)
        back to registered, and empties the impctl state directory (removing
        `state_path`).
        """
        prereq.require_root()
        faulting.clear(self, self._daemons)
        health.reset_profiles(self)
        health.heal(self, self._daemons, self.uplinks)
        health.heal_lan(self, self._daemons)
        if self.modem and (self.modem_observed() != "registered"
                           or modemctl.active_faults(self._daemons)):
            self.modem_state("registered")
        labdir.empty_state_dir(self)

    # ---- modem ----------------------------------------------------------------------------

    def modem_state(self, state: str, timeout_s: float = 30.0) -> None:
        """Switch the simulated modem's SIM/registration answers (modemctl.switch, undoing
        every modem fault), or apply a fault of modemctl.MODEM_FAULTS (bearer-refused,
        bearer-dropped, carrier-blackhole, unplugged)."""
        modemctl.switch(self, self._daemons, state, timeout_s)

    def modem_bearers(self) -> list[dict[str, Any]]:
        """ModemManager's bearers of the modem (`mmcli -J -b N`, the "bearer" objects)."""
        return modemctl.bearers(self)

    def modem_info(self) -> dict[str, Any] | None:
        """ModemManager's view of the simulated modem (`mmcli -J -m any`), None when it has none."""
        return modemctl.modem_info(self)

    def modem_observed(self) -> str | None:
        """Which of the modem states ModemManager shows now (None: no modem or another state)."""
        return modemctl.observed_state(self.modem_info())

    # ---- status ---------------------------------------------------------------------------

    def is_built(self) -> bool:
        """The last `up` finished and every namespace exists (daemons may have died since)."""
        return status.is_built(self, self._labfile)

    def dead_daemons(self) -> list[str]:
        """The daemons a complete lab runs that are not running (never started, exited)."""
        return status.dead_daemons(self, self._labfile)

    def is_up(self) -> bool:
        """Built, and every daemon it should run is alive."""
        return status.is_up(self, self._labfile)

    def status(self) -> LabStatus:
        """Namespaces, daemons (pid, alive), uplinks (carrier, addresses, NM state), faults."""
        prereq.require_root()
        return status.collect(self, self._labfile)
