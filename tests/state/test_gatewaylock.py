"""The gateway lock with real processes, and the state merge that lets the
daemon publish while a connectwith holds the gateway."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

from impctl.backends.gatewaylock import GatewayLock
from impctl.backends.statefile import load_state, update_state
from impctl.backends.store import FileStore
from impctl.model.state import CurrentUplink, State, merge

CTX = multiprocessing.get_context("fork")


def _hold(path: str, ready: multiprocessing.synchronize.Event, seconds: float) -> None:
    with GatewayLock(Path(path)).hold("connectwith") as held:
        assert held
        ready.set()
        time.sleep(seconds)


def test_a_second_command_waits_says_for_whom_and_then_runs(tmp_path: Path) -> None:
    path = tmp_path / "gateway.lock"
    ready = CTX.Event()
    holder = CTX.Process(target=_hold, args=(str(path), ready, 1.0))
    holder.start()
    assert ready.wait(10)
    said: list[str] = []
    started = time.monotonic()
    with GatewayLock(path, on_wait=said.append).hold("connect") as held:
        waited = time.monotonic() - started
        assert held
    holder.join(10)
    assert holder.exitcode == 0
    assert said == [f"waiting for impctl connectwith (pid {holder.pid}) to finish before connect"]
    assert 0.5 < waited < 5.0


def test_the_daemon_does_not_wait_and_a_killed_holder_frees_the_gateway(tmp_path: Path) -> None:
    path = tmp_path / "gateway.lock"
    ready = CTX.Event()
    holder = CTX.Process(target=_hold, args=(str(path), ready, 3600.0))
    holder.start()
    assert ready.wait(10)
    with GatewayLock(path).try_hold("daemon switch") as held:
        assert held is False
    assert holder.pid is not None
    os.kill(holder.pid, signal.SIGKILL)  # kill -9 mid-attempt: the kernel drops the flock
    holder.join(10)
    with GatewayLock(path).try_hold("daemon switch") as held:
        assert held is True


def test_a_transaction_does_not_hold_the_state_file_and_keeps_what_others_wrote(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = FileStore(path)
    with store.transaction() as state:
        # Meanwhile the daemon publishes and someone sets a sequence: neither waits for us.
        def other(s: State) -> None:
            s.set_sequence(["cell"])
            s.last_results["wl0"] = {"code": 4}

        update_state(path, other)
        state.current = CurrentUplink("eth0", "eth0", "ethernet", 1.0, by="connectwith")
        state.last_results["eth0"] = {"code": 5}
    after = load_state(path)
    assert after.sequence == ["cell"]
    assert after.current is not None and after.current.ifname == "eth0"
    assert after.last_results == {"wl0": {"code": 4}, "eth0": {"code": 5}}


def test_merge_takes_changed_fields_from_mine_and_the_rest_from_theirs() -> None:
    base = State(sequence=["wifi"], last_results={"a": 1, "b": 2})
    mine = State(sequence=["wifi"], sequence_index=1, last_results={"a": 1, "c": 3})
    theirs = State(sequence=["cell"], last_results={"a": 9, "b": 2, "d": 4})
    out = merge(base, mine, theirs)
    assert out.sequence == ["cell"] and out.sequence_index == 1
    assert out.last_results == {"a": 9, "c": 3, "d": 4}  # b: removed by mine; a: untouched by mine
