"""Exam mode benchmark: what one candidate (plant + workstation + config service) costs, and `exam up` for a roster.

Method: a fresh AIOTLAB_HOME and exam folder; the plant and workstation images already built (./run.sh
test-docker). For each roster size N: `aiotlab exam up` (backend docker, one lab, a new process, run as root) is
timed from exec to exit (every plant ready: control plane answering, every device process on the bus, the broker
alive; every workstation up with its login set); each candidate's launch time is read from the exam state. After
20 s of idling, `docker stats --no-stream` gives each container's memory (cgroup usage, which counts page cache)
and CPU share; they are summed per candidate. Then `exam down`.
Usage: python bench/bench_exam_mode.py [N ...]   (default: 1 10)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import AIOTLAB, save  # noqa: E402

UNITS = {"b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "kb": 1000, "mb": 1000**2, "gb": 1000**3}


def mib(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)\s*([KMG]?i?B)", text.strip(), re.I)
    return float(m.group(1)) * UNITS[m.group(2).lower()] / 1024**2 if m else 0.0


def stats(prefix: str) -> dict[str, dict[str, float]]:
    out = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}\t{{.CPUPerc}}"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    per: dict[str, dict[str, float]] = {}
    for line in out.splitlines():
        name, mem, cpu = line.split("\t")
        m = re.fullmatch(rf"aiotlab-({prefix}\d+)-(\w+)", name)
        if m:
            c = per.setdefault(m.group(1), {"mib": 0.0, "cpu_pct": 0.0, "containers": 0})
            c["mib"] += mib(mem.split("/")[0])
            c["cpu_pct"] += float(cpu.rstrip("%") or 0)
            c["containers"] += 1
            c.setdefault("by_container_mib", {})[m.group(2)] = round(mib(mem.split("/")[0]), 1)
            if m.group(2) == "workstation":
                c["workstation_mib"] = mib(mem.split("/")[0])
    return per


def one_roster(n: int, base: Path) -> dict[str, object]:
    d = base / f"exam{n}"
    d.mkdir()
    (d / "secret.txt").write_text(f"bench-secret-{n}\n")
    (d / "roster.csv").write_text("id\n" + "".join(f"bm{n}x{i}\n" for i in range(n)))
    (d / "exam.yaml").write_text(
        f"exam: bench-{n}\nlabs: [data-acquisition]\nbackend: docker\nworkstation: {{ssh_bind: 127.0.0.1}}\n"
        "secret: {file: secret.txt}\nroster: roster.csv\nout: out\n"
    )
    t0 = time.perf_counter()
    up = subprocess.run([*AIOTLAB, "exam", "up", str(d / "exam.yaml")], capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    if up.returncode != 0:
        raise SystemExit(up.stdout[-3000:] + up.stderr[-3000:])
    state = json.loads((d / "out" / "exam-state.json").read_text())
    launches = [c["seconds"] for c in state["candidates"].values()]
    time.sleep(20)
    per = stats(f"bm{n}x")
    subprocess.run([*AIOTLAB, "exam", "down", str(d / "exam.yaml")], capture_output=True, timeout=600)
    mems = [c["mib"] for c in per.values()]
    return {
        "candidates": n,
        "exam_up_wall_s": round(wall, 1),
        "launch_s_median": round(statistics.median(launches), 1),
        "launch_s_max": round(max(launches), 1),
        "memory_mib_per_candidate_median": round(statistics.median(mems), 1),
        "memory_mib_per_candidate_max": round(max(mems), 1),
        "workstation_mib_median": round(statistics.median(c.get("workstation_mib", 0) for c in per.values()), 1),
        "containers_per_candidate": max(int(c["containers"]) for c in per.values()),
        "idle_cpu_pct_per_candidate_median": round(statistics.median(c["cpu_pct"] for c in per.values()), 2),
        "one_candidate_by_container_mib": next(iter(per.values())).get("by_container_mib", {}),
    }


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [1, 10]
    base = Path(tempfile.mkdtemp(prefix="aiotlab-bench-exam-"))
    os.environ["AIOTLAB_HOME"] = str(base / "state")
    try:
        results = [one_roster(n, base) for n in sizes]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for r in results:
        print(json.dumps(r))
    save("exam_mode", {"rosters": results})


if __name__ == "__main__":
    main()
