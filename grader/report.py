"""Exam reports: report.json (versioned, signed), report.html (self-contained), Gradescope results.json, cohort CSV."""

from __future__ import annotations

import hashlib
import html
import json
import socket
import time
from pathlib import Path
from typing import Any

import jinja2

from aiotlab import __version__

from . import scoring, signing, svg
from .engine import GradeRun
from .results import PASS
from .standards import indicator, security_requirements

SCHEMA = "aiotlab.report/1"
RULE = {"en": "achieved when every check that assesses it passes", "zh-TW": "評量此指標的所有檢查皆通過即達成"}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def build(run: GradeRun, out_dir: Path) -> dict[str, Any]:
    """The report document (unsigned). Evidence goes to files whose SHA-256 the report records."""
    ev_dir = out_dir / "evidence"
    ev_dir.mkdir(parents=True, exist_ok=True)
    by_id = {r.id: r for r in run.results}
    checks = []
    for spec in run.lab.checks:
        r = by_id[spec["id"]]
        ev_path = ev_dir / f"{spec['id']}.json"
        ev_path.write_text(json.dumps(r.evidence, indent=1, ensure_ascii=False, default=str))
        checks.append(
            {
                "id": spec["id"],
                "title": spec["title"],
                "status": r.status,
                "points": r.points,
                "max_points": r.max_points,
                "summary": r.summary,
                "scoring": scoring.rule_of(spec),
                **({"blocked_by": r.blocked_by} if r.blocked_by else {}),
                "indicators": spec.get("indicators", []),
                "iec62443_sr": spec.get("iec62443_sr", []),
                "started": _iso(r.started),
                "finished": _iso(r.finished),
                "evidence_file": {"path": f"evidence/{ev_path.name}", "sha256": _sha256(ev_path)},
            }
        )
    indicators = []
    for ind_id in run.lab.data["indicators"]:
        ind = indicator(ind_id)
        assessed = [c for c in checks if ind_id in c["indicators"]]
        indicators.append(
            {
                "id": ind_id,
                "standard": ind["standard"],
                "level": ind["level"],
                "text": {"zh-TW": ind["zh-TW"], "en": ind["en"]},
                "achieved": all(c["status"] == PASS for c in assessed),
                "rule": RULE,
                "checks": [{"id": c["id"], "status": c["status"]} for c in assessed],
            }
        )
    srs = security_requirements()
    sr_summary = []
    for sr in sorted({sr for c in checks for sr in c["iec62443_sr"]}, key=lambda x: [int(n) for n in x[3:].split(".")]):
        cited = [c for c in checks if sr in c["iec62443_sr"]]
        sr_summary.append(
            {
                "sr": sr,
                "title": srs[sr],
                "met": all(c["status"] == PASS for c in cited),
                "checks": [{"id": c["id"], "status": c["status"]} for c in cited],
            }
        )
    points = round(sum(c["points"] for c in checks), 2)
    max_points = round(sum(c["max_points"] for c in checks), 2)
    return {
        "schema": SCHEMA,
        "aiotlab_version": __version__,
        "lab": {"id": run.lab.id, "version": run.lab.version, "title": run.lab.data["title"]},
        "candidate": run.candidate,
        "plant": run.plant,
        "lab_parameters": redact(run.params),
        "window": {
            "start": _iso(run.window[0]),
            "end": _iso(run.window[1]),
            "start_epoch": run.window[0],
            "end_epoch": run.window[1],
        },
        "graded": {"started": _iso(run.started), "finished": _iso(run.finished), "host": socket.gethostname()},
        "solution": {k: (v if k != "command" else (v and [str(x) for x in v])) for k, v in run.solution.items()},
        "score": {
            "points": points,
            "max_points": max_points,
            "percent": round(100 * points / max_points, 1) if max_points else 0.0,
        },
        "not_assessable": not_assessable_causes(run, checks),
        "grader_health": run.health,
        "checks": checks,
        "indicators": indicators,
        "iec62443_sr_summary": sr_summary,
    }


def not_assessable_causes(run: GradeRun, checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each cause that kept checks from being assessed, named once with the checks it blocked (report's top)."""
    from .results import GRADER_OVERLOADED

    status = {c["id"]: c["status"] for c in checks}
    out = [  # first what happened to the candidate's command itself (it could not start, or it ended at once)
        {"cause": cause, "text": {"en": b["en"], "zh-TW": b["zh-TW"]}, "failed_check": None, "blocked_checks": []}
        for cause, b in run.blockers.items()
        if cause.startswith("solution-")
    ]
    for cause in dict.fromkeys(c["blocked_by"] for c in checks if c.get("blocked_by")):
        if cause.startswith("solution-"):
            out = [o for o in out if o["cause"] != cause]
        if cause == GRADER_OVERLOADED:
            text = {
                "en": "the grader fell behind while observing; re-grade (not the candidate's fault)",
                "zh-TW": "評分程式觀測時延遲，請重新評分（非考生之過）",
            }
            owner = None
        else:
            b = run.blockers.get(cause) or {
                "en": f"a probe was inconclusive ({cause}): neither the candidate's defect nor the host's lag was shown; "
                "re-grade, and see the checks' evidence",
                "zh-TW": f"探測結果無法判定（{cause}）：既非考生缺失亦非主機延遲所致；請重新評分並查看證據",
            }
            text, owner = {"en": b["en"], "zh-TW": b["zh-TW"]}, b.get("check")
        entry = {
            "cause": cause,
            "text": text,
            "failed_check": owner,
            "blocked_checks": [c["id"] for c in checks if c.get("blocked_by") == cause],
        }
        owner_status = status.get(owner or "")
        if owner_status is not None and owner_status not in ("fail", "partial"):
            # the check that met the defect could not judge it either (another cause blocked it): say so, do not
            # call it failed
            entry.update(failed_check=None, owner_check=owner, owner_status=owner_status)
        out.append(entry)
    return out


def redact(params: dict[str, Any]) -> dict[str, Any]:
    """Lab parameters without the passwords issued to the candidate (reports travel further than briefs)."""
    return {
        k: ({name: "(issued; in the candidate's brief)" for name in v} if k.endswith("_accounts") else v)
        for k, v in params.items()
    }


MANIFEST_SKIP = {"report.json"}  # the signed document itself; everything else in the folder is bound


def location_of(out_dir: Path, candidate: str) -> str | None:
    """The tail of the report's folder from the candidate's own folder on ("alice/data-acquisition/attempt-2"):
    verification fails when the report is found elsewhere (copied into another candidate's folder)."""
    parts = out_dir.resolve().parts
    if candidate not in parts:
        return None
    i = len(parts) - 1 - parts[::-1].index(candidate)
    return "/".join(parts[i:])


def output_files(out_dir: Path) -> dict[str, str]:
    """SHA-256 of every regular file the grading wrote into out_dir (never following symlinks)."""
    files = {}
    for p in sorted(out_dir.rglob("*")):
        rel = p.relative_to(out_dir).as_posix()
        if rel in MANIFEST_SKIP or p.is_symlink() or not p.is_file() or rel.startswith("workspace/"):
            continue
        files[rel] = _sha256(p)
    return files


def write_all(
    run: GradeRun,
    out_dir: Path,
    signer: signing.Signer | None = None,
    lang: str = "zh-TW",
    *,
    exam: str | None = None,
    attempt: int | None = None,
) -> dict[str, Any]:
    """Evidence, report.html, results.json, then report.json: the document with a manifest binding exam, candidate,
    lab, attempt, plant and the hash of every output file, signed with Ed25519 (the exam's key or the local one)."""
    signer = signer or signing.default_signer()
    doc = build(run, out_dir)
    doc["manifest"] = {
        "exam": exam,
        "candidate": run.candidate,
        "lab": run.lab.id,
        "lab_version": run.lab.version,
        "attempt": attempt,
        "plant_fingerprint": run.plant.get("identity_digest"),
        "params_digest": run.plant.get("params_digest"),
        "location": location_of(out_dir, run.candidate),
        "key_id": signer.key_id,
        "files": {},
    }
    evidence = {c["id"]: json.loads((out_dir / c["evidence_file"]["path"]).read_text()) for c in doc["checks"]}
    (out_dir / "report.html").write_text(render_html(doc, evidence, lang), encoding="utf-8")
    (out_dir / "results.json").write_text(json.dumps(gradescope(doc), indent=2, ensure_ascii=False))
    doc["manifest"]["files"] = output_files(out_dir)
    doc = signer.sign(doc)
    (out_dir / "report.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False))
    return doc


def gradescope(doc: dict[str, Any]) -> dict[str, Any]:
    """Gradescope autograder format; indicator ids in tests[].tags for LMS pipelines."""
    return {
        "score": doc["score"]["points"],
        "output": f"{doc['lab']['id']} {doc['lab']['version']}: {doc['score']['points']}/{doc['score']['max_points']}",
        "visibility": "visible",
        "tests": [
            {
                "name": f"{c['id']}: {c['title']['en']}",
                "score": c["points"],
                "max_score": c["max_points"],
                "status": "passed" if c["status"] == PASS else "failed",
                "output": c["summary"]["en"],
                "tags": c["indicators"],
                "visibility": "visible",
            }
            for c in doc["checks"]
        ],
    }


def render_html(doc: dict[str, Any], evidence: dict[str, Any], lang: str) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )
    results = [{"id": c["id"], "evidence": evidence.get(c["id"], {})} for c in doc["checks"]]
    plots = svg.evidence_plots(results)
    plots.insert(
        0,
        svg.bars(
            "indicators / 行為指標",
            [
                (
                    i["id"].split("/")[-1] + " " + i["standard"],
                    1.0 if i["achieved"] else sum(c["status"] == PASS for c in i["checks"]) / max(len(i["checks"]), 1),
                    i["achieved"],
                )
                for i in doc["indicators"]
            ],
        ),
    )
    return env.get_template("report.html.j2").render(
        doc=doc,
        lang=lang,
        plots=plots,
        evidence=evidence,
        evidence_json=lambda x: json.dumps(x, indent=1, ensure_ascii=False, default=str)[:6000],
        esc=html.escape,
    )


def verify_file(path: Path, public: Any = None) -> tuple[bool, list[str]]:
    """Signature (with the given Ed25519 public key, else the exam's or local one), every file the manifest lists,
    and the report's location; returns (ok, findings)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return False, [f"cannot read {path}: {exc}"]
    findings = []
    if public is None:
        try:
            public, where = signing.default_public()
            findings.append(f"public key: {where}")
        except (OSError, ValueError) as exc:
            return False, [str(exc)]
    ok, why = signing.verify(doc, public)
    findings.append(why)
    manifest = doc.get("manifest") or {}
    files = manifest.get("files") or {}
    if not files:
        ok = False
        findings.append("no manifest of output files")
    for rel, digest in files.items():
        p = path.parent / rel
        if p.is_symlink() or not p.is_file():
            ok = False
            findings.append(f"file missing: {rel}")
        elif _sha256(p) != digest:
            ok = False
            findings.append(f"{'evidence file' if rel.startswith('evidence/') else 'file'} modified: {rel}")
    for c in doc.get("checks", []):  # every check's evidence is in the manifest
        if c.get("evidence_file", {}).get("path") not in files:
            ok = False
            findings.append(f"evidence of {c.get('id')} is not bound by the manifest")
    loc = manifest.get("location")
    if loc:
        here = "/".join(path.resolve().parent.parts[-len(loc.split("/")) :])
        if here != loc:
            ok = False
            findings.append(f"report found at .../{here}, signed for .../{loc} (moved or copied to another folder)")
    if ok:
        findings.append(
            f"{len(files)} files match their SHA-256; candidate {manifest.get('candidate')}, lab "
            f"{manifest.get('lab')}, attempt {manifest.get('attempt')}, exam {manifest.get('exam')}"
        )
    return ok, findings


def cohort(
    docs: list[dict[str, Any]],
    out_dir: Path,
    reports_dir: Path | None = None,
    missing: list[str] | None = None,
    lang: str = "zh-TW",
) -> Path:
    """One CSV row per candidate (cohort.write_cohort_csv: score, each check's points, each indicator's verdict), and
    cohort.html beside it for an assessor: pass rates per check and indicator, one row per candidate linking their report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "cohort.csv"
    if not docs:
        path.write_text("")
        return path
    cohort_html(docs, out_dir, reports_dir or out_dir, missing or [], lang)
    from .cohort import write_cohort_csv  # the one writer of cohort.csv (names column, UTF-8 with BOM)

    write_cohort_csv(docs, path, {})
    return path


def cohort_html(docs: list[dict[str, Any]], out_dir: Path, reports_dir: Path, missing: list[str], lang: str) -> Path:
    import os
    import statistics

    first = docs[0]
    checks = [
        {**c, "passed": sum(1 for d in docs for x in d["checks"] if x["id"] == c["id"] and x["status"] == "pass")}
        for c in first["checks"]
    ]
    indicators = [
        {
            "id": i["id"],
            "achieved": sum(1 for d in docs for x in d["indicators"] if x["id"] == i["id"] and x["achieved"]),
        }
        for i in first["indicators"]
    ]
    percents = [float(d["score"]["percent"]) for d in docs]
    links = {
        d["candidate"]: os.path.relpath(
            reports_dir
            / d["candidate"]
            / d["lab"]["id"]
            / (f"attempt-{d['manifest']['attempt']}" if (d.get("manifest") or {}).get("attempt") else "")
            / "report.html",
            out_dir,
        )
        for d in docs
    }
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )
    html = env.get_template("cohort.html.j2").render(
        lang=lang,
        lab_id=first["lab"]["id"],
        title=first["lab"]["title"],
        docs=sorted(docs, key=lambda d: d["candidate"]),
        missing=missing,
        checks=checks,
        indicators=indicators,
        links=links,
        stats={
            "mean": statistics.fmean(percents),
            "median": statistics.median(percents),
            "full": sum(1 for p in percents if p >= 100.0),
        },
    )
    path = out_dir / "cohort.html"
    path.write_text(html, encoding="utf-8")
    return path
