"""Hook scripts of the failover daemon: run-parts style, asynchronous, bounded in time.

The daemon calls `run_hook_dir` after a switch (and on loss and recovery)
with IMPCTL_EVENT, IMPCTL_FROM, IMPCTL_TO, IMPCTL_REASON, ... in the
environment; see impctl.usecases.daemon. Nothing a hook does can stop the
daemon: failures and time-outs are logged.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping

# A hook script that takes longer is killed.
HOOK_TIMEOUT_S = 30.0


async def run_hook_dir(hooks_dir: str, env: Mapping[str, str], log: Callable[..., None]) -> None:
    """Run every executable file of `hooks_dir`, in name order, one after the other.

    Like run-parts: names starting with "." or ending in "~" are skipped. A
    hook's failure or time-out is logged and does not stop the others.
    """
    try:
        names = sorted(os.listdir(hooks_dir))
    except OSError as err:
        log("hook-error", dir=hooks_dir, reason=err.strerror or str(err))
        return
    full_env = {**os.environ, **env}
    for name in names:
        path = os.path.join(hooks_dir, name)
        if name.startswith(".") or name.endswith("~") or not os.path.isfile(path) or not os.access(path, os.X_OK):
            continue
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                path, env=full_env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as err:
            log("hook-error", hook=name, reason=err.strerror or str(err))
            continue
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), HOOK_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            log("hook-error", hook=name, reason=f"killed after {HOOK_TIMEOUT_S:g} s")
            continue
        text = out.decode(errors="replace").strip().replace("\n", " | ")[:500]
        log("hook", hook=name, status=proc.returncode, ms=round((time.monotonic() - started) * 1000, 1),
            output=text or None)
