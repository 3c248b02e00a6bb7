"""NetworkManager and ModemManager over D-Bus.

- `bus`: the system bus (the only module importing dbus_next) and its error map;
- `defs`: names, paths, flags and one TypedDict per interface impctl reads;
- `devices`: devices and modems into `impctl.model.inventory`;
- `activation`: activate, deactivate, disconnect, route metrics, on one wait-for-state helper;
- `trial`: an attempt under an NM checkpoint (snapshot fallback);
- `signals`: what the daemon hears;
- `client`: `NMClient`, the one object the use cases are given.
"""

from impctl.backends.nm.bus import SystemBus, system_bus
from impctl.backends.nm.client import NMClient, read_inventory

__all__ = ["NMClient", "SystemBus", "read_inventory", "system_bus"]
