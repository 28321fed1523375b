"""Exam launch benchmark: `aiotlab exam up` for rosters of 20 and 50 (process backend), then `exam down`.

Method: a fresh AIOTLAB_HOME, an exam file with the data-acquisition lab and a secret file; wall time of the
whole `exam up` command (a new process: interpreter start, every plant started and running, every kit with
both briefs written), and of `exam down`. Plants start LAUNCH_WORKERS (8) at a time.
Usage: python bench/bench_exam.py [N ...]   (default: 20 50)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import AIOTLAB, save  # noqa: E402


def timed(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([*AIOTLAB, *args], capture_output=True, text=True, timeout=900, check=True)
    return round(time.perf_counter() - t0, 2)


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [20, 50]
    results = {}
    for n in sizes:
        home = Path(tempfile.mkdtemp(prefix="aiotlab-bench-exam-"))
        os.environ["AIOTLAB_HOME"] = str(home / "state")
        (home / "exam.secret").write_text("bench\n")
        (home / "roster.csv").write_text("id\n" + "".join(f"b{i:03d}\n" for i in range(n)))
        (home / "exam.yaml").write_text(
            "exam: bench\nlabs: [data-acquisition]\nbackend: process\nsecret: {file: exam.secret}\n"
            "roster: roster.csv\nout: out\n"
        )
        try:
            up = timed("exam", "up", str(home / "exam.yaml"), "--practice")
            down = timed("exam", "down", str(home / "exam.yaml"))
        finally:
            subprocess.run([*AIOTLAB, "plant", "down", "--all"], capture_output=True, timeout=600)
            shutil.rmtree(home, ignore_errors=True)
        results[f"{n}_candidates"] = {"exam_up_s": up, "per_plant_s": round(up / n, 3), "exam_down_s": down}
        print(n, results[f"{n}_candidates"], flush=True)
    save("exam-up", results)


if __name__ == "__main__":
    main()
