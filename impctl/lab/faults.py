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
from dataclasses import dataclass
from typing import Literal

from impctl.lab.topology import (
    CLOUD_HTTP_PORT,
    CLOUD_IP,
    CLOUD_PORT,
    ISP_IFNAME,
    ISP_UPLINK_IFNAME,
    PROXY_PORT,
    Uplink,
)
from impctl.model.errors import LabError

NFT_TABLE = "impctl_lab"
ISP_TABLE = "impctl_isp"
FAULTS = ("link-down", "blackhole", "dhcp-off", "dns-off", "cloud-closed", "proxy-down")
# Base chains of the table, in this order; `fwd` would be an nft keyword, not a name.
CHAINS = ("input", "forward")

Awaits = Literal["carrier-loss", "no-address"]


@dataclass(frozen=True)
class Rule:
    chain: str  # one of CHAINS
    statement: str  # match and verdict, without the comment


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    input: str | None = None


def fault(kind: str, isp_ifname: str = ISP_IFNAME) -> Fault:
    """The table's row for `kind`, for an ISP whose gateway-facing interface is `isp_ifname`."""
    iif = f'iifname "{isp_ifname}"'
    rows = {
        "link-down": Fault(kind, link_down=True, awaits="carrier-loss"),
        "blackhole": Fault(kind, (Rule("input", f"{iif} drop"), Rule("forward", f"{iif} drop"))),
        "dhcp-off": Fault(kind, (Rule("input", f"{iif} udp dport 67 drop"),),
                          reactivate=True, awaits="no-address"),
        "dns-off": Fault(kind, (Rule("input", f"{iif} udp dport 53 reject"),
                                Rule("input", f"{iif} tcp dport 53 reject with tcp reset"))),
        "cloud-closed": Fault(kind, (Rule("forward", f"{iif} ip daddr {CLOUD_IP} tcp dport "
                                      f"{{ {CLOUD_PORT}, {CLOUD_HTTP_PORT} }} reject with tcp reset"),)),
        "proxy-down": Fault(kind, (Rule("forward", f"{iif} ip daddr {CLOUD_IP} tcp dport "
                                    f"{PROXY_PORT} reject with tcp reset"),)),
    }
    if kind not in rows:
        raise LabError(f"unknown fault {kind!r}: use one of {', '.join(FAULTS)} or restore")
    return rows[kind]


def canonical(active: Iterable[str]) -> tuple[str, ...]:
    """The active faults once each, in FAULTS order (so the ruleset does not depend on history)."""
    wanted = set(active)
    for kind in wanted:
        fault(kind)
    return tuple(k for k in FAULTS if k in wanted)


def ruleset(active: Iterable[str], isp_ifname: str = ISP_IFNAME) -> str:
    """An `nft -f` script that leaves the ISP's fault table holding exactly `active`'s rules.

    The table is first declared (a no-op if it exists) and deleted, so the script
    works whatever was there and replaces the table atomically.
    """
    lines = [f"table inet {NFT_TABLE} {{}}", f"delete table inet {NFT_TABLE}"]
    rules = [(kind, r) for kind in canonical(active) for r in fault(kind, isp_ifname).rules]
    if not rules:
        return "\n".join(lines) + "\n"
    lines.append(f"table inet {NFT_TABLE} {{")
    for chain in CHAINS:
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
                ruleset(kinds, u.isp_ifname)),
        Command(("ip", "-n", u.isp_netns, "link", "set", u.isp_ifname, "down" if down else "up")),
    ]


def isp_ruleset(subnet: str, isp_ifname: str = ISP_IFNAME,
                upstream_ifname: str = ISP_UPLINK_IFNAME) -> str:
    """An `nft -f` script giving an ISP its permanent table: source validation and NAT.

    `subnet` is the ISP's customer subnet (what its DHCP hands out). Only IPv4:
    the lab's uplinks carry no IPv6.
    """
    return "\n".join([
        f"table inet {ISP_TABLE} {{}}",
        f"delete table inet {ISP_TABLE}",
        f"table inet {ISP_TABLE} {{",
        "  chain forward {",
        "    type filter hook forward priority 0; policy accept;",
        f'    iifname "{isp_ifname}" ip saddr != {subnet} drop comment "source validation"',
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        f'    oifname "{upstream_ifname}" masquerade comment "nat"',
        "  }",
        "}",
    ]) + "\n"


def isp_command(u: Uplink) -> Command:
    """The command that gives `u`'s ISP its source validation and NAT."""
    return Command(("ip", "netns", "exec", u.isp_netns, "nft", "-f", "-"),
                   isp_ruleset(u.subnet, u.isp_ifname))
