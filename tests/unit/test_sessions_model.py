"""The socket-diagnostics codec and the choice of what to end at a switch (pure, no root)."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impctl.model import sockdiag
from impctl.model.sessions import conntrack_to_end, end_on_switch

UPLINK = sockdiag.local_addresses(["198.18.1.50/24"])


def _msg(*, family: int = socket.AF_INET, state: int = 1, src: str = "198.18.1.50", dst: str = "198.19.0.10",
         sport: int = 40000, dport: int = 443, ifindex: int = 0, cookie: bytes = b"\x01" * 8, seq: int = 7) -> bytes:
    """A SOCK_DIAG_BY_FAMILY reply as the kernel lays it out (independently of the codec's Structs)."""
    def raw(text: str) -> bytes:
        addr = ipaddress.ip_address(text)
        return addr.packed.ljust(16, b"\0")

    body = bytes([family, state, 0, 0]) + sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    body += raw(src) + raw(dst) + struct.pack("=I", ifindex) + cookie + struct.pack("=IIIII", 0, 0, 0, 0, 99)
    return struct.pack("=IHHII", 16 + len(body), sockdiag.SOCK_DIAG_BY_FAMILY, 2, seq, 0) + body


def _done(seq: int = 7) -> bytes:
    return struct.pack("=IHHII", 20, sockdiag.NLMSG_DONE, 2, seq, 0) + b"\0\0\0\0"


def test_a_dumped_socket_parses_with_its_addresses_ports_device_and_cookie() -> None:
    replies = list(sockdiag.parse_replies(_msg(ifindex=3) + _done(), socket.IPPROTO_TCP))
    assert [r.done for r in replies] == [False, True]
    sock = replies[0].sock
    assert sock is not None
    assert (str(sock.id.local), sock.id.sport, str(sock.id.remote), sock.id.dport) == (
        "198.18.1.50", 40000, "198.19.0.10", 443)
    assert sock.id.bound_ifindex == 3 and sock.id.cookie == b"\x01" * 8 and sock.state == 1


def test_destroy_sends_back_the_dumped_id_unchanged() -> None:
    (reply,) = sockdiag.parse_replies(_msg(cookie=b"abcdefgh"), socket.IPPROTO_TCP)
    assert reply.sock is not None
    request = sockdiag.destroy_request(reply.sock, seq=9)
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", request)
    assert (length, kind, seq) == (len(request), sockdiag.SOCK_DESTROY, 9)
    assert flags == sockdiag.NLM_F_REQUEST | sockdiag.NLM_F_ACK
    # The sockid of the request is byte for byte the one in the dump (after family/state/timer/retrans).
    assert request[16 + 8:] == _msg(cookie=b"abcdefgh")[16 + 4:16 + 4 + sockdiag.SOCKID_LEN]
    assert request[16] == socket.AF_INET and request[17] == socket.IPPROTO_TCP


def test_dump_request_asks_for_a_dump_of_the_states_given() -> None:
    request = sockdiag.dump_request(socket.AF_INET6, socket.IPPROTO_UDP, sockdiag.state_mask([1]), seq=3)
    _, kind, flags, _, _ = struct.unpack_from("=IHHII", request)
    family, proto, _, _, states = struct.unpack_from("=BBBBI", request, 16)
    assert (kind, flags & sockdiag.NLM_F_DUMP, family, proto, states) == (
        sockdiag.SOCK_DIAG_BY_FAMILY, sockdiag.NLM_F_DUMP, socket.AF_INET6, socket.IPPROTO_UDP, 0b10)


def test_an_error_reply_carries_the_negative_errno() -> None:
    data = struct.pack("=IHHII", 36, sockdiag.NLMSG_ERROR, 0, 5, 0) + struct.pack("=i", -1) + bytes(16)
    (reply,) = sockdiag.parse_replies(data, socket.IPPROTO_TCP)
    assert (reply.seq, reply.error) == (5, -1)


def _sockets(data: bytes) -> list[sockdiag.DiagSocket]:
    return [r.sock for r in sockdiag.parse_replies(data, socket.IPPROTO_TCP) if r.sock is not None]


def test_only_unbound_sockets_with_the_uplinks_address_and_a_peer_are_ended() -> None:
    listed = _sockets(
        _msg(sport=1)                                   # ends: unbound, on the uplink, established
        + _msg(sport=2, ifindex=4)                      # bound to a device on purpose: kept
        + _msg(sport=3, src="198.18.2.60")              # another uplink's: kept
        + _msg(sport=4, state=10)                       # LISTEN: a server, no peer: kept
        + _msg(sport=5, state=6)                        # TIME_WAIT: done already
        + _msg(sport=6, state=2)                        # SYN_SENT: a connect stuck in its handshake: ends
        + _msg(sport=7, family=socket.AF_INET6, src="::ffff:198.18.1.50")  # IPv4 on an AF_INET6 socket: ends
    )
    assert [s.id.sport for s in sockdiag.to_end(listed, UPLINK)] == [1, 6, 7]


def test_udp_sockets_end_only_when_connected() -> None:
    listed = [r.sock for r in sockdiag.parse_replies(_msg(sport=1) + _msg(sport=2, state=7, dport=0),
                                                      socket.IPPROTO_UDP) if r.sock is not None]
    assert [s.id.sport for s in sockdiag.to_end(listed, UPLINK)] == [1]


def test_local_addresses_drop_prefixes_and_skip_what_does_not_parse() -> None:
    assert sockdiag.local_addresses(["198.18.1.50/24", "2001:db8::5/64", "junk", ""]) == {
        ipaddress.ip_address("198.18.1.50"), ipaddress.ip_address("2001:db8::5")}


@pytest.mark.parametrize("data", [
    struct.pack("=IHHII", 8, sockdiag.SOCK_DIAG_BY_FAMILY, 0, 1, 0),          # shorter than its header
    struct.pack("=IHHII", 400, sockdiag.SOCK_DIAG_BY_FAMILY, 0, 1, 0),        # longer than the buffer
    struct.pack("=IHHII", 20, sockdiag.SOCK_DIAG_BY_FAMILY, 0, 1, 0) + bytes(4),  # truncated inet_diag_msg
    struct.pack("=IHHII", 16, sockdiag.NLMSG_ERROR, 0, 1, 0),                 # error without its code
    _msg(family=99),
])
def test_malformed_replies_raise_the_codecs_own_error(data: bytes) -> None:
    with pytest.raises(sockdiag.DiagWireError):
        list(sockdiag.parse_replies(data, socket.IPPROTO_TCP))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600) | st.builds(lambda a, b: a + b, st.just(_msg()), st.binary(max_size=200)))
def test_fuzz_any_bytes_parse_or_raise_the_codecs_error(data: bytes) -> None:
    try:
        replies = list(sockdiag.parse_replies(data, socket.IPPROTO_TCP))
    except sockdiag.DiagWireError:
        return
    for reply in replies:
        assert reply.done or reply.error is not None or reply.sock is not None


def test_a_lost_uplink_always_ends_its_sessions_a_failback_only_for_the_classes_listed() -> None:
    assert end_on_switch(failback=False, left_class="ethernet", failback_classes=())
    assert end_on_switch(failback=True, left_class="cell", failback_classes=("cell",))
    assert not end_on_switch(failback=True, left_class="wifi", failback_classes=("cell",))


def test_conntrack_entries_end_only_for_flows_natd_to_the_uplink() -> None:
    lan, cloud, uplink = (ipaddress.ip_address(a) for a in ("10.42.0.20", "198.19.0.10", "198.18.1.50"))
    addresses = {uplink}
    assert conntrack_to_end(lan, uplink, addresses)          # LAN flow masqueraded/SNAT'd to the uplink
    assert not conntrack_to_end(uplink, uplink, addresses)   # the gateway's own: SOCK_DESTROY's job
    assert not conntrack_to_end(lan, cloud, addresses)       # not NAT'd to this uplink
    assert not conntrack_to_end(None, uplink, addresses)

