"""Where a running daemon's RSS sits, sampled from outside: the glibc [heap] and each anonymous mapping.

    sudo .venv/bin/python bench/daemon_smaps.py PID [--every-s 15] [--out FILE.jsonl]
    sudo .venv/bin/python bench/daemon_smaps.py --bench BENCH_PID ...   # the daemon of a daemon_footprint.py run

Nothing is loaded into the daemon (a sampler thread inside it would get a
glibc arena of its own and distort exactly what is measured): every
--every-s it reads /proc/PID/status and /proc/PID/smaps and prints one JSON
line per sample: VmRSS, RssAnon, RssFile, the RSS of [heap] (glibc's main
arena: the C heap and Python objects over 512 bytes) and, for every
anonymous mapping, [size KiB, RSS KiB] keyed by its start address (CPython's
1 MiB pymalloc arenas, merged by the kernel when adjacent, and large malloc
blocks). A mapping whose RSS climbs while its size stays is pages of an
existing pool touched for the first time, not new allocation.

What it showed for issue 9 (daemon_footprint.py --soak 14 --fault-every-s 5,
malloc_trim every 300 s): [heap] 6.0 MiB right after each trim, back up to
~7 MiB before the next one; every anonymous mapping constant but one 4 MiB
region of pymalloc arenas, 2.96 -> 3.45 MiB in 13 minutes (bounded by its
4 MiB); pymalloc's arena count (14) and allocated bytes (12.9 MB) flat.
With PYTHONMALLOC=malloc (every object in glibc's heap, so trimmable) the
[heap] climbed 20.0 -> 21.0 MiB in 5 minutes and a trim gave back little:
worse, not used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def daemon_of_bench(bench_pid: int) -> int | None:
    """The daemon_main process whose environment names the bench's private root."""
    mark = f"impctl-footprint{bench_pid}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"daemon_main" in (entry / "cmdline").read_bytes() and mark in (entry / "environ").read_bytes():
                return int(entry.name)
        except OSError:
            continue
    return None


def sample(pid: int) -> dict[str, Any]:
    anon: dict[str, list[int]] = {}
    heap = 0
    current: str | None = None
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            parts = line.split()
            if not parts[0].endswith(":"):  # a mapping's header: range perms offset dev inode [path]
                current = parts[0] if len(parts) == 5 else ("[heap]" if parts[-1] == "[heap]" else None)
            elif parts[0] == "Rss:" and current is not None:
                rss = int(parts[1])
                if current == "[heap]":
                    heap += rss
                else:
                    start, end = (int(x, 16) for x in current.split("-"))
                    anon[f"{start:x}"] = [(end - start) // 1024, rss]
    status = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "Threads"):
            status[key] = int(value.split()[0])
    return {**status, "heap_kib": heap, "anon_kib": sum(v[1] for v in anon.values()), "anon_maps": anon}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pid", type=int, nargs="?")
    parser.add_argument("--bench", type=int, metavar="BENCH_PID", help="wait for this footprint bench's daemon")
    parser.add_argument("--every-s", type=float, default=15.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    pid = args.pid
    while pid is None:
        if args.bench is None:
            parser.error("a PID or --bench")
        pid = daemon_of_bench(args.bench)
        if pid is None:
            time.sleep(1.0)
    t0 = time.monotonic()
    out = args.out.open("a") if args.out else sys.stdout
    while os.path.exists(f"/proc/{pid}"):
        try:
            record = {"t": round(time.monotonic() - t0), "pid": pid, **sample(pid)}
        except OSError:
            break  # the daemon ended
        out.write(json.dumps(record) + "\n")
        out.flush()
        time.sleep(args.every_s)


if __name__ == "__main__":
    main()
