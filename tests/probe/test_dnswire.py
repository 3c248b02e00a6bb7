"""The DNS codec: queries as RFC 1035 lays them out, answers parsed defensively."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impctl.model.dnswire import DnsFormatError, build_query, encode_name, parse_response

NAME = "cloud.imp.lab"
TXID = 0x1234


def header(txid: int = TXID, flags: int = 0x8180, qd: int = 1, an: int = 0) -> bytes:
    return struct.pack("!HHHHHH", txid, flags, qd, an, 0, 0)


def question(name: str = NAME, qtype: int = 1) -> bytes:
    return encode_name(name) + struct.pack("!HH", qtype, 1)


def a_record(owner: bytes, ip: str, rtype: int = 1, rdata: bytes | None = None) -> bytes:
    data = rdata if rdata is not None else bytes(int(x) for x in ip.split("."))
    return owner + struct.pack("!HHIH", rtype, 1, 60, len(data)) + data


PTR_QNAME = b"\xc0\x0c"  # compression pointer to the question's name (offset 12)


def test_query_layout() -> None:
    q = build_query(NAME, TXID)
    txid, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", q)
    assert (txid, flags, qd, an, ns, ar) == (TXID, 0x0100, 1, 0, 0, 0)  # RD set, one question
    assert q[12:] == b"\x05cloud\x03imp\x03lab\x00" + b"\x00\x01\x00\x01"


@pytest.mark.parametrize("bad", ["", ".", "a" * 64 + ".lab", ".".join(["abcdefgh"] * 32), "a..b"])
def test_query_refuses_bad_names(bad: str) -> None:
    with pytest.raises(DnsFormatError):
        build_query(bad, 1)


def test_query_refuses_bad_txid() -> None:
    with pytest.raises(DnsFormatError):
        build_query(NAME, 70000)


def test_answer_with_compressed_owner() -> None:
    msg = header(an=2) + question() + a_record(PTR_QNAME, "198.19.0.10") + a_record(PTR_QNAME, "198.19.0.11")
    answer = parse_response(msg, txid=TXID, name=NAME)
    assert answer.rcode == 0 and answer.rcode_name == "NOERROR"
    assert answer.addresses == ("198.19.0.10", "198.19.0.11")


def test_answer_through_a_cname_chain() -> None:
    target = encode_name("edge.cdn.lab")
    cname = PTR_QNAME + struct.pack("!HHIH", 5, 1, 60, len(target)) + target
    # the A record's owner points at the CNAME target (offset of its rdata)
    target_offset = 12 + len(question()) + 2 + 10
    msg = header(an=2) + question() + cname + a_record(struct.pack("!H", 0xC000 | target_offset), "198.19.0.12")
    assert parse_response(msg, txid=TXID, name=NAME).addresses == ("198.19.0.12",)


def test_name_match_ignores_case_and_trailing_dot() -> None:
    msg = header(an=1) + question("CLOUD.Imp.LAB") + a_record(PTR_QNAME, "198.19.0.10")
    assert parse_response(msg, txid=TXID, name="cloud.imp.lab.").addresses == ("198.19.0.10",)


def test_nxdomain_is_reported_not_raised() -> None:
    answer = parse_response(header(flags=0x8183) + question(), txid=TXID, name=NAME)
    assert answer.rcode_name == "NXDOMAIN" and answer.addresses == ()


def test_other_records_are_skipped() -> None:
    aaaa = PTR_QNAME + struct.pack("!HHIH", 28, 1, 60, 16) + bytes(16)
    msg = header(an=2) + question() + aaaa + a_record(PTR_QNAME, "198.19.0.10")
    assert parse_response(msg, txid=TXID, name=NAME).addresses == ("198.19.0.10",)


@pytest.mark.parametrize(
    ("msg", "why"),
    [
        (b"\x12\x34\x81", "shorter than a DNS header"),
        (header(txid=1) + question(), "transaction id"),
        (header(flags=0x0100) + question(), "not a response"),
        (header(flags=0x8980) + question(), "opcode"),
        (header() + question("other.lab"), "another question"),
        (header() + question(qtype=28), "another question"),
        (header(qd=2) + question() + question(), "questions"),
        (header(an=1) + question() + a_record(PTR_QNAME, "", rdata=b"\x01\x02\x03"), "A record with 3 bytes"),
        (header(an=1) + question() + PTR_QNAME + b"\x00\x01", "runs past the end"),
        (header(an=1) + question() + PTR_QNAME + struct.pack("!HHIH", 1, 1, 0, 40) + b"\x01", "runs past"),
        (header() + b"\x05clo", "runs past the end"),
        (header() + b"\xc0", "truncated compression pointer"),
        (header() + b"\xc0\x0c", "compression pointer loop"),
        (header() + b"\x80abc", "unsupported label type"),
    ],
)
def test_malformed_answers_raise_the_project_error(msg: bytes, why: str) -> None:
    with pytest.raises(DnsFormatError) as err:
        parse_response(msg, txid=TXID, name=NAME)
    assert why in err.value.message


def _valid() -> bytes:
    return header(an=1) + question() + a_record(PTR_QNAME, "198.19.0.10")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise_anything_else(data: bytes) -> None:
    try:
        answer = parse_response(data, txid=TXID, name=NAME)
    except DnsFormatError as err:
        assert err.message  # a reason a person can read
        return
    assert answer.txid == TXID  # only a response to our very query gets through


@settings(max_examples=600, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, 60))
def test_corrupted_answers_parse_or_raise_the_project_error(edits: list[tuple[int, int]], cut: int) -> None:
    msg = bytearray(_valid())
    for pos, value in edits:
        if pos < len(msg):
            msg[pos] = value
    data = bytes(msg[: len(msg) - cut])
    try:
        answer = parse_response(data, txid=TXID, name=NAME)
    except DnsFormatError:
        return
    assert all(len(a.split(".")) == 4 for a in answer.addresses)


# ---------------------------------------------------------------- AAAA (dual-stack probe)

AAAA = 28
CLOUD6 = "2001:db8:ff::10"


def aaaa_record(owner: bytes, ip: str, rdata: bytes | None = None) -> bytes:
    import ipaddress

    data = rdata if rdata is not None else ipaddress.IPv6Address(ip).packed
    return owner + struct.pack("!HHIH", AAAA, 1, 60, len(data)) + data


def _valid_aaaa() -> bytes:
    return header(an=2) + question(qtype=AAAA) + a_record(PTR_QNAME, "198.19.0.10") \
        + aaaa_record(PTR_QNAME, CLOUD6)


def test_aaaa_query_asks_for_type_28() -> None:
    query = build_query(NAME, TXID, AAAA)
    assert query[-4:] == struct.pack("!HH", AAAA, 1)
    with pytest.raises(DnsFormatError, match="not A or AAAA"):
        build_query(NAME, TXID, 15)


def test_aaaa_answer_gives_only_the_ipv6_addresses() -> None:
    answer = parse_response(_valid_aaaa(), txid=TXID, name=NAME, qtype=AAAA)
    assert answer.addresses == (CLOUD6,)


def test_an_a_answer_does_not_answer_an_aaaa_question() -> None:
    with pytest.raises(DnsFormatError, match="another question"):
        parse_response(_valid(), txid=TXID, name=NAME, qtype=AAAA)


def test_aaaa_record_of_the_wrong_size_is_malformed() -> None:
    msg = header(an=1) + question(qtype=AAAA) + aaaa_record(PTR_QNAME, "", rdata=b"\x20\x01\x0d\xb8")
    with pytest.raises(DnsFormatError, match="AAAA record with 4 bytes"):
        parse_response(msg, txid=TXID, name=NAME, qtype=AAAA)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, 60))
def test_corrupted_aaaa_answers_parse_or_raise_the_project_error(edits: list[tuple[int, int]], cut: int) -> None:
    import ipaddress

    msg = bytearray(_valid_aaaa())
    for pos, value in edits:
        if pos < len(msg):
            msg[pos] = value
    try:
        answer = parse_response(bytes(msg[: len(msg) - cut]), txid=TXID, name=NAME, qtype=AAAA)
    except DnsFormatError:
        return
    assert all(ipaddress.ip_address(a).version == 6 for a in answer.addresses)
