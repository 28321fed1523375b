"""Risk register checks: the candidate's artefact against its published schema and the plant's real exposures.

Scored on what is missing AND on what is wrong, so that a blind register (every asset against every exposure type,
one boilerplate mitigation) cannot score:
- risk.register_valid: the document is valid against the published schema;
- risk.register_coverage (per exposure): each real exposure of the factory plant is registered with a fitting
  IEC 62443-3-3 SR and a mitigation that names the control removing it (the control the probe checks verify);
- risk.register_precision: no entry is wrong: an asset the plant does not have, an exposure the factory plant does
  not have on that asset, or a second entry for the same (asset, exposure).

The answer is lab data (labs/ics-hardening/exposures.yaml), never published: the schema does not enumerate assets,
so an invented asset is expressible and fails. Each required exposure names the probe check that demonstrates it
(tests/test_security_labs.py keeps that true).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, FormatChecker

from ..results import CheckResult, by_items, failed, passed
from . import check

UNREADABLE = "risk-register-unreadable"


def load_register(ctx: Any) -> tuple[list[dict[str, Any]] | None, Any, str | None]:
    """(entries, document, error): entries are the `risks` items that are objects; error when the file is missing,
    not JSON, too large, or has no `risks` list (then nothing in it can be assessed)."""
    path = Path(ctx.workspace) / ctx.params["risk_register"]
    try:
        if path.stat().st_size > 2_000_000:
            return None, None, f"{path.name} is larger than 2 MB"
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, None, f"{path.name}: {exc}"
    risks = doc.get("risks") if isinstance(doc, dict) else None
    if not isinstance(risks, list):
        return None, doc, f"{path.name} has no `risks` list"
    return [e for e in risks if isinstance(e, dict)], doc, None


def exposure_data(ctx: Any) -> dict[str, Any]:
    return yaml.safe_load((ctx.lab.path / "exposures.yaml").read_text(encoding="utf-8"))


def normalise(text: Any) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[_\-/]", " ", str(text).lower())).strip()


def names_control(mitigation: Any, controls: list[str]) -> list[str]:
    """The controls (lab data) a mitigation names as words (a plural too), compared case- and
    separator-insensitively: `ACL` in "per-account ACLs", not in "oracle"."""
    text = normalise(mitigation)
    return [c for c in controls if re.search(rf"(?<![a-z0-9]){re.escape(normalise(c))}(?:s|es)?(?![a-z0-9])", text)]


def judge_coverage(entries: list[dict[str, Any]], data: dict[str, Any]) -> tuple[dict[str, bool], list[dict[str, Any]]]:
    """Per real exposure: registered, with a fitting SR and a mitigation naming its control."""
    items: dict[str, bool] = {}
    rows = []
    for x in data["exposures"]:
        key = f"{x['asset']}/{x['exposure']}"
        # an exposure of a conduit may be registered on the conduit or on the assets behind it (no segmentation:
        # FW-1, or PLC-1/EM-1 that it leaves open): each is a fair reading of the brief
        on = {x["asset"], *x.get("also_on", [])}
        match = [e for e in entries if e.get("asset") in on and e.get("exposure") == x["exposure"]]
        srs_ok = [e for e in match if set(e.get("iec62443_sr") or []) & set(x["srs"])]
        named = [(e, names_control(e.get("mitigation", ""), x["controls"])) for e in srs_ok]
        good = [e for e, n in named if n]
        if not match:
            why, why_zh = "not in the register", "未登錄"
        elif not srs_ok:
            why, why_zh = f"no fitting SR (one of {x['srs']}) cited", f"未引用適當的 SR（{x['srs']} 之一）"
        elif not good:
            why = "the mitigation names no control that removes this exposure"
            why_zh = "緩解措施未指名可消除此曝險的控制措施"
        else:
            why = why_zh = ""
        items[key] = bool(good)
        rows.append(
            {
                "what": f"{key}: {x['en']}",
                "observed": match[:1] or "not in the register",
                "ok": bool(good),
                **({"why": why, "why_zh": why_zh} if why else {"controls_named": named[0][1]}),
            }
        )
    return items, rows


def wrong_entries(entries: list[dict[str, Any]], data: dict[str, Any]) -> list[dict[str, Any]]:
    """Entries that are wrong: an asset the plant does not have, an exposure the factory plant does not have on
    that asset, or a repeated (asset, exposure)."""
    assets = data["assets"]
    required = {(x["asset"], x["exposure"]) for x in data["exposures"]}
    seen: set[tuple[str, str]] = set()
    out = []
    for e in entries:
        asset, exposure = str(e.get("asset")), str(e.get("exposure"))
        pair = (asset, exposure)
        if asset not in assets:
            why, why_zh = f"the plant has no asset {asset!r}", f"工廠沒有資產 {asset!r}"
        elif pair not in required and exposure not in (assets[asset] or {}).get("also_real", []):
            why = f"the factory plant has no {exposure} exposure on {asset}"
            why_zh = f"出廠狀態的工廠在 {asset} 上沒有 {exposure} 曝險"
        elif pair in seen:
            why, why_zh = f"a second entry for {asset}/{exposure}", f"{asset}/{exposure} 重複登錄"
        else:
            why = why_zh = ""
        seen.add(pair)
        if why:
            out.append({"id": e.get("id"), "asset": asset, "exposure": exposure, "why": why, "why_zh": why_zh})
    return out


def unreadable(ctx: Any, spec: dict[str, Any], error: str) -> None:
    ctx.block(
        UNREADABLE,
        f"the risk register cannot be read ({error})",
        f"無法讀取風險登錄表（{error}）",
        "risk.register_valid",
    )


@check("risk.register_valid")
def register_valid(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    entries, doc, error = load_register(ctx)
    if error and doc is None:
        unreadable(ctx, spec, error)
        return failed(spec["id"], spec["points"], f"Risk register unreadable: {error}", f"風險登錄表無法讀取：{error}")
    validator = Draft202012Validator(ctx.lab.schema("risk-register.schema.json"), format_checker=FormatChecker())
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:200]}" for e in validator.iter_errors(doc)
    ]
    if error:  # JSON, but nothing assessable in it: the other register checks are blocked by this one
        unreadable(ctx, spec, error)
    evidence = {"schema_errors": errors[:20], "n_errors": len(errors)}
    if errors:
        return failed(
            spec["id"],
            spec["points"],
            f"{len(errors)} schema error(s); first: {errors[0]}",
            f"{len(errors)} 個 Schema 錯誤；第一個：{errors[0]}",
            evidence,
        )
    return passed(
        spec["id"], spec["points"], "Risk register is valid against its schema", "風險登錄表符合其 Schema", evidence
    )


@check("risk.register_coverage")
def register_coverage(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    entries, _, error = load_register(ctx)
    if entries is None:
        unreadable(ctx, spec, str(error))
        return ctx.blocked(spec, UNREADABLE)
    items, rows = judge_coverage(entries, exposure_data(ctx))
    n_ok = sum(items.values())
    bad = [r for r in rows if not r["ok"]]
    first = bad[0]["what"].split(":")[0] if bad else ""
    return by_items(
        spec["id"],
        spec["points"],
        items,
        f"{n_ok} of {len(items)} real exposures registered with a fitting SR and a mitigation naming its control"
        + (f"; first not: {first} ({bad[0]['why']})" if bad else ""),
        f"{len(items)} 項實際曝險中 {n_ok} 項已登錄，且具適當 SR 與指名控制措施的緩解"
        + (f"；第一項不符：{first}（{bad[0]['why_zh']}）" if bad else ""),
        {"exposures": rows, "entries": len(entries)},
    )


@check("risk.register_precision")
def register_precision(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    entries, _, error = load_register(ctx)
    if entries is None:
        unreadable(ctx, spec, str(error))
        return ctx.blocked(spec, UNREADABLE)
    if not entries:
        ctx.block(
            "risk-register-empty",
            "the risk register lists no entry: there is nothing to be right or wrong about",
            "風險登錄表沒有任何項目：無從判斷對錯",
            "risk.register_coverage",
        )
        return ctx.blocked(spec, "risk-register-empty")
    wrong = wrong_entries(entries, exposure_data(ctx))
    evidence = {"entries": len(entries), "wrong": wrong[:50], "n_wrong": len(wrong)}
    if wrong:
        return failed(
            spec["id"],
            spec["points"],
            f"{len(wrong)} of {len(entries)} entries are wrong; first: {wrong[0]['id']}: {wrong[0]['why']}",
            f"{len(entries)} 筆項目中 {len(wrong)} 筆錯誤；第一筆：{wrong[0]['id']}：{wrong[0]['why_zh']}",
            evidence,
        )
    return passed(
        spec["id"],
        spec["points"],
        f"No wrong entry among {len(entries)}",
        f"{len(entries)} 筆項目皆無錯誤",
        evidence,
    )
