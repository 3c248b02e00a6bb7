"""Waiting, at a switch, until the system resolver asks the new primary's DNS servers first.

The daemon and connectwith/connect end the left uplink's sessions only after
this: an application reconnecting at once must not send its lookup to the
dead uplink's resolver and wait out glibc's timeout (5 s). NetworkManager
rewrites resolv.conf 60-110 ms after the change of DNS priority.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence

from impctl.model.sessions import resolver_follows

WAIT_S = 1.0
POLL_S = 0.01


async def wait_resolver(read: Callable[[], Sequence[str]], primary_dns: Collection[str],
                        uplinks_dns: Collection[str], *, clock: Callable[[], float],
                        abandon: Callable[[], bool] = lambda: False) -> float | None:
    """Milliseconds waited until `read()` lists one of `primary_dns` first; None after WAIT_S or on `abandon()`."""
    if not primary_dns:
        return 0.0
    started = clock()
    while not resolver_follows(read(), primary_dns, uplinks_dns):
        if abandon() or clock() - started >= WAIT_S:
            return None
        await asyncio.sleep(POLL_S)
    return round((clock() - started) * 1000, 1)
