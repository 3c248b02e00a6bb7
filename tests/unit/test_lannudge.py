"""The nudge to a LAN device whose flow was cut (pure, no root): whom, and the packet's bytes.

That the packet does its job (the device answers, the cloud resets it, the
device's session comes back through the new uplink) is shown in the lab:
tests/daemon/test_app_failover_lab.py.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from impctl.model import ctwire, lannudge

ARP = """IP address       HW type     Flags       HW address            Mask     Device
10.42.0.20       0x1         0x2         02:00:00:00:00:14     *        lan0
10.42.0.30       0x1         0x0         00:00:00:00:00:00     *        lan0
10.42.0.40       0x1         0x2         02:00:00:00:00:28     *        br-lan
garbage line
10.42.0.50       0x1         0xZZ        02:00:00:00:00:32     *        lan0
"""

V4 = ipaddress.IPv4Address


def flow(device: str, peer: str, state: int = ctwire.TCP_CONNTRACK_ESTABLISHED,
         proto: int = socket.IPPROTO_TCP) -> ctwire.Entry:
    return ctwire.Entry(socket.AF_INET, ipaddress.ip_address(device), ipaddress.ip_address("198.18.1.50"),
                        b"\x04\x00\x01\x80", b"", ipaddress.ip_address(peer), proto, 40000, 1883, state)


def test_the_arp_table_gives_complete_entries_only() -> None:
    table = lannudge.arp_table(ARP)
    assert table == {V4("10.42.0.20"): lannudge.Neighbour("lan0", bytes.fromhex("020000000014")),
                     V4("10.42.0.40"): lannudge.Neighbour("br-lan", bytes.fromhex("020000000028"))}


def test_only_established_tcp_flows_of_known_ipv4_neighbours_are_nudged() -> None:
    table = lannudge.arp_table(ARP)
    ended = [flow("10.42.0.20", "198.19.0.10"),
             flow("10.42.0.40", "198.19.0.10", state=7),                 # TIME_WAIT: nothing to tell
             flow("10.42.0.40", "198.19.0.10", proto=socket.IPPROTO_UDP),
             flow("10.42.0.30", "198.19.0.10"),                          # incomplete ARP entry
             flow("10.42.0.99", "198.19.0.10"),                          # not a neighbour
             flow("fd00::20", "2001:db8::10")]
    assert lannudge.nudges(ended, table) == [
        lannudge.Nudge("lan0", bytes.fromhex("020000000014"), V4("198.19.0.10"), 1883, V4("10.42.0.20"), 40000)]


def test_one_switch_sends_a_bounded_number() -> None:
    table = {V4("10.42.0.20"): lannudge.Neighbour("lan0", b"\x02" * 6)}
    assert len(lannudge.nudges([flow("10.42.0.20", "198.19.0.10")] * 10_000, table)) == lannudge.MAX_NUDGES


def _sum16(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data + b"\0" * (len(data) % 2)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_the_syn_comes_from_the_flows_peer_to_the_device_with_valid_checksums() -> None:
    nudge = lannudge.Nudge("lan0", b"\x02" * 6, V4("198.19.0.10"), 1883, V4("10.42.0.20"), 40000)
    packet = lannudge.syn_packet(nudge, seq=0xDEADBEEF, ident=7)
    assert len(packet) == 40
    ver_ihl, _tos, total, ident, frag, ttl, proto, _csum, src, dst = struct.unpack("!BBHHHBBH4s4s", packet[:20])
    assert (ver_ihl, total, ident, frag, ttl, proto) == (0x45, 40, 7, 0x4000, 64, socket.IPPROTO_TCP)
    assert (V4(src), V4(dst)) == (V4("198.19.0.10"), V4("10.42.0.20"))
    sport, dport, seq, ack, offset, flags = struct.unpack("!HHIIBB", packet[20:34])
    assert (sport, dport, seq, ack, offset >> 4, flags) == (1883, 40000, 0xDEADBEEF, 0, 5, 0x02)
    # A correct Internet checksum makes the one's-complement sum of what it covers 0xFFFF.
    assert _sum16(packet[:20]) == 0xFFFF
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, 20)
    assert _sum16(pseudo + packet[20:]) == 0xFFFF


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_fuzz_any_arp_text_parses(text: str) -> None:
    for address, neighbour in lannudge.arp_table("header\n" + text).items():
        assert isinstance(address, V4) and len(neighbour.mac) == 6
