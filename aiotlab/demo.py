"""`aiotlab demo`: the main job. A plant up, the lab's reference solution run against it, graded, reports written."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from aiotlab.grader.cohort import grade_cohort
from aiotlab.labs.loader import load_lab
from aiotlab.simulators import addressing as ad
from aiotlab.simulators.daemonctl import detach, down

CANDIDATE = "demo"
SEED = 2026


async def run_demo(lab_id: str, out: Path, console: Console) -> int:
    lab = load_lab(lab_id)
    console.print(
        f"[bold]aiotlab demo[/]: lab [cyan]{lab.id}[/] {lab.version}, candidate [cyan]{CANDIDATE}[/] (seed {SEED})"
    )
    started_here = False
    st = ad.read_state(CANDIDATE)
    if not ad.is_running(st):
        t0 = time.monotonic()
        st = detach(CANDIDATE, SEED)
        if st.get("status") != "running":
            console.print(f"[red]plant did not start:[/] {st.get('error')}")
            return 1
        started_here = True
        console.print(
            f"plant up in {time.monotonic() - t0:.2f} s: "
            + ", ".join(f"{e['device']} {e['endpoint']}" for e in st["endpoints"] if e["protocol"] != "client")
        )
    try:
        console.print(
            f"running the reference solution, observing for {lab.data['parameters']['observe_s']} s, grading…"
        )
        docs = await grade_cohort(lab, [CANDIDATE], "reference", None, out, "zh-TW", console)
    finally:
        if started_here:
            down(CANDIDATE)
    if not docs:
        return 1
    d = docs[0]
    rdir = out / CANDIDATE / lab.id
    console.print(
        f"reports: {rdir / 'report.html'} · {rdir / 'report.json'} (signed) · {rdir / 'results.json'} (Gradescope)"
    )
    console.print(f"verify: aiotlab report verify {rdir / 'report.json'}")
    full = d["score"]["points"] == d["score"]["max_points"]
    console.print(
        "[green]reference solution: full marks[/]" if full else "[red]reference solution did not score full marks[/]"
    )
    return 0 if full else 1
