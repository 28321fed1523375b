"""Risk register checks: the candidate's artefact against its published schema and the plant's real exposures.

The exposures are lab data (labs/ics-hardening/exposures.yaml), each tied to the probe check that demonstrates
it on a factory-default plant (a test keeps that true), with the IEC 62443-3-3 SRs that address it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, FormatChecker

from ..results import CheckResult, failed, verdict
from . import check
from .common import all_ok


def load_register(ctx: Any) -> tuple[Any, str | None]:
    path = Path(ctx.workspace) / ctx.params["risk_register"]
    try:
        if path.stat().st_size > 2_000_000:
            return None, f"{path} is larger than 2 MB"
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, ValueError) as exc:
        return None, f"{path}: {exc}"


def exposures(ctx: Any) -> list[dict[str, Any]]:
    return yaml.safe_load((ctx.lab.path / "exposures.yaml").read_text(encoding="utf-8"))["exposures"]


@check("risk.register_valid")
def register_valid(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    doc, error = load_register(ctx)
    if error:
        return failed(spec["id"], spec["points"], f"Risk register unreadable: {error}", f"風險登錄表無法讀取：{error}")
    validator = Draft202012Validator(ctx.lab.schema("risk-register.schema.json"), format_checker=FormatChecker())
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:200]}" for e in validator.iter_errors(doc)
    ]
    probes = [
        {
            "what": "valid against risk-register.schema.json",
            "observed": errors[:10] or "valid",
            "ok": not errors,
            "why": errors[0] if errors else "",
        }
    ]
    return all_ok(spec, probes, "Risk register is valid against its schema", "風險登錄表符合其 Schema")


@check("risk.register_coverage")
def register_coverage(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    doc, error = load_register(ctx)
    entries = doc.get("risks", []) if isinstance(doc, dict) else []
    if error or not isinstance(entries, list):
        return failed(spec["id"], spec["points"], f"Risk register unreadable: {error}", f"風險登錄表無法讀取：{error}")
    entries = [e for e in entries if isinstance(e, dict)]
    known_assets = {x["asset"] for x in exposures(ctx)} | set(ctx.params.get("other_assets", []))
    rows = []
    for x in exposures(ctx):
        match = [e for e in entries if e.get("asset") == x["asset"] and e.get("exposure") == x["exposure"]]
        good = [
            e for e in match if set(e.get("iec62443_sr", [])) & set(x["srs"]) and str(e.get("mitigation", "")).strip()
        ]
        rows.append(
            {
                "what": f"{x['asset']}: {x['exposure']} ({x['en']})",
                "observed": match[:1] or "not in the register",
                "ok": bool(good),
                "accepted_srs": x["srs"],
                "why": f"{x['asset']}/{x['exposure']} "
                + ("missing" if not match else "has no accepted SR or no mitigation"),
            }
        )
    phantom = sorted({str(e.get("asset")) for e in entries} - known_assets)
    n_ok = sum(r["ok"] for r in rows)
    evidence = {"exposures": rows, "unknown_assets": phantom, "entries": len(entries)}
    if phantom:
        return failed(
            spec["id"],
            spec["points"],
            f"Register names assets the plant does not have: {phantom}",
            f"登錄表列出工廠不存在的資產：{phantom}",
            evidence,
        )
    return verdict(
        spec["id"],
        spec["points"],
        n_ok / max(1, len(rows)),
        1.0,
        f"{n_ok} of {len(rows)} real exposures registered with an accepted SR and a mitigation",
        f"{len(rows)} 項實際曝險中 {n_ok} 項已登錄且具可接受之 SR 與緩解措施",
        evidence,
        partial_credit=True,
    )
