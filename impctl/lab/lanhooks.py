"""A hook for pyroute2's DHCP client on the lab's LAN device: resolv.conf from the lease.

The client's own hooks set the address and default route; this one writes the
DNS servers the gateway handed out to the file the LAN device's /etc/resolv.conf
links to (LAN_RESOLV_CONF_ENV), as a real device's DHCP client does.
"""

from __future__ import annotations

import os
from pathlib import Path

from pyroute2.dhcp.hooks import Hook, Trigger
from pyroute2.dhcp.leases import Lease, MissingOptionError

from impctl.lab.topology import LAN_RESOLV_CONF_ENV


def resolv_conf_text(servers: list[str]) -> str:
    return "# From the LAN device's DHCP lease\n" + "".join(f"nameserver {s}\n" for s in servers)


async def _write_resolv_conf(lease: Lease) -> None:
    try:
        servers = list(lease.name_servers)
    except MissingOptionError:
        servers = []
    path = Path(os.environ[LAN_RESOLV_CONF_ENV])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(resolv_conf_text(servers))
    tmp.replace(path)


# What `hook(...)` would make; built by hand because pyroute2's decorator is untyped.
write_resolv_conf = Hook(func=_write_resolv_conf,
                         triggers={Trigger.BOUND, Trigger.RENEWED, Trigger.REBOUND})
