"""Fixtures for the gateway lab (impctl.lab).

- `lab` (session): a lab with prefix `impt<pid>` in a pytest tmp dir, built once.
  `lab_reset` (autouse) calls `lab.reset()` before every test that uses it, so
  each test starts with no faults, the three lab profiles active with leases,
  and no impctl state file.
- `modem_lab` (session): a separate lab (prefix `imptm<pid>`) with ModemManager
  and the simulated modem, built only when a test asks for it.
- `bearer_lab` (module): a modem lab of its own (prefix `impt<pid>c`) for the tests
  that connect the modem's data bearer and break it, apart from `modem_lab`'s.
- `ipv6_lab` (module): a dual-stack lab (prefix `impt<pid>v`, Lab(ipv6=True)),
  built once per module that asks for it, reset before each of its tests.

Tests that need root and the lab packages are marked `lab` (and `modem`).
Where the lab cannot run they are skipped with the reason, unless
IMPCTL_REQUIRE_LAB=1 (CI sets it): then they fail with that reason.

The pid in the prefix keeps concurrent test sessions on one machine apart;
labs left by crashed sessions (whose pid is gone) are removed at session start.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from impctl.lab import Lab

# tests/lab/test_lab_fixtures.py runs these fixtures in an inner pytest session.
pytest_plugins = ["pytester"]

REQUIRE_ENV = "IMPCTL_REQUIRE_LAB"
PREFIX_ENV = "IMPCTL_LAB_PREFIX"
_STALE = re.compile(r"^imptm?(\d+)[a-z]?-gw$")


def _require_lab() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def skip_or_fail(reason: str) -> None:
    """Skip a lab test, or fail it when the environment demands the lab (CI)."""
    if _require_lab():
        pytest.fail(f"{REQUIRE_ENV} is set but the lab cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def lab_unavailable(modem: bool = False, ipv6: bool = False) -> str | None:
    """Why the lab (with `ipv6`: the dual-stack one) cannot run here, or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "the lab needs root"
    from impctl.model.errors import ImpctlError

    try:
        Lab(Path("/nonexistent"), "impt", modem=modem, ipv6=ipv6).check_prerequisites()
    except ImpctlError as err:
        return err.message
    return None


def session_prefix(modem: bool = False) -> str:
    base = os.environ.get(PREFIX_ENV) or f"impt{os.getpid()}"
    return base.replace("impt", "imptm", 1) if modem else base


def _remove_stale_labs(tmp: Path) -> None:
    from impctl.lab.proc import alive

    netns = Path("/run/netns")
    if not netns.is_dir():
        return
    for entry in netns.iterdir():
        m = _STALE.match(entry.name)
        if m and not alive(int(m.group(1))):
            # modem=True: its namespaces include a modem lab's carrier (absent ones are skipped).
            Lab(tmp / "stale", entry.name.removesuffix("-gw"), modem=True).down()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("lab") or item.get_closest_marker("modem"):
        reason = lab_unavailable(modem=item.get_closest_marker("modem") is not None)
        if reason:
            skip_or_fail(reason)


def _lab_at(base: Path, prefix: str, *, modem: bool = False, ipv6: bool = False,
            remove_stale: bool = False) -> Iterator[Lab]:
    """A lab built in `base` for the fixture's scope, then taken down (skipped or failed if it cannot run)."""
    reason = lab_unavailable(modem=modem, ipv6=ipv6)
    if reason:
        skip_or_fail(reason)
    if remove_stale:  # only once the lab can run: removing them needs root
        _remove_stale_labs(base)
    lab = Lab(base / "lab", prefix, modem=modem, ipv6=ipv6)
    lab.up(replace=True)
    try:
        yield lab
    finally:
        lab.down()


def _build(tmp_path_factory: pytest.TempPathFactory, modem: bool) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("modemlab" if modem else "lab")
    yield from _lab_at(base, session_prefix(modem), modem=modem, remove_stale=True)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The session's gateway lab (impctl.lab.Lab), three uplinks, cloud and proxy."""
    yield from _build(tmp_path_factory, modem=False)


@pytest.fixture(scope="session")
def modem_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A second lab with ModemManager and the simulated modem (impctl.lab.Lab, modem=True)."""
    yield from _build(tmp_path_factory, modem=True)


def _module_lab(tmp_path_factory: pytest.TempPathFactory, name: str, letter: str, *, modem: bool = False,
                ipv6: bool = False) -> Iterator[Lab]:
    """A lab of a test module's own, built once for the module (prefix: the session's + `letter`)."""
    yield from _lab_at(tmp_path_factory.mktemp(name), session_prefix() + letter, modem=modem, ipv6=ipv6)


@pytest.fixture(scope="module")
def bearer_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A modem lab of the module's own (Lab(modem=True)), for connecting and breaking the bearer."""
    yield from _module_lab(tmp_path_factory, "bearerlab", "c", modem=True)


@pytest.fixture(scope="module")
def ipv6_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A dual-stack lab (Lab(ipv6=True)): every ISP dual-stack, wwan0 IPv6-only (DNS64/NAT64)."""
    yield from _module_lab(tmp_path_factory, "ipv6lab", "v", ipv6=True)


@pytest.fixture(scope="session")
def lab_prefix() -> str:
    """This session's namespace prefix; tests building their own labs append a letter."""
    return session_prefix()


@pytest.fixture(autouse=True)
def lab_reset(request: pytest.FixtureRequest) -> None:
    """Isolation: a test using `lab` or `modem_lab` starts from a reset lab."""
    for name in ("lab", "modem_lab", "bearer_lab", "ipv6_lab"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()
