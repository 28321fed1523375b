"""Grade one or many candidates concurrently, with progress, and write every report plus the cohort summary."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from aiotlab.labs.loader import Lab

from . import report, signing
from .engine import PlantDown, grade

MARKS = {
    "pass": "[green]✓[/]",
    "partial": "[yellow]½[/]",
    "fail": "[red]✗[/]",
    "not_assessable": "–",
    "error": "[red]![/]",
}


def new_attempt(lab_dir: Path) -> tuple[int, Path]:
    """The next attempt's own folder (attempt-1, attempt-2, ...): a grading never overwrites an earlier one."""
    lab_dir.mkdir(parents=True, exist_ok=True)
    n = 1 + max((int(p.name.split("-", 1)[1]) for p in lab_dir.glob("attempt-*") if p.name[8:].isdigit()), default=0)
    while True:
        try:
            (lab_dir / f"attempt-{n}").mkdir()
            return n, lab_dir / f"attempt-{n}"
        except FileExistsError:
            n += 1


def point_latest(lab_dir: Path, attempt: int) -> None:
    """latest.json (and a `latest` link for people) names the newest attempt; replaced atomically."""
    tmp = lab_dir / f".latest.{attempt}.json"
    tmp.write_text(json.dumps({"attempt": attempt, "dir": f"attempt-{attempt}"}), encoding="utf-8")
    tmp.replace(lab_dir / "latest.json")
    link = lab_dir / f".latest.{attempt}"
    link.unlink(missing_ok=True)
    link.symlink_to(f"attempt-{attempt}")
    link.replace(lab_dir / "latest")


def latest_dir(lab_dir: Path) -> Path:
    """The newest attempt's folder of a candidate's lab."""
    return lab_dir / json.loads((lab_dir / "latest.json").read_text(encoding="utf-8"))["dir"]


async def grade_cohort(
    lab: Lab,
    candidates: list[str],
    solution: str | None,
    workspace: Path | dict[str, Path] | None,
    out: Path,
    lang: str,
    console: Console,
    cohort_dir: Path | None = None,
    exam: str | None = None,
    signer: signing.Signer | None = None,
    plants: dict[str, str] | None = None,
    restart_plants: bool = True,
) -> list[dict[str, Any]]:
    """`workspace`: one path (one candidate), or each candidate's own (an exam); else OUT/<candidate>/workspace.
    `plants`: the plant each candidate sits this lab on, when not their own (an exam with several labs).
    The cohort summary (CSV + HTML) goes to `cohort_dir` (default OUT) when more than one candidate is graded."""
    signer = signer or signing.default_signer()
    docs: list[dict[str, Any]] = []
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=False
    ) as progress:
        tasks = {c: progress.add_task(f"{c}: queued", total=None) for c in candidates}

        def say(who: str, what: str) -> None:
            progress.update(tasks[who], description=f"{who}: {what}")

        down: dict[str, str] = {}

        async def one(c: str) -> dict[str, Any] | None:
            try:
                attempt, cdir = new_attempt(out / c / lab.id)
                ws = workspace.get(c) if isinstance(workspace, dict) else workspace
                run = await grade(
                    lab,
                    c,
                    solution=solution,
                    workspace=ws,
                    out_dir=cdir,
                    progress=say,
                    plant=(plants or {}).get(c),
                    restart_plant=restart_plants,
                )
                doc = report.write_all(run, cdir, signer, lang, exam=exam, attempt=attempt)
                point_latest(out / c / lab.id, attempt)
                say(c, f"{doc['score']['points']}/{doc['score']['max_points']} → {cdir / 'report.html'}")
                return doc
            except PlantDown as exc:  # the instructor decides: restart and extend, or grade as is
                say(c, f"[yellow]{exc}[/]")
                down[c] = str(exc)
                (cdir / "not-graded.txt").write_text(f"{exc}\n", encoding="utf-8")
                return None
            except Exception as exc:  # noqa: BLE001 - one candidate's failure must not stop the cohort
                say(c, f"[red]could not be graded: {type(exc).__name__}: {exc}[/]")
                return None

        results = await asyncio.gather(*(one(c) for c in candidates))
    docs = [d for d in results if d]
    # Readable at 80 columns: one row per candidate, the checks that did not pass named (not a column per check).
    table = Table(title=f"{lab.id} {lab.version}", expand=False)
    table.add_column("candidate", overflow="fold")
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("indicators", justify="right", no_wrap=True)
    table.add_column(f"checks not passed (of {len(lab.checks)})", overflow="fold")
    for d in docs:
        ach = sum(i["achieved"] for i in d["indicators"])
        bad = [f"{MARKS.get(c['status'], '!')} {c['id']}" for c in d["checks"] if c["status"] != "pass"]
        table.add_row(
            d["candidate"],
            f"{d['score']['points']:g}/{d['score']['max_points']:g}",
            f"{ach}/{len(d['indicators'])}",
            "\n".join(bad) if bad else "[green]all passed[/]",
        )
    console.print(table)
    for d in docs:  # a candidate defect (or the host) that kept checks from being assessed: said once, plainly
        for b in d.get("not_assessable", []):
            owner = f" ({b['failed_check']} fails)" if b.get("failed_check") else ""
            if not b["blocked_checks"]:  # what happened to the command itself
                console.print(f"[yellow]{d['candidate']}: {b['text']['en']}[/]")
                continue
            console.print(
                f"[yellow]{d['candidate']}: not assessable because {b['text']['en']}{owner}:[/] "
                f"{', '.join(b['blocked_checks'])} (0 points)"
            )
    for c, why in down.items():
        console.print(
            f"[yellow]{c}: {why}. To restart the plant and grade: --restart-down (extend their time first).[/]"
        )
    if len(candidates) > 1:
        graded = {d["candidate"] for d in docs}
        path = report.cohort(docs, cohort_dir or out, out, [c for c in candidates if c not in graded], lang)
        console.print(f"cohort summary: {path}")
    return docs
