"""The data-acquisition lab graded end to end over real sockets: reference full marks, each flawed solution fails
exactly what it declares, hostile solutions are failed with evidence within time bounds, reports verify."""

from __future__ import annotations

import asyncio
import csv
import gzip
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from aiotlab.grader import report
from aiotlab.grader.engine import ensure_plant, grade
from aiotlab.labs.loader import load_lab
from aiotlab.simulators.control_client import ControlClient

from conftest import cli

SECRET = "test-exam-secret"  # conftest sets AIOTLAB_EXAM_SECRET to this
FLAWED = [
    "flawed-word-order",
    "flawed-scale",
    "flawed-missed-samples",
    "flawed-schema-timestamps",
    "flawed-over-polling",
]
HOSTILE = ["hostile-garbage", "hostile-flood"]
LINE_TRIPPED = "reference-line-tripped"


def grade_batch(solutions: list[str], out: Path) -> dict[str, dict[str, Any]]:
    """Grade each solution as its own candidate (own plant), all at once, as a cohort would be."""
    lab = load_lab("data-acquisition")

    async def one(sol: str) -> tuple[str, dict[str, Any]]:
        cand = os.environ.get("AIOTLAB_CAND_PREFIX", "g-") + sol
        t0 = time.monotonic()
        if sol == LINE_TRIPPED:  # the line trips well before the window: GoodCount freezes with an old SourceTimestamp
            await asyncio.to_thread(ensure_plant, cand)
            ctl = ControlClient.for_candidate(cand)
            await asyncio.to_thread(ctl.post, "/v1/process-events", {"event": "conveyor_fault", "duration_s": 1})
            await asyncio.sleep(15)
        run = await grade(lab, cand, solution="reference" if sol == LINE_TRIPPED else sol, out_dir=out / cand)
        doc = report.write_all(run, out / cand)
        return sol, {"doc": doc, "dir": out / cand, "wall_s": time.monotonic() - t0}

    async def all_() -> dict[str, dict[str, Any]]:
        return dict(await asyncio.gather(*(one(s) for s in solutions)))

    results = asyncio.run(all_())
    for sol in solutions:
        cli("plant", "down", "-c", os.environ.get("AIOTLAB_CAND_PREFIX", "g-") + sol, check=False)
    return results


@pytest.fixture(scope="module")
def batch(aiot_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return grade_batch(["reference", LINE_TRIPPED, *FLAWED], tmp_path_factory.mktemp("graded"))


@pytest.fixture(scope="module")
def hostile(aiot_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return grade_batch(HOSTILE, tmp_path_factory.mktemp("hostile"))


def failed_checks(doc: dict[str, Any]) -> set[str]:
    return {c["id"] for c in doc["checks"] if c["status"] != "pass"}


def explain(doc: dict[str, Any]) -> str:
    return "\n".join(f"{c['id']}: {c['status']} - {c['summary']['en']}" for c in doc["checks"])


@pytest.mark.parametrize("run", ["reference", LINE_TRIPPED])
def test_reference_scores_full_marks(batch: dict[str, dict[str, Any]], run: str) -> None:
    doc = batch[run]["doc"]
    assert doc["score"]["points"] == doc["score"]["max_points"] == 100, explain(doc)
    assert all(i["achieved"] for i in doc["indicators"])
    assert len(doc["plant"]["params_digest"]) == 64 and doc["plant"]["identity_digest"]
    assert {i["id"] for i in doc["indicators"]} == set(load_lab("data-acquisition").data["indicators"])
    if run == LINE_TRIPPED:  # the scenario really happened: GoodCount's timestamp predates the window's truth
        with gzip.open(batch[run]["dir"] / "recording.json.gz", "rt") as fh:
            rec = json.load(fh)
        assert any(k.startswith("conveyor.good_count@") for k in rec["truth_extra"])


@pytest.mark.parametrize("solution", FLAWED)
def test_flawed_solution_fails_exactly_its_targets(batch: dict[str, dict[str, Any]], solution: str) -> None:
    expected = set(load_lab("data-acquisition").solutions[solution].expect_fail)
    doc = batch[solution]["doc"]
    assert failed_checks(doc) == expected, explain(doc)
    assert doc["score"]["points"] < doc["score"]["max_points"]
    assessed = {i["id"] for i in doc["indicators"] if not i["achieved"]}
    lab = load_lab("data-acquisition")
    should_miss = {ind for c in lab.checks if c["id"] in expected for ind in c["indicators"]}
    assert assessed == should_miss


@pytest.mark.parametrize("solution", HOSTILE)
def test_hostile_solutions_are_failed_with_evidence_in_time(hostile: dict[str, dict[str, Any]], solution: str) -> None:
    expected = set(load_lab("data-acquisition").solutions[solution].expect_fail)
    r = hostile[solution]
    doc = r["doc"]
    assert failed_checks(doc) == expected, explain(doc)
    assert all(c["status"] != "error" for c in doc["checks"]), explain(doc)  # failed by judgement, not by crashing
    assert r["wall_s"] < 8 + 30 + 60  # warm-up + window + bounded stop and checks
    for c in doc["checks"]:
        assert (r["dir"] / c["evidence_file"]["path"]).is_file()


def test_hostile_details(hostile: dict[str, dict[str, Any]]) -> None:
    garbage = hostile["hostile-garbage"]["doc"]
    schema_ev = json.loads((hostile["hostile-garbage"]["dir"] / "evidence" / "daq.schema.json").read_text())
    assert schema_ev["oversized"] > 0 and schema_ev["invalid"] == schema_ev["messages"]
    storage = next(c for c in garbage["checks"] if c["id"] == "daq.storage")
    assert "unreadable" in storage["summary"]["en"]
    flood = hostile["hostile-flood"]["doc"]
    assert flood["solution"]["stopped_by"].startswith("SIGKILL")
    ev = json.loads((hostile["hostile-flood"]["dir"] / "evidence" / "daq.schema.json").read_text())
    assert ev["messages"] > 10_000  # it really was a flood, and the grader kept up within its caps


def test_report_signature_and_tamper_detection(batch: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """A real graded report verifies with the local public key; an edit is refused (tests/test_signing.py has the
    full tamper matrix)."""
    src = batch["flawed-scale"]["dir"]
    work = tmp_path / src.name  # the same candidate folder name: the report's location binding holds
    shutil.copytree(src, work)
    ok, findings = report.verify_file(work / "report.json")
    assert ok, findings
    assert cli("report", "verify", str(work / "report.json")).returncode == 0
    doc = json.loads((work / "report.json").read_text())
    doc["score"]["points"] = doc["score"]["max_points"]  # the edit a cheat would make
    (work / "report.json").write_text(json.dumps(doc))
    ok, findings = report.verify_file(work / "report.json")
    assert not ok and "modified" in " ".join(findings)
    assert cli("report", "verify", str(work / "report.json"), check=False).returncode == 1
    shutil.copy(src / "report.json", work / "report.json")
    ev = work / "evidence" / "daq.values.json"
    ev.write_text(ev.read_text().replace('"matched"', '"matched" ', 1))
    ok, findings = report.verify_file(work / "report.json")
    assert not ok and any("evidence file modified" in f for f in findings)


def test_html_gradescope_and_cohort(batch: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    r = batch["flawed-word-order"]
    html = (r["dir"] / "report.html").read_text()
    for ind in r["doc"]["indicators"]:
        assert ind["id"] in html and ind["text"]["zh-TW"] in html and ind["text"]["en"] in html
    assert "<svg" in html and 'lang="zh-TW"' in html
    gs = json.loads((r["dir"] / "results.json").read_text())
    assert gs["score"] == r["doc"]["score"]["points"]
    values = next(t for t in gs["tests"] if t["name"].startswith("daq.values"))
    assert values["status"] == "failed" and "INM3513-009v1/P6.2.1" in values["tags"]
    path = report.cohort([b["doc"] for b in batch.values()], tmp_path)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 7 and {row["candidate"] for row in rows} == {
        "g-" + s for s in ["reference", LINE_TRIPPED, *FLAWED]
    }
    ref = next(row for row in rows if row["candidate"] == "g-reference")
    assert float(ref["points"]) == 100 and ref["SET2519-001v3/P2.1.1"] == "achieved"


@pytest.mark.parametrize("solution", ["reference", "flawed-scale", "flawed-over-polling"])
def test_verdicts_are_reproducible_from_the_recording(
    batch: dict[str, dict[str, Any]], solution: str, tmp_path: Path
) -> None:
    rec = batch[solution]["dir"] / "recording.json.gz"
    assert rec.is_file()
    proc = cli("grade", "data-acquisition", "--replay", str(rec), "--out", str(tmp_path), check=False)
    assert proc.returncode == 0 and "replay identical" in proc.stdout, proc.stdout + proc.stderr
    replayed = json.loads((tmp_path / "report.json").read_text())
    original = batch[solution]["doc"]
    assert [(c["id"], c["status"], c["points"]) for c in replayed["checks"]] == [
        (c["id"], c["status"], c["points"]) for c in original["checks"]
    ]


def test_hostile_recording_replays_identically(hostile: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    rec = hostile["hostile-garbage"]["dir"] / "recording.json.gz"
    proc = cli("grade", "data-acquisition", "--replay", str(rec), "--out", str(tmp_path), check=False)
    assert proc.returncode == 0 and "replay identical" in proc.stdout, proc.stdout + proc.stderr


def test_missing_and_silent_solutions_are_graded_not_crashed(aiot_home: Path, tmp_path: Path) -> None:
    lab = load_lab("data-acquisition")

    async def go() -> dict[str, Any]:
        async def one(cand: str, cmd: str) -> tuple[str, dict[str, Any]]:
            run = await grade(lab, cand, solution=cmd, out_dir=tmp_path / cand)
            return cand, report.write_all(run, tmp_path / cand)

        return dict(
            await asyncio.gather(one("g-missing", "/nonexistent/collector --fast"), one("g-silent", "sleep 600"))
        )

    docs = asyncio.run(go())
    for cand in docs:
        cli("plant", "down", "-c", cand, check=False)
    everything_but_impact = {c["id"] for c in lab.checks} - {"daq.production_impact"}
    for doc in docs.values():
        assert failed_checks(doc) == everything_but_impact, explain(doc)
        assert all(c["status"] != "error" for c in doc["checks"])
    assert "No such file" in docs["g-missing"]["solution"]["start_error"]
    assert docs["g-silent"]["solution"]["stopped_by"] == "SIGTERM"
    schema = next(c for c in docs["g-silent"]["checks"] if c["id"] == "daq.schema")
    assert schema["summary"]["en"] == "No readings were published"
