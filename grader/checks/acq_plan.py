"""The candidate's acquisition decision (data-acquisition): which Modbus reads, how often, within PLC-1's allotment.

The brief states a need per polled stream (its newest reading at most N s old) and a constraint (the collector's
share of PLC-1's request budget); the datasheet gives the register maps. One request per stream at its need does not
fit the allotment; block reads do, and so do plans between. The candidate records their decision in
acquisition-plan.json. daq.plan judges the decision against the datasheet, the needs and the allotment; daq.period
and daq.completeness then hold the running collector to the plan's periods and daq.production_impact to its
requests (one defect, one check)."""

from __future__ import annotations

from typing import Any

from ..results import CheckResult, failed, passed
from . import check
from .artefacts import json_artefact

PLAN_UNUSABLE = "acquisition-plan-unusable"
SCHEMA = "acquisition-plan.schema.json"
NAMES = {"plc1": "PLC-1", "em1": "EM-1", "plc2": "PLC-2"}


def uses_plan(ctx: Any) -> bool:
    """Labs whose periods are the candidate's decision name their plan file; others state one period_s."""
    return "plan_file" in ctx.params


def load_plan(ctx: Any) -> tuple[dict[str, Any] | None, dict[str, Any], tuple[str, str] | None]:
    """(the plan or None, evidence, why it is unusable (en, zh-TW)), read and validated once per grading."""
    if "daq.plan" not in ctx.cache:
        doc, evidence, why = json_artefact(ctx, "plan_file", SCHEMA)
        ctx.cache["daq.plan"] = (doc, evidence if doc is None else {**evidence, "plan": doc}, why)
    return ctx.cache["daq.plan"]


def plan_cause(ctx: Any) -> str | None:
    """PLAN_UNUSABLE (recorded, owned by daq.plan) when the plan cannot be read, else None."""
    plan, _, why = load_plan(ctx)
    if plan is not None or why is None:
        return None
    en, zh = why
    ctx.block(PLAN_UNUSABLE, f"your acquisition plan is unusable: {en}", f"擷取計畫無法使用：{zh}", "daq.plan")
    return PLAN_UNUSABLE


def stream_periods(ctx: Any) -> dict[str, float] | None:
    """device/tag -> the period the plan gives the stream (the fastest, if it is in several reads); None when the
    plan is unusable. A stream the plan leaves out has no entry."""
    plan, _, _ = load_plan(ctx)
    if plan is None:
        return None
    out: dict[str, float] = {}
    for r in plan["modbus_reads"]:
        for tag in r["streams"]:
            key = f"{r['device']}/{tag}"
            out[key] = min(out.get(key, float("inf")), float(r["period_s"]))
    for tag, v in plan["opcua"].items():
        out[f"plc2/{tag}"] = float(v["period_s"])
    return out


def plc1_reads(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in plan["modbus_reads"] if r["device"] == "plc1"]


def planned_rate(plan: dict[str, Any]) -> float:
    """Requests/s that the plan's PLC-1 reads add up to."""
    return sum(1.0 / float(r["period_s"]) for r in plc1_reads(plan))


def _documented(sheet: dict[str, Any], device: str, table: str) -> list[dict[str, Any]]:
    return list(((sheet.get(device) or {}).get("tables") or {}).get(table) or [])


def _read_problems(ctx: Any, r: dict[str, Any], streams: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """What is wrong with one Modbus read of the plan, against the candidate's datasheet."""
    dev, table, lo, hi = r["device"], r["table"], int(r["address"]), int(r["address"]) + int(r["count"])
    where = f"{NAMES[dev]} {table} {lo}..{hi - 1}"
    regs = _documented(ctx.sheet, dev, table)
    out: list[tuple[str, str]] = []
    if not regs:
        return [(f"{where}: {NAMES[dev]} has no {table}", f"{where}：{NAMES[dev]} 沒有 {table}")]
    first = min(t["address"] for t in regs)
    last = max(t["address"] + t["registers"] for t in regs)
    if lo < first or hi > last:
        out.append(
            (
                f"{where} lies outside the documented registers ({first}..{last - 1}): the device answers such a "
                "read with an exception",
                f"{where} 超出規格書記載的暫存器範圍（{first}..{last - 1}）：設備會以例外回應",
            )
        )
    by_name = {t["name"]: t for t in regs}
    for tag in r["streams"]:
        key = f"{dev}/{tag}"
        if key not in streams or streams[key]["source"] != "modbus":
            out.append(
                (f"{where}: {key} is not a Modbus stream of the table", f"{where}：{key} 不是表中的 Modbus 資料流")
            )
            continue
        t = by_name.get(tag)
        if t is None:
            out.append(
                (f"{where}: {tag} is not in {NAMES[dev]}'s {table}", f"{where}：{tag} 不在 {NAMES[dev]} 的 {table}")
            )
        elif not (lo <= t["address"] and t["address"] + t["registers"] <= hi):
            span = f"{t['address']}..{t['address'] + t['registers'] - 1}"
            out.append((f"{where} does not cover {tag} ({span})", f"{where} 未涵蓋 {tag}（{span}）"))
    return out


@check("daq.plan")
def plan_check(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """The plan is feasible and meets the needs: every polled stream read (Modbus: by a read that covers its
    registers in the documented table), each at a period within its need, PLC-1's reads within the allotment, and the
    plan's own rate figure what its reads add up to."""
    plan, evidence, why = load_plan(ctx)
    if plan is None:
        en, zh = why or ("no plan", "沒有計畫")
        return failed(
            spec["id"], spec["points"], f"No usable acquisition plan: {en}", f"沒有可用的擷取計畫：{zh}", evidence
        )
    streams = {f"{s['device']}/{s['tag']}": s for s in ctx.lab.data["streams"]}
    needs = {k: float(v) for k, v in ctx.params["needs_s"].items()}
    allotment = float(ctx.params["plc1_allotment_rps"])
    problems: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for r in plan["modbus_reads"]:
        problems += _read_problems(ctx, r, streams)
        for tag in r["streams"]:
            seen[f"{r['device']}/{tag}"] = seen.get(f"{r['device']}/{tag}", 0) + 1
    for key, n in seen.items():
        if n > 1 and key in streams:
            problems.append((f"{key} is in {n} reads (one each)", f"{key} 出現在 {n} 個讀取中（每個資料流一個）"))
    for tag in plan["opcua"]:
        if streams.get(f"plc2/{tag}", {}).get("source") != "opcua":
            problems.append(
                (f"opcua: {tag} is not an OPC UA stream of the table", f"opcua：{tag} 不是表中的 OPC UA 資料流")
            )
    periods = stream_periods(ctx) or {}
    per_stream: dict[str, Any] = {}
    for key, need in needs.items():
        period = periods.get(key)
        per_stream[key] = {"need_s": need, "planned_period_s": period}
        if period is None:
            where = "modbus_reads" if streams[key]["source"] == "modbus" else "opcua"
            problems.append((f"{key} is not in the plan ({where})", f"{key} 不在計畫中（{where}）"))
        elif period > need + 1e-9:
            problems.append(
                (
                    f"{key} every {period:g} s: its need is a reading at most {need:g} s old",
                    f"{key} 每 {period:g} 秒：其需求為讀值不得舊於 {need:g} 秒",
                )
            )
    rate = planned_rate(plan)
    claimed = float(plan["plc1_request_rate_rps"])
    tol = float(spec.get("params", {}).get("rate_claim_tol_rps", 0.05))
    if rate > allotment + 1e-9:
        problems.append(
            (
                f"PLC-1 reads add up to {rate:.2f} requests/s, over your allotment of {allotment:g}",
                f"PLC-1 讀取合計每秒 {rate:.2f} 個請求，超過您的配額 {allotment:g}",
            )
        )
    if abs(claimed - rate) > tol:
        problems.append(
            (
                f"plc1_request_rate_rps says {claimed:g}, but the PLC-1 reads add up to {rate:.2f}",
                f"plc1_request_rate_rps 為 {claimed:g}，但 PLC-1 讀取合計為 {rate:.2f}",
            )
        )
    ev = {
        **evidence,
        "needs_s": needs,
        "streams": per_stream,
        "plc1_allotment_rps": allotment,
        "plc1_planned_rate_rps": round(rate, 3),
        "plc1_claimed_rate_rps": claimed,
        "problems": [en for en, _ in problems],
    }
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        more_zh = f"（另 {len(problems) - 3} 項）" if len(problems) > 3 else ""
        return failed(
            spec["id"],
            spec["points"],
            "The acquisition plan does not hold: " + "; ".join(en for en, _ in problems[:3]) + more,
            "擷取計畫不成立：" + "；".join(zh for _, zh in problems[:3]) + more_zh,
            ev,
        )
    reads = len(plc1_reads(plan))
    return passed(
        spec["id"],
        spec["points"],
        f"Every polled stream planned within its need; PLC-1: {reads} read(s), {rate:.2f} requests/s within the "
        f"allotment of {allotment:g}",
        f"每個輪詢資料流的計畫週期皆滿足需求；PLC-1：{reads} 個讀取，每秒 {rate:.2f} 個請求，在配額 {allotment:g} 之內",
        ev,
    )
