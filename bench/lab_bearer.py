"""The modem lab's real bearer: modem appearance after ModemManager starts, bearer connect.

    sudo .venv/bin/python bench/lab_bearer.py [-n 5] [-c 10]

For each of N lab ups (Lab(modem=True)): the time from ModemManager's start to
the modem in MM (`modem_appeared_s` in lab.json) and to it registered, and the
whole `up`; then C activations of a gsm profile (`nmcli connection up`, which
returns once NM has the bearer's address on usb0) and deactivations, each
checked to reach the cloud through usb0. Median and max of each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from impctl.lab import Lab
from impctl.lab.topology import MODEM_APN, MODEM_NET_IFNAME


def line(name: str, values: list[float]) -> str:
    return f"{name}: median {statistics.median(values):.3f} s, max {max(values):.3f} s (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5, help="lab ups")
    parser.add_argument("-c", type=int, default=10, help="bearer connects per lab")
    args = parser.parse_args()
    appeared: list[float] = []
    registered: list[float] = []
    ups: list[float] = []
    connects: list[float] = []
    disconnects: list[float] = []
    with tempfile.TemporaryDirectory(prefix="impctl-bench-") as tmp:
        lab = Lab(Path(tmp) / "lab", f"impbce{os.getpid() % 10000}", modem=True)
        for _ in range(args.n):
            start = time.monotonic()
            lab.up(replace=True)
            ups.append(time.monotonic() - start)
            data = json.loads(lab.lab_file.read_text())
            appeared.append(float(data["modem_appeared_s"]))
            registered.append(float(data["modem_registered_s"]))
            lab.nmcli("connection", "add", "type", "gsm", "ifname", "ttyUSB0", "con-name", "bench",
                      "gsm.apn", MODEM_APN, "connection.autoconnect", "no")
            for _ in range(args.c):
                start = time.monotonic()
                lab.nmcli("connection", "up", "bench", timeout=30)
                connects.append(time.monotonic() - start)
                lab.connect(MODEM_NET_IFNAME, lab.cloud_ip, lab.cloud_port, timeout=2.0).close()
                start = time.monotonic()
                lab.nmcli("connection", "down", "bench", timeout=30)
                disconnects.append(time.monotonic() - start)
            lab.down()
    print(line("modem in MM after MM start", appeared))
    print(line("modem registered after MM start", registered))
    print(line("lab up (modem lab)", ups))
    print(line("bearer connect (nmcli connection up)", connects))
    print(line("bearer disconnect (nmcli connection down)", disconnects))


if __name__ == "__main__":
    main()
