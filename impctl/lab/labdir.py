"""The lab directory on disk: its layout, the files written into it, lab.json and the lock.

lab.json records what a build has done so far: the prefix, the daemons' pids
as they are spawned, faults, and `complete`, set only once a build has
finished. A lab whose file lacks `complete` was cut short (a crash, a kill)
and is never "up", however many of its daemons still run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from impctl.lab import files
from impctl.lab.cloud import NM_ONLINE_BODY
from impctl.lab.topology import (
    CARRIER_WAIT_MS,
    CLOUD_HOST,
    CLOUD_IP,
    CLOUD_PORT,
    DNS64_UPSTREAM_PORT,
    DNS_RECORDS,
    DNS_RECORDS_DUAL,
    NAT64_IPV4,
    NAT64_POOL,
    NAT64_PREFIX,
    NAT64_TUN,
    NAT64_WKP,
    PROXY_HOST,
    PROXY_PASSWORD,
    PROXY_PORT,
    PROXY_USER,
    Topology,
    Uplink,
)


class LabFile:
    """lab.json of one lab: read, atomically replaced, updated under the lab's lock."""

    def __init__(self, topo: Topology) -> None:
        self.path = topo.lab_file
        self.lock_path = topo.lock_path

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.path)

    def set(self, key: str, value: Any, *, section: str | None = None) -> None:
        """Set `key` (in the dict `section`, if given); read-modify-write: callers that may
        race another process hold `locked`."""
        data = self.read()
        (data.setdefault(section, {}) if section else data)[key] = value
        self.write(data)

    def pids(self) -> dict[str, int]:
        return {name: int(pid) for name, pid in self.read().get("pids", {}).items()}

    def record_pid(self, name: str, pid: int) -> None:
        self.set(name, pid, section="pids")

    def complete(self) -> bool:
        return self.read().get("complete") is True

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The lab's exclusive lock: one up/down/fault bookkeeping at a time."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def make_dirs(topo: Topology) -> None:
    gw = topo.gw_dir
    for d in (topo.root, gw, topo.cloud_dir, topo.log_dir, topo.state_path.parent, topo.isp_dir,
              gw / "run" / "dbus", gw / "run" / "NetworkManager", topo.keyfile_dir,
              gw / "etc-nm" / "conf.d", gw / "etc-nm" / "dnsmasq-shared.d", gw / "var-nm",
              topo.lan_dir / "etc"):
        d.mkdir(parents=True, exist_ok=True)
    topo.root.chmod(0o755)


def remove(topo: Topology, *, keep_logs: bool = False) -> None:
    """The lab directory gone (with `keep_logs`, all of it but logs/, for the post-mortem)."""
    if not topo.root.exists():
        return
    if not keep_logs:
        shutil.rmtree(topo.root, ignore_errors=True)
        return
    for p in topo.root.iterdir():
        if p != topo.log_dir:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def empty_state_dir(topo: Topology) -> None:
    """Nothing left in impctl's state directory (the directory itself stays)."""
    if not topo.state_path.parent.exists():
        return
    for p in topo.state_path.parent.iterdir():
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def write_files(topo: Topology) -> None:
    """Every config the daemons read, the cloud's certificates and impctl's config."""
    gw = topo.gw_dir
    for own_run in (False, True):
        layer = topo.gw_etc_layer(own_run)
        # Mount points for what NM gets bound over its /etc.
        (layer / "NetworkManager").mkdir(parents=True, exist_ok=True)
        (layer / "hosts").write_text(files.hosts([]))
        target = "/run/NetworkManager/resolv.conf" if own_run else str(topo.nm_resolv_conf)
        link = layer / "resolv.conf"
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    lan_etc = topo.lan_dir / "etc"
    (lan_etc / "hosts").write_text(files.hosts([]))
    # The LAN device's DHCP client writes the file from its lease (impctl.lab.lanhooks).
    (lan_etc / "resolv.conf").unlink(missing_ok=True)
    (lan_etc / "resolv.conf").symlink_to(topo.lan_resolv_conf)
    (gw / "etc-nm" / "dnsmasq-shared.d" / "no-ping.conf").write_text(files.DNSMASQ_SHARED_NO_PING)
    for d in (topo.cloud_dir, topo.isp_dir):
        (d / "hosts").write_text(files.hosts(DNS_RECORDS) if not topo.ipv6
                                 else files.hosts((), DNS_RECORDS_DUAL))
        (d / "resolv.conf").write_text(files.resolv_conf(["127.0.0.1"]))
    (gw / "dbus.conf").write_text(files.dbus_config(str(topo.bus_socket)))
    (gw / "etc-nm" / "NetworkManager.conf").write_text(
        files.nm_config([u.ifname for u in topo.uplinks], CARRIER_WAIT_MS,
                        topo.connectivity_uri, NM_ONLINE_BODY.strip(), topo.lan_ifname))
    for u in topo.uplinks:
        write_keyfile(topo, u)
    write_lan_keyfile(topo)
    from impctl.lab import pki  # cryptography's x509: only `up` needs it, not every impctl start

    pki.make_ca_and_cert(topo.cloud_dir, [CLOUD_HOST, PROXY_HOST], CLOUD_IP)
    (topo.cloud_dir / "tinyproxy.conf").write_text(files.tinyproxy_config(
        listen_ip=None if topo.ipv6 else CLOUD_IP, port=PROXY_PORT, user=PROXY_USER, password=PROXY_PASSWORD,
        pid_file=str(topo.cloud_dir / "tinyproxy.pid"),
        log_file=str(topo.log_dir / "tinyproxy.log"), connect_ports=[443, 80]))
    for u in topo.uplinks:
        if u.nat64:
            write_nat64_files(topo, u)
    identifiers = {"eth0": "eth0", "wl0": "wlan0", "cell0": "wwan0"}
    if topo.modem:
        identifiers["cell1"] = "ttyUSB0"
    topo.config_path.write_text(files.impctl_config(
        cloud_host=CLOUD_HOST, cloud_port=CLOUD_PORT, ca_file=str(topo.ca_file),
        classes={u.ifname: u.cls for u in topo.uplinks}, identifiers=identifiers))


def unbound_conf(topo: Topology, u: Uplink) -> Path:
    return topo.isp_dir / f"unbound-{u.letter}.conf"


def tayga_conf(topo: Topology, u: Uplink) -> Path:
    return topo.isp_dir / f"tayga-{u.letter}.conf"


def write_nat64_files(topo: Topology, u: Uplink) -> None:
    """The IPv6-only uplink's ISP: its DNS64 resolver's and its NAT64's configs, in the lab dir."""
    tayga_dir = topo.isp_dir / f"tayga-{u.letter}"
    tayga_dir.mkdir(parents=True, exist_ok=True)
    unbound_conf(topo, u).write_text(files.unbound_config(
        listen_ip=u.router_ip6, upstream=f"127.0.0.1@{DNS64_UPSTREAM_PORT}",
        dns64_prefix=NAT64_WKP, directory=str(topo.isp_dir),
        pid_file=str(topo.isp_dir / f"unbound-{u.letter}.pid")))
    tayga_conf(topo, u).write_text(files.tayga_config(
        tun=NAT64_TUN, ipv4_addr=NAT64_IPV4, prefix=NAT64_PREFIX, pool=NAT64_POOL,
        data_dir=str(tayga_dir)))


def keyfile_text(topo: Topology, u: Uplink) -> str:
    return files.keyfile(topo.prefix, u.profile_id, u.ifname, u.metric, ipv4=u.ipv4, ipv6=u.ipv6)


def write_keyfile(topo: Topology, u: Uplink) -> Path:
    """(Re)write an uplink's lab profile; keyfiles must be root-owned 0600 or NM skips them."""
    return _write_0600(topo.keyfile_path(u), keyfile_text(topo, u))


def lan_keyfile_text(topo: Topology) -> str:
    return files.lan_keyfile(topo.prefix, topo.lan_profile_id, topo.lan_ifname)


def write_lan_keyfile(topo: Topology) -> Path:
    return _write_0600(topo.lan_keyfile_path, lan_keyfile_text(topo))


def lan_keyfile_intact(topo: Topology) -> bool:
    return _intact(topo.lan_keyfile_path, lan_keyfile_text(topo))


def _write_0600(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def _intact(path: Path, text: str) -> bool:
    try:
        return path.read_text() == text and path.stat().st_mode & 0o777 == 0o600
    except OSError:
        return False


def keyfile_intact(topo: Topology, u: Uplink) -> bool:
    """The uplink's keyfile is what the lab wrote, with the mode NM demands."""
    return _intact(topo.keyfile_path(u), keyfile_text(topo, u))
