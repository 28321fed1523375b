"""Grade one or many candidates concurrently, with progress, and write every report plus the cohort summary."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.measure import Measurement
from rich.padding import Padding
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

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


# The cohort CSV is UTF-8 with a byte-order mark: Excel then opens it as UTF-8 and shows Chinese names as written
# (without one it guesses the ANSI code page and garbles them). Read it back with encoding="utf-8-sig".
CSV_ENCODING = "utf-8-sig"


def score_text(doc: dict[str, Any]) -> str:
    return f"{doc['score']['points']:g}/{doc['score']['max_points']:g}"


def score_mark(doc: dict[str, Any]) -> str:
    """The verdict of a score at a glance, in colour and as a mark (a log without colour keeps the mark)."""
    points, top = doc["score"]["points"], doc["score"]["max_points"]
    return MARKS["pass"] if points >= top else MARKS["fail"] if points <= 0 else MARKS["partial"]


def fit_table(table: Table, console: Console) -> RenderableType:
    """`table` as it is where its columns fit the console without breaking a word (rich wraps long cells at spaces);
    where they cannot (an 80-column terminal and a long path or message), the same cells stacked: a block per row,
    its first cell as heading, then a `column  value` line per other cell, or the column's name on a line of its own
    and the value below it where the value would not fit beside it. Nothing is cut off or broken mid-word (but a
    word wider than the terminal)."""
    need = Measurement.get(console, console.options.update_width(1 << 16), table).minimum
    if need <= console.width:
        return table
    columns = table.columns
    cells = [list(col.cells) for col in columns]
    label_width = 2 + max((cell_len(str(c.header)) for c in columns[1:]), default=0)
    beside = console.width - label_width - 2
    parts: list[RenderableType] = []
    if table.title:
        parts.append(Text(str(table.title), style="bold"))
    for r in range(table.row_count):
        heading = cells[0][r]
        parts.append(Text.from_markup(heading, style="bold") if isinstance(heading, str) else heading)
        grid: Table | None = None
        for col, column_cells in zip(columns[1:], cells[1:], strict=True):
            value = column_cells[r]
            if value in ("", None):
                continue
            label = Text(f"  {col.header}", style="dim")
            width = Measurement.get(console, console.options, value).minimum
            if width <= beside:
                if grid is None:
                    grid = Table.grid(padding=(0, 2))
                    grid.add_column(no_wrap=True, min_width=label_width)
                    grid.add_column()
                    parts.append(grid)
                grid.add_row(label, value)
            else:
                grid = None
                indent = 0 if console.width - 4 < width <= console.width else 4  # so a path just fitting stays whole
                parts += [label, Padding(value, (0, 0, 0, indent), expand=False)]
    return Group(*parts)


def candidate_columns(table: Table, names: dict[str, str], ids: list[str]) -> Callable[[str], list[str]]:
    """Add the `candidate` column, and `name` when the roster names any of `ids` (a plant id `alice.lab` is
    alice's); returns what to put in them for a candidate."""

    def name(c: str) -> str:
        return names.get(c.split(".", 1)[0], "")

    table.add_column("candidate")
    if not any(name(c) for c in ids):
        return lambda c: [escape(c)]
    table.add_column("name")
    return lambda c: [escape(c), escape(name(c))]


def result_table(
    lab: Lab, docs: list[dict[str, Any]], candidates: list[str], names: dict[str, str], not_graded: dict[str, str]
) -> Table:
    """One row per candidate: score, indicators achieved, the checks that did not pass named (not a column per
    check), verdicts in colour and as marks; a candidate not graded says why."""
    table = Table(title=f"{lab.id} {lab.version}", expand=False)
    lead = candidate_columns(table, names, candidates)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("indicators", justify="right", no_wrap=True)
    table.add_column(f"checks not passed (of {len(lab.checks)})")
    by_id = {d["candidate"]: d for d in docs}
    for c in candidates:
        d = by_id.get(c)
        if d is None:
            if c in not_graded:
                table.add_row(*lead(c), "–", "–", f"[red]not graded[/]: {escape(not_graded[c])}")
            continue
        ach = sum(i["achieved"] for i in d["indicators"])
        bad = [f"{MARKS.get(x['status'], '!')} {x['id']}" for x in d["checks"] if x["status"] != "pass"]
        colour = "green" if ach == len(d["indicators"]) else "red" if ach == 0 else "yellow"
        table.add_row(
            *lead(c),
            f"{score_mark(d)} {score_text(d)}",
            f"[{colour}]{ach}/{len(d['indicators'])}[/]",
            "\n".join(bad) if bad else "[green]all passed[/]",
        )
    return table


def write_cohort(
    docs: list[dict[str, Any]],
    out_dir: Path,
    reports_dir: Path,
    missing: list[str],
    lang: str,
    names: dict[str, str] | None = None,
) -> Path:
    """cohort.html (the assessor's view) and cohort.csv with the roster's names, UTF-8 with a BOM."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if docs:
        report.cohort_html(docs, out_dir, reports_dir, missing, lang)
    return write_cohort_csv(docs, out_dir / "cohort.csv", names or {})


def write_cohort_csv(docs: list[dict[str, Any]], path: Path, names: dict[str, str]) -> Path:
    """One row per graded candidate: id, roster name, lab, score, every check's points, every indicator's verdict
    (the columns of report.cohort, with `name` after `candidate`)."""
    check_ids = [c["id"] for c in docs[0]["checks"]] if docs else []
    ind_ids = [i["id"] for i in docs[0]["indicators"]] if docs else []
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding=CSV_ENCODING) as fh:
        w = csv.writer(fh)
        w.writerow(["candidate", "name", "lab", "points", "max_points", "percent", *check_ids, *ind_ids])
        for d in docs:
            pts = {c["id"]: c["points"] for c in d["checks"]}
            ach = {i["id"]: "achieved" if i["achieved"] else "not achieved" for i in d["indicators"]}
            w.writerow(
                [
                    d["candidate"],
                    names.get(d["candidate"], ""),
                    d["lab"]["id"],
                    d["score"]["points"],
                    d["score"]["max_points"],
                    d["score"]["percent"],
                    *(pts.get(c) for c in check_ids),
                    *(ach.get(i) for i in ind_ids),
                ]
            )
    tmp.replace(path)
    return path


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
    names: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """`workspace`: one path (one candidate), or each candidate's own (an exam); else OUT/<candidate>/workspace.
    `plants`: the plant each candidate sits this lab on, when not their own (an exam with several labs).
    `names`: each candidate's name from the roster, shown with their id and written to the cohort CSV.
    The cohort summary (CSV + HTML) goes to `cohort_dir` (default OUT) when more than one candidate is graded."""
    signer = signer or signing.default_signer()
    names = names or {}
    finished: set[str] = set()
    not_graded: dict[str, str] = {}
    down: dict[str, str] = {}
    # One spinner per candidate still being graded, on a terminal only (a log or a pipe cannot redraw one, so it gets
    # a line per candidate as each finishes). A candidate done leaves the live display for a line that stays, so no
    # spinner goes on turning beside a finished or failed grading, and nothing of the display stays after an error.
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    console.print(
        f"grading {len(candidates)} candidate{'s' if len(candidates) != 1 else ''} on {lab.id} {lab.version}",
        soft_wrap=True,
    )
    try:
        with progress:
            tasks = {c: progress.add_task(f"{c}: queued", total=None) for c in candidates}

            def say(who: str, what: str) -> None:
                if who in tasks and who not in finished:
                    progress.update(tasks[who], description=f"{who}: {escape(what)}")

            def done(who: str, line: str) -> None:
                if who not in finished:
                    finished.add(who)
                    progress.remove_task(tasks[who])
                    progress.refresh()  # the display without them before the line is printed above it
                progress.console.print(line, soft_wrap=True)

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
                    done(c, f"{score_mark(doc)} {c}: {score_text(doc)} → {escape(str(cdir / 'report.html'))}")
                    return doc
                except PlantDown as exc:  # the instructor decides: restart and extend, or grade as is
                    down[c] = not_graded[c] = str(exc)
                    (cdir / "not-graded.txt").write_text(f"{exc}\n", encoding="utf-8")
                    done(c, f"[yellow]– {escape(c)}: {escape(str(exc))}[/]")
                    return None
                except Exception as exc:  # noqa: BLE001 - one candidate's failure must not stop the cohort
                    not_graded[c] = f"could not be graded: {type(exc).__name__}: {exc}"
                    done(c, f"[red]! {escape(c)}: {escape(not_graded[c])}[/]")
                    return None

            results = await asyncio.gather(*(one(c) for c in candidates))
    except BaseException:  # Ctrl-C or a cancelled grading: the display is gone; say who has no report
        left = [c for c in candidates if c not in finished]
        if left:
            console.print(
                f"[red]grading stopped: no report for {', '.join(left)}[/]",
                soft_wrap=True,
            )
        raise
    docs = [d for d in results if d]
    console.print(fit_table(result_table(lab, docs, candidates, names, not_graded), console))
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
        path = write_cohort(docs, cohort_dir or out, out, [c for c in candidates if c not in graded], lang, names)
        console.print("cohort summary:")
        for f in (path, path.with_name("cohort.html")) if docs else (path,):
            console.print(f"  {escape(str(f))}", soft_wrap=True)  # a path is never broken: copy it whole
    return docs
