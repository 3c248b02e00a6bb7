"""The simulated u-blox modem's AT dialogue (impctl.lab.modem.Responder), without ModemManager:
the lines MM's u-blox plugin needs for a net-port bearer, and the bearer faults."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from impctl.lab.modem import Responder, build_sysfs, kernel_events, write_control


@pytest.fixture
def modem(tmp_path: Path) -> Iterator[tuple[Responder, int, Path]]:
    control = tmp_path / "control.json"
    write_control(control, "registered")
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    yield Responder(write_fd, control, "198.18.64.2", "198.18.64.1"), read_fd, control
    os.close(read_fd)
    os.close(write_fd)


def unsolicited(fd: int) -> str:
    try:
        return os.read(fd, 4096).decode()
    except BlockingIOError:
        return ""


def rewrite(control: Path, state: str, bearer: str | None = None, drops: int = 0) -> None:
    write_control(control, state, bearer, drops)
    # The responder re-reads on an mtime change; force one within the clock's resolution.
    st = control.stat()
    os.utime(control, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_bridge_mode_net_port_dialogue(modem: tuple[Responder, int, Path]) -> None:
    r, _, _ = modem
    assert r.answer("AT+CGMI") == "\r\nu-blox\r\n\r\nOK\r\n"
    assert r.answer("AT+CGMM") == "\r\nTOBY-L210\r\n\r\nOK\r\n"
    assert r.answer("AT+UUSBCONF?") == '\r\n+UUSBCONF: 3,"RNDIS",,"0x1146"\r\n\r\nOK\r\n'
    assert r.answer("AT+UBMCONF?") == "\r\n+UBMCONF: 2\r\n\r\nOK\r\n"
    assert r.answer("AT+CGACT?") == "\r\n+CGACT: 1,0\r\n\r\nOK\r\n"
    assert r.answer("AT+UIPADDR=1").endswith("\r\nERROR\r\n")
    assert r.answer('AT+UAUTHREQ=1,0,"",""') == "\r\nOK\r\n"
    assert r.answer("AT+CGACT=1,1") == "\r\nOK\r\n"
    assert r.answer("AT+CGACT?") == "\r\n+CGACT: 1,1\r\n\r\nOK\r\n"
    assert r.answer("AT+UIPADDR=1") == \
        '\r\n+UIPADDR: 1,"usb0","198.18.64.1","255.255.255.0","",""\r\n\r\nOK\r\n'
    assert r.answer("AT+CGCONTRDP=1") == ('\r\n+CGCONTRDP: 1,5,"internet","198.18.64.2.255.255.255.0",'
                                          '"198.18.64.1","198.18.64.1"\r\n\r\nOK\r\n')
    # Probing and connect needed these to fail, not hang.
    for cmd in ("AT+UGCNTRD=?", "AT+URAT=?", "AT+UBANDSEL?", "AT+UPINCNT"):
        assert r.answer(cmd) == "\r\nERROR\r\n", cmd
    assert r.answer("AT+CGACT=0,1") == "\r\nOK\r\n"
    assert r.answer("AT+CGACT?") == "\r\n+CGACT: 1,0\r\n\r\nOK\r\n"


def test_refused_then_restored(modem: tuple[Responder, int, Path]) -> None:
    r, _, control = modem
    rewrite(control, "registered", "refuse")
    assert r.reload() is False  # SIM and registration unchanged
    assert r.answer("AT+CGACT=1,1") == "\r\n+CME ERROR: 148\r\n"
    assert r.answer("AT+CGACT?") == "\r\n+CGACT: 1,0\r\n\r\nOK\r\n"
    rewrite(control, "registered")
    r.reload()
    assert r.answer("AT+CGACT=1,1") == "\r\nOK\r\n"


def test_network_deactivation_is_unsolicited_once(modem: tuple[Responder, int, Path]) -> None:
    r, fd, control = modem
    r.answer("AT+CGACT=1,1")
    rewrite(control, "registered", drops=1)
    r.reload()
    assert unsolicited(fd) == '\r\n+CGEV: NW DEACT "IP","198.18.64.2",1\r\n'
    assert r.answer("AT+CGACT?") == "\r\n+CGACT: 1,0\r\n\r\nOK\r\n"
    # Same count again: nothing more; a drop with no active context: nothing either.
    rewrite(control, "registered", drops=1)
    r.reload()
    rewrite(control, "registered", drops=2)
    r.reload()
    assert unsolicited(fd) == ""


def test_sysfs_groups_tty_and_net_port(tmp_path: Path) -> None:
    build_sysfs(tmp_path)
    dev = tmp_path / "devices/pci0000:00/0000:00:14.0/usb1/1-1"
    assert (dev / "idVendor").read_text() == "1546\n"
    assert (dev / "idProduct").read_text() == "1100\n"
    assert os.readlink(tmp_path / "class/net/usb0") == f"/sys/{dev.relative_to(tmp_path)}/1-1:1.2/net/usb0"
    assert os.readlink(dev / "1-1:1.2/driver") == "/sys/bus/usb/drivers/rndis_host"
    assert kernel_events("add") == [
        "action=add,subsystem=tty,name=ttyUSB0,uid=impctl-lab-modem",
        "action=add,subsystem=net,name=usb0,uid=impctl-lab-modem",
    ]


def test_context_defined_by_modemmanager_is_kept(modem: tuple[Responder, int, Path]) -> None:
    # NM asks IPv4v6 first; MM stores a matching context and activates that one. A responder
    # that forgot it made every first activation fail (NM then retried IPv4 on cid 1).
    r, fd, control = modem
    assert r.answer('AT+CGDCONT=2,"IPV4V6","internet"') == "\r\nOK\r\n"
    assert r.answer("AT+CGDCONT?") == ('\r\n+CGDCONT: 1,"IP","internet","0.0.0.0",0,0\r\n'
                                       '\r\n+CGDCONT: 2,"IPV4V6","internet","0.0.0.0",0,0\r\n\r\nOK\r\n')
    assert r.answer("AT+CGACT=1,2") == "\r\nOK\r\n"
    assert r.answer("AT+CGACT?") == "\r\n+CGACT: 1,0\r\n\r\n+CGACT: 2,1\r\n\r\nOK\r\n"
    assert r.answer("AT+UIPADDR=2").startswith('\r\n+UIPADDR: 2,"usb0","198.18.64.1"')
    assert r.answer("AT+UIPADDR=1") == "\r\nERROR\r\n"
    assert r.answer("AT+CGACT=1,7") == "\r\nERROR\r\n"  # no such context
    rewrite(control, "registered", drops=1)
    r.reload()
    assert unsolicited(fd) == '\r\n+CGEV: NW DEACT "IPV4V6","198.18.64.2",2\r\n'
    assert r.answer("AT+CGDCONT=2") == "\r\nOK\r\n"
    assert r.answer("AT+CGDCONT?") == '\r\n+CGDCONT: 1,"IP","internet","0.0.0.0",0,0\r\n\r\nOK\r\n'
