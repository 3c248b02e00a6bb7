"""The fault table (impctl.lab.faults): exact nft rules and commands; no lab, no root needed."""

from __future__ import annotations

import pytest

from impctl.lab import faults
from impctl.lab.faults import FAULTS, Command, Rule
from impctl.lab.topology import make_uplinks
from impctl.model.errors import LabError

IIF = 'iifname "down0"'

RULES = {
    "link-down": (),
    "blackhole": (Rule("input", f"{IIF} drop"), Rule("forward", f"{IIF} drop")),
    "dhcp-off": (Rule("input", f"{IIF} udp dport 67 drop"),),
    "dns-off": (Rule("input", f"{IIF} udp dport 53 reject"),
                Rule("input", f"{IIF} tcp dport 53 reject with tcp reset")),
    "cloud-closed": (Rule("forward", f"{IIF} ip daddr 198.19.0.10 tcp dport {{ 443, 80 }} "
                          "reject with tcp reset"),),
    "proxy-down": (Rule("forward", f"{IIF} ip daddr 198.19.0.10 tcp dport 8888 "
                        "reject with tcp reset"),),
}

REMOVE = "table inet impctl_lab {}\ndelete table inet impctl_lab\n"

WLAN0 = make_uplinks("impt")[1]


def test_table_has_a_row_with_an_effect_for_every_fault() -> None:
    assert set(RULES) == set(FAULTS)
    for kind in FAULTS:
        row = faults.fault(kind)
        assert row.kind == kind
        assert row.rules or row.link_down, kind


@pytest.mark.parametrize("kind", FAULTS)
def test_rules_of_each_fault(kind: str) -> None:
    assert faults.fault(kind).rules == RULES[kind]


def test_only_link_down_takes_the_link_and_only_dhcp_off_reactivates() -> None:
    assert [k for k in FAULTS if faults.fault(k).link_down] == ["link-down"]
    assert [k for k in FAULTS if faults.fault(k).reactivate] == ["dhcp-off"]
    assert {k: faults.fault(k).awaits for k in FAULTS if faults.fault(k).awaits} == {
        "link-down": "carrier-loss", "dhcp-off": "no-address"}


def test_rules_name_the_isps_interface() -> None:
    assert faults.fault("blackhole", "isp9").rules == (
        Rule("input", 'iifname "isp9" drop'), Rule("forward", 'iifname "isp9" drop'))


def test_ruleset_of_one_fault_is_the_whole_table() -> None:
    assert faults.ruleset(["dns-off"]) == REMOVE + (
        "table inet impctl_lab {\n"
        "  chain input {\n"
        "    type filter hook input priority 0; policy accept;\n"
        f'    {IIF} udp dport 53 reject comment "dns-off"\n'
        f'    {IIF} tcp dport 53 reject with tcp reset comment "dns-off"\n'
        "  }\n"
        "  chain forward {\n"
        "    type filter hook forward priority 0; policy accept;\n"
        "  }\n"
        "}\n")


def test_faults_compose_in_table_order_whatever_the_order_they_came_in() -> None:
    combined = faults.ruleset(["proxy-down", "blackhole", "dns-off", "blackhole"])
    assert combined == faults.ruleset(["blackhole", "dns-off", "proxy-down"])
    body = [line.strip() for line in combined.splitlines()[3:]]
    assert body == [
        "chain input {",
        "type filter hook input priority 0; policy accept;",
        f'{IIF} drop comment "blackhole"',
        f'{IIF} udp dport 53 reject comment "dns-off"',
        f'{IIF} tcp dport 53 reject with tcp reset comment "dns-off"',
        "}",
        "chain forward {",
        "type filter hook forward priority 0; policy accept;",
        f'{IIF} drop comment "blackhole"',
        f'{IIF} ip daddr 198.19.0.10 tcp dport 8888 reject with tcp reset comment "proxy-down"',
        "}",
        "}",
    ]


def test_removing_a_fault_rewrites_the_table_without_it() -> None:
    after = faults.ruleset(["dns-off"])
    assert '"proxy-down"' in faults.ruleset(["dns-off", "proxy-down"])
    assert '"proxy-down"' not in after and '"dns-off"' in after
    # No nft fault left: the script only removes the table.
    assert faults.ruleset([]) == REMOVE
    assert faults.ruleset(["link-down"]) == REMOVE


def test_commands_put_the_isp_in_exactly_the_given_state() -> None:
    nft = ("ip", "netns", "exec", "impt-ispb", "nft", "-f", "-")
    assert faults.commands(WLAN0, ["cloud-closed"]) == [
        Command(nft, faults.ruleset(["cloud-closed"])),
        Command(("ip", "-n", "impt-ispb", "link", "set", "down0", "up")),
    ]
    assert faults.commands(WLAN0, ["link-down", "dns-off"]) == [
        Command(nft, faults.ruleset(["dns-off"])),
        Command(("ip", "-n", "impt-ispb", "link", "set", "down0", "down")),
    ]
    assert faults.commands(WLAN0, []) == [
        Command(nft, REMOVE), Command(("ip", "-n", "impt-ispb", "link", "set", "down0", "up"))]


def test_unknown_fault_is_refused_with_the_choices() -> None:
    with pytest.raises(LabError) as err:
        faults.ruleset(["dns-off", "meteor"])
    assert err.value.message == ("unknown fault 'meteor': use one of link-down, blackhole, "
                                 "dhcp-off, dns-off, cloud-closed, proxy-down (IPv4), blackhole6, "
                                 "ra-off, dns6-off (IPv6, dual-stack lab) or restore")


def test_every_isp_validates_sources_and_masquerades_in_its_own_table() -> None:
    assert faults.isp_ruleset("198.18.2.0/24") == (
        "table inet impctl_isp {}\n"
        "delete table inet impctl_isp\n"
        "table inet impctl_isp {\n"
        "  chain forward {\n"
        "    type filter hook forward priority 0; policy accept;\n"
        f'    {IIF} ip saddr != 198.18.2.0/24 drop comment "source validation"\n'
        "  }\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        '    oifname "up0" masquerade comment "nat"\n'
        "  }\n"
        "}\n")
    assert faults.isp_command(WLAN0) == Command(
        ("ip", "netns", "exec", "impt-ispb", "nft", "-f", "-"), faults.isp_ruleset(WLAN0.subnet))


def test_faults_never_touch_the_isps_own_table() -> None:
    # A fault (or a restore) rewrites only its table: the ISP stays an ISP throughout.
    for active in ([], ["blackhole"], list(FAULTS)):
        for cmd in faults.commands(WLAN0, active):
            assert "impctl_isp" not in " ".join(cmd.argv) + (cmd.input or "")
