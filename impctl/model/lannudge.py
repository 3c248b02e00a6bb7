"""A nudge to a LAN device whose forwarded TCP flow the gateway just cut off, so that it hears of it now.

Pure: what to send and to whom; `impctl.backends.sessions` sends it.

Why. After an upstream blackhole the switch comes seconds into the outage.
By then a LAN device's TCP is in retransmission back-off (RTO 0.2, 0.4,
0.8, 1.6, 3.2 s …), and it hears of the new path only at its next
retransmission, up to as long again after the switch (lab: 3 s). The
gateway cannot end a LAN device's socket as it ends its own. It can make
the device send at once: a SYN on an established connection, from the
flow's peer, is answered with an ACK straight away (RFC 5961 §4.2, the
challenge ACK; a stack older than that resets the connection or ACKs as
well). That ACK carries the device's own sequence numbers. Its conntrack
entry deleted, it leaves NAT'd through the new primary, and the cloud,
which knows no such flow, answers with a reset whose sequence number is
exactly the one the device expects (RFC 793: a reset to a segment with ACK
takes the segment's acknowledgement number as its sequence number). The
device's application gets ECONNRESET and reconnects through the new
primary, as it would have at its next retransmission.

The SYN goes out on the LAN port at layer 2 (AF_PACKET, to the device's
MAC from the ARP table), beside the gateway's IP stack: sent as an IP
packet it would pass the gateway's conntrack and create an entry for the
device's answer that is never NAT'd. One packet per flow, only to
devices in the ARP table, only for established TCP flows that were NAT'd
to the uplink left. If the cloud drops the ACK silently (a firewall in
front of it that drops packets of unknown flows), nothing is lost: the
device recovers at its own next retransmission, as without the nudge.
IPv4 only: the ARP table is IPv4's, and LAN flows over IPv6 are routed,
not NAT'd, on a gateway.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Mapping

from impctl.model.ctwire import Entry
from impctl.model.record import record

ETH_P_IP = 0x0800
_ATF_COM = 0x02  # a complete ARP entry (linux/if_arp.h)
_IPPROTO_TCP = 6
_TCP_SYN = 0x02
_TTL = 64
_WINDOW = 65535
_IP_DF = 0x4000
# A gateway forwards a few hundred flows; this bounds what one switch sends.
MAX_NUDGES = 4096


@record
class Neighbour:
    ifname: str
    mac: bytes  # 6 bytes


@record
class Nudge:
    """One SYN, from the flow's peer to the device, sent on `ifname` to `mac`."""

    ifname: str
    mac: bytes
    peer: ipaddress.IPv4Address
    peer_port: int
    device: ipaddress.IPv4Address
    device_port: int


def arp_table(text: str) -> dict[ipaddress.IPv4Address, Neighbour]:
    """The complete entries of /proc/net/arp; lines that do not parse are skipped.

        IP address       HW type     Flags       HW address            Mask     Device
        10.42.0.20       0x1         0x2         02:00:00:00:00:14     *        lan0
    """
    table: dict[ipaddress.IPv4Address, Neighbour] = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) != 6:
            continue
        ip, _hwtype, flags, hw, _mask, ifname = fields
        try:
            address = ipaddress.IPv4Address(ip)
            complete = int(flags, 16) & _ATF_COM
            mac = bytes.fromhex(hw.replace(":", ""))
        except ValueError:
            continue
        if complete and len(mac) == 6 and any(mac):
            table[address] = Neighbour(ifname, mac)
    return table


def nudges(ended: Iterable[Entry], neighbours: Mapping[ipaddress.IPv4Address, Neighbour]) -> list[Nudge]:
    """One nudge per established TCP flow ended whose device is a known IPv4 neighbour."""
    found: list[Nudge] = []
    for entry in ended:
        device, peer = entry.orig_src, entry.orig_dst
        if not entry.tcp_established or entry.sport is None or entry.dport is None:
            continue
        if not isinstance(device, ipaddress.IPv4Address) or not isinstance(peer, ipaddress.IPv4Address):
            continue
        neighbour = neighbours.get(device)
        if neighbour is None:
            continue
        found.append(Nudge(neighbour.ifname, neighbour.mac, peer, entry.dport, device, entry.sport))
        if len(found) >= MAX_NUDGES:
            break
    return found


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def syn_packet(nudge: Nudge, seq: int, ident: int) -> bytes:
    """The IPv4 packet (header and TCP SYN, no options, no payload), checksums filled in."""
    src, dst = nudge.peer.packed, nudge.device.packed
    tcp = struct.pack("!HHIIBBHHH", nudge.peer_port, nudge.device_port, seq & 0xFFFFFFFF, 0,
                      5 << 4, _TCP_SYN, _WINDOW, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, _IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), ident & 0xFFFF, _IP_DF, _TTL,
                         _IPPROTO_TCP, 0, src, dst)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + tcp
