"""data-acquisition's acquisition decision (issue #15): the candidate plans each polled stream's reads and period from
its need within PLC-1's allotment; daq.plan judges the plan against the candidate's datasheet, needs and allotment.
Every candidate admits more than one sound plan; each is accepted, and the naive one never fits."""

from __future__ import annotations

import functools
import importlib.util
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from aiotlab.grader.checks import acq_plan
from aiotlab.grader.engine import GradeContext
from aiotlab.labs import derive
from aiotlab.labs.loader import load_lab
from aiotlab.simulators.datasheet import build as build_datasheet

LAB = "data-acquisition"
CANDIDATES = ["ap-1", "ap-2", "ap-3", "ap-4", "ap-5", "ap-6"]


@functools.cache
def the_lab() -> Any:
    return load_lab(LAB)


@functools.cache
def make_plan() -> Any:
    path = the_lab().path / "solutions" / "reference" / "make_plan.py"
    spec = importlib.util.spec_from_file_location("daq_make_plan", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def context(candidate: str, where: Path, plan: Any = None, raw: str | None = None) -> GradeContext:
    lab = the_lab()
    ctx = GradeContext(lab, candidate, lab.params_for(candidate), build_datasheet(candidate), {}, None, where)  # type: ignore[arg-type]
    path = where / ctx.params["plan_file"]
    if raw is not None:
        path.write_text(raw)
    elif plan is not None:
        path.write_text(json.dumps(plan))
    return ctx


def judge(ctx: GradeContext) -> Any:
    spec = next(c for c in the_lab().checks if c["id"] == "daq.plan")
    return acq_plan.plan_check(ctx, spec)


def test_the_allotment_binds_for_every_draw_of_needs() -> None:
    """Whatever needs a candidate draws, one block read at the fastest need fits, one request per stream at its
    need does not, and the plan between (the fastest stream alone, the rest in one block) fits too."""
    choices = the_lab().data["parameters"]["needs_s"]
    plc1 = {k: v["choices"] for k, v in choices.items() if k.startswith("plc1/")}
    fraction = the_lab().data["parameters"]["_allotment_fraction"]
    seen = set()
    for combo in itertools.product(*plc1.values()):
        needs = dict(zip(plc1, combo, strict=True))
        allot = derive.daq_allotment({"needs_s": needs, "_allotment_fraction": fraction}, {})
        least, naive = derive.plc1_rates(needs)
        fast = min(needs.values())
        split = 1 / fast + 1 / min(sorted(needs.values())[1:])
        assert least <= allot < naive and split <= allot + 1e-9, (needs, allot, least, naive, split)
        seen.add(allot)
    assert len(seen) > 3  # the constraint really differs between candidates


@pytest.mark.parametrize("candidate", CANDIDATES)
@pytest.mark.parametrize("style", ["block", "split"])
def test_sound_plans_hold(candidate: str, style: str, tmp_path: Path) -> None:
    ctx = context(candidate, tmp_path)
    plan = make_plan().plan(ctx.params, ctx.sheet, style)
    (tmp_path / ctx.params["plan_file"]).write_text(json.dumps(plan))
    r = judge(ctx)
    assert r.status == "pass", r.summary
    assert r.evidence["plc1_planned_rate_rps"] <= ctx.params["plc1_allotment_rps"]


@pytest.mark.parametrize(
    ("style", "says"),
    [
        ("naive", "over your allotment"),
        ("slow-heater", "plc2/Heater.Temperature every"),
        ("rate-claim", "plc1_request_rate_rps says"),
    ],
)
def test_unsound_plans_fail_naming_the_decision(style: str, says: str, tmp_path: Path) -> None:
    for candidate in CANDIDATES[:3]:
        ctx = context(candidate, tmp_path)
        plan = make_plan().plan(ctx.params, ctx.sheet, style)
        (tmp_path / ctx.params["plan_file"]).write_text(json.dumps(plan))
        r = judge(ctx)
        assert r.status == "fail" and says in r.summary["en"], r.summary
        assert len(r.evidence["problems"]) == 1, r.evidence["problems"]  # one defect, named once


def block_plan(ctx: GradeContext) -> dict[str, Any]:
    return make_plan().plan(ctx.params, ctx.sheet, "block")


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda p: p["modbus_reads"][0].update(count=p["modbus_reads"][0]["count"] - 1), "does not cover pump_starts"),
        (
            lambda p: p["modbus_reads"][0].update(count=p["modbus_reads"][0]["count"] + 30),
            "lies outside the documented",
        ),
        (lambda p: p["modbus_reads"][0].update(table="holding_registers"), "is not in PLC-1's holding_registers"),
        (lambda p: p["modbus_reads"].append(dict(p["modbus_reads"][0])), "in 2 reads"),
        (lambda p: p["modbus_reads"][0]["streams"].remove("pressure"), "plc1/pressure is not in the plan"),
        (lambda p: p["opcua"].pop("FillingLine.GoodCount"), "plc2/FillingLine.GoodCount is not in the plan"),
        (lambda p: p["opcua"].update({"Heater.Setpoint": {"period_s": 1}}), "not an OPC UA stream of the table"),
        (lambda p: p["modbus_reads"][0]["streams"].append("inflow"), "plc1/inflow is not a Modbus stream"),
    ],
)
def test_plan_defects_are_named(edit: Any, says: str, tmp_path: Path) -> None:
    ctx = context("ap-1", tmp_path)
    plan = block_plan(ctx)
    edit(plan)
    (tmp_path / ctx.params["plan_file"]).write_text(json.dumps(plan))
    r = judge(ctx)
    assert r.status == "fail" and says in r.summary["en"], r.summary


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (None, "acquisition-plan.json is missing"),
        ('{"modbus_reads": NaN}', "not usable JSON"),
        ("[" * 100_000, "not usable JSON"),
        ('{"modbus_reads": [], "opcua": {}, "plc1_request_rate_rps": 0, "rationale": "x"}', "does not follow"),
        ("\xff\xfe", "not usable JSON"),
    ],
)
def test_unusable_plans_fail_closed_and_block_the_timing_checks_once(
    raw: str | None, says: str, tmp_path: Path
) -> None:
    ctx = context("ap-2", tmp_path, raw=raw)
    r = judge(ctx)
    assert r.status == "fail" and says in r.summary["en"], r.summary
    assert acq_plan.plan_cause(ctx) == acq_plan.PLAN_UNUSABLE
    assert ctx.blockers[acq_plan.PLAN_UNUSABLE]["check"] == "daq.plan"
    assert acq_plan.stream_periods(ctx) is None


def test_the_brief_states_needs_allotment_and_the_plan_schema() -> None:
    from aiotlab.labs.loader import render_brief

    lab = the_lab()
    params = lab.params_for("ap-3")
    for lang in ("en", "zh-TW"):
        brief = render_brief(lab, "ap-3", build_datasheet("ap-3"), params, lang)
        assert f"{params['plc1_allotment_rps']}" in brief and "acquisition-plan.schema.json" in brief
        for stream, need in params["needs_s"].items():
            assert f"`{stream.split('/')[1]}`" in brief and f"{need} " in brief
    assert (lab.path / "schema" / acq_plan.SCHEMA).is_file()
