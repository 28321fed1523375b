"""Shared helpers for benchmarks: run the real CLI, measure processes from /proc, summarise distributions."""

from __future__ import annotations

import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
AIOTLAB = [sys.executable, "-m", "aiotlab.cli"]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AIOTLAB, *args], capture_output=True, text=True, timeout=timeout, check=True)


def accepting(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def pss_kib(pid: int) -> int:
    """Proportional set size: shared pages divided among the processes sharing them (what N plants really cost)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def unique_mib(pids: list[int]) -> float | None:
    """Resident memory of a set of processes as if they ran alone on the machine: the physical pages they map,
    each counted once (= their summed PSS when no other process shares a page with them). PSS itself depends on
    what else runs: the same plant measured 50-68 MiB of PSS on this shared machine as other Python processes
    came and went. Needs the page frame numbers in /proc/PID/pagemap (root); None without them."""
    frames: set[int] = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
                for line in maps:
                    lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                    if line.rstrip().endswith("[vsyscall]"):
                        continue
                    pagemap.seek(lo // 4096 * 8)
                    for (entry,) in struct.iter_unpack("<Q", pagemap.read((hi - lo) // 4096 * 8)):
                        if entry >> 63:  # present in memory
                            frames.add(entry & ((1 << 55) - 1))
        except (OSError, ValueError):
            continue
    if frames == {0}:  # PFNs hidden (not root): nothing to count
        return None
    return round(len(frames) * 4096 / 2**20, 1) if frames else None


def plant_pids(state: dict[str, Any]) -> list[int]:
    pids = [state["pid"]]
    try:
        pids += [c.pid for c in psutil.Process(state["pid"]).children(recursive=True)]
    except psutil.NoSuchProcess:
        pass
    return pids


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p90": pct(values, 0.9),
        "max": max(values),
        "min": min(values),
    }


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "kernel": os.uname().release,
        "mem_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2))
    print(json.dumps(data, indent=2))
    return path
