"""The daemon's "busy, run again" helper (impctl.usecases.daemon.Coalescer)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from test_daemon_usecase import run_async

from impctl.usecases.daemon import Coalescer


class Work:
    """Work that counts its runs; held (`hold=True`), each run waits for a `release()`."""

    def __init__(self, hold: bool = False) -> None:
        self.runs = 0
        self.hold = hold
        self.tokens: asyncio.Queue[None] = asyncio.Queue()
        self.tasks: list[asyncio.Task[None]] = []

    async def __call__(self) -> None:
        self.runs += 1
        if self.hold:
            await self.tokens.get()

    def release(self) -> None:
        self.tokens.put_nowait(None)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self.tasks.append(task)
        return task


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@run_async
async def test_a_request_when_idle_runs_once() -> None:
    work = Work()
    c = Coalescer(work, work.spawn)
    c.request()
    assert c.busy
    await asyncio.gather(*work.tasks)
    assert work.runs == 1 and not c.busy


@run_async
async def test_a_burst_while_busy_makes_one_more_run_after_the_current_one() -> None:
    work = Work(hold=True)
    c = Coalescer(work, work.spawn)
    c.request()
    await settle()
    assert work.runs == 1
    for _ in range(10):
        c.request()
    assert len(work.tasks) == 1  # no second task while the first runs
    work.release()
    await settle()
    assert work.runs == 2 and c.busy  # the one extra run, started after the burst
    work.release()
    await asyncio.gather(*work.tasks)
    assert work.runs == 2 and not c.busy


@run_async
async def test_a_request_during_the_extra_run_makes_another() -> None:
    work = Work(hold=True)
    c = Coalescer(work, work.spawn)
    c.request()
    await settle()
    c.request()
    work.release()
    await settle()
    assert work.runs == 2
    c.request()  # while the second run waits
    work.release()
    await settle()
    assert work.runs == 3
    work.release()
    await asyncio.gather(*work.tasks)
    assert work.runs == 3 and len(work.tasks) == 1


@run_async
async def test_after_a_run_the_next_request_starts_a_new_task() -> None:
    work = Work()
    c = Coalescer(work, work.spawn)
    c.request()
    await asyncio.gather(*work.tasks)
    c.request()
    await asyncio.gather(*work.tasks)
    assert work.runs == 2 and len(work.tasks) == 2


@run_async
async def test_a_cancelled_run_leaves_it_ready_for_the_next_request() -> None:
    work = Work(hold=True)
    c = Coalescer(work, work.spawn)
    c.request()
    await settle()
    c.request()  # an extra run was asked for, but the daemon is stopping
    work.tasks[0].cancel()
    await asyncio.gather(*work.tasks, return_exceptions=True)
    assert not c.busy and work.runs == 1
    work.hold = False
    c.request()
    await asyncio.gather(*work.tasks[1:])
    assert work.runs == 2
