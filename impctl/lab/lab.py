"""The gateway lab: a real NetworkManager gateway in network namespaces.

Topology (prefix `imp`, the default)::

    imp-gw (NetworkManager, private D-Bus system bus)
      eth0  ── down0  imp-ispa  198.18.1.0/24, dnsmasq at .1 ── up0 ─┐
      wlan0 ── down0  imp-ispb  198.18.2.0/24, dnsmasq at .1 ── up0 ─┼─ imp-cloud 198.19.0.10
      wwan0 ── down0  imp-ispc  198.18.3.0/24, dnsmasq at .1 ── up0 ─┘   :80 HTTP, :443 TLS,
                                                                          :8888 tinyproxy

Every lab process runs inside a lab network namespace, in its own mount
namespace where lab files are bound over /etc/hosts, /etc/resolv.conf (and, for
NetworkManager, /etc/NetworkManager, /var/lib/NetworkManager, /run): the
machine's interfaces, routes and files are never touched. Tearing down is
"kill every process in the lab's namespaces, delete the namespaces", which
also cleans up after a crash.

Python API, for tests and benchmarks::

    lab = Lab(root=Path("/tmp/x/lab"), prefix="impt")
    lab.up()                       # builds it; LabError says what is missing
    lab.run([sys.executable, "-m", "impctl", "probe", "--json"])  # in the gw netns
    lab.fault("wlan0", "dns-off")  # see FAULTS
    lab.restore("wlan0")
    lab.reset()                    # between tests: no faults, all three uplinks leased
    lab.down()

Attributes: `root`, `prefix`, `gw_netns`, `cloud_netns`, `bus_address`,
`config_path`, `state_path`, `keyfile_dir`, `ca_file`, `uplinks` (tuple of
`Uplink`: ifname, cls, isp_netns, subnet, router_ip, metric, profile_id,
profile_uuid), `cloud_host`, `cloud_ip`, `cloud_port`, `cloud_http_port`,
`proxy_host`, `proxy_port`, `proxy_user`, `proxy_password`.

Also: `env()`; `exec_argv(argv)` (the argv `run` uses, for Popen of
long-running processes such as `impctl daemon`); `open_socket()`,
`bound_socket(ifname)`, `connect(ifname, ip, port)` (sockets created in the
gateway netns from a short-lived thread, usable from the caller's thread);
`nmcli(...)`, `mmcli(...)` (against the lab's bus); `addresses()`,
`default_routes()`, `carriers()`, `nm_devices()`, `uplink_healthy(u)`,
`wait_uplinks(ifnames)`; `faults()`, `status()`; `stop_networkmanager()`,
`start_networkmanager()`, `restart_networkmanager(down_s)`; with a modem:
`modem_state(state)`, `modem_info()`, `modem_observed()`.
`impctl.lab.checks` has bound TCP/TLS/proxy/DNS probes returning outcome words.

The default lab lives in /run/impctl-lab (tmpfs: it goes with a reboot, as
the namespaces do) with prefix `imp`.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from impctl.lab import files
from impctl.lab.cloud import NM_ONLINE_BODY
from impctl.lab.modem import KERNEL_EVENT, STATES, build_sysfs, write_control
from impctl.lab.proc import (
    Bind,
    alive,
    in_netns,
    kill_all,
    netns_argv,
    netns_exists,
    netns_inode,
    netns_pids,
    pid_netns_inode,
    root_netns_inode,
    sh,
    wait_for,
)
from impctl.model.errors import LabError, PermissionDenied

DEFAULT_ROOT = Path("/run/impctl-lab")
DEFAULT_PREFIX = "imp"

CLOUD_HOST = "cloud.imp.lab"
PROXY_HOST = "proxy.imp.lab"
CLOUD_IP = "198.19.0.10"
CLOUD_PORT = 443
CLOUD_HTTP_PORT = 80
PROXY_PORT = 8888
PROXY_USER = "lab"
PROXY_PASSWORD = "lab-proxy-secret"

# NM's default is 6000 ms; see files.nm_config.
CARRIER_WAIT_MS = 1000

UP_TIMEOUT_S = 15.0
# ModemManager probes the simulated modem in ~3 s with the generic plugin only.
MODEM_TIMEOUT_S = 30.0
LEASE_TIMEOUT_S = 15.0
ISP_IFNAME = "down0"
ISP_UPLINK_IFNAME = "up0"
NFT_TABLE = "impctl_lab"
# After a fault is lifted NM usually recovers by itself within ~0.1 s (carrier back, renewal);
# past this an uplink's profile is re-activated.
SETTLE_S = 0.5

# Per uplink, applied in that uplink's ISP namespace (see Lab.fault).
FAULTS = ("link-down", "blackhole", "dhcp-off", "dns-off", "cloud-closed", "proxy-down")

REQUIRED_TOOLS = {
    "ip": "iproute2",
    "unshare": "util-linux",
    "nft": "nftables",
    "dbus-daemon": "dbus",
    "NetworkManager": "network-manager",
    "nmcli": "network-manager",
    "dnsmasq": "dnsmasq-base",
    "tinyproxy": "tinyproxy",
}
MODEM_TOOLS = {"ModemManager": "modemmanager", "mmcli": "modemmanager", "dbus-send": "dbus"}


@dataclass(frozen=True)
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

    @property
    def index(self) -> int:
        return int(self.subnet.split(".")[2])

    @property
    def transit_isp_ip(self) -> str:
        return f"198.19.{self.index}.1"

    @property
    def transit_cloud_ip(self) -> str:
        return f"198.19.{self.index}.2"

    @property
    def cloud_ifname(self) -> str:
        return f"isp{self.letter}"


# ifname, class, letter, route metric (NM's defaults for ethernet, wifi, cell)
UPLINK_PLAN = (("eth0", "ethernet", "a", 100), ("wlan0", "wifi", "b", 600),
               ("wwan0", "cell", "c", 700))


@dataclass
class UplinkStatus:
    ifname: str
    carrier: bool
    addresses: list[str]
    default_route: bool
    nm_state: str
    nm_connection: str
    faults: list[str]


@dataclass
class DaemonStatus:
    name: str
    pid: int | None
    alive: bool


@dataclass
class LabStatus:
    root: str
    prefix: str
    up: bool
    modem: bool
    namespaces: dict[str, bool]
    daemons: list[DaemonStatus]
    uplinks: list[UplinkStatus]
    modem_state: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Lab:
    """A lab at `root` whose namespaces are named `{prefix}-gw`, `{prefix}-ispa`, ..."""

    def __init__(self, root: Path = DEFAULT_ROOT, prefix: str = DEFAULT_PREFIX, *,
                 modem: bool = False, connectivity_uri: str | None = None) -> None:
        if not prefix or len(prefix) > 12 or not prefix.isalnum():
            raise LabError(f"bad lab prefix {prefix!r}: use 1-12 letters or digits")
        self.root = Path(root).absolute()
        self.prefix = prefix
        self.modem = modem
        self.connectivity_uri = connectivity_uri
        self.gw_netns = f"{prefix}-gw"
        self.cloud_netns = f"{prefix}-cloud"
        self.uplinks = tuple(
            Uplink(
                ifname=ifname, cls=cls, letter=letter, isp_netns=f"{prefix}-isp{letter}",
                subnet=f"198.18.{i}.0/24", router_ip=f"198.18.{i}.1", metric=metric,
                profile_id=f"lab-{ifname}", profile_uuid=files.profile_uuid(prefix, ifname),
            )
            for i, (ifname, cls, letter, metric) in enumerate(UPLINK_PLAN, start=1)
        )
        self.cloud_host = CLOUD_HOST
        self.cloud_ip = CLOUD_IP
        self.cloud_port = CLOUD_PORT
        self.cloud_http_port = CLOUD_HTTP_PORT
        self.proxy_host = PROXY_HOST
        self.proxy_port = PROXY_PORT
        self.proxy_user = PROXY_USER
        self.proxy_password = PROXY_PASSWORD
        # Popen objects of daemons this process started, so it can reap them.
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # ---- layout ---------------------------------------------------------------------------

    @property
    def namespaces(self) -> list[str]:
        return [self.gw_netns, *(u.isp_netns for u in self.uplinks), self.cloud_netns]

    @property
    def gw_dir(self) -> Path:
        return self.root / "gw"

    @property
    def cloud_dir(self) -> Path:
        return self.root / "cloud"

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

    def uplink(self, ifname: str) -> Uplink:
        for u in self.uplinks:
            if u.ifname == ifname:
                return u
        names = ", ".join(u.ifname for u in self.uplinks)
        raise LabError(f"no lab uplink {ifname!r}: use one of {names}" +
                       (" or modem" if self.modem else ""))

    @classmethod
    def load(cls, root: Path = DEFAULT_ROOT) -> Lab:
        """The lab described by `root`/lab.json (written by `up`)."""
        try:
            data = json.loads((Path(root) / "lab.json").read_text())
        except FileNotFoundError as err:
            raise LabError(f"no lab at {root}: start one with `impctl lab up`") from err
        except (OSError, ValueError) as err:
            raise LabError(f"{root}/lab.json unreadable ({err}): run `impctl lab down`") from err
        return cls(Path(root), data.get("prefix", DEFAULT_PREFIX), modem=bool(data.get("modem")),
                   connectivity_uri=data.get("connectivity_uri"))

    # ---- environment for processes inside the lab -----------------------------------------

    def env(self) -> dict[str, str]:
        """Variables that point impctl (and nmcli/mmcli) at the lab."""
        return {
            "DBUS_SYSTEM_BUS_ADDRESS": self.bus_address,
            "IMPCTL_CONFIG": str(self.config_path),
            "IMPCTL_STATE": str(self.state_path),
        }

    def _binds(self, where: str) -> list[tuple[Path | str, str]]:
        d = self.root / where
        return [(d / "hosts", "/etc/hosts"), (d / "resolv.conf", "/etc/resolv.conf")]

    def exec_argv(self, argv: Sequence[str], netns: str | None = None) -> list[str]:
        """argv running `argv` in the gateway netns (or `netns`) with the lab's hosts/resolv.conf."""
        ns = netns or self.gw_netns
        where = "gw" if ns == self.gw_netns else ("cloud" if ns == self.cloud_netns else "isp")
        return netns_argv(ns, argv, self._binds(where))

    def run(self, argv: Sequence[str], *, input: str | None = None, timeout: float = 60.0,
            check: bool = False, netns: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command in the gateway netns with env() set; returns its output as text."""
        env = {**os.environ, **self.env()}
        return subprocess.run(self.exec_argv(argv, netns), input=input, capture_output=True,
                              text=True, timeout=timeout, env=env, check=check)

    def nmcli(self, *args: str, check: bool = True,
              timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        """nmcli against the lab's NM (a D-Bus client: it needs no namespace, just the bus)."""
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.bus_address, "LC_ALL": "C"}
        proc = subprocess.run(["nmcli", *args], capture_output=True, text=True, env=env,
                              timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise LabError(f"nmcli {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    # ---- sockets inside the lab -----------------------------------------------------------

    def open_socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM,
               proto: int = 0, *, netns: str | None = None) -> socket.socket:
        """A socket created in the gateway netns (or `netns`) that this thread can use."""
        return in_netns(netns or self.gw_netns, lambda: socket.socket(family, type, proto))

    def bound_socket(self, ifname: str, type: int = socket.SOCK_STREAM) -> socket.socket:
        """A gateway socket bound (SO_BINDTODEVICE) to an uplink."""
        sock = self.open_socket(socket.AF_INET, type)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        return sock

    def connect(self, ifname: str, ip: str | None = None, port: int | None = None,
                timeout: float = 2.0) -> socket.socket:
        """A TCP connection from the gateway through `ifname` (default: to the cloud's TLS port)."""
        sock = self.bound_socket(ifname)
        sock.settimeout(timeout)
        try:
            sock.connect((ip or self.cloud_ip, port or self.cloud_port))
        except BaseException:
            sock.close()
            raise
        return sock

    # ---- building -------------------------------------------------------------------------

    @staticmethod
    def _require_root() -> None:
        if os.geteuid() != 0:
            raise PermissionDenied("the lab needs root (network namespaces): run it with sudo")

    def check_prerequisites(self) -> None:
        """Root and every needed program; a LabError names the Debian package to install."""
        self._require_root()
        tools = dict(REQUIRED_TOOLS)
        if self.modem:
            tools.update(MODEM_TOOLS)
        for tool, package in tools.items():
            if shutil.which(tool, path=_daemon_path()) is None:
                raise LabError(f"{tool} not found: apt-get install {package}")
        if self.modem:
            if _generic_plugin() is None:
                raise LabError("ModemManager's generic plugin not found: apt-get install modemmanager")
            if importlib.util.find_spec("dbusmock") is None:
                raise LabError("python-dbusmock not found (the modem lab's polkit): "
                               "pip install python-dbusmock")
        if not Path("/proc/self/ns/net").exists():
            raise LabError("this kernel has no network namespaces: the lab cannot run here")
        if len(str(self.bus_socket)) > 100:
            raise LabError(f"lab directory path too long for a unix socket: {self.root}")

    def leftovers(self) -> list[str]:
        """What exists of this lab: namespaces and the lab directory."""
        found = [ns for ns in self.namespaces if netns_exists(ns)]
        if self.lab_file.exists():
            found.append(str(self.lab_file))
        return found

    def is_up(self) -> bool:
        """True when every namespace exists and every daemon of lab.json is alive."""
        if not all(netns_exists(ns) for ns in self.namespaces):
            return False
        pids = self._read_lab_file().get("pids", {})
        return bool(pids) and all(alive(int(p)) for p in pids.values())

    def up(self, *, replace: bool = False) -> None:
        """Build the lab; cleans up after a crashed one; `replace` also replaces a live one.

        On failure everything built so far is torn down again, the logs stay in
        `root`/logs, and a LabError says what failed.
        """
        self.check_prerequisites()
        with self._locked():
            if self.leftovers():
                if self.is_up() and not replace:
                    raise LabError(f"a lab is already up in {self.root} (prefix {self.prefix}): "
                                   "run `impctl lab down` first")
                self._teardown()
            try:
                self._build()
            except BaseException as err:
                self._teardown(keep_logs=True)
                self._lock_path.unlink(missing_ok=True)
                if isinstance(err, LabError):
                    raise LabError(f"{err.message} (logs in {self.log_dir})") from err
                raise

    def down(self) -> None:
        """Kill every lab process, delete the namespaces and the lab directory."""
        self._require_root()
        with self._locked():
            self._teardown()
            # Nothing of the lab may stay outside its directory; the lock goes too.
            self._lock_path.unlink(missing_ok=True)

    @property
    def _lock_path(self) -> Path:
        # Next to the lab dir, not inside it: `down` removes the dir.
        return self.root.parent / f".{self.root.name}.lock"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _build(self) -> None:
        for d in (self.root, self.gw_dir, self.cloud_dir, self.log_dir, self.state_path.parent,
                  self.root / "isp", self.gw_dir / "run" / "dbus",
                  self.gw_dir / "run" / "NetworkManager", self.keyfile_dir,
                  self.gw_dir / "etc-nm" / "conf.d", self.gw_dir / "var-nm"):
            d.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self._write_lab_file({"prefix": self.prefix, "modem": self.modem, "pids": {},
                              "faults": {}, "connectivity_uri": self.connectivity_uri})
        self._write_files()
        self._build_network()
        self._start_daemons()

    def _write_files(self) -> None:
        records = [(CLOUD_HOST, CLOUD_IP), (PROXY_HOST, CLOUD_IP)]
        (self.gw_dir / "hosts").write_text(files.hosts([]))
        (self.gw_dir / "resolv.conf").write_text(
            files.resolv_conf([u.router_ip for u in self.uplinks]))
        (self.cloud_dir / "hosts").write_text(files.hosts(records))
        (self.cloud_dir / "resolv.conf").write_text(files.resolv_conf(["127.0.0.1"]))
        (self.root / "isp" / "hosts").write_text(files.hosts(records))
        (self.root / "isp" / "resolv.conf").write_text(files.resolv_conf(["127.0.0.1"]))
        (self.gw_dir / "dbus.conf").write_text(files.dbus_config(str(self.bus_socket)))
        (self.gw_dir / "etc-nm" / "NetworkManager.conf").write_text(
            files.nm_config([u.ifname for u in self.uplinks], CARRIER_WAIT_MS,
                            self.connectivity_uri, NM_ONLINE_BODY.strip()))
        for u in self.uplinks:
            self.write_keyfile(u)
        from impctl.lab import pki  # cryptography's x509: only `up` needs it, not every impctl start

        pki.make_ca_and_cert(self.cloud_dir, [CLOUD_HOST, PROXY_HOST], CLOUD_IP)
        (self.cloud_dir / "tinyproxy.conf").write_text(files.tinyproxy_config(
            listen_ip=CLOUD_IP, port=PROXY_PORT, user=PROXY_USER, password=PROXY_PASSWORD,
            pid_file=str(self.cloud_dir / "tinyproxy.pid"),
            log_file=str(self.log_dir / "tinyproxy.log"), connect_ports=[443, 80]))
        identifiers = {"eth0": "eth0", "wl0": "wlan0", "cell0": "wwan0"}
        if self.modem:
            identifiers["cell1"] = "ttyUSB0"
        self.config_path.write_text(files.impctl_config(
            cloud_host=CLOUD_HOST, cloud_port=CLOUD_PORT, ca_file=str(self.ca_file),
            classes={u.ifname: u.cls for u in self.uplinks}, identifiers=identifiers))

    def write_keyfile(self, u: Uplink) -> Path:
        """(Re)write an uplink's lab profile; keyfiles must be root-owned 0600 or NM skips them."""
        path = self.keyfile_dir / f"{u.profile_id}.nmconnection"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(files.keyfile(self.prefix, u.profile_id, u.ifname, u.metric))
        os.chmod(path, 0o600)
        return path

    def _build_network(self) -> None:
        batch = [f"netns add {ns}" for ns in self.namespaces]
        for u in self.uplinks:
            # Created directly inside the namespaces: the machine has its own eth0.
            batch.append(f"link add {u.ifname} netns {self.gw_netns} type veth "
                         f"peer name {u.isp_ifname} netns {u.isp_netns}")
            batch.append(f"link add {ISP_UPLINK_IFNAME} netns {u.isp_netns} type veth "
                         f"peer name {u.cloud_ifname} netns {self.cloud_netns}")
        sh(["ip", "-batch", "-"], input="\n".join(batch) + "\n")
        root_ino = root_netns_inode()
        for ns in self.namespaces:
            if netns_inode(ns) in (None, root_ino):
                raise LabError(f"namespace {ns} was not created apart from the machine's")

        cloud = ["link set lo up", f"addr add {CLOUD_IP}/32 dev lo"]
        for u in self.uplinks:
            sh(["ip", "-n", u.isp_netns, "-batch", "-"], input="\n".join([
                "link set lo up",
                f"addr add {u.router_ip}/24 dev {u.isp_ifname}",
                f"link set {u.isp_ifname} up",
                f"addr add {u.transit_isp_ip}/30 dev {ISP_UPLINK_IFNAME}",
                f"link set {ISP_UPLINK_IFNAME} up",
                f"route add default via {u.transit_cloud_ip}",
            ]) + "\n")
            cloud += [f"addr add {u.transit_cloud_ip}/30 dev {u.cloud_ifname}",
                      f"link set {u.cloud_ifname} up",
                      f"route add {u.subnet} via {u.transit_isp_ip}"]
        sh(["ip", "-n", self.cloud_netns, "-batch", "-"], input="\n".join(cloud) + "\n")
        sh(["ip", "-n", self.gw_netns, "link", "set", "lo", "up"])

        # /proc/sys/net shows the namespace of the thread that opens it.
        def sysctl(values: dict[str, str]) -> None:
            for key, value in values.items():
                Path("/proc/sys", key.replace(".", "/")).write_text(value)

        for u in self.uplinks:
            in_netns(u.isp_netns, lambda: sysctl({"net.ipv4.ip_forward": "1"}))
        gw = {"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0"}
        for u in self.uplinks:
            # A dead uplink's default route lingers (flagged linkdown) until NM drops it;
            # unbound traffic must not keep choosing it.
            gw[f"net.ipv4.conf.{u.ifname}.ignore_routes_with_linkdown"] = "1"
            gw[f"net.ipv4.conf.{u.ifname}.rp_filter"] = "0"
        in_netns(self.gw_netns, lambda: sysctl(gw))

    def _spawn(self, name: str, netns: str, argv: Sequence[str],
               binds: Sequence[Bind], *, ro_sys: bool = False,
               env: dict[str, str] | None = None) -> int:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                netns_argv(netns, argv, binds, ro_sys=ro_sys), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**_clean_env(), **(env or {})},
            )
        finally:
            log.close()
        self._children[name] = proc
        # `ip netns exec`, `unshare` and `sh -c 'exec'` all exec: the pid is the daemon's.
        data = self._read_lab_file()
        data.setdefault("pids", {})[name] = proc.pid
        self._write_lab_file(data)
        return proc.pid

    def _expect_alive(self, name: str) -> None:
        proc = self._children.get(name)
        if proc is not None and proc.poll() is not None:
            tail = _tail(self.log_dir / f"{name}.log")
            raise LabError(f"{name} exited with status {proc.returncode}: {tail}")

    def _start_daemons(self) -> None:
        isp_binds = self._binds("isp")
        for u in self.uplinks:
            self._spawn(f"dnsmasq-{u.letter}", u.isp_netns, files.dnsmasq_argv(
                ifname=u.isp_ifname, router_ip=u.router_ip,
                pool=(f"198.18.{u.index}.100", f"198.18.{u.index}.199"),
                lease_file=str(self.root / "isp" / f"leases-{u.letter}"),
                pid_file=str(self.root / "isp" / f"dnsmasq-{u.letter}.pid"),
                log_file=str(self.log_dir / f"dnsmasq-{u.letter}.queries.log"),
                records=[(CLOUD_HOST, CLOUD_IP), (PROXY_HOST, CLOUD_IP)]), isp_binds)
        cloud_binds = self._binds("cloud")
        self._spawn("cloud", self.cloud_netns, [
            sys.executable, "-m", "impctl.lab.cloud", "--ip", CLOUD_IP,
            "--http-port", str(CLOUD_HTTP_PORT), "--tls-port", str(CLOUD_PORT),
            "--cert", str(self.cloud_dir / "cloud.pem"), "--key", str(self.cloud_dir / "cloud.key"),
        ], cloud_binds, env={"PYTHONPATH": _package_parent()})
        self._spawn("tinyproxy", self.cloud_netns,
                    ["tinyproxy", "-d", "-c", str(self.cloud_dir / "tinyproxy.conf")], cloud_binds)
        self._spawn("dbus", self.gw_netns, ["dbus-daemon", "--nofork", "--nopidfile",
                                            f"--config-file={self.gw_dir / 'dbus.conf'}"],
                    self._binds("gw"))

        def bus_ready() -> bool:
            self._expect_alive("dbus")
            return _unix_connectable(self.bus_socket)

        wait_for("the lab's D-Bus system bus", bus_ready, UP_TIMEOUT_S)
        for u in self.uplinks:
            pid_file = self.root / "isp" / f"dnsmasq-{u.letter}.pid"

            def dnsmasq_ready(name: str = f"dnsmasq-{u.letter}", pid_file: Path = pid_file) -> bool:
                self._expect_alive(name)
                return pid_file.exists()

            wait_for(f"dnsmasq in {u.isp_netns}", dnsmasq_ready, UP_TIMEOUT_S)
        self._start_networkmanager()
        for name, port in (("cloud", CLOUD_PORT), ("cloud", CLOUD_HTTP_PORT),
                           ("tinyproxy", PROXY_PORT)):
            def listening(name: str = name, port: int = port) -> bool:
                self._expect_alive(name)
                return self._tcp_ok(self.cloud_netns, CLOUD_IP, port)

            wait_for(f"{name} on {CLOUD_IP}:{port}", listening, UP_TIMEOUT_S)
        self.wait_uplinks([u.ifname for u in self.uplinks], LEASE_TIMEOUT_S)
        if self.modem:
            self._start_modem()

    def _start_networkmanager(self) -> None:
        gw = self.gw_dir
        binds: list[tuple[Path | str, str]] = [
            *self._binds("gw"),
            (gw / "etc-nm", "/etc/NetworkManager"),
            (gw / "var-nm", "/var/lib/NetworkManager"),
            # Last: once /run is covered, a lab directory under /run is out of sight.
            (gw / "run", "/run"),
        ]
        pid = self._spawn("NetworkManager", self.gw_netns, [
            "NetworkManager", "--debug", "--log-level=INFO",
            "--config=/etc/NetworkManager/NetworkManager.conf",
            "--config-dir=/etc/NetworkManager/conf.d",
            "--state-file=/var/lib/NetworkManager/NetworkManager.state",
        ], binds, ro_sys=True,
            # The path NM sees: the lab's run directory is its /run.
            env={"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/run/dbus/system_bus_socket"})
        # NM must never run in the machine's own namespace: check before anything else.
        gw_ino = netns_inode(self.gw_netns)
        deadline = time.monotonic() + 2.0
        while True:
            self._expect_alive("NetworkManager")
            ino = pid_netns_inode(pid)
            if ino == gw_ino:
                break
            if ino == root_netns_inode() and time.monotonic() > deadline:
                kill_all([pid])
                raise LabError("NetworkManager is not in the gateway namespace: aborted")
            time.sleep(0.005)
        ident = sh(["ip", "netns", "identify", str(pid)], check=False).stdout.strip()
        if ident != self.gw_netns:
            kill_all([pid])
            raise LabError(f"NetworkManager (pid {pid}) is in netns {ident or 'of the machine'}, "
                           f"not {self.gw_netns}: aborted")

    def stop_networkmanager(self) -> None:
        """Stop the lab's NetworkManager (SIGTERM; it leaves the uplinks configured)."""
        self._require_root()
        pid = self._read_lab_file().get("pids", {}).get("NetworkManager")
        # Only ever the lab's own NM: the recorded pid must live in the gateway namespace.
        if pid is not None and pid_netns_inode(int(pid)) == netns_inode(self.gw_netns):
            kill_all([int(pid)], grace_s=10.0)
        child = self._children.pop("NetworkManager", None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5.0)

    def start_networkmanager(self, *, wait: bool = True) -> None:
        """Start the lab's NetworkManager again; with `wait`, until every uplink is connected."""
        self._require_root()
        self._start_networkmanager()
        if wait:
            self.wait_uplinks([u.ifname for u in self.uplinks])

    def restart_networkmanager(self, down_s: float = 0.0, *, wait: bool = True) -> None:
        """Stop NM, wait `down_s`, start it again (it takes the lab profiles over)."""
        self.stop_networkmanager()
        if down_s > 0:
            time.sleep(down_s)
        self.start_networkmanager(wait=wait)

    def _tcp_ok(self, netns: str, ip: str, port: int, ifname: str | None = None,
                timeout: float = 0.5) -> bool:
        sock = in_netns(netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        try:
            if ifname:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            sock.settimeout(timeout)
            sock.connect((ip, port))
            return True
        except OSError:
            return False
        finally:
            sock.close()

    # ---- health of the uplinks -------------------------------------------------------------

    def _ip_json(self, *args: str) -> list[dict[str, Any]]:
        out = sh(["ip", "-n", self.gw_netns, "-j", *args]).stdout
        return json.loads(out) if out.strip() else []

    def addresses(self) -> dict[str, list[str]]:
        """IPv4 addresses (CIDR) of every gateway interface."""
        out: dict[str, list[str]] = {}
        for link in self._ip_json("-4", "addr", "show"):
            out[link["ifname"]] = [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])]
        return out

    def default_routes(self) -> list[dict[str, Any]]:
        return self._ip_json("-4", "route", "show", "default")

    def carriers(self) -> dict[str, bool]:
        return {link["ifname"]: "NO-CARRIER" not in link.get("flags", []) and
                "UP" in link.get("flags", []) and "LOWER_UP" in link.get("flags", [])
                for link in self._ip_json("link", "show")}

    def uplink_healthy(self, u: Uplink, addrs: dict[str, list[str]] | None = None,
                       routes: list[dict[str, Any]] | None = None) -> bool:
        """Leased address in the ISP's subnet and NM's default route via the ISP router."""
        addrs = self.addresses() if addrs is None else addrs
        routes = self.default_routes() if routes is None else routes
        net = u.subnet.rsplit(".", 1)[0] + "."
        has_addr = any(a.startswith(net) for a in addrs.get(u.ifname, []))
        has_route = any(r.get("dev") == u.ifname and r.get("gateway") == u.router_ip
                        and r.get("metric") == u.metric and "linkdown" not in r.get("flags", [])
                        for r in routes)
        return has_addr and has_route

    def wait_uplinks(self, ifnames: Sequence[str], timeout_s: float = LEASE_TIMEOUT_S) -> None:
        """Wait until each uplink has its DHCP lease and default route."""
        todo = [self.uplink(n) for n in ifnames]

        def ready() -> bool:
            self._expect_alive("NetworkManager")
            addrs, routes = self.addresses(), self.default_routes()
            if not all(self.uplink_healthy(u, addrs, routes) for u in todo):
                return False
            # An address can be there before NM is done (or left by a previous activation):
            # NM must also call the device connected with the lab profile.
            nm = self.nm_devices()
            return all(nm.get(u.ifname) == ("connected", u.profile_id) for u in todo)

        wait_for(f"DHCP lease and default route on {', '.join(ifnames)}", ready, timeout_s,
                 interval_s=0.02)

    # ---- faults ----------------------------------------------------------------------------

    def faults(self) -> dict[str, list[str]]:
        """Active faults per uplink, as recorded by fault()/restore()."""
        return {k: list(v) for k, v in self._read_lab_file().get("faults", {}).items() if v}

    def fault(self, ifname: str, kind: str) -> None:
        """Apply a fault to one uplink, in its ISP namespace only; returns once it is in effect.

        link-down     the ISP's end of the veth goes down: the gateway loses carrier
                      (NM drops the address after CARRIER_WAIT_MS)
        blackhole     link up, the ISP drops everything coming from the gateway
                      (DHCP, DNS, forwarding): connects time out
        dhcp-off      the ISP drops DHCP; the uplink's profile is re-activated so NM
                      re-DHCPs, gets no answer, and the uplink is left without address
        dns-off       the ISP's resolver refuses: DNS over UDP gets ICMP port
                      unreachable (ECONNREFUSED), over TCP a reset
        cloud-closed  TCP from the gateway to the cloud's ports 443 and 80 gets a reset
        proxy-down    TCP from the gateway to the proxy port gets a reset

        `fault("modem", state)` switches the simulated modem (see modem_state).
        """
        self._require_root()
        if ifname == "modem":
            self.modem_state(kind)
            return
        u = self.uplink(ifname)
        if kind not in FAULTS:
            raise LabError(f"unknown fault {kind!r}: use one of {', '.join(FAULTS)} or restore")
        iif = f'iifname "{u.isp_ifname}"'
        rules = {
            "blackhole": [f"input {iif} drop", f"forward {iif} drop"],
            "dhcp-off": [f"input {iif} udp dport 67 drop"],
            "dns-off": [f"input {iif} udp dport 53 reject",
                        f"input {iif} tcp dport 53 reject with tcp reset"],
            "cloud-closed": [f"forward {iif} ip daddr {CLOUD_IP} tcp dport "
                             f"{{ {CLOUD_PORT}, {CLOUD_HTTP_PORT} }} reject with tcp reset"],
            "proxy-down": [f"forward {iif} ip daddr {CLOUD_IP} tcp dport {PROXY_PORT} "
                           "reject with tcp reset"],
        }.get(kind, [])
        if rules:
            script = [f"table inet {NFT_TABLE} {{",
                      "  chain input { type filter hook input priority 0; policy accept; }",
                      "  chain forward { type filter hook forward priority 0; policy accept; }",
                      "}"]
            script += [f"add rule inet {NFT_TABLE} {r} comment \"{kind}\"" for r in rules]
            sh(["ip", "netns", "exec", u.isp_netns, "nft", "-f", "-"], input="\n".join(script) + "\n")
        self._record_fault(u.ifname, kind, add=True)
        if kind == "link-down":
            sh(["ip", "-n", u.isp_netns, "link", "set", u.isp_ifname, "down"])
            wait_for(f"carrier loss on {u.ifname}", lambda: not self.carriers().get(u.ifname, False),
                     5.0)
        elif kind == "dhcp-off":
            # A running lease would outlive the fault: start a new activation, whose DHCP fails.
            self.activate(u, wait=False)
            wait_for(f"{u.ifname} without address",
                     lambda: not self.addresses().get(u.ifname), 10.0)

    def restore(self, ifname: str) -> None:
        """Undo every fault of an uplink and wait until it has its lease and default route.

        `restore("modem")` puts the simulated modem back to registered.
        """
        self._require_root()
        if ifname == "modem":
            self.modem_state("registered")
            return
        u = self.uplink(ifname)
        had = self.faults().get(u.ifname, [])
        sh(["ip", "netns", "exec", u.isp_netns, "nft", "delete", "table", "inet", NFT_TABLE],
           check=False)
        sh(["ip", "-n", u.isp_netns, "link", "set", u.isp_ifname, "up"])
        self._record_fault(u.ifname, None, add=False)
        if "dhcp-off" in had:
            # NM's DHCP client backs off between retries: start over rather than wait for it.
            self.activate(u, wait=False)
        self._heal([u])

    def _heal(self, uplinks: Sequence[Uplink]) -> None:
        """Re-activate the lab profile of each uplink that is not healthy, then wait for all."""
        if not uplinks:
            return
        # Undo what a test may have done to NM itself.
        if self.nmcli("networking", check=False).stdout.strip() != "enabled":
            self.nmcli("networking", "on")
        nm = self.nm_devices()
        for u in uplinks:
            if nm.get(u.ifname, ("", ""))[0] == "unmanaged":
                self.nmcli("device", "set", u.ifname, "managed", "yes")
        wait_for("gateway carrier", lambda: all(self.carriers().get(u.ifname) for u in uplinks),
                 5.0)
        active = self._active_profiles()
        addrs, routes, nm = self.addresses(), self.default_routes(), self.nm_devices()
        for u in uplinks:
            if (active.get(u.ifname) != u.profile_uuid or not self.uplink_healthy(u, addrs, routes)
                    or nm.get(u.ifname) != ("connected", u.profile_id)):
                # A fresh activation may still be under way (NM retries on carrier); give it
                # a moment before forcing a new one.
                if active.get(u.ifname) == u.profile_uuid and self._settles(u, SETTLE_S):
                    continue
                self.activate(u, wait=False)
        self.wait_uplinks([u.ifname for u in uplinks])

    def _settles(self, u: Uplink, timeout_s: float) -> bool:
        try:
            self.wait_uplinks([u.ifname], timeout_s)
        except LabError:
            return False
        return True

    def activate(self, u: Uplink, *, wait: bool = True) -> None:
        """(Re-)activate an uplink's lab profile on its device."""
        if not (self.keyfile_dir / f"{u.profile_id}.nmconnection").exists():
            self.write_keyfile(u)
            self.nmcli("connection", "reload")
        self.nmcli("--wait", "0" if not wait else "20", "connection", "up", "uuid",
                   u.profile_uuid, "ifname", u.ifname)
        if wait:
            self.wait_uplinks([u.ifname])

    def nm_devices(self) -> dict[str, tuple[str, str]]:
        """NM's device list: ifname -> (state, connection name), e.g. ("connected", "lab-eth0")."""
        out = self.nmcli("-t", "-f", "DEVICE,STATE,CONNECTION", "device", check=False,
                         timeout=5.0).stdout
        result = {}
        for line in out.splitlines():
            parts = line.split(":", 2)
            if len(parts) == 3:
                result[parts[0]] = (parts[1], parts[2])
        return result

    def _active_profiles(self) -> dict[str, str]:
        """device -> UUID of its active connection."""
        out = self.nmcli("-t", "-f", "DEVICE,UUID", "connection", "show", "--active").stdout
        result = {}
        for line in out.splitlines():
            name, _, uuid = line.rpartition(":")
            if name:
                result[name] = uuid
        return result

    def reset(self) -> None:
        """Back to a fresh lab between tests.

        Restores every fault, deletes NM profiles that are not the lab's,
        re-activates every lab profile not active and healthy, waits until all
        three uplinks have leases and default routes, puts the modem (if any)
        back to registered, and empties the impctl state directory (removing
        `state_path`).
        """
        self._require_root()
        for u in self.uplinks:
            sh(["ip", "netns", "exec", u.isp_netns, "nft", "delete", "table", "inet", NFT_TABLE],
               check=False)
            sh(["ip", "-n", u.isp_netns, "link", "set", u.isp_ifname, "up"])
        data = self._read_lab_file()
        data["faults"] = {}
        self._write_lab_file(data)
        lab_uuids = {u.profile_uuid for u in self.uplinks}
        changed = False
        for u in self.uplinks:
            path = self.keyfile_dir / f"{u.profile_id}.nmconnection"
            want = files.keyfile(self.prefix, u.profile_id, u.ifname, u.metric)
            try:
                ok = path.read_text() == want and path.stat().st_mode & 0o777 == 0o600
            except OSError:
                ok = False
            if not ok:
                self.write_keyfile(u)
                changed = True
        if changed:
            self.nmcli("connection", "reload")
        out = self.nmcli("-t", "-f", "UUID,TYPE", "connection", "show").stdout
        strangers = [line.split(":")[0] for line in out.splitlines()
                     if line and line.split(":")[0] not in lab_uuids
                     and line.split(":", 1)[1] not in ("loopback",)]
        if strangers:
            self.nmcli("connection", "delete", *strangers, check=False)
        self._heal(list(self.uplinks))
        if self.modem and self.modem_observed() != "registered":
            self.modem_state("registered")
        if self.state_path.parent.exists():
            for p in self.state_path.parent.iterdir():
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)

    def _record_fault(self, ifname: str, kind: str | None, *, add: bool) -> None:
        with self._locked():
            data = self._read_lab_file()
            faults = data.setdefault("faults", {})
            current = faults.get(ifname, [])
            if add and kind and kind not in current:
                current.append(kind)
            if not add:
                current = [] if kind is None else [k for k in current if k != kind]
            faults[ifname] = current
            self._write_lab_file(data)

    # ---- modem -----------------------------------------------------------------------------

    @property
    def mm_dir(self) -> Path:
        """Modem files ModemManager reads after its /run is bound: it sees this as /run/mm."""
        return self.gw_dir / "run" / "mm"

    @property
    def modem_control(self) -> Path:
        """The responder's control file (see impctl.lab.modem.STATES)."""
        return self.root / "modem" / "control.json"

    def _start_modem(self) -> None:
        plugin = _generic_plugin()
        assert plugin is not None
        modem_dir = self.root / "modem"
        for d in (modem_dir / "sys", modem_dir / "hostdev", self.mm_dir / "plugins"):
            d.mkdir(parents=True, exist_ok=True)
        # Only the generic plugin: the modem is probed in ~3 s instead of ~10 s.
        (self.mm_dir / "plugins" / plugin.name).symlink_to(plugin)
        (self.mm_dir / "events").write_text(KERNEL_EVENT.format(action="add") + "\n")
        build_sysfs(modem_dir / "sys")
        write_control(self.modem_control, "registered")
        pty_link = modem_dir / "pty"
        self._spawn("polkit", self.gw_netns, [
            sys.executable, "-m", "dbusmock", "--system", "--template",
            str(Path(__file__).with_name("polkit_allow.py"))],
            self._binds("gw"), env={"DBUS_SYSTEM_BUS_ADDRESS": self.bus_address})
        self._spawn("modem", self.gw_netns, [
            sys.executable, "-m", "impctl.lab.modem", "--control", str(self.modem_control),
            "--pty-link", str(pty_link)], self._binds("gw"), env={"PYTHONPATH": _package_parent()})

        def responder_ready() -> bool:
            self._expect_alive("modem")
            return pty_link.exists()

        wait_for("the modem's AT responder", responder_ready, UP_TIMEOUT_S)

        def polkit_ready() -> bool:
            self._expect_alive("polkit")
            return self._bus_has("org.freedesktop.PolicyKit1")

        wait_for("the lab's polkit", polkit_ready, UP_TIMEOUT_S, interval_s=0.05)
        pty = pty_link.read_text().strip()
        stage = modem_dir / "hostdev"
        q = shlex.quote
        dev_setup = [
            # A private /dev holding the basics and the pty slave as ttyUSB0: the
            # machine's /dev is never written to.
            f"mount --rbind /dev {q(str(stage))}",
            "mount -t tmpfs -o mode=755 labdev /dev",
            "for n in null zero full random urandom tty ptmx; do "
            f"touch /dev/$n; mount --bind {q(str(stage))}/$n /dev/$n; done",
            f"mkdir /dev/pts; mount --bind {q(str(stage))}/pts /dev/pts",
            f"touch /dev/ttyUSB0; mount --bind {q(pty)} /dev/ttyUSB0",
        ]
        binds: list[Bind] = [
            *self._binds("gw"), *dev_setup,
            (modem_dir / "sys", "/sys"),
            (self.gw_dir / "run", "/run"),
        ]
        self._spawn("ModemManager", self.gw_netns, [
            "ModemManager", "--log-level=DEBUG", "--test-no-udev", "--test-enable",
            "--no-auto-scan", "--initial-kernel-events=/run/mm/events",
            "--test-plugin-dir=/run/mm/plugins",
        ], binds, env={"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/run/dbus/system_bus_socket"})
        self._wait_modem("registered", MODEM_TIMEOUT_S)

    def _bus_has(self, name: str) -> bool:
        proc = subprocess.run(
            ["dbus-send", "--system", "--print-reply", "--dest=org.freedesktop.DBus",
             "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner", f"string:{name}"],
            capture_output=True, text=True, timeout=5.0, check=False,
            env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.bus_address})
        return "boolean true" in proc.stdout

    def mmcli(self, *args: str, check: bool = True,
              timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        """mmcli against the lab's ModemManager."""
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.bus_address}
        proc = subprocess.run(["mmcli", *args], capture_output=True, text=True, env=env,
                              timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise LabError(f"mmcli {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def modem_info(self) -> dict[str, Any] | None:
        """ModemManager's view of the simulated modem (`mmcli -J -m any`), None when it has none."""
        proc = self.mmcli("-J", "-m", "any", check=False, timeout=10.0)
        if proc.returncode != 0:
            return None
        try:
            modem = json.loads(proc.stdout)["modem"]
        except (ValueError, KeyError):
            return None
        return modem if isinstance(modem, dict) else None

    def modem_observed(self) -> str | None:
        """Which of MODEM_STATES ModemManager shows now (None: no modem or another state)."""
        info = self.modem_info()
        if info is None:
            return None
        generic = info.get("generic", {})
        state = generic.get("state")
        reg = info.get("3gpp", {}).get("registration-state")
        if state == "failed" and generic.get("state-failed-reason") == "sim-missing":
            return "no-sim"
        if state == "locked" and generic.get("unlock-required") == "sim-pin":
            return "sim-locked"
        if state in ("enabled", "searching") and reg == "searching":
            return "not-registered"
        if state == "enabled" and reg == "denied":
            return "registration-denied"
        if state == "registered" and reg == "home":
            return "registered"
        return None

    def _wait_modem(self, state: str, timeout_s: float) -> None:
        def reached() -> bool:
            self._expect_alive("ModemManager")
            self._expect_alive("modem")
            info = self.modem_info()
            if info is not None and info.get("generic", {}).get("state") == "disabled":
                # NM enables modems when it wants to use them; the lab wants the state now.
                self.mmcli("-m", "any", "--enable", check=False, timeout=10.0)
            return self.modem_observed() == state

        wait_for(f"ModemManager to show the modem {state}", reached, timeout_s, interval_s=0.1)

    def modem_state(self, state: str, timeout_s: float = 30.0) -> None:
        """Switch the simulated modem's SIM/registration answers and wait until MM shows them.

        A registration change reaches MM as an unsolicited +CREG (well under a
        second); a SIM change needs MM to probe the modem again: the lab reports
        the port removed and re-added (`mmcli --report-kernel-event`), ~3-4 s.
        """
        if not self.modem:
            raise LabError("this lab has no modem: impctl lab up --modem")
        if state not in STATES:
            raise LabError(f"unknown modem state {state!r}: use one of {', '.join(STATES)}")
        try:
            old = json.loads(self.modem_control.read_text())
        except (OSError, ValueError):
            old = {}
        write_control(self.modem_control, state)
        data = self._read_lab_file()
        data["modem_state"] = state
        self._write_lab_file(data)
        observed = self.modem_observed()
        if old.get("sim") != STATES[state]["sim"] or observed in ("no-sim", "sim-locked", None):
            self.mmcli(f"--report-kernel-event={KERNEL_EVENT.format(action='remove')}")
            wait_for("ModemManager to drop the modem", lambda: self.modem_info() is None, 10.0,
                     interval_s=0.05)
            self.mmcli(f"--report-kernel-event={KERNEL_EVENT.format(action='add')}")
        self._wait_modem(state, timeout_s)

    # ---- state file ------------------------------------------------------------------------

    def _read_lab_file(self) -> dict[str, Any]:
        try:
            data = json.loads(self.lab_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_lab_file(self, data: dict[str, Any]) -> None:
        tmp = self.lab_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.lab_file)

    # ---- teardown --------------------------------------------------------------------------

    def _teardown(self, keep_logs: bool = False) -> None:
        """Kill everything in the lab's namespaces, delete them, remove the lab directory.

        Works from any state: after a crash, with stale pid files, half-built.
        """
        pids: list[int] = []
        for ns in self.namespaces:
            pids += netns_pids(ns)
        recorded = self._read_lab_file().get("pids", {})
        for pid in recorded.values():
            # A recorded daemon outside its namespace would be a lab bug; still ours to stop,
            # but only if it is still the program we started.
            if int(pid) not in pids and _is_lab_process(int(pid), self.root):
                pids.append(int(pid))
        kill_all(pids)
        for proc in self._children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2.0)
        self._children.clear()
        for ns in self.namespaces:
            if netns_exists(ns):
                sh(["ip", "netns", "del", ns], check=False)
        for ns in self.namespaces:
            if netns_exists(ns):
                # A bind mount whose namespace file lingers: unmount it, then remove the file.
                sh(["umount", "-l", f"/run/netns/{ns}"], check=False)
                with contextlib.suppress(OSError):
                    os.unlink(f"/run/netns/{ns}")
        for mount in _mounts_under(self.root):
            sh(["umount", "-l", mount], check=False)
        if not self.root.exists():
            return
        if keep_logs:
            for p in self.root.iterdir():
                if p != self.log_dir:
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    # ---- status ----------------------------------------------------------------------------

    def status(self) -> LabStatus:
        """Namespaces, daemons (pid, alive), uplinks (carrier, addresses, NM state), faults."""
        self._require_root()
        data = self._read_lab_file()
        namespaces = {ns: netns_exists(ns) for ns in self.namespaces}
        daemons = [DaemonStatus(name, int(pid), alive(int(pid)))
                   for name, pid in data.get("pids", {}).items()]
        uplinks: list[UplinkStatus] = []
        faults = data.get("faults", {})
        if namespaces[self.gw_netns]:
            addrs, routes, carriers = self.addresses(), self.default_routes(), self.carriers()
            nm = self.nm_devices() if _unix_connectable(self.bus_socket) else {}
            for u in self.uplinks:
                uplinks.append(UplinkStatus(
                    ifname=u.ifname, carrier=carriers.get(u.ifname, False),
                    addresses=addrs.get(u.ifname, []),
                    default_route=any(r.get("dev") == u.ifname for r in routes),
                    nm_state=nm.get(u.ifname, ("?", ""))[0],
                    nm_connection=nm.get(u.ifname, ("?", ""))[1],
                    faults=faults.get(u.ifname, [])))
        is_up = all(namespaces.values()) and bool(daemons) and all(d.alive for d in daemons)
        modem_state = None
        if self.modem and is_up:
            modem_state = self.modem_observed() or "other"
        return LabStatus(root=str(self.root), prefix=self.prefix, up=is_up, modem=self.modem,
                         namespaces=namespaces, daemons=daemons, uplinks=uplinks,
                         modem_state=modem_state,
                         extra={"modem_switched_to": data.get("modem_state")} if self.modem else {})


def _generic_plugin() -> Path | None:
    for path in sorted(Path("/usr/lib").glob("*/ModemManager/libmm-plugin-generic.so")):
        return path
    path = Path("/usr/lib/ModemManager/libmm-plugin-generic.so")
    return path if path.exists() else None


def _package_parent() -> str:
    import impctl

    return str(Path(impctl.__file__).resolve().parent.parent)


def _daemon_path() -> str:
    # sudo and some shells drop the sbin directories, where the daemons live.
    path = os.environ.get("PATH", "/usr/bin:/bin")
    return ":".join(dict.fromkeys([*path.split(":"), "/usr/sbin", "/sbin"]))


def _clean_env() -> dict[str, str]:
    # Daemons get a minimal environment: nothing of the caller's bus or locale leaks in.
    return {"PATH": _daemon_path(), "LANG": "C.UTF-8"}


def _unix_connectable(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def _is_lab_process(pid: int, root: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return str(root) in cmdline and alive(pid)


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root).rstrip("/") + "/"
    out = []
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            mount_point = line.split()[4].replace("\\040", " ")
            if mount_point == str(root) or mount_point.startswith(prefix):
                out.append(mount_point)
    except OSError:
        pass
    return sorted(out, key=len, reverse=True)
