"""Pure parts of the netlink backend: where the kernel sends traffic."""

from __future__ import annotations

from impctl.model.netfacts import DefaultRoute, kernel_primary


def test_lowest_metric_wins() -> None:
    routes = [DefaultRoute("wlan0", 600, False), DefaultRoute("eth0", 100, False)]
    assert kernel_primary(routes) == "eth0"


def test_a_dead_links_route_counts_unless_the_kernel_ignores_it() -> None:
    # ignore_routes_with_linkdown=0 (Debian's default): the linkdown route still wins.
    assert kernel_primary([DefaultRoute("eth0", 20, True, False), DefaultRoute("wlan0", 600, False)]) == "eth0"
    # =1: the kernel skips it.
    assert kernel_primary([DefaultRoute("eth0", 20, True, True), DefaultRoute("wlan0", 600, False)]) == "wlan0"


def test_no_route_no_primary() -> None:
    assert kernel_primary([]) is None
    assert kernel_primary([DefaultRoute("eth0", 20, True, True)]) is None
