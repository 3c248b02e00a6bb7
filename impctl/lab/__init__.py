"""The gateway lab: real NetworkManager (and ModemManager) in network namespaces.

See `impctl.lab.lab` for the topology and the Python API (`Lab`).
"""

from impctl.lab.lab import (
    CLOUD_HOST,
    CLOUD_IP,
    CLOUD_PORT,
    DEFAULT_PREFIX,
    DEFAULT_ROOT,
    FAULTS,
    PROXY_HOST,
    PROXY_PORT,
    Lab,
    LabStatus,
    Uplink,
)

__all__ = [
    "CLOUD_HOST",
    "CLOUD_IP",
    "CLOUD_PORT",
    "DEFAULT_PREFIX",
    "DEFAULT_ROOT",
    "FAULTS",
    "PROXY_HOST",
    "PROXY_PORT",
    "Lab",
    "LabStatus",
    "Uplink",
]
