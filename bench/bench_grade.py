"""Grading benchmarks: one candidate's lab (data-acquisition by default), and N candidates graded concurrently.

Method: each candidate has their own plant (started before timing, as in an exam where plants are up before
grading) and runs the lab's reference solution, started by the grader (--solution). Wall time covers the whole
grading: solution start, 8 s warm-up, 30 s observation window, stop, every check, all report files. The grader's
CPU is its own process's (user + system, from /proc); its memory is peak RSS (ru_maxrss). The collectors' and
plants' CPU is not the grader's and is reported separately.
For dashboard-alerting each grading also starts its own Prometheus and runs the live alert test.
Usage: python bench/bench_grade.py [N] [LAB]
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import AIOTLAB, cli, save  # noqa: E402


async def run(candidates: list[str], out: Path, lab_id: str) -> dict:
    from aiotlab.grader import report
    from aiotlab.grader.engine import grade
    from aiotlab.labs.loader import load_lab

    lab = load_lab(lab_id)
    cpu0 = time.process_time()
    t0 = time.perf_counter()

    async def one(c: str) -> float:
        run_ = await grade(lab, c, solution="reference", out_dir=out / c)
        doc = report.write_all(run_, out / c)
        if doc["score"]["percent"] < 100:  # the reference must score full marks: keep the evidence of any miss
            keep = Path("/tmp/bench-grade-misses") / c
            shutil.copytree(out / c, keep, dirs_exist_ok=True)
            for ch in doc["checks"]:
                if ch["status"] != "pass":
                    print(f"MISS {c}: {ch['id']} {ch['status']} {ch['summary']['en']}", flush=True)
        return doc["score"]["percent"]

    scores = await asyncio.gather(*(one(c) for c in candidates))
    return {
        "wall_s": round(time.perf_counter() - t0, 1),
        "grader_cpu_s": round(time.process_time() - cpu0, 1),
        "scores_percent": sorted(set(scores)),
    }


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    lab_id = sys.argv[2] if len(sys.argv) > 2 else "data-acquisition"
    home = Path(tempfile.mkdtemp(prefix="aiotlab-bench-"))
    os.environ["AIOTLAB_HOME"] = str(home)
    os.environ["AIOTLAB_EXAM_SECRET"] = "bench"
    out = home / "reports"
    try:
        names = [f"gb{i:02d}" for i in range(n)]
        for name in names:
            cli("plant", "up", "-c", name, "--detach")
        one = asyncio.run(run(names[:1], out / "one", lab_id))
        many = asyncio.run(run(names, out / "many", lab_id))
        peak_rss_mib = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    finally:
        subprocess.run([*AIOTLAB, "plant", "down", "--all"], capture_output=True, timeout=600)
        shutil.rmtree(home, ignore_errors=True)
    save(
        f"grade-{n}" if lab_id == "data-acquisition" else f"grade-{lab_id}-{n}",
        {
            "lab": lab_id,
            "one_candidate": one,
            f"{n}_candidates_concurrently": many,
            "ratio_many_to_one": round(many["wall_s"] / one["wall_s"], 2),
            "grader_peak_rss_mib": peak_rss_mib,
        },
    )


if __name__ == "__main__":
    main()
