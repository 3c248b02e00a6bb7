"""A minimal DNS wire codec (RFC 1035): one A (or AAAA, RFC 3596) query out, its answer's
addresses in.

Pure. The probe needs only "does this server, asked through this interface,
give an address for this name", so there is no recursion, no EDNS, no TCP
fallback. Parsing treats the response as hostile: anything malformed raises
`DnsFormatError` (a project error), never IndexError/struct.error/UnicodeError.
"""

from __future__ import annotations

import ipaddress
import struct

from impctl.model.errors import ImpctlError
from impctl.model.record import record

TYPE_A = 1
TYPE_CNAME = 5
TYPE_AAAA = 28
_ADDRESS_BYTES = {TYPE_A: 4, TYPE_AAAA: 16}
CLASS_IN = 1
_HEADER = struct.Struct("!HHHHHH")
_MAX_POINTER_JUMPS = 64  # a loop of compression pointers must not hang the parser

RCODE_NAMES = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
}


class DnsFormatError(ImpctlError):
    """A DNS message that cannot be built or parsed."""

    kind = "dns_format"


@record
class DnsAnswer:
    txid: int
    rcode: int
    truncated: bool
    addresses: tuple[str, ...]  # A (or AAAA) records of the answer section, in order

    @property
    def rcode_name(self) -> str:
        return RCODE_NAMES.get(self.rcode, f"RCODE{self.rcode}")


def encode_name(name: str) -> bytes:
    """A domain name as length-prefixed labels; IDNA for non-ASCII names."""
    text = name.rstrip(".")
    if not text:
        raise DnsFormatError("empty name")
    out = bytearray()
    for label in text.split("."):
        try:
            raw = label.encode("ascii") if label.isascii() else label.encode("idna")
        except UnicodeError as err:
            raise DnsFormatError(f"cannot encode label {label!r}: {err}") from None
        if not 1 <= len(raw) <= 63:
            raise DnsFormatError(f"label {label!r} must be 1-63 bytes")
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > 255:
        raise DnsFormatError("name longer than 255 bytes")
    return bytes(out)


def build_query(name: str, txid: int, qtype: int = TYPE_A) -> bytes:
    """A recursive (RD) query for the A (or AAAA) record of `name`."""
    if not 0 <= txid <= 0xFFFF:
        raise DnsFormatError("transaction id must be 0-65535")
    if qtype not in _ADDRESS_BYTES:
        raise DnsFormatError(f"query type {qtype} is not A or AAAA")
    header = _HEADER.pack(txid, 0x0100, 1, 0, 0, 0)
    return header + encode_name(name) + struct.pack("!HH", qtype, CLASS_IN)


def _read_name(msg: bytes, offset: int) -> tuple[str, int]:
    """The name at `offset` (following compression pointers) and the offset after it."""
    labels: list[str] = []
    end: int | None = None
    jumps = 0
    pos = offset
    while True:
        if pos >= len(msg):
            raise DnsFormatError("name runs past the end of the message")
        length = msg[pos]
        if length & 0xC0 == 0xC0:
            if pos + 1 >= len(msg):
                raise DnsFormatError("truncated compression pointer")
            if end is None:
                end = pos + 2
            jumps += 1
            if jumps > _MAX_POINTER_JUMPS:
                raise DnsFormatError("compression pointer loop")
            pos = ((length & 0x3F) << 8) | msg[pos + 1]
            continue
        if length & 0xC0:
            raise DnsFormatError(f"unsupported label type 0x{length:02x}")
        if length == 0:
            pos += 1
            break
        if pos + 1 + length > len(msg):
            raise DnsFormatError("label runs past the end of the message")
        labels.append(msg[pos + 1 : pos + 1 + length].decode("ascii", "replace").lower())
        pos += 1 + length
        if sum(len(label) + 1 for label in labels) > 255:
            raise DnsFormatError("name longer than 255 bytes")
    return ".".join(labels), (end if end is not None else pos)


def _address(rdata: bytes) -> str:
    if len(rdata) == 4:
        return ".".join(str(b) for b in rdata)
    return ipaddress.IPv6Address(rdata).compressed


def parse_response(msg: bytes, *, txid: int, name: str, qtype: int = TYPE_A) -> DnsAnswer:
    """Parse the answer to `build_query(name, txid, qtype)`.

    Checks it is a response to that very question (id, QR bit, question name
    and type), so a stray or spoofed datagram is rejected rather than believed.
    """
    if len(msg) < _HEADER.size:
        raise DnsFormatError(f"message of {len(msg)} bytes is shorter than a DNS header")
    rid, flags, qdcount, ancount, _nscount, _arcount = _HEADER.unpack_from(msg, 0)
    if rid != txid:
        raise DnsFormatError(f"transaction id {rid} does not match the query's {txid}")
    if not flags & 0x8000:
        raise DnsFormatError("message is a query, not a response")
    if (flags >> 11) & 0xF != 0:
        raise DnsFormatError("response to an opcode other than QUERY")
    rcode = flags & 0xF
    truncated = bool(flags & 0x0200)
    pos = _HEADER.size
    want = name.rstrip(".").lower()
    if qdcount != 1 and rcode == 0:
        raise DnsFormatError(f"response carries {qdcount} questions, expected 1")
    for _ in range(qdcount):
        qname, pos = _read_name(msg, pos)
        if pos + 4 > len(msg):
            raise DnsFormatError("question runs past the end of the message")
        got_type, qclass = struct.unpack_from("!HH", msg, pos)
        pos += 4
        if qname != want or got_type != qtype or qclass != CLASS_IN:
            raise DnsFormatError(f"response is for another question ({qname!r} type {got_type})")
    addresses: list[str] = []
    for _ in range(ancount):
        _rname, pos = _read_name(msg, pos)
        if pos + 10 > len(msg):
            raise DnsFormatError("resource record header runs past the end of the message")
        rtype, rclass, _ttl, rdlength = struct.unpack_from("!HHIH", msg, pos)
        pos += 10
        if pos + rdlength > len(msg):
            raise DnsFormatError("resource record data runs past the end of the message")
        if rtype == qtype and rclass == CLASS_IN:
            if rdlength != _ADDRESS_BYTES[qtype]:
                kind = "A" if qtype == TYPE_A else "AAAA"
                raise DnsFormatError(f"{kind} record with {rdlength} bytes of data")
            addresses.append(_address(msg[pos : pos + rdlength]))
        # Owner names are not matched against the question: a CNAME chain
        # puts the A records under the canonical name, and a recursive
        # server's answer section holds only that chain.
        pos += rdlength
    return DnsAnswer(txid=rid, rcode=rcode, truncated=truncated, addresses=tuple(addresses))
