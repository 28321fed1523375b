"""Where a plant's start goes, measured in ways a busy machine does not move much.

Wall-clock cold starts (bench_plant.py cold) vary with whatever else the machine runs: on this shared 2-core
machine the same code measured 0.6 s and 2.4 s. This benchmark counts instructions instead (valgrind's
callgrind, deterministic to within a few per mille) and reports Python's own import times per package:

- python: `python -c pass` (interpreter start-up, site, the venv's .pth files)
- cli imports: what `aiotlab plant up --detach` imports before it starts the plant process
- daemon imports: what the plant process imports (aiotlab.simulators.daemon and the control plane)
- daemon to ready: the plant process from exec until every device serves (imports, spec, configs, truth,
  devices), in a private AIOTLAB_HOME, ended at once when ready
- import times: `python -X importtime` of the daemon's imports, summed per top-level package (median of 5)

Usage: python bench/bench_start.py            (needs valgrind; without it only the import times)
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

from common import save

DAEMON_IMPORTS = "import aiotlab.simulators.daemon, aiotlab.simulators.control_api"
CLI_IMPORTS = "import aiotlab.cli, aiotlab.simulators.daemonctl, aiotlab.simulators.params"


def instructions(args: list[str], env: dict[str, str] | None = None) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    m = re.search(r"Collected : (\d+)", out.stderr)
    if not m:
        raise RuntimeError(f"callgrind failed: {out.stderr[-800:]}")
    return int(m.group(1))


def import_times(runs: int = 5) -> dict[str, float]:
    """Self time of the daemon's imports per top-level package, ms, median over runs."""
    per: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(runs):
        err = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", DAEMON_IMPORTS], capture_output=True, text=True, check=True
        ).stderr
        agg: collections.Counter[str] = collections.Counter()
        for line in err.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, _, name = line.split(":", 1)[1].split("|")
            name = name.strip()
            agg["aiotlab" if name.startswith("aiotlab") else name.split(".")[0]] += int(self_us)
        agg["(total)"] = sum(agg.values())
        for k, v in agg.items():
            per[k].append(v / 1000)
    med = {k: round(statistics.median(v + [0.0] * (runs - len(v))), 1) for k, v in per.items()}
    return dict(sorted(med.items(), key=lambda kv: -kv[1])[:16])


def to_ready(candidate: str) -> None:
    """The plant process's own path (daemon.main without argparse and logging set-up), ended when ready."""
    import aiotlab.simulators.daemon  # noqa: F401 - the daemon's imports, as it makes them
    from aiotlab.simulators import addressing as ad
    from aiotlab.simulators import launch
    from aiotlab.simulators.runtime import PlantStartError

    def ready(plant: object) -> None:
        broker = getattr(plant, "broker", None)
        if broker is not None and broker.proc is not None:
            broker.proc.terminate()
        os._exit(0)

    for _ in range(20):
        try:
            asyncio.run(launch.serve(candidate, None, on_ready=ready))
        except PlantStartError as exc:  # a slot another registry's plant uses: hold it here and take the next
            if "address already in use" not in str(exc):
                raise
            slot = ad.read_state(candidate)["slot"]
            blocker = ad.plant_dir(f"held{slot}")
            blocker.mkdir(parents=True, exist_ok=True)
            (blocker / "plant.json").write_text(json.dumps({"candidate": f"held{slot}", "slot": slot, "pid": 1}))
            ad.write_state(candidate, {"candidate": candidate, "status": "stopped"})
    raise SystemExit("no free slot")


def main() -> None:
    if sys.argv[1:2] == ["--to-ready"]:
        to_ready(sys.argv[2])
        return
    results: dict = {"import_times_ms": import_times()}
    if shutil.which("valgrind"):
        home = tempfile.mkdtemp(prefix="aiotlab-bench-start-")
        env = {**os.environ, "AIOTLAB_HOME": home, "AIOTLAB_EXAM_SECRET": "bench"}
        try:
            subprocess.run([sys.executable, __file__, "--to-ready", "warm"], env=env, check=True, timeout=120)
            results["instructions_G"] = {
                "python": round(instructions([sys.executable, "-c", "pass"]) / 1e9, 3),
                "cli_imports": round(instructions([sys.executable, "-c", CLI_IMPORTS]) / 1e9, 3),
                "daemon_imports": round(instructions([sys.executable, "-c", DAEMON_IMPORTS]) / 1e9, 3),
                "daemon_to_ready": round(
                    instructions([sys.executable, __file__, "--to-ready", "counted"], env=env) / 1e9, 3
                ),
            }
        finally:
            shutil.rmtree(home, ignore_errors=True)
    results["pythondontwritebytecode"] = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
    save("start", results)


if __name__ == "__main__":
    main()
