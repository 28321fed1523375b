"""Plant benchmarks: cold start, PSS memory and idle CPU per plant, N plants side by side with tick jitter.

Method (recorded with the results in docs/benchmarks.md):
- cold start: wall time from exec of `aiotlab plant up --detach` until every candidate-facing endpoint
  (PLC-1 and EM-1 through FW-1, PLC-2, broker) and the control plane accept TCP connections; also until the
  command returns, and the plant process's CPU seconds at that point (less sensitive to other load than wall
  time); 5 runs (`cold N` for N), the address-space cache already built (the very first start on a machine
  builds it once).
- memory: PSS (proportional set size) of the plant process plus its Mosquitto after 20 s of running, and the
  same processes' resident pages each counted once ("alone": what PSS is on an otherwise empty machine; PSS on a
  shared machine is lower by whatever other processes share, see common.unique_mib).
- idle CPU: CPU seconds of plant + Mosquitto over 30 s with the HMI and sensors running, no candidate traffic.
- side by side: N plants started one after another, then observed for 40 s; tick jitter = lateness of each
  physics tick against its deadline, p99 over each plant's last 3000 ticks, reported as the worst plant and
  the median plant; total PSS and total CPU share.
Usage: python bench/bench_plant.py [cold [N]|idle|side N]...
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import AIOTLAB, accepting, cli, cpu_seconds, pct, plant_pids, pss_kib, save, summary, unique_mib

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def endpoints(state: dict) -> list[tuple[str, int]]:
    a = state["addresses"]
    h, p = a["hosts"], a["ports"]
    return [
        (h["plc1"], p["modbus"]),
        (h["em1"], p["modbus"]),
        (h["plc2"], p["opcua"]),
        (h["broker"], p["mqtt"]),
        (h["control"], p["control"]),
    ]


def cold(runs: int = 5) -> dict:
    from aiotlab.simulators import addressing as ad

    times, returned, cpu = [], [], []
    for i in range(runs):
        name = f"cold{i}"
        cli("plant", "down", "-c", name)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [*AIOTLAB, "plant", "up", "-c", name, "--detach"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        state = None
        while state is None or "addresses" not in state:
            state = ad.read_state(name)
            time.sleep(0.002)
        eps = endpoints(state)
        while not all(accepting(h, p) for h, p in eps):
            time.sleep(0.005)
        times.append(time.perf_counter() - t0)
        cpu.append(cpu_seconds([ad.read_state(name)["pid"]]))
        proc.wait(30)
        returned.append(time.perf_counter() - t0)
        cli("plant", "down", "-c", name)
    return {
        "cold_start_s": summary(times),
        "cold_start_runs_s": [round(t, 3) for t in times],
        "plant_up_returned_s": summary(returned),
        "plant_process_cpu_s_at_ready": summary(cpu),
    }


def idle(observe_s: float = 30.0) -> dict:
    from aiotlab.simulators import addressing as ad

    cli("plant", "up", "-c", "idle", "--detach")
    state = ad.read_state("idle")
    time.sleep(20)
    pids = plant_pids(state)
    pss = {pid: pss_kib(pid) for pid in pids}
    alone = unique_mib(pids)
    c0 = cpu_seconds(pids)
    time.sleep(observe_s)
    cpu = (cpu_seconds(pids) - c0) / observe_s
    cli("plant", "down", "-c", "idle")
    return {
        "pss_mib_per_plant": round(sum(pss.values()) / 1024, 1),
        "alone_mib_per_plant": alone,
        "pss_mib_plant_process": round(pss[state["pid"]] / 1024, 1),
        "idle_cpu_percent_of_one_core": round(cpu * 100, 2),
    }


def side(n: int, observe_s: float = 40.0) -> dict:
    from aiotlab.simulators import addressing as ad
    from aiotlab.simulators.control_client import ControlClient

    names = [f"side{i:03d}" for i in range(n)]
    t0 = time.perf_counter()
    t_launch0 = time.time()
    for name in names:
        cli("plant", "up", "-c", name, "--detach")
    launch_s = time.perf_counter() - t0
    states = [ad.read_state(name) for name in names]
    pids = [pid for st in states for pid in plant_pids(st)]
    c0 = cpu_seconds(pids)
    time.sleep(observe_s)
    cpu = (cpu_seconds(pids) - c0) / observe_s
    p99s, maxes, stalls = [], [], []
    for name in names:
        ctl = ControlClient.for_candidate(name)
        st = ctl.get("/v1/status")
        p99s.append(st["tick_jitter_ms"]["p99"])
        maxes.append(st["tick_jitter_ms"]["max"])
        for e in ctl.get(f"/v1/events?start=0&end={time.time()}"):
            if e["kind"] == "tick_stall":
                stalls.append({"plant": name, "t_rel_launch_s": round(e["t"] - t_launch0, 1), **e["detail"]})
    total_pss = sum(pss_kib(pid) for pid in pids) / 1024
    for name in names:
        cli("plant", "down", "-c", name)
    return {
        f"side_by_side_{n}": {
            "plants": n,
            "launch_all_s": round(launch_s, 1),
            "tick_p99_ms_worst_plant": max(p99s),
            "tick_p99_ms_median_plant": pct(p99s, 0.5),
            "tick_max_ms_worst": max(maxes),
            "total_pss_mib": round(total_pss),
            "pss_mib_per_plant": round(total_pss / n, 1),
            "cpu_cores_used": round(cpu, 2),
            "stalls_over_250ms": stalls,
        }
    }


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="aiotlab-bench-"))
    os.environ["AIOTLAB_HOME"] = str(home)
    os.environ.setdefault("AIOTLAB_EXAM_SECRET", "bench")
    args = sys.argv[1:] or ["cold", "idle", "side", "10"]
    results: dict = {}
    try:
        i = 0
        while i < len(args):
            if args[i] == "cold":
                if i + 1 < len(args) and args[i + 1].isdigit():
                    results.update(cold(int(args[i + 1])))
                    i += 1
                else:
                    results.update(cold())
            elif args[i] == "idle":
                results.update(idle())
            elif args[i] == "side":
                results.update(side(int(args[i + 1])))
                i += 1
            i += 1
    finally:
        subprocess.run([*AIOTLAB, "plant", "down", "--all"], capture_output=True, timeout=600)
        shutil.rmtree(home, ignore_errors=True)
    save("plant-" + "-".join(args), results)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
