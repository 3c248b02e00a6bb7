"""The dual-stack lab's pure parts: the IPv6 rows of the fault table, the ISPs' dual-stack
ruleset, the uplinks' families, and the files written for NM, dnsmasq, unbound and tayga."""

from __future__ import annotations

import pytest

from impctl.lab import faults, files
from impctl.lab.faults import FAULTS, FAULTS6, Rule
from impctl.lab.topology import Topology, make_uplinks

IIF = 'iifname "down0"'
V6 = f"{IIF} meta nfproto ipv6"

RULES6 = {
    "blackhole6": (Rule("input", f"{V6} drop"), Rule("forward", f"{V6} drop")),
    "ra-off": (Rule("input", f"{IIF} icmpv6 type nd-router-solicit drop"),
               Rule("output", 'oifname "down0" icmpv6 type nd-router-advert drop')),
    "dns6-off": (Rule("input", f"{V6} udp dport 53 drop"), Rule("input", f"{V6} tcp dport 53 drop")),
}


@pytest.mark.parametrize("dual_stack", [False, True])
@pytest.mark.parametrize("kind", FAULTS6)
def test_rules_of_each_ipv6_fault(kind: str, dual_stack: bool) -> None:
    assert faults.fault(kind, dual_stack=dual_stack).rules == RULES6[kind]


def test_only_ra_off_reactivates_among_the_ipv6_faults_and_awaits_no_ipv6_address() -> None:
    assert set(RULES6) == set(FAULTS6)
    assert [k for k in FAULTS6 if faults.fault(k).reactivate] == ["ra-off"]
    assert faults.fault("ra-off").awaits == "no-address6"
    assert not any(faults.fault(k).link_down for k in FAULTS6)


def test_on_a_dual_stack_isp_the_ipv4_faults_match_ipv4_only() -> None:
    v4 = f"{IIF} meta nfproto ipv4"
    assert faults.fault("blackhole", dual_stack=True).rules == (
        Rule("input", f"{v4} drop"), Rule("forward", f"{v4} drop"))
    assert faults.fault("dns-off", dual_stack=True).rules == (
        Rule("input", f"{v4} udp dport 53 reject"),
        Rule("input", f"{v4} tcp dport 53 reject with tcp reset"))
    # The others match IPv4 by what they name (DHCPv4, the cloud's IPv4) or take the link.
    for kind in ("link-down", "dhcp-off", "cloud-closed", "proxy-down"):
        assert faults.fault(kind, dual_stack=True) == faults.fault(kind), kind


def test_an_output_chain_only_when_a_fault_needs_one() -> None:
    assert "chain output" not in faults.ruleset(list(FAULTS))
    assert "chain output" not in faults.ruleset(["blackhole6", "dns6-off"], dual_stack=True)
    text = faults.ruleset(["ra-off"], dual_stack=True)
    assert (
        "  chain output {\n"
        "    type filter hook output priority 0; policy accept;\n"
        '    oifname "down0" icmpv6 type nd-router-advert drop comment "ra-off"\n'
        "  }\n"
    ) in text
    assert f'    {IIF} icmpv6 type nd-router-solicit drop comment "ra-off"\n' in text


def test_ipv6_faults_come_after_the_ipv4_ones_whatever_the_order_asked() -> None:
    assert faults.canonical(["dns6-off", "blackhole", "ra-off", "blackhole6", "link-down"]) == (
        "link-down", "blackhole", "blackhole6", "ra-off", "dns6-off")


def test_commands_of_a_dual_stack_uplink_use_its_family_matches() -> None:
    eth0 = make_uplinks("impt", ipv6=True)[0]
    nft = faults.commands(eth0, ["blackhole"])[0]
    assert nft.input is not None and f"{IIF} meta nfproto ipv4 drop" in nft.input
    eth0_v4 = make_uplinks("impt")[0]
    nft4 = faults.commands(eth0_v4, ["blackhole"])[0]
    assert nft4.input is not None and "nfproto" not in nft4.input


def test_a_dual_stack_isp_validates_ipv6_sources_and_routes_ipv6_without_nat() -> None:
    assert faults.isp_ruleset("198.18.1.0/24", prefix6="2001:db8:1::/64") == (
        "table inet impctl_isp {}\n"
        "delete table inet impctl_isp\n"
        "table inet impctl_isp {\n"
        "  chain forward {\n"
        "    type filter hook forward priority 0; policy accept;\n"
        f'    {IIF} ip saddr != 198.18.1.0/24 drop comment "source validation"\n'
        f'    {IIF} ip6 saddr != 2001:db8:1::/64 drop comment "source validation (IPv6)"\n'
        "  }\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        '    oifname "up0" meta nfproto ipv4 masquerade comment "nat"\n'
        "  }\n"
        "}\n")


def test_the_ipv6_only_isp_maps_the_well_known_prefix_to_tayga_and_keeps_the_pool() -> None:
    wwan0 = make_uplinks("impt", ipv6=True)[2]
    text = faults.isp_command(wwan0).input
    assert text is not None
    assert (
        "  chain prerouting {\n"
        "    type nat hook prerouting priority dstnat; policy accept;\n"
        f"    {IIF} ip6 daddr 64:ff9b::/96 dnat ip6 prefix to ip6 daddr map "
        '{ 64:ff9b::/96 : 2001:db8:64::/96 } comment "nat64 well-known prefix"\n'
        "  }\n"
    ) in text
    # The pool is not masqueraded: the cloud sees the NAT64's own address.
    assert text.index('ip saddr 198.18.3.224/27 accept comment "nat64 pool"') < text.index("masquerade")
    assert f'{IIF} ip6 saddr != 2001:db8:3::/64 drop' in text


def test_uplink_families_and_addresses() -> None:
    v4 = make_uplinks("impt")
    assert [(u.ipv4, u.ipv6, u.nat64) for u in v4] == [(True, False, False)] * 3
    eth0, wlan0, wwan0 = make_uplinks("impt", ipv6=True)
    assert [(u.ipv4, u.ipv6, u.nat64) for u in (eth0, wlan0, wwan0)] == [
        (True, True, False), (True, True, False), (False, True, True)]
    assert (wlan0.prefix6, wlan0.router_ip6) == ("2001:db8:2::/64", "2001:db8:2::1")
    assert (wlan0.transit_isp_ip6, wlan0.transit_cloud_ip6) == ("2001:db8:102::1", "2001:db8:102::2")


def test_only_the_dual_stack_lab_runs_unbound_and_tayga() -> None:
    assert not [n for n in Topology(prefix="impt").daemon_names if n.startswith(("unbound", "tayga"))]
    names = Topology(prefix="impt", ipv6=True).daemon_names
    assert [n for n in names if n.startswith(("unbound", "tayga"))] == ["unbound-c", "tayga-c"]


def test_keyfiles_per_family() -> None:
    v4 = files.keyfile("impt", "lab-eth0", "eth0", 100)
    assert "[ipv6]\nmethod=disabled\n" in v4 and "[ipv4]\nmethod=auto\nroute-metric=100\n" in v4
    dual = files.keyfile("impt", "lab-eth0", "eth0", 100, ipv6=True)
    assert "[ipv4]\nmethod=auto\nroute-metric=100\nmay-fail=false\n" in dual
    assert "[ipv6]\nmethod=auto\nroute-metric=100\nip6-privacy=0\nmay-fail=true\n" in dual
    v6only = files.keyfile("impt", "lab-wwan0", "wwan0", 700, ipv4=False, ipv6=True)
    assert "[ipv4]\nmethod=disabled\n" in v6only
    assert "[ipv6]\nmethod=auto\nroute-metric=700\nip6-privacy=0\nmay-fail=false\n" in v6only


def _dnsmasq(**kw: object) -> list[str]:
    return files.dnsmasq_argv(ifname="down0", router_ip="198.18.1.1", pool=("a", "b"),
                              lease_file="l", pid_file="p", log_file="g",
                              records=(("cloud.imp.lab", "198.19.0.10"),), **kw)  # type: ignore[arg-type]


def test_dnsmasq_of_a_dual_stack_isp_advertises_its_prefix_and_dns() -> None:
    v4 = _dnsmasq()
    assert "--enable-ra" not in v4 and not [a for a in v4 if "option6" in a or "::" in a]
    dual = _dnsmasq(router_ip6="2001:db8:1::1",
                    records6=(("cloud.imp.lab", "198.19.0.10", "2001:db8:ff::10"),
                              ("v4only.imp.lab", "198.19.0.10", None)))
    assert "--enable-ra" in dual
    assert "--dhcp-range=::,constructor:down0,ra-stateless,64,1h" in dual
    assert "--dhcp-option=option6:dns-server,[2001:db8:1::1]" in dual
    assert [a for a in dual if a.startswith("--host-record")] == [
        "--host-record=cloud.imp.lab,198.19.0.10,2001:db8:ff::10",
        "--host-record=v4only.imp.lab,198.19.0.10"]
    assert "--port=5353" not in dual
    upstream = _dnsmasq(router_ip6="2001:db8:3::1", dns_port=5353)
    assert "--port=5353" in upstream and "--listen-address=127.0.0.1" in upstream


def test_unbound_and_tayga_configs_stay_in_the_lab_directory() -> None:
    conf = files.unbound_config(listen_ip="2001:db8:3::1", upstream="127.0.0.1@5353",
                                dns64_prefix="64:ff9b::/96", directory="/run/x/isp",
                                pid_file="/run/x/isp/unbound-c.pid")
    assert 'module-config: "dns64 iterator"' in conf and "dns64-prefix: 64:ff9b::/96" in conf
    assert "interface: 2001:db8:3::1" in conf and "forward-addr: 127.0.0.1@5353" in conf
    assert "do-not-query-localhost: no" in conf and "control-enable: no" in conf
    assert "/etc" not in conf and 'chroot: ""' in conf
    tayga = files.tayga_config(tun="nat64", ipv4_addr="198.18.3.225", prefix="2001:db8:64::/96",
                               pool="198.18.3.224/27", data_dir="/run/x/isp/tayga-c")
    assert tayga.splitlines()[1:] == ["tun-device nat64", "ipv4-addr 198.18.3.225",
                                      "prefix 2001:db8:64::/96", "dynamic-pool 198.18.3.224/27",
                                      "data-dir /run/x/isp/tayga-c"]
