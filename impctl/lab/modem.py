"""The lab's simulated modem: a fake sysfs entry for a USB u-blox modem and an AT responder on a pty.

ModemManager runs with `--test-no-udev` in a mount namespace where the tree
made by `build_sysfs` is bound over /sys and the responder's pty slave over
/dev/ttyUSB0; its u-blox plugin probes the port with AT commands and the
answers below make it a 3GPP modem. The modem's second port is a net port,
usb0: a real veth in the gateway whose other end is the carrier's. Vendor
0x1546 (u-blox) gets that net port past the plugin's filter, and the RNDIS
profile in bridge mode (+UUSBCONF, +UBMCONF) makes MM connect a net-port
bearer (no PPP): +CGACT activates the context, +CGCONTRDP hands MM the
bearer's static address, gateway and DNS, which NM puts on usb0.

The SIM and registration answers come from a control file (JSON, see
`STATES`) that the responder re-reads whenever it changes:

    no-sim               AT+CPIN? -> +CME ERROR: 10 (SIM not inserted)
    sim-locked           AT+CPIN? -> +CPIN: SIM PIN
    not-registered       +CREG/+CGREG stat 2 (not registered, searching)
    registration-denied  +CREG/+CGREG stat 3 (denied)
    registered           +CREG/+CGREG stat 1 (home network)

The bearer's faults (`bearer` in the control file, see BEARER_FAULTS):

    refuse   +CGACT=1,1 -> +CME ERROR: 148 (the network refuses the context)
    drop     an active context is deactivated by the network: +CGEV: NW DEACT,
             sent once per increase of the control file's `drops` counter

A registration change is also sent unsolicited (`+CREG: N`, `+CGREG: N`), which
an enabled modem in ModemManager picks up at once. A SIM change is only seen
when ModemManager probes the modem again (the lab replugs it, see Lab.modem_state).

Every command received is appended to at.log next to the control file.

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

# u-blox; not product 1141/1143/1146, which MM's udev rules give a 20 s ready delay.
VENDOR_ID = "1546"
PRODUCT_ID = "1100"
IMEI = "490154203237518"
IMSI = "001010123456789"
ICCID = "8901001012345678901"
OPERATOR = "impctl lab"
OPERATOR_CODE = "00101"
USB_PATH = "devices/pci0000:00/0000:00:14.0/usb1/1-1"
# A model MM's u-blox plugin knows: for an unknown one its band lookup never
# completes (a GLib critical, the modem's initialization hangs, MM 1.20.4).
MANUFACTURER = "u-blox"
MODEL = "TOBY-L210"
NET_IFNAME = "usb0"
# Both ports carry one uid: that groups them into one modem.
PORTS = (("tty", "ttyUSB0"), ("net", NET_IFNAME))
MODEM_UID = "impctl-lab-modem"
KERNEL_EVENTS = tuple(f"action={{action}},subsystem={sub},name={name},uid={MODEM_UID}"
                      for sub, name in PORTS)
BEARER_FAULTS = ("refuse",)
# The context's address as +CGCONTRDP gives it and the carrier's router (gateway, DNS);
# set by the lab (--bearer-ip/--gateway-ip) from its topology.
DEFAULT_BEARER_IP = "198.18.64.2"
DEFAULT_GATEWAY_IP = "198.18.64.1"
APN = "internet"
AT_LOG_NAME = "at.log"  # next to the control file


def kernel_events(action: str) -> list[str]:
    return [e.format(action=action) for e in KERNEL_EVENTS]


def _link(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(target)


def build_sysfs(root: Path) -> None:
    """A sysfs tree with one USB modem: AT port ttyUSB0 (driver option1) on interface 1.0,
    net port usb0 (driver rndis_host) on interface 1.2.

    Only what ModemManager's generic kernel-device code reads: the tty and net
    class links, the usb-serial port, the USB interfaces (class, driver), and the
    USB device (ids, names). Absolute links: the tree is seen at /sys.
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
    # The net port: the real usb0 veth is what MM and NM use; this only tells MM it
    # belongs to the same USB device as ttyUSB0.
    net_iface = dev / "1-1:1.2"
    netdir = net_iface / "net" / NET_IFNAME
    for d in (netdir, root / "bus/usb/drivers/rndis_host"):
        d.mkdir(parents=True, exist_ok=True)
    for name, value in (("bInterfaceClass", "e0"), ("bInterfaceSubClass", "01"),
                        ("bInterfaceProtocol", "03"), ("bInterfaceNumber", "02")):
        (net_iface / name).write_text(value + "\n")
    _link(net_iface / "subsystem", "/sys/bus/usb")
    _link(net_iface / "driver", "/sys/bus/usb/drivers/rndis_host")
    (netdir / "uevent").write_text(f"INTERFACE={NET_IFNAME}\n")
    _link(netdir / "subsystem", "/sys/class/net")
    _link(netdir / "device", f"/sys/{USB_PATH}/1-1:1.2")
    _link(root / f"class/net/{NET_IFNAME}", f"/sys/{USB_PATH}/1-1:1.2/net/{NET_IFNAME}")


def write_control(path: Path, state: str, bearer: str | None = None, drops: int = 0) -> None:
    """The responder's control file: a modem STATE, a bearer fault (BEARER_FAULTS) or None,
    and the count of network deactivations asked for so far."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"state": state, **STATES[state], "bearer": bearer,
                               "drops": drops}) + "\n")
    tmp.replace(path)


class Responder:
    """Answers AT commands like a plain 3GPP modem in the state of the control file."""

    def __init__(self, fd: int, control: Path, bearer_ip: str = DEFAULT_BEARER_IP,
                 gateway_ip: str = DEFAULT_GATEWAY_IP) -> None:
        self.fd = fd
        self.control = control
        self.control_mtime = 0.0
        self.sim = "ready"
        self.reg = 1
        self.bearer_fault: str | None = None
        self.drops = 0
        # PDP contexts as a real modem keeps them (+CGDCONT): cid -> (PDP type, APN); MM
        # stores a new one when none matches the IP type asked for (NM asks IPv4v6 first).
        self.contexts: dict[int, tuple[str, str]] = {1: ("IP", APN)}
        self.active_cid: int | None = None
        self.bearer_ip = bearer_ip
        self.gateway_ip = gateway_ip
        self.buf = b""
        self.cops_format = 2  # +COPS=3,<format>: 0 long name, 2 numeric
        # Every command received, one a line ("<unix time> <command>"): what ModemManager
        # did to the modem, for tests (e.g. +CGACT=0,1 when NM takes the bearer down).
        self.at_log = control.with_name(AT_LOG_NAME)
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
        fault = data.get("bearer")
        self.bearer_fault = str(fault) if fault else None
        drops = int(data.get("drops", 0))
        if drops > self.drops and self.active_cid is not None:
            # The network tears the context down: MM fails the bearer, NM the device
            # (modem-no-carrier), within tens of ms.
            cid, self.active_cid = self.active_cid, None
            pdp = self.contexts.get(cid, ("IP", APN))[0]
            self.write(f'\r\n+CGEV: NW DEACT "{pdp}","{self.bearer_ip}",{cid}\r\n')
        self.drops = drops
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
                with contextlib.suppress(OSError), self.at_log.open("a") as log:
                    log.write(f"{time.time():.3f} {cmd}\n")
                self.write(self.answer(cmd))

    def _active(self, cid_text: str) -> int | None:
        """The cid named, if it is the active context."""
        if cid_text.isdigit() and int(cid_text) == self.active_cid:
            return self.active_cid
        return None

    def _define_context(self, args: str) -> str:
        """+CGDCONT=cid[,"type","apn",...]: define a context, or delete it (cid alone)."""
        fields = [f.strip().strip('"') for f in args.split(",")]
        if not fields[0].isdigit() or not 1 <= int(fields[0]) <= 10:
            return "ERROR"
        cid = int(fields[0])
        if len(fields) == 1:
            if cid == self.active_cid:
                return "ERROR"
            self.contexts.pop(cid, None)
        else:
            self.contexts[cid] = (fields[1].upper(), fields[2] if len(fields) > 2 else "")
        return "OK"

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
            lines = [MANUFACTURER]
        elif body in ("+CGMM", "+GMM"):
            lines = [MODEL]
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
        elif body.startswith("+COPS=3,") and body[8:].isdigit():
            # The format later +COPS? answers in: MM asks for the code (2), then the name (0).
            self.cops_format = int(body[8:])
        elif body == "+COPS?":
            name = OPERATOR if self.cops_format == 0 else OPERATOR_CODE
            lines = [f'+COPS: 0,{self.cops_format},"{name}",2' if reg in (1, 5) else "+COPS: 0"]
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
            lines = [f'+CGDCONT: {cid},"{pdp}","{apn}","0.0.0.0",0,0'
                     for cid, (pdp, apn) in sorted(self.contexts.items())]
        elif body.startswith("+CGDCONT="):
            result = self._define_context(cmd[len("AT+CGDCONT="):])
        elif body in ("+WS46=?",):
            lines = ["+WS46: (12,22)"]
        elif body == "+WS46?":
            lines = ["+WS46: 12"]
        elif body.startswith("+CPIN="):
            if self.sim == "locked":
                result = "+CME ERROR: 16"  # incorrect password: the lab's SIM stays locked
        elif body == "+UUSBCONF?":
            # RNDIS, not back-compatible: MM's u-blox plugin uses the net port, no PPP.
            lines = ['+UUSBCONF: 3,"RNDIS",,"0x1146"']
        elif body == "+UBMCONF?":
            # Bridge mode: the bearer's IP config comes from +CGCONTRDP (static), not DHCP.
            lines = ["+UBMCONF: 2"]
        elif body == "+CGACT?":
            lines = [f"+CGACT: {cid},{1 if cid == self.active_cid else 0}"
                     for cid in sorted(self.contexts)]
        elif body == "+CGEREP=?":
            # Without it MM never sets up the +CGEV handlers: a NW DEACT would go unseen.
            lines = ["+CGEREP: (0-2),(0-1)"]
        elif body == "+CGEREP?":
            lines = ["+CGEREP: 2,0"]
        elif body == "+UAUTHREQ=?":
            lines = ["+UAUTHREQ: (1-8),(0-3),,"]
        elif body.startswith("+CGACT="):
            state, _, cid_text = body[len("+CGACT="):].partition(",")
            cid = int(cid_text) if cid_text.isdigit() else None
            if cid not in self.contexts or state not in ("0", "1"):
                result = "ERROR"
            elif state == "1" and self.bearer_fault == "refuse":
                # Not CME 30 ("no network service"): NM reports that as gsm-registration-idle.
                result = "+CME ERROR: 148"
            elif state == "1":
                self.active_cid = cid
            elif cid == self.active_cid:
                self.active_cid = None
        elif body.startswith("+UIPADDR="):
            cid = self._active(body[len("+UIPADDR="):])
            if cid is None:
                result = "ERROR"
            else:
                lines = [f'+UIPADDR: {cid},"{NET_IFNAME}","{self.gateway_ip}","255.255.255.0","",""']
        elif body.startswith("+CGCONTRDP="):
            cid = self._active(body[len("+CGCONTRDP="):])
            if cid is None:
                result = "ERROR"
            else:
                # Address and mask in one field, as u-blox modems write it.
                lines = [f'+CGCONTRDP: {cid},5,"{self.contexts[cid][1]}",'
                         f'"{self.bearer_ip}.255.255.255.0","{self.gateway_ip}","{self.gateway_ip}"']
        elif body.startswith("D") or body.startswith("+CGDATA"):
            result = "NO CARRIER" if body.startswith("D") else "ERROR"
        elif body == "" or body[0] in "EVQZX&S" or ("=" in body and not body.endswith("=?")):
            result = "OK"
        else:
            result = "ERROR"
        out = "".join(f"\r\n{line}\r\n" for line in lines)
        return out + f"\r\n{result}\r\n"


def serve(control: Path, pty_link: Path, bearer_ip: str = DEFAULT_BEARER_IP,
          gateway_ip: str = DEFAULT_GATEWAY_IP) -> None:
    master, slave = os.openpty()
    # No echo, no CR/LF mangling: ModemManager sets its own modes on the slave, but
    # until it does the line discipline would echo our answers back to us.
    tty.setraw(slave)
    slave_name = os.ttyname(slave)
    tmp = pty_link.with_suffix(".tmp")
    tmp.write_text(slave_name + "\n")
    tmp.replace(pty_link)
    responder = Responder(master, control, bearer_ip, gateway_ip)
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
    parser.add_argument("--bearer-ip", default=DEFAULT_BEARER_IP)
    parser.add_argument("--gateway-ip", default=DEFAULT_GATEWAY_IP)
    parser.add_argument("--build-sysfs", type=Path, help="write the fake sysfs tree and exit")
    args = parser.parse_args()
    if args.build_sysfs:
        build_sysfs(args.build_sysfs)
        sys.exit(0)
    serve(args.control, args.pty_link, args.bearer_ip, args.gateway_ip)


if __name__ == "__main__":
    main()
