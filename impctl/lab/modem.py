"""The lab's simulated modem: a fake sysfs entry for a USB modem and an AT responder on a pty.

ModemManager runs with `--test-no-udev` in a mount namespace where the tree
made by `build_sysfs` is bound over /sys and the responder's pty slave over
/dev/ttyUSB0; its generic plugin probes the port with AT commands and the
answers below make it a 3GPP modem.

The SIM and registration answers come from a control file (JSON, see
`STATES`) that the responder re-reads whenever it changes:

    no-sim               AT+CPIN? -> +CME ERROR: 10 (SIM not inserted)
    sim-locked           AT+CPIN? -> +CPIN: SIM PIN
    not-registered       +CREG/+CGREG stat 2 (not registered, searching)
    registration-denied  +CREG/+CGREG stat 3 (denied)
    registered           +CREG/+CGREG stat 1 (home network)

A registration change is also sent unsolicited (`+CREG: N`, `+CGREG: N`), which
an enabled modem in ModemManager picks up at once. A SIM change is only seen
when ModemManager probes the modem again (the lab replugs it, see Lab.modem_state).

Run by the lab:  python -m impctl.lab.modem --control FILE --pty-link FILE
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import sys
import time
import tty
from pathlib import Path

STATES: dict[str, dict[str, object]] = {
    "no-sim": {"sim": "missing", "reg": 0},
    "sim-locked": {"sim": "locked", "reg": 0},
    "not-registered": {"sim": "ready", "reg": 2},
    "registration-denied": {"sim": "ready", "reg": 3},
    "registered": {"sim": "ready", "reg": 1},
}

VENDOR_ID = "abcd"
PRODUCT_ID = "1234"
IMEI = "490154203237518"
IMSI = "001010123456789"
ICCID = "8901001012345678901"
OPERATOR = "impctl lab"
OPERATOR_CODE = "00101"
USB_PATH = "devices/pci0000:00/0000:00:14.0/usb1/1-1"
KERNEL_EVENT = "action={action},subsystem=tty,name=ttyUSB0"


def _link(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(target)


def build_sysfs(root: Path) -> None:
    """A sysfs tree with one USB modem whose AT port is ttyUSB0 (driver option1).

    Only what ModemManager's generic kernel-device code reads: the tty class
    link, the usb-serial port, the USB interface (class, driver), and the USB
    device (ids, names). Absolute links: the tree is seen at /sys.
    """
    dev = root / USB_PATH
    iface = dev / "1-1:1.0"
    port = iface / "ttyUSB0"
    ttydir = port / "tty" / "ttyUSB0"
    for d in (ttydir, root / "bus/usb/drivers/option1", root / "bus/usb-serial/drivers/option1",
              root / "class/tty", root / "class/net"):
        d.mkdir(parents=True, exist_ok=True)
    for name, value in (("idVendor", VENDOR_ID), ("idProduct", PRODUCT_ID),
                        ("manufacturer", "impctl"), ("product", "impctl lab modem"),
                        ("bcdDevice", "0100"), ("busnum", "1"), ("devnum", "2")):
        (dev / name).write_text(value + "\n")
    _link(dev / "subsystem", "/sys/bus/usb")
    for name, value in (("bInterfaceClass", "ff"), ("bInterfaceSubClass", "ff"),
                        ("bInterfaceProtocol", "ff"), ("bInterfaceNumber", "00")):
        (iface / name).write_text(value + "\n")
    _link(iface / "subsystem", "/sys/bus/usb")
    _link(iface / "driver", "/sys/bus/usb/drivers/option1")
    _link(port / "subsystem", "/sys/bus/usb-serial")
    _link(port / "driver", "/sys/bus/usb-serial/drivers/option1")
    (ttydir / "dev").write_text("188:0\n")
    (ttydir / "uevent").write_text("MAJOR=188\nMINOR=0\nDEVNAME=ttyUSB0\n")
    _link(ttydir / "subsystem", "/sys/class/tty")
    _link(ttydir / "device", f"/sys/{USB_PATH}/1-1:1.0/ttyUSB0")
    _link(root / "class/tty/ttyUSB0", f"/sys/{USB_PATH}/1-1:1.0/ttyUSB0/tty/ttyUSB0")


def write_control(path: Path, state: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"state": state, **STATES[state]}) + "\n")
    tmp.replace(path)


class Responder:
    """Answers AT commands like a plain 3GPP modem in the state of the control file."""

    def __init__(self, fd: int, control: Path) -> None:
        self.fd = fd
        self.control = control
        self.control_mtime = 0.0
        self.sim = "ready"
        self.reg = 1
        self.buf = b""
        self.reload()

    def reload(self) -> bool:
        try:
            st = self.control.stat()
            if st.st_mtime == self.control_mtime:
                return False
            data = json.loads(self.control.read_text())
        except (OSError, ValueError):
            return False
        self.control_mtime = st.st_mtime
        old = (self.sim, self.reg)
        self.sim = str(data.get("sim", "ready"))
        self.reg = int(data.get("reg", 1))
        if self.reg != old[1]:
            # Unsolicited: an enabled modem in MM updates its registration right away.
            self.write(f"\r\n+CREG: {self.reg}\r\n\r\n+CGREG: {self.reg}\r\n")
        return (self.sim, self.reg) != old

    def write(self, text: str) -> None:
        with contextlib.suppress(OSError):
            os.write(self.fd, text.encode())

    def feed(self, data: bytes) -> None:
        self.buf += data
        while b"\r" in self.buf:
            line, _, self.buf = self.buf.partition(b"\r")
            cmd = line.strip(b"\n ").decode(errors="replace")
            if cmd:
                self.write(self.answer(cmd))

    def _sim_error(self) -> str | None:
        if self.sim == "missing":
            return "+CME ERROR: 10"
        if self.sim == "locked":
            return "+CME ERROR: 11"
        return None

    def answer(self, cmd: str) -> str:
        upper = cmd.upper()
        if not upper.startswith("AT"):
            return ""
        body = upper[2:]
        lines: list[str] = []
        result = "OK"
        reg_ok = self.sim == "ready"
        reg = self.reg if reg_ok else 0
        if body in ("+GCAP",):
            lines = ["+GCAP: +CGSM,+DS"]
        elif body in ("+CGMI", "+GMI"):
            lines = ["impctl"]
        elif body in ("+CGMM", "+GMM"):
            lines = ["impctl lab modem"]
        elif body in ("+CGMR", "+GMR"):
            lines = ["1.0.0"]
        elif body in ("+CGSN", "+GSN"):
            lines = [IMEI]
        elif body == "I":
            lines = ["impctl lab modem"]
        elif body == "+CPIN?":
            err = self._sim_error()
            if err and self.sim == "missing":
                result = err
            else:
                lines = ["+CPIN: SIM PIN" if self.sim == "locked" else "+CPIN: READY"]
        elif body in ("+CIMI", "+CCID", "+ICCID", "^ICCID?"):
            err = self._sim_error()
            if err:
                result = err
            else:
                lines = [IMSI if body == "+CIMI" else f"+CCID: {ICCID}"]
        elif body.startswith("+CRSM=176,12258"):
            err = self._sim_error()
            if err:
                result = err
            else:
                swapped = "".join(ICCID[i + 1] + ICCID[i] for i in range(0, len(ICCID) - 1, 2))
                lines = [f'+CRSM: 144,0,"{swapped}F{ICCID[-1]}"']
        elif body.startswith("+CRSM"):
            result = "+CME ERROR: 4"
        elif body in ("+CREG?", "+CGREG?"):
            lines = [f"{body[:-1]}: 2,{reg}" + (',"0001","00000A01",2' if reg in (1, 5) else "")]
        elif body == "+CEREG?" or body.startswith("+CEREG"):
            result = "ERROR"
        elif body in ("+CREG=?", "+CGREG=?"):
            lines = [f"{body[:-2]}: (0-2)"]
        elif body == "+COPS?":
            lines = [f'+COPS: 0,2,"{OPERATOR_CODE}",2' if reg in (1, 5) else "+COPS: 0"]
        elif body == "+COPS=?":
            lines = [f'+COPS: (2,"{OPERATOR}","lab","{OPERATOR_CODE}",2),,(0-4),(0-2)']
        elif body == "+CSQ":
            lines = ["+CSQ: 20,99"]
        elif body == "+CFUN?":
            lines = ["+CFUN: 1"]
        elif body.startswith("+CLCK=\"SC\",2") or body.startswith("+CLCK=SC,2"):
            err = self._sim_error()
            if self.sim == "missing" and err:
                result = err
            else:
                lines = [f"+CLCK: {1 if self.sim == 'locked' else 0}"]
        elif body == "+CGDCONT=?":
            lines = ['+CGDCONT: (1-10),"IP",,,(0-2),(0-4)',
                     '+CGDCONT: (1-10),"IPV6",,,(0-2),(0-4)',
                     '+CGDCONT: (1-10),"IPV4V6",,,(0-2),(0-4)']
        elif body == "+CGDCONT?":
            lines = ['+CGDCONT: 1,"IP","internet","0.0.0.0",0,0']
        elif body in ("+WS46=?",):
            lines = ["+WS46: (12,22)"]
        elif body == "+WS46?":
            lines = ["+WS46: 12"]
        elif body.startswith("+CPIN="):
            if self.sim == "locked":
                result = "+CME ERROR: 16"  # incorrect password: the lab's SIM stays locked
        elif body.startswith("D") or body.startswith("+CGDATA") or body.startswith("+CGACT="):
            result = "NO CARRIER" if body.startswith("D") else "ERROR"
        elif body == "" or body[0] in "EVQZX&S" or ("=" in body and not body.endswith("=?")):
            result = "OK"
        else:
            result = "ERROR"
        out = "".join(f"\r\n{line}\r\n" for line in lines)
        return out + f"\r\n{result}\r\n"


def serve(control: Path, pty_link: Path) -> None:
    master, slave = os.openpty()
    # No echo, no CR/LF mangling: ModemManager sets its own modes on the slave, but
    # until it does the line discipline would echo our answers back to us.
    tty.setraw(slave)
    slave_name = os.ttyname(slave)
    tmp = pty_link.with_suffix(".tmp")
    tmp.write_text(slave_name + "\n")
    tmp.replace(pty_link)
    responder = Responder(master, control)
    running = True

    def stop(_sig: int, _frame: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # The slave stays open here, so the master never sees a hang-up between MM's opens.
    while running:
        try:
            ready, _, _ = select.select([master], [], [], 0.05)
        except InterruptedError:
            continue
        if ready:
            try:
                data = os.read(master, 4096)
            except OSError:
                time.sleep(0.05)
                continue
            responder.feed(data)
        responder.reload()
    os.close(slave)
    os.close(master)


def main() -> None:
    parser = argparse.ArgumentParser(description="impctl lab AT modem responder")
    parser.add_argument("--control", type=Path, required=True)
    parser.add_argument("--pty-link", type=Path, required=True)
    parser.add_argument("--build-sysfs", type=Path, help="write the fake sysfs tree and exit")
    args = parser.parse_args()
    if args.build_sysfs:
        build_sysfs(args.build_sysfs)
        sys.exit(0)
    serve(args.control, args.pty_link)


if __name__ == "__main__":
    main()
