"""The requirement table of every lab, as data: each requirement the brief states is assessed by checks, each check
assesses a stated requirement, each requirement is violated by a flawed solution that fails only checks of the
requirements it violates, each check states its scoring rule, and the brief renders the table in both languages.
The live tests (test_grader_daq, test_security_labs, test_dashboard_lab) then show each flawed solution failing
exactly its declared checks on a real plant."""

from __future__ import annotations

import pytest

from aiotlab.grader import scoring
from aiotlab.grader.results import FAIL, NOT_ASSESSABLE, PARTIAL, PASS, CheckResult, by_items, verdict
from aiotlab.labs.loader import list_labs, load_lab, requirements_table

LABS = [lab.id for lab in list_labs()]


@pytest.mark.parametrize("lab_id", LABS)
def test_every_requirement_is_assessed_and_every_check_assesses_one(lab_id: str) -> None:
    lab = load_lab(lab_id)
    reqs = lab.requirements
    assert reqs, f"{lab_id}: lab.yaml has no requirements table"
    checks = {c["id"] for c in lab.checks}
    assessed = {c for r in reqs for c in r["checks"]}
    assert assessed == checks, f"unassessing checks: {checks - assessed}; unknown: {assessed - checks}"
    for r in reqs:
        assert r["checks"] and set(r["checks"]) <= checks, r["id"]
        assert r["text"]["en"].strip() and r["text"]["zh-TW"].strip(), r["id"]


@pytest.mark.parametrize("lab_id", LABS)
def test_every_requirement_has_a_flawed_solution_failing_only_its_checks(lab_id: str) -> None:
    lab = load_lab(lab_id)
    violated: dict[str, set[str]] = {}  # solution -> union of checks of the requirements it violates
    for r in lab.requirements:
        assert r.get("violated_by"), f"{lab_id}/{r['id']}: no flawed solution violates this requirement"
        for sol in r["violated_by"]:
            violated.setdefault(sol, set()).update(r["checks"])
    for sol, allowed in violated.items():
        fails = set(lab.solutions[sol].expect_fail)
        assert fails, f"{sol} declares no failing check"
        assert fails <= allowed, f"{sol} fails {sorted(fails - allowed)} outside the requirements it violates"
    flawed = {n for n in lab.solutions if n.startswith("flawed-")}
    assert flawed <= set(violated), f"flawed solutions tied to no requirement: {sorted(flawed - set(violated))}"


@pytest.mark.parametrize("lab_id", LABS)
def test_every_check_states_its_scoring_rule(lab_id: str) -> None:
    for c in load_lab(lab_id).checks:
        assert "scoring" in c, f"{lab_id}/{c['id']}: no scoring rule in the lab data"
        assert scoring.validate(c) is None, c["id"]


@pytest.mark.parametrize("lab_id", LABS)
@pytest.mark.parametrize("lang", ["en", "zh-TW"])
def test_brief_renders_the_requirement_table(lab_id: str, lang: str) -> None:
    lab = load_lab(lab_id)
    table = requirements_table(lab, lang)
    for r in lab.requirements:
        assert r["text"][lang].strip().splitlines()[0] in table
    for c in lab.checks:
        assert f"`{c['id']}`" in table and scoring.describe(c, lang) in table
    template = (lab.path / f"brief.{lang}.md.j2").read_text(encoding="utf-8")
    assert "{{ requirements_table }}" in template, "the brief must print the requirement table from the lab data"


def spec(rule: dict | None, points: float = 10) -> dict:
    return {"id": "x", "points": points, **({"scoring": rule} if rule else {})}


def test_scoring_rules() -> None:
    items = {"a": True, "b": True, "c": False, "d": True}
    r = scoring.apply(
        spec({"rule": "per-item", "items": {"en": "stream", "zh-TW": "資料流"}}), by_items("x", 10, items, "", "")
    )
    assert (r.status, r.points) == (PARTIAL, 7.5)
    r = scoring.apply(spec({"rule": "all-or-nothing"}), by_items("x", 10, items, "", ""))
    assert (r.status, r.points) == (FAIL, 0.0)
    # a fraction below its floor scores nothing: a systematic error is never nearly free
    r = scoring.apply(spec({"rule": "fraction", "floor": 0.9}), verdict("x", 10, 0.85, 1.0, "", "", {}))
    assert (r.status, r.points) == (FAIL, 0.0)
    r = scoring.apply(spec({"rule": "fraction", "floor": 0.9}), verdict("x", 10, 0.95, 1.0, "", "", {}))
    assert (r.status, r.points) == (PARTIAL, 9.5)
    r = scoring.apply(spec(None), verdict("x", 10, 1.0, 1.0, "", "", {}))
    assert (r.status, r.points) == (PASS, 10)
    na = CheckResult("x", NOT_ASSESSABLE, 5.0, 10, {"en": "", "zh-TW": ""}, blocked_by="c")
    assert scoring.apply(spec({"rule": "fraction", "floor": 0.5}), na).points == 0.0
    assert scoring.validate(spec({"rule": "fraction", "floor": 0.1})), "a floor too low must be refused"
    assert scoring.validate(spec({"rule": "per-item"})), "per-item must name its items"
