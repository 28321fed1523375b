"""Cold starts of two (or more) git revisions, interleaved: a fair before/after on a machine others also use.

Each revision is exported (`git archive`) to a temporary folder laid out as the installed package (aiotlab/ with
simulators, grader and labs under it) and put first on PYTHONPATH, so this checkout's virtualenv runs it. Runs
alternate between the revisions (A B A B ...), so load that comes and goes falls on both alike. A run is
bench_plant.py's cold start: exec of `aiotlab plant up --detach` until PLC-1, EM-1, PLC-2, the broker and the
control plane accept TCP connections, and until the command returns; each run in a fresh AIOTLAB_HOME whose
registry leaves the low slots to other registries' plants (tests, containers), so no run pays for a slot clash.

Usage: python bench/bench_ab.py RUNS REV [REV...]      e.g.  python bench/bench_ab.py 10 b322522 HEAD
"""

from __future__ import annotations

import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from common import ROOT, accepting, save


def export(rev: str, into: Path) -> Path:
    tree = into / "tree"
    tree.mkdir(parents=True)
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(tree, filter="data")
    pkg = into / "pkg"
    shutil.copytree(tree / "aiotlab", pkg / "aiotlab")
    for sub in ("simulators", "grader", "labs"):
        (pkg / "aiotlab" / sub).symlink_to(tree / sub)
    return pkg


HELD_SLOTS = 32
SUMMARY = {"median": statistics.median, "min": min, "max": max}


def one_run(pkg: Path) -> tuple[float, float]:
    home = tempfile.mkdtemp(prefix="aiotlab-ab-")
    for slot in range(HELD_SLOTS):  # held by a live process (pid 1) as far as this registry knows
        held = Path(home) / "plants" / f"held{slot}"
        held.mkdir(parents=True)
        (held / "plant.json").write_text(json.dumps({"candidate": f"held{slot}", "slot": slot, "pid": 1}))
    env = {**os.environ, "AIOTLAB_HOME": home, "AIOTLAB_EXAM_SECRET": "bench", "PYTHONPATH": str(pkg)}
    cmd = [sys.executable, "-m", "aiotlab.cli", "plant"]
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen([*cmd, "up", "-c", "ab", "--detach"], env=env, cwd=home, stdout=subprocess.DEVNULL)
        state_file = Path(home) / "plants" / "ab" / "plant.json"
        state: dict = {}
        deadline = time.monotonic() + 60
        while "addresses" not in state and time.monotonic() < deadline:
            try:
                state = json.loads(state_file.read_text())
            except (OSError, ValueError):
                pass
            time.sleep(0.002)
        h, p = state["addresses"]["hosts"], state["addresses"]["ports"]
        eps = [(h["plc1"], p["modbus"]), (h["em1"], p["modbus"]), (h["plc2"], p["opcua"])]
        eps += [(h["broker"], p["mqtt"]), (h["control"], p["control"])]
        while not all(accepting(host, port) for host, port in eps):
            time.sleep(0.005)
        ready = time.perf_counter() - t0
        proc.wait(60)
        returned = time.perf_counter() - t0
        return ready, returned
    finally:
        subprocess.run([*cmd, "down", "-c", "ab"], env=env, cwd=home, capture_output=True, timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    runs, revs = int(sys.argv[1]), sys.argv[2:]
    work = Path(tempfile.mkdtemp(prefix="aiotlab-ab-trees-"))
    try:
        pkgs = {rev: export(rev, work / str(i)) for i, rev in enumerate(revs)}
        for pkg in pkgs.values():  # the address-space cache and the page cache warm, for every revision alike
            one_run(pkg)
        times: dict[str, list[tuple[float, float]]] = {rev: [] for rev in revs}
        for _ in range(runs):
            for rev, pkg in pkgs.items():
                times[rev].append(one_run(pkg))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {}
    for rev, t in times.items():
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], capture_output=True, text=True)
        ready, returned = [x[0] for x in t], [x[1] for x in t]
        results[rev] = {
            "commit": commit.stdout.strip(),
            "ready_s": {k: round(f(ready), 3) for k, f in SUMMARY.items()},
            "returned_s": {k: round(f(returned), 3) for k, f in SUMMARY.items()},
            "runs": [[round(a, 3), round(b, 3)] for a, b in t],
        }
    save("plant-cold-ab", {"runs_each": runs, "interleaved": revs, "results": results})


if __name__ == "__main__":
    main()
