"""The system resolver's servers, as glibc reads them: /etc/resolv.conf.

Read at a switch, to end the left uplink's sessions only once NetworkManager
has put the new primary's servers first: an application reconnecting before
that asks the dead uplink's resolver first and waits out glibc's timeout
(5 s by default).
"""

from __future__ import annotations

from pathlib import Path

from impctl.model.sessions import nameservers

RESOLV_CONF = Path("/etc/resolv.conf")
# A resolv.conf is a few hundred bytes; glibc itself reads at most 3 servers.
MAX_BYTES = 64 * 1024


def system_nameservers(path: Path = RESOLV_CONF) -> list[str]:
    """The nameservers in order; [] when the file is missing or unreadable (glibc then asks 127.0.0.1)."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES)
    except OSError:
        return []
    return nameservers(data.decode("utf-8", "replace"))
