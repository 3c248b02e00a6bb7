"""The lab's daemons: spawned in their namespaces, recorded in lab.json, awaited, killed.

dnsmasq per ISP, the cloud's servers and tinyproxy, the gateway's private
D-Bus system bus; NetworkManager (impctl.lab.nm) and the modem's daemons
(impctl.lab.modemctl) are spawned through the same `Daemons`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from impctl.lab import files
from impctl.lab.labdir import LabFile, tayga_conf, unbound_conf
from impctl.lab.proc import Bind, alive, kill_all, netns_argv, netns_pids, wait_for
from impctl.lab.sockets import tcp_ok, udp53_bound, unix_connectable
from impctl.lab.topology import (
    CLOUD_HTTP_PORT,
    CLOUD_IP,
    CLOUD_IP6,
    CLOUD_PORT,
    CLOUD_SESSION_PORT,
    DNS64_UPSTREAM_PORT,
    DNS_RECORDS,
    DNS_RECORDS_DUAL,
    LAN_RESOLV_CONF_ENV,
    PROXY_PORT,
    UP_TIMEOUT_S,
    Topology,
    Uplink,
)
from impctl.model.errors import LabError


class Daemons:
    """Spawns the lab's daemons and keeps their Popen objects, so this process can reap them."""

    def __init__(self, topo: Topology, labfile: LabFile) -> None:
        self.topo = topo
        self.labfile = labfile
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, netns: str, argv: Sequence[str], binds: Sequence[Bind], *,
              ro_sys: bool = False, env: dict[str, str] | None = None) -> int:
        """Start `name` in `netns` (logs in logs/NAME.log) and record its pid in lab.json."""
        log = open(self.topo.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                netns_argv(netns, argv, binds, ro_sys=ro_sys), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**clean_env(), **(env or {})},
            )
        finally:
            log.close()
        self.children[name] = proc
        # `ip netns exec`, `unshare` and `sh -c 'exec'` all exec: the pid is the daemon's.
        self.labfile.record_pid(name, proc.pid)
        return proc.pid

    def expect_alive(self, name: str) -> None:
        """A LabError with the tail of its log if a daemon this process started has exited."""
        proc = self.children.get(name)
        if proc is not None and proc.poll() is not None:
            tail = log_tail(self.topo.log_dir / f"{name}.log")
            raise LabError(f"{name} exited with status {proc.returncode}: {tail}")

    def reap(self, name: str, timeout_s: float = 5.0) -> None:
        """Forget a daemon this process started, collecting its exit status."""
        child = self.children.pop(name, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=timeout_s)

    def start_services(self) -> None:
        """dnsmasq in each ISP, the cloud and tinyproxy, the gateway's bus; ready for NM."""
        if self.topo.carrier:
            self._spawn_dnsmasq(self.topo.carrier, dhcp=False)
        for u in self.topo.uplinks:
            self._spawn_dnsmasq(u)
            if u.nat64:
                self._spawn_nat64(u)
        cloud_binds = self.topo.binds("cloud")
        cloud_dir = self.topo.cloud_dir
        ips = ["--ip", CLOUD_IP, *(["--ip", CLOUD_IP6] if self.topo.ipv6 else [])]
        self.spawn("cloud", self.topo.cloud_netns, [
            sys.executable, "-m", "impctl.lab.cloud", *ips,
            "--http-port", str(CLOUD_HTTP_PORT), "--tls-port", str(CLOUD_PORT),
            "--session-port", str(CLOUD_SESSION_PORT),
            "--cert", str(cloud_dir / "cloud.pem"), "--key", str(cloud_dir / "cloud.key"),
        ], cloud_binds, env={"PYTHONPATH": package_parent()})
        self.spawn("tinyproxy", self.topo.cloud_netns,
                   ["tinyproxy", "-d", "-c", str(cloud_dir / "tinyproxy.conf")], cloud_binds)
        self.spawn("dbus", self.topo.gw_netns, [
            "dbus-daemon", "--nofork", "--nopidfile",
            f"--config-file={self.topo.gw_dir / 'dbus.conf'}"], self.topo.binds("gw"))

        def bus_ready() -> bool:
            self.expect_alive("dbus")
            return unix_connectable(str(self.topo.bus_socket))

        wait_for("the lab's D-Bus system bus", bus_ready, UP_TIMEOUT_S)
        for u in [*self.topo.uplinks, *([self.topo.carrier] if self.topo.carrier else [])]:
            self._wait_dnsmasq(u)
            if u.nat64:
                self._wait_nat64(u)

    def start_lan_client(self) -> None:
        """The LAN device's DHCP client (pyroute2's), asking the gateway for a lease.

        It keeps its lease file in the LAN directory (its working directory) and
        writes resolv.conf from the lease (impctl.lab.lanhooks).
        """
        topo = self.topo
        hooks = ["configure_ip", "add_default_gw", "remove_default_gw", "remove_ip"]
        argv = [sys.executable, "-c", "import sys; from pyroute2.dhcp.cli import run; sys.exit(run())",
                *(f"--hook=pyroute2.dhcp.hooks.{h}" for h in hooks),
                "--hook=impctl.lab.lanhooks.write_resolv_conf", topo.lan_device_ifname]
        self.spawn("lan-dhcp", topo.lan_netns, argv,
                   [*topo.binds("lan"), f"cd {shlex.quote(str(topo.lan_dir))}"],
                   env={"PYTHONPATH": package_parent(), LAN_RESOLV_CONF_ENV: str(topo.lan_resolv_conf)})

    def _spawn_dnsmasq(self, u: Uplink, dhcp: bool = True) -> None:
        isp = self.topo.isp_dir
        self.spawn(u.dnsmasq, u.isp_netns, files.dnsmasq_argv(
            ifname=u.isp_ifname, router_ip=u.router_ip,
            pool=(f"198.18.{u.index}.100", f"198.18.{u.index}.199"),
            lease_file=str(isp / f"leases-{u.letter}"),
            pid_file=str(isp / f"dnsmasq-{u.letter}.pid"),
            log_file=str(self.topo.log_dir / f"dnsmasq-{u.letter}.queries.log"),
            records=DNS_RECORDS, records6=DNS_RECORDS_DUAL if u.ipv6 else (),
            router_ip6=u.router_ip6 if u.ipv6 else None,
            dns_port=DNS64_UPSTREAM_PORT if u.nat64 else None, dhcp=dhcp), self.topo.binds("isp"))

    def _spawn_nat64(self, u: Uplink) -> None:
        """DNS64 (unbound) and NAT64 (tayga) in the IPv6-only uplink's ISP, files in the lab dir."""
        isp, binds = self.topo.isp_dir, self.topo.binds("isp")
        # -d: in the foreground (our child, its log ours); -c: never the host's unbound.conf.
        self.spawn(u.unbound, u.isp_netns, ["unbound", "-d", "-c", str(unbound_conf(self.topo, u))],
                   binds)
        self.spawn(u.tayga, u.isp_netns, [
            "tayga", "--nodetach", "-c", str(tayga_conf(self.topo, u)),
            "--pidfile", str(isp / f"tayga-{u.letter}.pid")], binds)

    def _wait_nat64(self, u: Uplink) -> None:
        def ready() -> bool:
            self.expect_alive(u.unbound)
            self.expect_alive(u.tayga)
            return udp53_bound(u.isp_netns, u.router_ip6)

        wait_for(f"unbound (DNS64) in {u.isp_netns}", ready, UP_TIMEOUT_S)

    def _wait_dnsmasq(self, u: Uplink) -> None:
        pid_file = self.topo.isp_dir / f"dnsmasq-{u.letter}.pid"

        def ready() -> bool:
            self.expect_alive(u.dnsmasq)
            return pid_file.exists()

        wait_for(f"dnsmasq in {u.isp_netns}", ready, UP_TIMEOUT_S)

    def wait_cloud(self) -> None:
        """Until the cloud's HTTP and TLS ports and the proxy accept connections."""
        ips = [CLOUD_IP, *([CLOUD_IP6] if self.topo.ipv6 else [])]
        for ip in ips:
            for name, port in (("cloud", CLOUD_PORT), ("cloud", CLOUD_HTTP_PORT),
                               ("cloud", CLOUD_SESSION_PORT), ("tinyproxy", PROXY_PORT)):
                def listening(name: str = name, port: int = port, ip: str = ip) -> bool:
                    self.expect_alive(name)
                    return tcp_ok(self.topo.cloud_netns, ip, port)

                wait_for(f"{name} on {ip}:{port}", listening, UP_TIMEOUT_S)

    def kill_everything(self) -> None:
        """Kill every process in the lab's namespaces and every recorded daemon still ours."""
        pids: list[int] = []
        for ns in self.topo.namespaces:
            pids += netns_pids(ns)
        for pid in self.labfile.pids().values():
            # A recorded daemon outside its namespace would be a lab bug; still ours to stop,
            # but only if it is still the program we started.
            if pid not in pids and is_lab_process(pid, self.topo.root):
                pids.append(pid)
        kill_all(pids)
        for proc in self.children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2.0)
        self.children.clear()


def package_parent() -> str:
    """The directory holding the impctl package, for PYTHONPATH of the lab's Python daemons."""
    import impctl

    return str(Path(impctl.__file__).resolve().parent.parent)


def daemon_path() -> str:
    # sudo and some shells drop the sbin directories, where the daemons live.
    path = os.environ.get("PATH", "/usr/bin:/bin")
    return ":".join(dict.fromkeys([*path.split(":"), "/usr/sbin", "/sbin"]))


def clean_env() -> dict[str, str]:
    # Daemons get a minimal environment: nothing of the caller's bus or locale leaks in.
    return {"PATH": daemon_path(), "LANG": "C.UTF-8"}


def log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def is_lab_process(pid: int, root: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return str(root) in cmdline and alive(pid)
