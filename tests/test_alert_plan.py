"""dashboard-alerting's early-warning decision (issue #15): the candidate decides TankLevelHigh's threshold and for:
from the tank's P&ID facts; dash.alert_plan judges the decision against the plant the candidate runs, and the rule
tests hold the rules to the plan. Every candidate's plant admits more than one sound answer; each is accepted."""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_dashboard_lab import reference_module

from aiotlab.grader.checks import alert_plan as ap
from aiotlab.grader.checks import dashboard as dash
from aiotlab.grader.engine import GradeContext
from aiotlab.labs import derive
from aiotlab.labs.loader import load_lab
from aiotlab.simulators.datasheet import process_facts
from aiotlab.simulators.launch import plant_params

LAB = "dashboard-alerting"


@functools.cache
def the_lab() -> Any:
    return load_lab(LAB)


@functools.cache
def reference() -> Any:
    return reference_module()


def context(candidate: str, where: Path, plan: dict[str, Any] | None) -> GradeContext:
    lab = the_lab()
    info = {"addresses": {"hosts": {"workstation": "127.1.0.40"}}, "params": plant_params(candidate)[2]}
    ctx = GradeContext(lab, candidate, lab.params_for(candidate), {}, info, None, where)  # type: ignore[arg-type]
    if plan is not None:
        path = where / ctx.params["alert_plan_file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(plan))
    return ctx


def decided(candidate: str, style: str, flaw: str | None = None) -> dict[str, Any]:
    """The reference's decision for this candidate's plant, from the datasheet's facts as the candidate sees them."""
    lab = the_lab()
    sheet = {"process": process_facts(plant_params(candidate)[2]["process"]["tank"])}
    return reference().alert_plan(lab.params_for(candidate), sheet, style, flaw)


def judged(candidate: str, where: Path, plan: dict[str, Any] | None) -> Any:
    ctx = context(candidate, where, plan)
    spec = next(c for c in ctx.lab.checks if c["id"] == "dash.alert_plan")
    return ctx, asyncio.run(ap.alert_plan(ctx, spec))


def test_two_different_sound_decisions_pass_for_every_candidate(tmp_path: Path) -> None:
    """Over 60 candidates' plants (area, pump, alarms and lead time all vary), both reference decisions (lowest
    silent threshold with for: up to 30 s; highest threshold that keeps the lead time with for: 15 s) pass, and they
    differ: the lab has room for judgement, and none of it is refused."""
    spreads = []
    for i in range(60):
        cand = f"plan-{i}"
        early, late = decided(cand, "early"), decided(cand, "late")
        for style, plan in (("early", early), ("late", late)):
            _, r = judged(cand, tmp_path / f"{cand}-{style}", plan)
            assert r.status == "pass", (cand, style, plan, r.summary["en"])
            assert not [p for p in r.evidence["probes"] if "why" in p]  # no failure sentence on a passing probe
        spreads.append(late["TankLevelHigh"]["threshold_m"] - early["TankLevelHigh"]["threshold_m"])
    assert min(spreads) > 0.0 and max(spreads) >= 0.1, (min(spreads), max(spreads))


def test_the_need_binds_on_every_plant(tmp_path: Path) -> None:
    """The stated lead time is met by the lowest silent threshold and missed by one just under the H alarm (with
    the shortest for:), on every candidate's plant: ignoring the need or the H alarm fails somewhere, never free."""
    for i in range(60):
        ctx = context(f"plan-{i}", tmp_path, None)
        p, f = ctx.params, ap.tank_facts(ctx)
        shortest = p["level_for_range_s"][0]
        assert derive.lead_time(p, f, derive.lowest_threshold(p, f), shortest) >= p["lead_time_s"], p
        assert derive.lead_time(p, f, f["high_m"] - 0.01, shortest) < p["lead_time_s"], p


@pytest.mark.parametrize(
    ("flaw", "probe"),
    [
        ("plan-too-late", "lead time before the HH trip"),
        ("plan-rate", "worst-case fill rate"),
    ],
)
def test_a_flawed_decision_fails_on_its_own_probe(tmp_path: Path, flaw: str, probe: str) -> None:
    for i in range(30):
        cand = f"plan-{i}"
        _, r = judged(cand, tmp_path / cand, decided(cand, "early", flaw))
        bad = [p["what"] for p in r.evidence["probes"] if not p["ok"]]
        assert r.status == "fail" and bad and bad[0].startswith(probe), (cand, bad)
        assert all(("why" in p) == (not p["ok"]) for p in r.evidence["probes"])  # words only where it failed


def test_each_bound_is_enforced(tmp_path: Path) -> None:
    """Just below the lowest silent threshold, at the H alarm, a for: outside 10-60 s, a stated lead time 6 s off:
    each fails with words that say which bound; the sound plan beside them passes (the positive control)."""
    cand = "plan-bounds"
    good = decided(cand, "early")
    ctx, r = judged(cand, tmp_path / "good", good)
    assert r.status == "pass", r.summary["en"]
    facts = ap.tank_facts(ctx)
    lowest = derive.lowest_threshold(ctx.params, facts)

    def variant(name: str, **change: Any) -> str:
        tl = {**good["TankLevelHigh"], **change}
        c = context(cand, tmp_path / name, {"TankLevelHigh": tl})
        tl["lead_time_s"] = change.get(
            "lead_time_s", round(derive.lead_time(c.params, facts, tl["threshold_m"], tl["for_s"]), 1)
        )
        _, res = judged(cand, tmp_path / name, {"TankLevelHigh": tl})
        assert res.status == "fail", (name, res.summary["en"])
        return res.summary["en"]

    assert "would fire in normal operation" in variant("low", threshold_m=round(lowest - 0.002, 4))
    assert "is not below PLC-1's H alarm" in variant("at-h", threshold_m=facts["high_m"])
    assert "outside 10–60 s" in variant("for-short", for_s=5)
    assert "outside 10–60 s" in variant("for-long", for_s=61)
    off = round(
        derive.lead_time(ctx.params, facts, good["TankLevelHigh"]["threshold_m"], good["TankLevelHigh"]["for_s"]) + 6, 1
    )
    assert "the plan states a lead time" in variant("claim", lead_time_s=off)


def test_a_missing_plan_fails_once_and_its_parts_are_not_judged_elsewhere(aiot_home: Path, tmp_path: Path) -> None:
    """No plan: dash.alert_plan fails naming the missing file; the hidden rule tests leave TankLevelHigh's cases to
    it (and still judge the other alerts), the live test leaves TankLevelHigh out, the dashboard leaves the Tank
    level threshold step out: each says so, naming dash.alert_plan (one defect, one check)."""
    ctx, r = judged("plan-none", tmp_path, None)
    assert r.status == "fail" and "monitoring/alert-plan.json is missing" in r.summary["en"]
    checks = {c["id"]: c for c in ctx.lab.checks}
    rules = reference().rules(ctx.params, decided("plan-none", "early"), None)
    path = tmp_path / ctx.params["rules_file"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    assert asyncio.run(dash.rules_valid(ctx, checks["dash.rules_valid"])).status == "pass"
    for suite in ("dash.rules_thresholds", "dash.rules_timing"):
        res = asyncio.run(dash.rule_tests(ctx, checks[suite]))
        assert res.status == "pass", res.summary["en"]
        left = res.evidence["not_judged_here"]
        assert left and all(c.startswith("level-") for c in left) and "see dash.alert_plan" in res.summary["en"]
        assert not any(c["alert"] == "TankLevelHigh" for c in res.evidence["cases"])
    assert ctx.blockers[ap.PLAN_UNUSABLE]["check"] == "dash.alert_plan"


def test_the_rules_are_held_to_the_plan(aiot_home: Path, tmp_path: Path) -> None:
    """The late decision's rules pass the hidden tests under the late plan and fail them under the early plan (the
    rules must do what the plan says, whatever it says)."""
    cand = "plan-hold"
    late = decided(cand, "late")
    ctx = context(cand, tmp_path / "late", late)
    checks = {c["id"]: c for c in ctx.lab.checks}
    rules = yaml.safe_dump(reference().rules(ctx.params, late, None), sort_keys=False)
    (tmp_path / "late" / ctx.params["rules_file"]).write_text(rules)
    asyncio.run(dash.rules_valid(ctx, checks["dash.rules_valid"]))
    assert asyncio.run(dash.rule_tests(ctx, checks["dash.rules_thresholds"])).status == "pass"
    other = context(cand, tmp_path / "early", decided(cand, "early"))
    (tmp_path / "early" / ctx.params["rules_file"]).write_text(rules)
    asyncio.run(dash.rules_valid(other, checks["dash.rules_valid"]))
    res = asyncio.run(dash.rule_tests(other, checks["dash.rules_thresholds"]))
    assert res.status == "fail" and {c["case"] for c in res.evidence["cases"] if not c["ok"]} == {"level-above"}
