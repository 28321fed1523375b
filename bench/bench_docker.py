"""Docker backend launch benchmark: time from nothing to a ready containerised plant.

Method: a fresh AIOTLAB_HOME; the plant image already built (./run.sh test-docker or infra/docker/build-image.sh).
(1) `DockerBackend.up` for one plant, REPEAT times, each removed before the next: networks and 9 containers
created and started, then waited on until the control plane answers with every device process ready and the
broker alive. (2) `aiotlab exam up` (backend docker, a new process) for rosters of N, then `exam down`.
Usage: python bench/bench_docker.py [N ...]   (default: 5 10)
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import AIOTLAB, save  # noqa: E402

REPEAT = 5


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [5, 10]
    home = Path(tempfile.mkdtemp(prefix="aiotlab-bench-docker-"))
    os.environ["AIOTLAB_HOME"] = str(home / "state")
    from aiotlab.simulators.containers import DockerBackend

    backend = DockerBackend()
    single = []
    try:
        for i in range(REPEAT):
            t0 = time.perf_counter()
            backend.up(f"one{i}")
            single.append(time.perf_counter() - t0)
            t1 = time.perf_counter()
            backend.down(f"one{i}")
            print(f"up {single[-1]:.2f} s, down {time.perf_counter() - t1:.2f} s", flush=True)
        results: dict[str, object] = {
            "single_plant_up_s": {
                "median": round(statistics.median(single), 2),
                "min": round(min(single), 2),
                "max": round(max(single), 2),
                "runs": REPEAT,
            }
        }
        (home / "exam.secret").write_text("bench\n")
        for n in sizes:
            (home / "roster.csv").write_text("id\n" + "".join(f"d{i:03d}\n" for i in range(n)))
            (home / "exam.yaml").write_text(
                "exam: bench\nlabs: [data-acquisition]\nbackend: docker\nsecret: {file: exam.secret}\n"
                "roster: roster.csv\nout: out\n"
            )
            t0 = time.perf_counter()
            subprocess.run(
                [*AIOTLAB, "exam", "up", str(home / "exam.yaml")], capture_output=True, timeout=900, check=True
            )
            up = time.perf_counter() - t0
            t0 = time.perf_counter()
            subprocess.run([*AIOTLAB, "exam", "down", str(home / "exam.yaml")], capture_output=True, timeout=900)
            down = time.perf_counter() - t0
            results[f"exam_up_{n}_candidates"] = {
                "exam_up_s": round(up, 2),
                "per_plant_s": round(up / n, 2),
                "exam_down_s": round(down, 2),
            }
            print(n, results[f"exam_up_{n}_candidates"], flush=True)
    finally:
        backend.remove()
        shutil.rmtree(home, ignore_errors=True)
    save("docker-launch", results)


if __name__ == "__main__":
    main()
