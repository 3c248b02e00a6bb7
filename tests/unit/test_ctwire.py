"""The conntrack dump codec (pure, no root): what it reads, what a delete sends back, bad bytes."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impctl.model import ctwire


def attr(kind: int, value: bytes, nested: bool = False) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind | (0x8000 if nested else 0)) + value
    return raw + bytes(-len(raw) % 4)


def ip_tuple(kind: int, src: str, dst: str, ports: tuple[int, int] = (40000, 1883)) -> bytes:
    ips = attr(ctwire.CTA_IP_V4_SRC, ipaddress.ip_address(src).packed) + attr(
        ctwire.CTA_IP_V4_DST, ipaddress.ip_address(dst).packed)
    proto = attr(ctwire.CTA_TUPLE_PROTO, attr(ctwire.CTA_PROTO_NUM, bytes([6]))
                 + attr(ctwire.CTA_PROTO_SRC_PORT, struct.pack("!H", ports[0]))
                 + attr(ctwire.CTA_PROTO_DST_PORT, struct.pack("!H", ports[1])), nested=True)
    return attr(kind, attr(ctwire.CTA_TUPLE_IP, ips, nested=True) + proto, nested=True)


def tcp_state(state: int) -> bytes:
    tcp = attr(ctwire.CTA_PROTOINFO_TCP, attr(ctwire.CTA_PROTOINFO_TCP_STATE, bytes([state])), nested=True)
    return attr(ctwire.CTA_PROTOINFO, tcp, nested=True)


def entry_msg(orig: tuple[str, str], reply: tuple[str, str], seq: int = 4, zone: bytes = b"",
              state: int = ctwire.TCP_CONNTRACK_ESTABLISHED) -> bytes:
    body = struct.pack("=BBH", socket.AF_INET, 0, 0) + ip_tuple(ctwire.CTA_TUPLE_ORIG, *orig)
    body += ip_tuple(ctwire.CTA_TUPLE_REPLY, *reply, ports=(1883, 40000)) + attr(3, struct.pack("!I", 0x19E))
    body += tcp_state(state) + zone
    return struct.pack("=IHHII", 16 + len(body), ctwire.MSG_NEW, 2, seq, 0) + body


LAN_FLOW = entry_msg(("10.42.0.20", "198.19.0.10"), ("198.19.0.10", "198.18.1.50"))


def test_an_entry_gives_its_original_source_and_reply_destination() -> None:
    done = struct.pack("=IHHII", 20, ctwire.NLMSG_DONE, 2, 4, 0) + bytes(4)
    replies = list(ctwire.parse_replies(LAN_FLOW + done))
    assert [r.done for r in replies] == [False, True]
    entry = replies[0].entry
    assert entry is not None
    assert (str(entry.orig_src), str(entry.reply_dst)) == ("10.42.0.20", "198.18.1.50")
    # What a nudge to the device needs: the flow as the device sees it, and that it is established.
    assert (str(entry.orig_dst), entry.proto, entry.sport, entry.dport) == ("198.19.0.10", 6, 40000, 1883)
    assert entry.tcp_state == ctwire.TCP_CONNTRACK_ESTABLISHED and entry.tcp_established


def test_a_closing_flow_is_not_established() -> None:
    time_wait = 7
    (reply,) = ctwire.parse_replies(entry_msg(("10.42.0.20", "198.19.0.10"), ("198.19.0.10", "198.18.1.50"),
                                              state=time_wait))
    assert reply.entry is not None and reply.entry.tcp_state == time_wait and not reply.entry.tcp_established


def test_a_delete_sends_back_the_original_tuple_and_zone_as_dumped() -> None:
    zone = attr(ctwire.CTA_ZONE, struct.pack("!H", 7))
    (reply,) = ctwire.parse_replies(entry_msg(("10.42.0.20", "198.19.0.10"), ("198.19.0.10", "198.18.1.50"),
                                              zone=zone))
    assert reply.entry is not None
    request = ctwire.delete_request(reply.entry, seq=11)
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", request)
    assert (length, kind, flags, seq) == (len(request), ctwire.MSG_DELETE, ctwire.NLM_F_REQUEST | ctwire.NLM_F_ACK, 11)
    assert request[16:20] == struct.pack("=BBH", socket.AF_INET, 0, 0)
    assert request[20:] == ip_tuple(ctwire.CTA_TUPLE_ORIG, "10.42.0.20", "198.19.0.10") + zone


def test_a_dump_request_asks_ctnetlink_for_every_entry_of_the_family() -> None:
    request = ctwire.dump_request(socket.AF_INET6, seq=2)
    _, kind, flags, _, _ = struct.unpack_from("=IHHII", request)
    assert (kind, flags & ctwire.NLM_F_DUMP, request[16]) == (ctwire.MSG_GET, ctwire.NLM_F_DUMP, socket.AF_INET6)


@pytest.mark.parametrize("data", [
    LAN_FLOW[:-3],                                                             # cut short
    struct.pack("=IHHII", 20, ctwire.MSG_NEW, 0, 1, 0) + struct.pack("=BBH", 99, 0, 0),  # odd family
    struct.pack("=IHHII", 20, ctwire.MSG_NEW, 0, 1, 0) + struct.pack("=BBH", 2, 0, 0),   # no tuple
    struct.pack("=IHHII", 16, ctwire.NLMSG_ERROR, 0, 1, 0),                   # error without its code
    struct.pack("=IHHII", 28, ctwire.MSG_NEW, 0, 1, 0) + struct.pack("=BBH", 2, 0, 0) + struct.pack("=HH", 2, 1),
])
def test_malformed_replies_raise_the_codecs_own_error(data: bytes) -> None:
    with pytest.raises(ctwire.CtWireError):
        list(ctwire.parse_replies(data))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600) | st.builds(lambda a, b: a + b, st.just(LAN_FLOW), st.binary(max_size=200)))
def test_fuzz_any_bytes_parse_or_raise_the_codecs_error(data: bytes) -> None:
    try:
        replies = list(ctwire.parse_replies(data))
    except ctwire.CtWireError:
        return
    for reply in replies:
        assert reply.done or reply.error is not None or reply.entry is not None
