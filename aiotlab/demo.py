"""`aiotlab demo`: the main job. A plant up, the lab's reference solution run against it, graded, reports written."""

from __future__ import annotations

import shutil
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
    # Always a fresh plant: an earlier demo of another lab may have hardened this one (its broker, FW-1, PLC-2).
    if ad.is_running(ad.read_state(CANDIDATE)):
        console.print("stopping the demo plant left from an earlier run (the demo starts from a fresh plant)")
        down(CANDIDATE)
    for sub in ("config", "running-config"):
        shutil.rmtree(ad.plant_dir(CANDIDATE) / sub, ignore_errors=True)
    t0 = time.monotonic()
    st = detach(CANDIDATE, SEED)
    if st.get("status") != "running":
        console.print(f"[red]plant did not start:[/] {st.get('error')}")
        return 1
    console.print(
        f"plant up in {time.monotonic() - t0:.2f} s: "
        + ", ".join(f"{e['device']} {e['endpoint']}" for e in st["endpoints"] if e["protocol"] != "client")
    )
    observe_s = lab.data.get("parameters", {}).get("observe_s")
    how = f"observing for {observe_s} s" if observe_s else "probing it"
    try:
        console.print(f"running the reference solution, {how}, grading…")
        docs = await grade_cohort(lab, [CANDIDATE], "reference", None, out, "zh-TW", console)
    finally:
        down(CANDIDATE)
    if not docs:
        return 1
    d = docs[0]
    rdir = out / CANDIDATE / lab.id / f"attempt-{d['manifest']['attempt']}"
    console.print(
        f"reports: {rdir / 'report.html'} · {rdir / 'report.json'} (signed) · {rdir / 'results.json'} (Gradescope)"
    )
    console.print(f"verify: aiotlab report verify {rdir / 'report.json'}")
    full = d["score"]["points"] == d["score"]["max_points"]
    console.print(
        "[green]reference solution: full marks[/]" if full else "[red]reference solution did not score full marks[/]"
    )
    return 0 if full else 1
