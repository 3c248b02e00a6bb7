"""The lab's faults as a table: what each one is, as nft rules and iproute2 commands.

Pure: no I/O. `commands(uplink, active)` is everything that puts an uplink's
ISP into the state "exactly these faults active"; impctl.lab.faulting runs it.

Per uplink, in that uplink's ISP namespace only:

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

In the dual-stack lab (Lab(ipv6=True)) these keep their IPv4 meaning: blackhole
and dns-off match IPv4 only (`meta nfproto ipv4`), the others are IPv4 by what
they match (DHCPv4, the cloud's IPv4 address) or hit both (link-down). The
IPv6 faults, for uplinks of a dual-stack lab only:

blackhole6    the ISP drops every IPv6 packet from the gateway (NDP too):
              IPv6 connects time out, IPv4 is untouched
ra-off        the ISP sends no router advertisement (and ignores solicitations);
              the uplink's profile is re-activated, so the gateway is left
              without IPv6 address and IPv6 default route
dns6-off      the ISP's IPv6 DNS server is silent (queries dropped, no answer
              and no ICMP): lookups through it time out

The nft faults of an uplink live in one table of its ISP, `inet impctl_lab`,
rebuilt whole on every change in one `nft -f` transaction: a fault is removed
by writing the table without it, and no fault means no table.

Apart from faults, every ISP behaves like a real one (`isp_ruleset`, its own
table `inet impctl_isp`, written once at `up` and never touched by a fault):
it forwards only packets from its customer subnet (BCP38 source validation)
and masquerades what leaves towards the cloud (CGNAT-like), so the cloud
sees the ISP's address and a reply can only come back through the ISP that
carried the request. Both tables hook forward at the same priority; a packet
dropped by either is dropped, so the faults bite exactly as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from impctl.lab.topology import (
    CLOUD_HTTP_PORT,
    CLOUD_IP,
    CLOUD_PORT,
    ISP_IFNAME,
    ISP_UPLINK_IFNAME,
    NAT64_POOL,
    NAT64_PREFIX,
    NAT64_WKP,
    PROXY_PORT,
    Uplink,
)
from impctl.model.errors import LabError
from impctl.model.record import record

NFT_TABLE = "impctl_lab"
ISP_TABLE = "impctl_isp"
FAULTS = ("link-down", "blackhole", "dhcp-off", "dns-off", "cloud-closed", "proxy-down")
# Only in a dual-stack lab.
FAULTS6 = ("blackhole6", "ra-off", "dns6-off")
ALL_FAULTS = FAULTS + FAULTS6
# Base chains of the table, in this order; `fwd` would be an nft keyword, not a name.
CHAINS = ("input", "forward")
# Written only when a rule needs it, so the tables of the IPv4 faults stay as they were.
EXTRA_CHAINS = ("output",)

Awaits = Literal["carrier-loss", "no-address", "no-address6"]


@record
class Rule:
    chain: str  # one of CHAINS
    statement: str  # match and verdict, without the comment


@record
class Fault:
    kind: str
    rules: tuple[Rule, ...] = ()
    # The ISP's end of the link goes down.
    link_down: bool = False
    # NM must start a new activation for the fault to bite (a running lease outlives it)
    # and, once lifted, to recover at once rather than after its DHCP back-off.
    reactivate: bool = False
    # What shows the fault is in effect, seen from the gateway.
    awaits: Awaits | None = None


@record
class Command:
    argv: tuple[str, ...]
    input: str | None = None


def fault(kind: str, isp_ifname: str = ISP_IFNAME, dual_stack: bool = False) -> Fault:
    """The table's row for `kind`, for an ISP whose gateway-facing interface is `isp_ifname`;
    `dual_stack`: the ISP also serves IPv6, so the IPv4 faults say so in their match."""
    iif = f'iifname "{isp_ifname}"'
    v4 = f"{iif} meta nfproto ipv4" if dual_stack else iif
    v6 = f"{iif} meta nfproto ipv6"
    rows = {
        "link-down": Fault(kind, link_down=True, awaits="carrier-loss"),
        "blackhole": Fault(kind, (Rule("input", f"{v4} drop"), Rule("forward", f"{v4} drop"))),
        "dhcp-off": Fault(kind, (Rule("input", f"{iif} udp dport 67 drop"),),
                          reactivate=True, awaits="no-address"),
        "dns-off": Fault(kind, (Rule("input", f"{v4} udp dport 53 reject"),
                                Rule("input", f"{v4} tcp dport 53 reject with tcp reset"))),
        "cloud-closed": Fault(kind, (Rule("forward", f"{iif} ip daddr {CLOUD_IP} tcp dport "
                                      f"{{ {CLOUD_PORT}, {CLOUD_HTTP_PORT} }} reject with tcp reset"),)),
        "proxy-down": Fault(kind, (Rule("forward", f"{iif} ip daddr {CLOUD_IP} tcp dport "
                                    f"{PROXY_PORT} reject with tcp reset"),)),
        "blackhole6": Fault(kind, (Rule("input", f"{v6} drop"), Rule("forward", f"{v6} drop"))),
        # Solicitations ignored and unsolicited advertisements held back: a new activation
        # gets no prefix; a running one would keep its address for the prefix's lifetime.
        "ra-off": Fault(kind, (Rule("input", f"{iif} icmpv6 type nd-router-solicit drop"),
                               Rule("output", f'oifname "{isp_ifname}" icmpv6 type '
                                    "nd-router-advert drop")),
                        reactivate=True, awaits="no-address6"),
        "dns6-off": Fault(kind, (Rule("input", f"{v6} udp dport 53 drop"),
                                 Rule("input", f"{v6} tcp dport 53 drop"))),
    }
    if kind not in rows:
        raise LabError(f"unknown fault {kind!r}: use one of {', '.join(FAULTS)} (IPv4), "
                       f"{', '.join(FAULTS6)} (IPv6, dual-stack lab) or restore")
    return rows[kind]


def canonical(active: Iterable[str]) -> tuple[str, ...]:
    """The active faults once each, in ALL_FAULTS order (so the ruleset does not depend on
    history)."""
    wanted = set(active)
    for kind in wanted:
        fault(kind)
    return tuple(k for k in ALL_FAULTS if k in wanted)


def ruleset(active: Iterable[str], isp_ifname: str = ISP_IFNAME, dual_stack: bool = False) -> str:
    """An `nft -f` script that leaves the ISP's fault table holding exactly `active`'s rules.

    The table is first declared (a no-op if it exists) and deleted, so the script
    works whatever was there and replaces the table atomically.
    """
    lines = [f"table inet {NFT_TABLE} {{}}", f"delete table inet {NFT_TABLE}"]
    rules = [(kind, r) for kind in canonical(active)
             for r in fault(kind, isp_ifname, dual_stack).rules]
    if not rules:
        return "\n".join(lines) + "\n"
    lines.append(f"table inet {NFT_TABLE} {{")
    chains = [*CHAINS, *(c for c in EXTRA_CHAINS if any(r.chain == c for _, r in rules))]
    for chain in chains:
        lines.append(f"  chain {chain} {{")
        lines.append(f"    type filter hook {chain} priority 0; policy accept;")
        lines += [f'    {r.statement} comment "{kind}"' for kind, r in rules if r.chain == chain]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def commands(u: Uplink, active: Iterable[str]) -> list[Command]:
    """The commands that put `u`'s ISP into the state "exactly `active`" (any previous state)."""
    kinds = canonical(active)
    down = any(fault(k, u.isp_ifname).link_down for k in kinds)
    return [
        Command(("ip", "netns", "exec", u.isp_netns, "nft", "-f", "-"),
                ruleset(kinds, u.isp_ifname, u.ipv6)),
        Command(("ip", "-n", u.isp_netns, "link", "set", u.isp_ifname, "down" if down else "up")),
    ]


def isp_ruleset(subnet: str, isp_ifname: str = ISP_IFNAME,
                upstream_ifname: str = ISP_UPLINK_IFNAME, *, prefix6: str | None = None,
                nat64: tuple[str, str, str] | None = None) -> str:
    """An `nft -f` script giving an ISP its permanent table: source validation and NAT.

    `subnet` is the ISP's customer subnet (what its DHCP hands out). With
    `prefix6` (its customer /64) the ISP is dual-stack: IPv6 sources are
    validated too and IPv6 is routed, never NAT'd, as real ISPs do. `nat64`
    (well-known prefix, tayga's prefix, tayga's IPv4 pool) maps the well-known
    prefix onto tayga's (which refuses lab IPv4 under the well-known one) and
    leaves the pool's addresses un-NAT'd: the cloud sees the NAT64 pool.
    """
    iif, oif = f'iifname "{isp_ifname}"', f'oifname "{upstream_ifname}"'
    lines = [
        f"table inet {ISP_TABLE} {{}}",
        f"delete table inet {ISP_TABLE}",
        f"table inet {ISP_TABLE} {{",
        "  chain forward {",
        "    type filter hook forward priority 0; policy accept;",
        f'    {iif} ip saddr != {subnet} drop comment "source validation"',
    ]
    if prefix6 is not None:
        lines.append(f'    {iif} ip6 saddr != {prefix6} drop comment "source validation (IPv6)"')
    lines.append("  }")
    if nat64 is not None:
        wkp, prefix, _ = nat64
        lines += [
            "  chain prerouting {",
            "    type nat hook prerouting priority dstnat; policy accept;",
            f"    {iif} ip6 daddr {wkp} dnat ip6 prefix to ip6 daddr map "
            f'{{ {wkp} : {prefix} }} comment "nat64 well-known prefix"',
            "  }",
        ]
    lines += [
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
    ]
    if nat64 is not None:
        lines.append(f'    {oif} ip saddr {nat64[2]} accept comment "nat64 pool"')
    # In an inet table a bare masquerade would NAT IPv6 too.
    lines.append(f'    {oif} masquerade comment "nat"' if prefix6 is None
                 else f'    {oif} meta nfproto ipv4 masquerade comment "nat"')
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def isp_command(u: Uplink) -> Command:
    """The command that gives `u`'s ISP its source validation and NAT."""
    return Command(("ip", "netns", "exec", u.isp_netns, "nft", "-f", "-"),
                   isp_ruleset(u.subnet, u.isp_ifname, prefix6=u.prefix6 if u.ipv6 else None,
                               nat64=(NAT64_WKP, NAT64_PREFIX, NAT64_POOL) if u.nat64 else None))
