"""The candidate's early-warning decision (dashboard-alerting): TankLevelHigh's threshold and for: in their alert plan.

The brief states a need (warning at least `lead_time_s` before the HH trip when the tank fills at the pump's rated
flow with the outlet closed) and constraints (silent in normal operation, before PLC-1's H alarm, a for: within the
on-call rule); the datasheet gives the tank's P&ID facts. Several answers are sound. This check recomputes the
worst-case fill rate and the lead time from the plant the candidate's plant actually runs, and judges the plan; the
rule tests, the live test and the dashboard then hold the candidate's rules to the plan (one defect, one check)."""

from __future__ import annotations

import math
from typing import Any

from ...labs import derive
from ..results import CheckResult, failed
from . import check
from .artefacts import json_artefact
from .common import all_ok

PLAN_UNUSABLE = "alert-plan-unusable"
SCHEMA = "alert-plan.schema.json"


def tank_facts(ctx: Any) -> dict[str, float]:
    """The tank as the candidate's plant runs it (the control plane's parameters; the datasheet shows the same)."""
    return derive.tank_facts(ctx.plant_info["params"]["process"]["tank"])


def load_plan(ctx: Any) -> tuple[dict[str, Any] | None, dict[str, Any], tuple[str, str] | None]:
    """(TankLevelHigh's plan or None, evidence, why it is unusable (en, zh-TW)), read and validated once."""
    if "dash.plan" not in ctx.cache:
        doc, evidence, why = json_artefact(ctx, "alert_plan_file", SCHEMA)
        plan = None if doc is None else doc["TankLevelHigh"]
        ctx.cache["dash.plan"] = (plan, evidence if plan is None else {**evidence, "plan": plan}, why)
    return ctx.cache["dash.plan"]


def plan_values(ctx: Any) -> dict[str, float] | None:
    """TankLevelHigh's threshold and for: as the plan decides them (what the rules must do), or None."""
    plan, _, _ = load_plan(ctx)
    if plan is None:
        return None
    return {"level_warning_m": float(plan["threshold_m"]), "level_for_s": int(plan["for_s"])}


def plan_cause(ctx: Any) -> str | None:
    """PLAN_UNUSABLE (recorded, owned by dash.alert_plan) when the plan cannot be read, else None."""
    plan, _, why = load_plan(ctx)
    if plan is not None:
        return None
    en, zh = why or ("", "")
    ctx.block(PLAN_UNUSABLE, f"your alert plan is unusable: {en}", f"警示規劃無法使用：{zh}", "dash.alert_plan")
    return PLAN_UNUSABLE


def num(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}g}" if abs(x) < 0.01 else f"{x:.{digits}f}".rstrip("0").rstrip(".")


@check("dash.alert_plan")
async def alert_plan(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """The plan's worst-case fill rate is the plant's, and its threshold and for: meet the need and the constraints."""
    plan, evidence, why = load_plan(ctx)
    if plan is None:
        plan_cause(ctx)
        en, zh = why or ("", "")
        return failed(spec["id"], spec["points"], f"Alert plan unusable: {en}", f"警示規劃無法使用：{zh}", evidence)
    p, f = ctx.params, tank_facts(ctx)
    rate = derive.worst_fill_rate(f)
    t, for_s = float(plan["threshold_m"]), float(plan["for_s"])
    claimed_rate = float(plan["worst_case_fill_rate_m_per_s"])
    lowest = derive.lowest_threshold(p, f)
    lo_for, hi_for = (float(x) for x in p["level_for_range_s"])
    lead = derive.lead_time(p, f, t, for_s)
    need, tol_rate, tol_lead = float(p["lead_time_s"]), float(p["fill_rate_rel_tol"]), float(p["lead_claim_tol_s"])
    probes = [
        {
            "what": "worst-case fill rate (pump at rated flow, outlet closed)",
            "observed": {"plan": claimed_rate, "plant": round(rate, 7)},
            "ok": math.isfinite(claimed_rate) and abs(claimed_rate - rate) <= tol_rate * rate,
            "why": f"the plan's fill rate {num(claimed_rate)} m/s is not the tank's {num(rate)} m/s "
            f"(rated flow {num(f['pump_flow_m3h'])} m³/h ÷ 3600 ÷ area {num(f['area_m2'])} m²; ±{tol_rate:.0%})",
            "why_zh": f"規劃的注滿速率 {num(claimed_rate)} m/s 與儲槽實際 {num(rate)} m/s 不符"
            f"（額定流量 {num(f['pump_flow_m3h'])} m³/h ÷ 3600 ÷ 截面積 {num(f['area_m2'])} m²；容許 ±{tol_rate:.0%}）",
        },
        {
            "what": "the threshold stays silent in normal operation",
            "observed": {"threshold_m": t, "lowest_m": round(lowest, 4)},
            "ok": t >= lowest - 1e-9,
            "why": f"threshold {num(t)} m is below {num(lowest)} m (highest operating setpoint "
            f"{num(f['setpoint_max_m'])} m + deadband {num(f['deadband_m'])} m + {num(float(p['noise_margin_sd']))} × "
            f"noise {num(f['noise_sd_m'])} m): it would fire in normal operation",
            "why_zh": f"門檻 {num(t)} m 低於 {num(lowest)} m（運轉最高設定值 {num(f['setpoint_max_m'])} m + 死區 "
            f"{num(f['deadband_m'])} m + {num(float(p['noise_margin_sd']))} × 雜訊 {num(f['noise_sd_m'])} m）："
            "正常運轉時即會觸發",
        },
        {
            "what": "the threshold warns before PLC-1's H alarm",
            "observed": {"threshold_m": t, "high_alarm_m": f["high_m"]},
            "ok": t < f["high_m"],
            "why": f"threshold {num(t)} m is not below PLC-1's H alarm at {num(f['high_m'])} m: it is no early warning",
            "why_zh": f"門檻 {num(t)} m 未低於 PLC-1 的 H 警報 {num(f['high_m'])} m：不構成預警",
        },
        {
            "what": f"for: within the on-call rule ({lo_for:g}–{hi_for:g} s)",
            "observed": {"for_s": for_s},
            "ok": lo_for <= for_s <= hi_for,
            "why": f"for: {for_s:g} s is outside {lo_for:g}–{hi_for:g} s",
            "why_zh": f"for: {for_s:g} 秒超出 {lo_for:g}–{hi_for:g} 秒",
        },
        {
            "what": f"lead time before the HH trip at the worst-case fill rate (need ≥ {need:g} s)",
            "observed": {"lead_time_s": round(lead, 1), "high_high_m": f["high_high_m"]},
            "ok": lead >= need,
            "why": f"with threshold {num(t)} m and for: {for_s:g} s the warning comes {lead:.1f} s before the HH trip "
            f"at {num(f['high_high_m'])} m, less than the {need:g} s operators need "
            f"(({num(f['high_high_m'])} − {num(t)}) ÷ {num(rate)} − {for_s:g} − {p['detection_delay_s']})",
            "why_zh": f"門檻 {num(t)} m、for: {for_s:g} 秒時，警示僅早於 HH 跳脫（{num(f['high_high_m'])} m）"
            f"{lead:.1f} 秒，少於操作員所需的 {need:g} 秒"
            f"（({num(f['high_high_m'])} − {num(t)}) ÷ {num(rate)} − {for_s:g} − {p['detection_delay_s']}）",
        },
        {
            "what": "the plan's own lead time is the one its threshold and for: give",
            "observed": {"plan": plan["lead_time_s"], "recomputed": round(lead, 1)},
            "ok": abs(float(plan["lead_time_s"]) - lead) <= tol_lead,
            "why": f"the plan states a lead time of {plan['lead_time_s']} s; its threshold and for: give {lead:.1f} s "
            f"(±{tol_lead:g} s)",
            "why_zh": f"規劃寫明預警時間 {plan['lead_time_s']} 秒；依其門檻與 for: 計算為 {lead:.1f} 秒（容許 ±{tol_lead:g} 秒）",
        },
    ]
    for pr in probes:  # a passing probe carries no failure sentence (an outsider read them as failures)
        if pr["ok"]:
            pr.pop("why")
            pr.pop("why_zh")
    return all_ok(
        spec,
        probes,
        f"The alert plan is sound: threshold {num(t)} m, for: {for_s:g} s, {lead:.0f} s before the HH trip "
        f"(need ≥ {need:g} s)",
        f"警示規劃合理：門檻 {num(t)} m、for: {for_s:g} 秒，早於 HH 跳脫 {lead:.0f} 秒（需 ≥ {need:g} 秒）",
        facts=f,
        **evidence,
    )
