"""Before nudging LAN devices, impctl waits for their resolver: NM's real dnsmasq on the shared LAN port.

NM's dnsmasq (`--strict-order`) asks the first server of the gateway's
resolv.conf and never retries on its own; a nudged device that reconnects
by name while that server is dead waits out its own retry (glibc: 5 s).
impctl.backends.sessions asks the port's dnsmasq a name it cannot have
cached until it answers, at most 2.5 s, then nudges anyway.
"""

from __future__ import annotations

import json
import sys
import time

import pytest

from impctl.lab import Lab
from impctl.model.sessions import nameservers

pytestmark = pytest.mark.lab

SCRIPT = """
import asyncio, json, sys
from impctl.backends.sessions import lan_resolver_follows
print(json.dumps(asyncio.run(lan_resolver_follows(["lan0", "nosuch0"], sys.argv[1]))))
"""


def follows(lab: Lab) -> float | None:
    proc = lab.run([sys.executable, "-c", SCRIPT, lab.cloud_host], timeout=30)
    assert proc.returncode == 0, proc.stderr
    value = json.loads(proc.stdout)
    return None if value is None else float(value)


def test_the_wait_ends_at_the_first_answer_and_gives_up_after_its_bound_when_the_upstream_is_dead(
        lab: Lab) -> None:
    assert (waited := follows(lab)) is not None and waited < 0.5, waited
    # dnsmasq forwards to the first server of the gateway's resolv.conf: make it dead.
    first = nameservers(lab.run(["cat", "/etc/resolv.conf"], check=True).stdout)[0]
    uplink = next(u for u in lab.uplinks if u.router_ip == first)
    lab.fault(uplink.ifname, "dns-off")
    try:
        started = time.monotonic()
        assert follows(lab) is None
        assert 2.5 <= time.monotonic() - started < 5.0
    finally:
        lab.restore(uplink.ifname)
    assert follows(lab) is not None
