"""How long the grader's full TCP port scan (1-65535) of a loopback host takes: raw non-blocking sockets (what the
grader uses) against one asyncio.open_connection per port (what it used first).

Method: one listener on 127.9.9.1:4444; each method scans 1-65535 from source 127.9.9.66, five runs (asyncio: two,
it is slow); wall time and process CPU time per scan. Usage: python bench/bench_scan.py
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import time

from common import RESULTS

from aiotlab.grader.probes.net import port_open, sweep

HOST, SOURCE = "127.9.9.1", "127.9.9.66"


async def asyncio_scan() -> list[int]:
    sem = asyncio.Semaphore(400)

    async def one(p: int) -> int | None:
        async with sem:
            return p if await port_open(HOST, p, 3.0, SOURCE) else None

    return [p for p in await asyncio.gather(*(one(p) for p in range(1, 65536))) if p]


def measure(fn, runs: int) -> dict[str, float]:
    walls, cpus = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        found = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        assert 4444 in found
    return {
        "runs": runs,
        "wall_s_median": round(statistics.median(walls), 3),
        "cpu_s_median": round(statistics.median(cpus), 3),
    }


def main() -> None:
    listener = socket.socket()
    listener.bind((HOST, 4444))
    listener.listen()
    out = {
        "raw_nonblocking": measure(lambda: sweep(HOST, range(1, 65536), SOURCE, 3.0), 5),
        "asyncio_open_connection": measure(lambda: asyncio.run(asyncio_scan()), 2),
    }
    listener.close()
    print(json.dumps(out, indent=2))
    (RESULTS / "port-scan.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
