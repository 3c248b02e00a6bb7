"""The daemon process's own parts (impctl.cli.daemon_main): its cache of netlink facts, its start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from test_daemon_usecase import run_async

from impctl.backends.netlink import Netlink
from impctl.cli.daemon_main import LINK_FACTS_MAX_AGE_S, EventCachedLinks
from impctl.model.codes import ExitCode
from impctl.model.events import IPChanged, LinkChanged, Resync
from impctl.model.netfacts import IPv4Facts, LinkState


class CountingLinks:
    def __init__(self) -> None:
        self.reads: list[str] = []
        self.address = "198.18.1.50/24"

    async def link_state(self, ifname: str) -> LinkState:
        self.reads.append(f"link {ifname}")
        return LinkState(ifname, 2, True, True, "UP", "veth")

    async def ipv4(self, ifname: str) -> IPv4Facts:
        self.reads.append(f"ipv4 {ifname}")
        return IPv4Facts((self.address,), "198.18.1.1", False)


@run_async
async def test_facts_are_read_once_until_an_event_about_the_uplink() -> None:
    real = CountingLinks()
    now = [0.0]
    links = EventCachedLinks(real, clock=lambda: now[0])
    for _ in range(3):
        await links.ipv4("eth0")
        await links.link_state("eth0")
    assert real.reads == ["ipv4 eth0", "link eth0"]
    real.address = "198.18.1.51/24"
    links.invalidate(IPChanged("wlan0", 1.0))  # another uplink's event: eth0's facts stand
    assert (await links.ipv4("eth0")).addresses == ("198.18.1.50/24",)
    links.invalidate(IPChanged("eth0", 1.0))
    assert (await links.ipv4("eth0")).addresses == ("198.18.1.51/24",)
    links.invalidate(LinkChanged("eth0", 2, False, 2.0))
    await links.link_state("eth0")
    assert real.reads.count("link eth0") == 2


@run_async
async def test_a_resync_or_age_drops_every_entry() -> None:
    real = CountingLinks()
    now = [0.0]
    links = EventCachedLinks(real, clock=lambda: now[0])
    await links.ipv4("eth0")
    await links.ipv4("wlan0")
    links.invalidate(Resync("ENOBUFS", 1.0))
    await links.ipv4("eth0")
    await links.ipv4("wlan0")
    assert real.reads == ["ipv4 eth0", "ipv4 wlan0"] * 2
    now[0] = LINK_FACTS_MAX_AGE_S + 0.1  # no event for that long: read again anyway
    await links.ipv4("eth0")
    assert real.reads[-1] == "ipv4 eth0" and len(real.reads) == 5


def test_a_bad_config_at_start_is_one_line_and_the_config_exit_code(tmp_path: Path) -> None:
    config = tmp_path / "impctl.toml"
    config.write_text("[daemon]\nprobe_failures = 1.5\n")
    done = subprocess.run([sys.executable, "-m", "impctl.cli.daemon_main", "--state", str(tmp_path / "s.json"),
                           "--config", str(config), "--config-explicit"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == int(ExitCode.STATE_ERROR)
    assert done.stderr == f"error: {config}: daemon.probe_failures: must be an integer (1-10)\n"
    assert done.stdout == ""


def test_a_section_that_is_not_a_table_is_named_in_the_line(tmp_path: Path) -> None:
    config = tmp_path / "impctl.toml"
    config.write_text("daemon = 3\n")
    done = subprocess.run([sys.executable, "-m", "impctl", "--config", str(config), "--state",
                           str(tmp_path / "s.json"), "daemon"], capture_output=True, text=True, timeout=30)
    assert done.returncode == int(ExitCode.STATE_ERROR)
    assert done.stderr == f"error: {config}: [daemon] must be a table\n"  # not eaten as markup


@run_async
async def test_netlink_reads_do_not_pile_up_in_pyroute2s_socket() -> None:
    """pyroute2 0.9 keeps the acknowledgement of every "get": the socket is renewed before many do.

    Read-only, on this namespace's loopback; counters are the read still made through
    pyroute2 (links, addresses and routes have a decoder of their own).
    """
    links = Netlink()
    kept: list[int] = []
    for _ in range(3 * Netlink.REQUESTS_PER_SOCKET):
        await links.counters("lo")
        ipr = links._ipr
        if ipr is not None:
            kept.append(sum(q.qsize() for q in ipr.msg_queue.queues.values()))
    await links.aclose()
    assert kept and max(kept) < Netlink.REQUESTS_PER_SOCKET
