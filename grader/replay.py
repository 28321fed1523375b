"""Re-run a lab's checks on a recording and compare with the original report: verdicts must be identical."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from rich.console import Console

from aiotlab.labs.loader import Lab

from . import report
from .engine import GradeRun, load_recording, run_checks


def replay_run(lab: Lab, recording: Path, out: Path, lang: str, console: Console) -> bool:
    if recording.is_dir():
        recording = recording / "recording.json.gz"
    original = recording.parent / "report.json"
    ok, findings = (
        report.verify_file(original) if original.is_file() else (False, [f"no signed report beside {recording}"])
    )
    if not ok or "recording.json.gz" not in json.loads(original.read_text(encoding="utf-8"))["manifest"]["files"]:
        for f in findings:
            console.print(f"[red]✗[/] {f}")
        console.print("[red]refused: a recording is replayed only when its signed report binds it unchanged[/]")
        return False
    ctx = load_recording(lab, recording)
    results = asyncio.run(run_checks(lab, ctx))
    run = GradeRun(
        lab,
        ctx.candidate,
        ctx.params,
        {
            "params_digest": ctx.plant_info.get("params_digest"),
            "identity_digest": ctx.sheet["parameter_fingerprint"],
            "replay_of": str(recording),
        },
        results,
        ctx.observation.window,
        time.time(),
        time.time(),
        {"replayed": True},
        blockers=ctx.blockers,
        health=ctx.health,
    )
    doc = report.write_all(run, out, None, lang)
    before = {c["id"]: (c["status"], c["points"]) for c in json.loads(original.read_text())["checks"]}
    after = {c["id"]: (c["status"], c["points"]) for c in doc["checks"]}
    diff = {k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)}
    if diff:
        for k, (b, a) in sorted(diff.items()):
            console.print(f"[red]differs[/] {k}: original {b}, replay {a}")
        return False
    console.print(
        f"[green]replay identical[/]: {len(after)} checks, {doc['score']['points']}/{doc['score']['max_points']} → {out}"
    )
    return True
