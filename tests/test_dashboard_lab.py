"""The dashboard-alerting lab graded end to end with Debian's real promtool and Prometheus: the reference scores
full marks, each flawed solution fails exactly what it targets, a hostile candidate fails everything with reasons
in bounded time, and the kit's Prometheus configuration is the one promtool accepts."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiotlab.grader import report
from aiotlab.grader.checks import dashboard as dash
from aiotlab.grader.checks import registry
from aiotlab.grader.checks.dashboard import for_testing, grafana_substitute
from aiotlab.grader.engine import grade
from aiotlab.labs.loader import load_lab

from conftest import cli

pytestmark = pytest.mark.timeout(900)  # every solution graded at once, each on its own plant and Prometheus

SECRET = "test-exam-secret"
LAB = "dashboard-alerting"


@pytest.fixture(scope="module")
def graded(aiot_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("dashboard")
    lab = load_lab(LAB)

    async def one(sol: str) -> tuple[str, dict[str, Any]]:
        for attempt in range(3):
            cand = (f"d-{sol}" + (f"-{attempt}" if attempt else ""))[:40]
            await asyncio.to_thread(cli, "plant", "down", "-c", cand, check=False)
            t0 = time.monotonic()
            try:
                run = await grade(lab, cand, solution=sol, out_dir=out / cand)
                break
            except RuntimeError as exc:
                # the plant lost its addresses to a plant of another registry (other test sessions on this
                # machine): retried under a fresh candidate name, since a candidate keeps the slot it once had
                if "did not start" not in str(exc) or attempt == 2:
                    raise
                await asyncio.to_thread(cli, "plant", "down", "-c", cand, check=False)
        doc = report.write_all(run, out / cand)
        return sol, {"doc": doc, "dir": out / cand, "cand": cand, "seconds": time.monotonic() - t0}

    async def all_() -> dict[str, dict[str, Any]]:
        # every grading runs to its end (a failing one must not cancel the others mid-way: their solutions and
        # plants would be left running); the first failure is raised afterwards
        done = await asyncio.gather(*(one(sol) for sol in lab.solutions), return_exceptions=True)
        for d in done:
            if isinstance(d, BaseException):
                raise d
        return dict(done)  # type: ignore[arg-type]

    t0 = time.monotonic()
    results = asyncio.run(all_())
    wall = time.monotonic() - t0
    with ThreadPoolExecutor(8) as pool:  # one by one, fifteen plants take a minute to stop on a loaded host
        list(pool.map(lambda r: cli("plant", "down", "-c", r["cand"], check=False), results.values()))
    slowest = max(results, key=lambda k: results[k]["seconds"])
    print(f"\ndashboard lab: {len(results)} solutions graded concurrently in {wall:.0f} s (slowest {slowest})")
    return results


def failed(doc: dict[str, Any]) -> set[str]:
    """Checks the candidate failed (not-assessable ones are reported apart: a blocked check is not a failure)."""
    return {c["id"] for c in doc["checks"] if c["status"] in ("fail", "partial", "error")}


def blocked(doc: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c.get("blocked_by") for c in doc["checks"] if c["status"] == "not_assessable"}


def explain(doc: dict[str, Any]) -> str:
    return "\n".join(
        f"{c['id']}: {c['status']} {c['points']}/{c['max_points']} - {c['summary']['en']}" for c in doc["checks"]
    )


def evidence(run: dict[str, Any], check_id: str) -> dict[str, Any]:
    return json.loads((run["dir"] / "evidence" / f"{check_id}.json").read_text())


def test_reference_scores_full_marks(graded: dict) -> None:
    doc = graded["reference"]["doc"]
    assert doc["score"]["percent"] == 100.0, explain(doc)
    assert all(i["achieved"] for i in doc["indicators"])
    assert not doc["not_assessable"]


def expected_blocked(solution: str) -> dict[str, str]:
    """The checks a flawed solution's defect keeps from being assessed, by cause (its solution.yaml)."""
    meta = yaml.safe_load((load_lab(LAB).solutions[solution].path / "solution.yaml").read_text())
    return meta.get("expect_blocked") or {}


@pytest.mark.parametrize("solution", [s for s in load_lab(LAB).solutions if s.startswith("flawed-")])
def test_flawed_solution_fails_exactly_its_targets(graded: dict, solution: str) -> None:
    """One defect, one check: exactly the declared checks fail, every other check passes, except those the defect
    keeps from being assessed, which the solution declares with their cause (an exporter nobody can scrape)."""
    expected = set(load_lab(LAB).solutions[solution].expect_fail)
    doc = graded[solution]["doc"]
    assert expected, "a flawed solution must declare what it fails"
    assert failed(doc) == expected and blocked(doc) == expected_blocked(solution), explain(doc)
    assert all(c["points"] == 0 for c in doc["checks"] if c["id"] in expected), "all or nothing: " + explain(doc)
    passing = {c["id"] for c in doc["checks"] if c["status"] == "pass"}
    assert passing == {c["id"] for c in doc["checks"]} - expected - set(expected_blocked(solution)), explain(doc)


def test_a_down_exporter_blocks_what_needs_its_page_and_plc1_load_is_still_judged(graded: dict) -> None:
    """The exporter serves its page on 127.0.0.1: dash.metric_contract fails, saying plainly that the connection
    was refused at the documented URL (no HTTP library noise); PLC-1's load is measured without the page, from
    PLC-1's accounting and FW-1's count, over at least the minimum window, and the summary states that window."""
    run = graded["flawed-exporter-localhost"]
    checks = {c["id"]: c for c in run["doc"]["checks"]}
    contract = checks["dash.metric_contract"]["summary"]
    assert contract["en"].startswith("The exporter could not be scraped: connection refused at http://"), contract
    assert ":9108/metrics" in contract["en"] and "ssl" not in contract["en"] and "Error" not in contract["en"]
    assert "拒絕連線" in contract["zh-TW"] and "ssl" not in contract["zh-TW"]
    scrape = evidence(run, "dash.metric_contract")["scrape"]
    assert scrape["error"] == "connection refused" and "ClientConnectorError" in scrape["error_detail"]
    budget = checks["dash.plc1_budget"]
    assert budget["status"] == "pass", explain(run["doc"])
    ev = evidence(run, "dash.plc1_budget")
    minimum = next(c for c in load_lab(LAB).checks if c["id"] == "dash.plc1_budget")["params"]["min_window_s"]
    assert ev["window_s"] >= minimum - 0.5 and ev["waited_for_min_window_s"] > 0, ev
    assert ev["workstation_requests_to_plc1"] > 0 and ev["load_samples"] > 0
    assert f"in the {ev['window_s']:.0f} s judged" in budget["summary"]["en"]
    assert f"評量的 {ev['window_s']:.0f} 秒內" in budget["summary"]["zh-TW"]
    ref = next(c for c in graded["reference"]["doc"]["checks"] if c["id"] == "dash.plc1_budget")
    ref_ev = evidence(graded["reference"], "dash.plc1_budget")
    assert ref_ev["waited_for_min_window_s"] < 1 and f"in the {ref_ev['window_s']:.0f} s judged" in ref["summary"]["en"]


def test_systematic_errors_cost_their_whole_check(graded: dict) -> None:
    """A 1000x unit error on one metric and an alert without its hold time each lose a real share (issue #12, 7)."""
    unit = graded["flawed-wrong-unit"]["doc"]
    assert unit["score"]["points"] == unit["score"]["max_points"] - 15, explain(unit)
    no_for = graded["flawed-no-for"]["doc"]
    assert no_for["score"]["points"] == no_for["score"]["max_points"] - 10, explain(no_for)


def test_live_alerts_fired_and_resolved_on_the_real_prometheus(graded: dict) -> None:
    """The reference's timeline: fired after its for: (not before), resolved once the grader cleared it."""
    lab = load_lab(LAB)
    run = graded["reference"]
    params = json.loads((run["dir"] / "workspace" / ".aiotlab" / "lab-params.json").read_text())
    planned = json.loads((run["dir"] / "workspace" / params["alert_plan_file"]).read_text())["TankLevelHigh"]
    ev = evidence(run, "dash.live_alert")
    tl = ev["timeline_s"]
    assert planned["for_s"] <= tl["level_fired"] <= planned["for_s"] + params["fire_slack_s"]
    assert tl["level_resolved"] - tl["level_cleared"] <= params["resolve_within_s"]
    assert tl["silent_fired"] <= params["silent_after_s"] + params["fire_slack_s"]
    assert tl["silent_resolved"] > params["live_silence_s"]  # only after the node reported again
    assert ev["prometheus"].endswith(":19090") and ev["rules_loaded"] is True
    # positive controls: the plant really did raise the level and silence the node
    assert ev["positive_controls"]["level_above_threshold_from_s"] is not None
    assert ev["positive_controls"]["node_reports_while_silenced"] == []
    assert not ev["grader_prometheus"]["grader_fell_behind"], ev["grader_prometheus"]
    # the dashboard's ALERTS panel was evaluated while an alert was firing and returned it, and nothing before
    pq = evidence(run, "dash.panel_queries")
    alerts_row = next(p for p in pq["probes"] if "ALERTS" in p["what"] and "series" in p)
    assert alerts_row["at"] and alerts_row["series"] >= 1 and alerts_row["series_when_quiet"] == 0
    assert alerts_row["control_firing"]
    assert {c["id"] for c in lab.checks} == {c["id"] for c in run["doc"]["checks"]}


def test_evidence_names_the_fault(graded: dict) -> None:
    """An assessor can see why, in what was observed: promtool's own words, the failing hidden case, the value
    against ground truth (labelled as a window, not the latest sample), the load against the budget."""
    contract = evidence(graded["flawed-counter-as-gauge"], "dash.metric_contract")
    bad = [p for p in contract["probes"] if not p["ok"]]
    assert [p["what"] for p in bad] == ["plant_energy_imported_joules_total"] and "gauge" in bad[0]["why"]
    lint = evidence(graded["flawed-counter-as-gauge"], "dash.exporter_lint")
    assert any('should not have "_total" suffix' in p for p in lint["judged_by_dash.metric_contract"])
    lint = evidence(graded["flawed-lint-unit"], "dash.exporter_lint")
    assert lint["problems"] == [
        'plant_exporter_poll_duration_milliseconds use base unit "seconds" instead of "milliseconds"'
    ]
    values = evidence(graded["flawed-wrong-unit"], "dash.exporter_values")
    wrong = {k for k, r in values["metrics"].items() if r["ok"] < r["n"]}
    assert wrong == {"plant_active_power_watts"}
    first = values["metrics"]["plant_active_power_watts"]["first_problem"]
    assert first["truth_range_in_window"] and first["value"] < first["truth_range_in_window"][0] / 100
    summary = next(c for c in graded["flawed-wrong-unit"]["doc"]["checks"] if c["id"] == "dash.exporter_values")
    assert "plant_active_power_watts =" in summary["summary"]["en"] and "before that scrape" in summary["summary"]["en"]
    values = evidence(graded["flawed-oee"], "dash.exporter_values")
    assert {k for k, r in values["metrics"].items() if r["ok"] < r["n"]} == {"plant_line_oee_ratio"}
    oee = evidence(graded["flawed-oee"], "dash.oee")  # the panel shows the wrong gauge faithfully: not its defect
    assert [p["what"] for p in oee["probes"] if p.get("note")] == ["OEE"]
    oee = evidence(graded["flawed-oee-panel"], "dash.oee")
    bad = [p for p in oee["probes"] if not p["ok"]]
    assert [p["what"] for p in bad] == ["OEE"] and bad[0]["value"] > 1
    budget = evidence(graded["flawed-over-polling"], "dash.plc1_budget")
    assert budget["max_total_load_rps"] > budget["budget_rps"] and budget["workstation_rps"] > 20
    ref_budget = evidence(graded["reference"], "dash.plc1_budget")
    assert ref_budget["workstation_requests_to_plc1"] > 0 and ref_budget["window_s"] > 60
    summary = next(c for c in graded["flawed-oee"]["doc"]["checks"] if c["id"] == "dash.oee")["summary"]
    assert "OEE shows your exporter's plant_line_oee_ratio unchanged" in summary["en"], summary  # not "agree"
    assert "原樣顯示匯出器的 plant_line_oee_ratio" in summary["zh-TW"], summary
    summary = next(c for c in graded["reference"]["doc"]["checks"] if c["id"] == "dash.panel_queries")["summary"]
    assert "; the ALERTS queries returned your firing alerts during the live test" in summary["en"], summary
    assert "ALERTS 查詢於即時測試中您的警示觸發時回傳之" in summary["zh-TW"], summary
    rules = evidence(graded["flawed-severity"], "dash.rules_valid")
    assert [p["what"] for p in rules["probes"] if not p["ok"]] == ["HeaterOverTemperature"]
    timing = evidence(graded["flawed-no-for"], "dash.rules_timing")
    assert {c["case"] for c in timing["cases"] if not c["ok"]} == {"level-for", "level-flapping"}
    assert all(c.get("observed") for c in timing["cases"] if not c["ok"])
    thresholds = evidence(graded["flawed-wrong-threshold"], "dash.rules_thresholds")
    assert {c["case"] for c in thresholds["cases"] if not c["ok"]} == {"level-above"}
    below = next(c for c in thresholds["cases"] if c["case"] == "level-below")
    assert below["ok"] and "no evidence" in below["note"]  # silence beside a failing positive control
    live = evidence(graded["flawed-silent-node-dropped"], "dash.live_alert")
    bad = [p for p in live["probes"] if not p["ok"]]
    assert len(bad) == 1 and "never fired" in bad[0]["why"]
    model = evidence(graded["flawed-panel-unit"], "dash.dashboard_model")
    assert [p["what"] for p in model["probes"] if not p["ok"]] == ["Active power"]
    queries = evidence(graded["flawed-missing-metric"], "dash.panel_queries")
    bad = [p for p in queries["probes"] if not p["ok"]]
    assert bad and all(p["panel"] == "Active power" for p in bad)
    queries = evidence(graded["flawed-alerts-panel-empty"], "dash.panel_queries")
    bad = [p for p in queries["probes"] if not p["ok"]]
    assert [p["panel"] for p in bad] == ["Active alarms"] and "returns nothing while" in bad[0]["why"]


def test_an_alert_rule_defect_is_not_judged_again_live(graded: dict) -> None:
    """SensorSilent with a for: on top of its age fails the hidden threshold case; the live test leaves that alert
    to dash.rules_thresholds (says so) and judges TankLevelHigh alone (issue #12: one defect, one check)."""
    run = graded["flawed-silent-for"]
    thresholds = evidence(run, "dash.rules_thresholds")
    assert {c["case"] for c in thresholds["cases"] if not c["ok"]} == {"sensor-silent", "sensor-silent-vib"}
    live = evidence(run, "dash.live_alert")
    assert live["tested"] == ["TankLevelHigh"] and live["not_tested"] == {
        "SensorSilent": "alert-rule-wrong:SensorSilent"
    }
    assert live["not_tested_judged_by"] == {"SensorSilent": "dash.rules_thresholds"}
    check = next(c for c in run["doc"]["checks"] if c["id"] == "dash.live_alert")
    assert check["status"] == "pass" and "SensorSilent not tested here" in check["summary"]["en"], explain(run["doc"])
    assert evidence(graded["reference"], "dash.live_alert")["tested"] == ["TankLevelHigh", "SensorSilent"]


def test_hostile_candidate_is_failed_once_per_defect_in_bounded_time(graded: dict) -> None:
    """Four defects fail the four checks that own them; every other check is not assessable, naming its cause,
    and each cause is named once at the top of the report."""
    run = graded["hostile-endless-page"]
    doc = run["doc"]
    meta = yaml.safe_load((load_lab(LAB).solutions["hostile-endless-page"].path / "solution.yaml").read_text())
    assert failed(doc) == set(meta["expect_fail"]), explain(doc)
    assert blocked(doc) == meta["expect_blocked"], explain(doc)
    assert doc["score"]["points"] == 0
    causes = {b["cause"]: b for b in doc["not_assessable"]}
    # and PLC-1 was sent nothing: plc1_budget's one reason to be not assessable
    assert set(causes) == {"exporter-down", "rules-rejected", "dashboard-unusable", "exporter-no-plc1-requests"}
    assert causes["exporter-down"]["failed_check"] == "dash.metric_contract"
    scrape = evidence(run, "dash.metric_contract")["scrape"]
    assert "larger than" in scrape["error"]
    summaries = {c["id"]: c["summary"]["en"] for c in doc["checks"]}
    assert "not usable JSON" in summaries["dash.dashboard_model"]
    assert "rejected by promtool check rules" in summaries["dash.rules_valid"]
    assert "alert-plan.json is not usable JSON (nested too deep)" in summaries["dash.alert_plan"]
    assert run["seconds"] < graded["reference"]["seconds"]


def test_reports_verify(graded: dict) -> None:
    assert cli("report", "verify", str(graded["reference"]["dir"] / "report.json")).returncode == 0


def test_kit_prometheus_config_is_accepted_by_promtool(aiot_home: Path, tmp_path: Path) -> None:
    """The candidate's kit: the grader's own Prometheus configuration, valid for promtool once rules exist."""
    cli("plant", "up", "-c", "kitty", "--detach")  # a kit carries the candidate's real addresses: it needs the plant
    try:
        cli("lab", "kit", LAB, "-c", "kitty", "--workspace", str(tmp_path))
    finally:
        cli("plant", "down", "-c", "kitty", check=False)
    kit = tmp_path / ".aiotlab"
    params = json.loads((kit / "lab-params.json").read_text())
    sheet = json.loads((kit / "datasheet.json").read_text())
    rules = tmp_path / params["rules_file"]
    rules.parent.mkdir(parents=True, exist_ok=True)
    rules.write_text("groups: []\n")
    check = subprocess.run(
        ["promtool", "check", "config", str(kit / "prometheus.yml")], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
    config = yaml.safe_load((kit / "prometheus.yml").read_text())
    target = f"{sheet['network']['workstation']}:{params['exporter_port']}"
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == [target]
    ds = yaml.safe_load((kit / "grafana-datasource.yaml").read_text())["datasources"][0]
    assert ds["uid"] == params["datasource_uid"] and ds["type"] == "prometheus"
    for lang in ("en", "zh-TW"):
        brief = (kit / f"brief.{lang}.md").read_text()
        for m in load_lab(LAB).data["metrics"]:
            assert m["name"] in brief
        for a in ("TankLevelHigh", "HeaterOverTemperature", "SensorSilent", "OeeBelowTarget"):
            assert a in brief
        assert str(params["lead_time_s"]) in brief and str(params["oee_target"]) in brief
        assert params["alert_plan_file"] in brief and "alert-plan.schema.json" in brief
        assert target in brief and params["datasource_uid"] in brief


def test_rules_are_tested_without_free_text() -> None:
    """Annotations and extra static labels are removed before the hidden tests; expressions and for: are not."""
    text = yaml.safe_dump(
        {
            "groups": [
                {
                    "name": "g",
                    "rules": [
                        {"record": "x:y", "expr": "up"},
                        {
                            "alert": "A",
                            "expr": "up > 1",
                            "for": "30s",
                            "labels": {"severity": "warning", "team": "ops"},
                            "annotations": {"summary": "s"},
                        },
                    ],
                }
            ]
        }
    )
    rules = yaml.safe_load(for_testing(text))["groups"][0]["rules"]
    assert rules[0] == {"record": "x:y", "expr": "up"}
    assert rules[1] == {"alert": "A", "expr": "up > 1", "for": "30s", "labels": {"severity": "warning"}}


def test_grafana_variables_are_substituted() -> None:
    model = {"templating": {"list": [{"name": "node", "current": {"value": "vib-01"}}]}}
    expr = 'rate(x{node="$node"}[$__rate_interval]) + y{node="${node}"}[$__interval]'
    assert grafana_substitute(expr, model) == 'rate(x{node="vib-01"}[1m]) + y{node="vib-01"}[15s]'


def test_promtool_and_prometheus_are_installed() -> None:
    """The lab grades on Debian's binaries; the project's setup installs them (run.sh)."""
    for tool in ("promtool", "prometheus"):
        assert shutil.which(tool), f"{tool} missing: ./run.sh setup installs Debian's prometheus"


def test_infra_monitoring_stack_matches_the_lab() -> None:
    """The compose deployment's Prometheus and Grafana provisioning agree with what the lab tells candidates."""
    root = Path(__file__).resolve().parents[1] / "infra"
    check = subprocess.run(
        ["promtool", "check", "config", str(root / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    params = load_lab(LAB).data["parameters"]
    config = yaml.safe_load((root / "prometheus" / "prometheus.yml").read_text())
    assert config["global"]["scrape_interval"] == f"{params['scrape_interval_s']}s"
    assert config["global"]["evaluation_interval"] == f"{params['evaluation_interval_s']}s"
    assert config["scrape_configs"][0]["job_name"] == params["job"]
    ds = yaml.safe_load((root / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    assert ds["datasources"][0]["uid"] == params["datasource_uid"]
    ini = (root / "grafana" / "grafana.ini").read_text()
    assert "[auth.anonymous]\nenabled = false" in ini


def test_rules_normalised_for_the_live_test_keep_what_it_judges() -> None:
    """What dash.rules_valid judges (group interval, severity) is set aside for the hidden and live tests, so that
    one defect fails one check; labels, annotations, expressions and for: stay for the live Prometheus."""
    text = yaml.safe_dump(
        {
            "groups": [
                {
                    "name": "g",
                    "interval": "1m",
                    "rules": [
                        {
                            "alert": "HeaterOverTemperature",
                            "expr": "x > 1",
                            "for": "60s",
                            "labels": {"severity": "warning", "team": "ops"},
                            "annotations": {"summary": "s"},
                        }
                    ],
                }
            ]
        }
    )
    group = yaml.safe_load(dash.normalised(text, {"HeaterOverTemperature": "critical"}, strip=False))["groups"][0]
    assert "interval" not in group
    assert group["rules"][0] == {
        "alert": "HeaterOverTemperature",
        "expr": "x > 1",
        "for": "60s",
        "labels": {"severity": "critical", "team": "ops"},
        "annotations": {"summary": "s"},
    }


def test_alerts_selectors_are_checked_against_the_documented_alerts() -> None:
    documented = [
        {"alertname": "TankLevelHigh", "alertstate": "firing", "severity": "warning", "job": "plant"},
        {"alertname": "SensorSilent", "alertstate": "firing", "severity": "warning", "node": "env-01"},
    ]
    ok = dash.alerts_selector_matches
    assert ok('ALERTS{alertstate="firing"}', documented)[0]
    assert ok("count(ALERTS) or vector(0)", documented)[0]
    assert ok('ALERTS{alertname=~"Tank.*|Sensor.*", job!="other"}', documented)[0]
    assert not ok('ALERTS{alertstate="active"}', documented)[0]
    assert not ok('ALERTS{alertname="TankLevelHi"}', documented)[0]
    assert not ok('ALERTS{severity="critical", alertstate="firing"}', documented)[0]


class FakeServer:
    """Answers instant queries from a table {(expr, at): result}; anything else returns nothing."""

    def __init__(self, answers: dict[tuple[str, float | None], list[dict[str, Any]]]) -> None:
        self.answers = answers

    async def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        return self.answers.get((expr, at), [])


def fake_ctx(tmp_path: Path, plan: bool = True) -> Any:
    from aiotlab.grader.engine import GradeContext
    from aiotlab.simulators.launch import plant_params

    lab = load_lab(LAB)
    params = lab.params_for("unit")
    info = {
        "addresses": {"hosts": {"workstation": "127.1.0.40", "control": "127.1.0.1"}},
        "params": plant_params("unit")[2],
    }
    ctx = GradeContext(lab, "unit", params, {}, info, None, tmp_path)  # type: ignore[arg-type]
    if plan:  # the reference's decision: what the rules are held to
        path = tmp_path / params["alert_plan_file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(reference_module().alert_plan(params, plan_sheet(ctx), "early", None)))
    return ctx


def plan_sheet(ctx: Any) -> dict[str, Any]:
    """The datasheet's process section for a fake context's plant."""
    from aiotlab.simulators.datasheet import process_facts

    return {"process": process_facts(ctx.plant_info["params"]["process"]["tank"])}


def firing_row(name: str) -> dict[str, Any]:
    return {"metric": {"__name__": "ALERTS", "alertname": name, "alertstate": "firing"}, "value": [1.0, "1"]}


def test_an_alerts_panel_passes_only_on_positive_evidence(aiot_home: Path, tmp_path: Path) -> None:
    """Fail closed: an ALERTS query that returns nothing while an alert fires fails; one that returns the same with
    and without alerts fails; without a firing moment the query is judged by its selectors, never passed blindly."""
    ctx = fake_ctx(tmp_path)
    fire, quiet = 1000.0, 900.0
    ctx.cache |= {"dash.alert_firing_at": fire, "dash.alert_quiet_at": quiet}
    control = {('ALERTS{alertstate="firing"}', fire): [firing_row("TankLevelHigh")]}

    def probe(expr: str, answers: dict) -> dict[str, Any]:
        return asyncio.run(dash.alerts_probe(ctx, FakeServer(control | answers), "Active alarms", expr))  # type: ignore[arg-type]

    good = probe('ALERTS{alertstate="firing"}', {})
    assert good["ok"] and good["series"] == 1 and good["series_when_quiet"] == 0
    empty = probe('ALERTS{alertstate="active"}', {})
    assert not empty["ok"] and "returns nothing while TankLevelHigh fired" in empty["why"]
    one = [{"metric": {}, "value": [1.0, "1"]}]
    same = probe("vector(1) or ALERTS", {("vector(1) or ALERTS", fire): one, ("vector(1) or ALERTS", quiet): one})
    assert not same["ok"] and "the same" in same["why"]
    ctx.cache.pop("dash.alert_firing_at")  # no alert of the candidate's fired during grading
    assert not probe('ALERTS{alertstate="active"}', {})["ok"]
    semantic = probe('ALERTS{alertstate="firing"}', {})
    assert semantic["ok"] and semantic["method"].startswith("semantic")


def test_a_probe_the_grader_cannot_run_is_not_assessable(
    aiot_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """promtool missing: not assessable, named as the grader's cause, never a fail (or pass) of the candidate."""
    from aiotlab.grader.probes import prometheus

    def missing(name: str) -> str:
        raise prometheus.ToolMissing(f"{name} is not installed")

    monkeypatch.setattr(prometheus, "binary", missing)
    ctx = fake_ctx(tmp_path)
    rules = tmp_path / ctx.params["rules_file"]
    rules.parent.mkdir(parents=True, exist_ok=True)
    rules.write_text("groups: []\n")
    spec = next(c for c in ctx.lab.checks if c["id"] == "dash.rules_valid")
    r = asyncio.run(dash.rules_valid(ctx, spec))
    assert (r.status, r.points, r.blocked_by) == ("not_assessable", 0.0, dash.GRADER_TOOL)
    assert "check" not in ctx.blockers[dash.GRADER_TOOL]  # no check of the candidate's owns it


def test_dependents_of_a_down_exporter_are_blocked_not_failed(aiot_home: Path, tmp_path: Path) -> None:
    """One defect, one check: with the exporter down, dash.metric_contract fails and records the cause; the checks
    that need the exporter are not assessable naming it (without probing anything)."""
    ctx = fake_ctx(tmp_path)
    checks = {c["id"]: c for c in ctx.lab.checks}
    refused = dash.Scrape(
        "http://127.1.0.40:9108/metrics", 0.0, error="connection refused", error_kind="refused", error_detail="x"
    )
    ctx.cache["dash.scrape"] = refused
    first = asyncio.run(dash.metric_contract(ctx, checks["dash.metric_contract"]))
    assert first.status == "fail" and ctx.blockers[dash.EXPORTER_DOWN]["check"] == "dash.metric_contract"
    assert (
        first.summary["en"] == "The exporter could not be scraped: connection refused at http://127.1.0.40:9108/metrics"
    )
    assert first.summary["zh-TW"] == "無法抓取匯出器：http://127.1.0.40:9108/metrics 拒絕連線"
    for cid in ("dash.exporter_lint", "dash.exporter_values", "dash.live_alert", "dash.panel_queries", "dash.oee"):
        r = asyncio.run(registry()[checks[cid]["fn"]](ctx, checks[cid]))
        assert (r.status, r.blocked_by) == ("not_assessable", dash.EXPORTER_DOWN), cid
    ctx.health = {"overloaded": True}
    r = asyncio.run(dash.exporter_values(ctx, checks["dash.exporter_values"]))
    assert r.blocked_by == "grader-overloaded"


def reference_module() -> Any:
    """labs/.../reference/make_monitoring.py, the reference's plan, rules and dashboard."""
    import importlib.util

    path = load_lab(LAB).path / "solutions" / "reference" / "make_monitoring.py"
    spec = importlib.util.spec_from_file_location("make_monitoring", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def reference_rules(ctx: Any, flaw: str | None) -> dict[str, Any]:
    """The lab's reference rule file for the plan in ctx's workspace, with one of its flaws."""
    plan = json.loads((Path(ctx.workspace) / ctx.params["alert_plan_file"]).read_text())
    return reference_module().rules(ctx.params, plan, flaw)


def test_alerts_failing_hidden_rule_tests_are_left_out_of_the_live_test(aiot_home: Path, tmp_path: Path) -> None:
    """A failing hidden case records its alert's defect, owned by the check that ran it; the timing suite still runs
    that alert's cases; the live test leaves such alerts out, and with both of its alerts out it is not assessable
    naming the owner (before starting any Prometheus)."""
    ctx = fake_ctx(tmp_path)
    checks = {c["id"]: c for c in ctx.lab.checks}
    rules = reference_rules(ctx, "silent-for")
    tank = rules["groups"][0]["rules"][0]
    planned = json.loads((tmp_path / ctx.params["alert_plan_file"]).read_text())["TankLevelHigh"]
    tank["expr"] = tank["expr"].replace(str(planned["threshold_m"]), "2.5")  # a second, unrelated defect
    path = tmp_path / ctx.params["rules_file"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    assert asyncio.run(dash.rules_valid(ctx, checks["dash.rules_valid"])).status == "pass"
    r = asyncio.run(dash.rule_tests(ctx, checks["dash.rules_thresholds"]))
    assert r.status == "fail" and {c["case"] for c in r.evidence["cases"] if not c["ok"]} == {
        "level-above",
        "sensor-silent",
        "sensor-silent-vib",
    }
    for alert in ("TankLevelHigh", "SensorSilent"):
        cause = dash.defect(ctx, f"rules:{alert}")
        assert cause == f"alert-rule-wrong:{alert}" and ctx.blockers[cause]["check"] == "dash.rules_thresholds"
    timing = asyncio.run(dash.rule_tests(ctx, checks["dash.rules_timing"]))
    assert timing.status == "pass" and not timing.evidence["not_judged_here"]  # TankLevelHigh's for: is still judged
    live = asyncio.run(dash.live_alert(ctx, checks["dash.live_alert"]))
    assert (live.status, live.blocked_by) == ("not_assessable", "alert-rule-wrong:TankLevelHigh")
    assert "dash.rules_thresholds" in live.summary["en"]


def test_a_for_too_long_fails_the_threshold_suite_only(aiot_home: Path, tmp_path: Path) -> None:
    """TankLevelHigh waiting 5 min fails the threshold case (no alert 2 min above the level) and would fail the
    timing cases too: the threshold suite owns it, the timing suite leaves those cases out and says so, and still
    judges the rest. Control: an alert without its for: passes the thresholds and fails timing as before."""

    def suites(flaw: str | None, tank_for: str | None, where: Path) -> tuple[Any, Any]:
        ctx = fake_ctx(where)
        checks = {c["id"]: c for c in ctx.lab.checks}
        rules = reference_rules(ctx, flaw)
        if tank_for:
            rules["groups"][0]["rules"][0]["for"] = tank_for
        path = where / ctx.params["rules_file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(rules, sort_keys=False))
        first = asyncio.run(dash.rule_tests(ctx, checks["dash.rules_thresholds"]))
        return first, asyncio.run(dash.rule_tests(ctx, checks["dash.rules_timing"]))

    thresholds, timing = suites(None, "5m", tmp_path / "long")
    assert thresholds.status == "fail" and [c["case"] for c in thresholds.evidence["cases"] if not c["ok"]] == [
        "level-above"
    ]
    assert timing.status == "pass", timing.summary["en"]
    assert set(timing.evidence["not_judged_here"]) == {"level-for", "level-resolves"}
    assert {r["case"] for r in timing.evidence["owned_failures"]} == {"level-for", "level-resolves"}
    assert "not judged here (see dash.rules_thresholds): level-for, level-resolves" in timing.summary["en"]
    assert "level-flapping" in timing.items  # the alert's passing cases still count
    thresholds, timing = suites("no-for", None, tmp_path / "none")
    assert thresholds.status == "pass" and timing.status == "fail"
    assert {c["case"] for c in timing.evidence["cases"] if not c["ok"]} == {"level-for", "level-flapping"}


class FakeControl:
    """The plant's control plane as dash.plc1_budget reads it: /v1/status (plant time, FW-1's count of the
    workstation's requests to PLC-1, growing by `rps` a second) and /v1/truth of PLC-1's load."""

    def __init__(self, ws: str, rps: float, load: float | None) -> None:
        self.ws, self.rps, self.load, self.t0 = ws, rps, load, time.time()

    def status(self, at: float) -> dict[str, Any]:
        count = int((at - self.t0) * self.rps)
        return {"time": at, "plc1": {"budget_rps": 20}, "fw1": {"requests_by_source": {self.ws: {"plc1": count}}}}

    def get(self, path: str) -> Any:
        if path.startswith("/v1/status"):
            return self.status(time.time())
        from urllib.parse import parse_qs, urlsplit

        q = {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}
        t0, t1 = float(q["start"]), float(q["end"])
        ts = [t0 + i * 0.5 for i in range(int((t1 - t0) / 0.5) + 1)]
        value = None if self.load is None or q["tags"] != "plc1.load_rps" else self.load
        return {"t": ts, q["tags"]: [value if q["tags"] == "plc1.load_rps" else 3.0 for _ in ts]}


def budget_ctx(tmp_path: Path, rps: float, load: float | None, ago: float, down: bool) -> tuple[Any, dict]:
    ctx = fake_ctx(tmp_path)
    ctx.sheet = {"network": {"workstation": "127.1.0.40"}, "plc1": {"comm_budget_rps": 20}}
    ctx.control = FakeControl("127.1.0.40", rps, load)
    ctx.status_start = ctx.control.status(time.time() - ago)
    spec = next(c for c in ctx.lab.checks if c["id"] == "dash.plc1_budget")
    if down:
        ctx.block(
            dash.EXPORTER_DOWN, "the exporter gave no usable page", "匯出器未提供可用頁面", "dash.metric_contract"
        )
    return ctx, spec


def test_plc1_budget_is_judged_without_the_exporter_page(aiot_home: Path, tmp_path: Path) -> None:
    """PLC-1's load is measured from the plant's accounting and FW-1's count, whatever the exporter's page: with the
    exporter down it still passes (or fails) on the load; it waits until the window is min_window_s long when the
    checks before it ended sooner, and says the window it judged. Not assessable only when the load cannot be
    measured (no truth) or the workstation sent PLC-1 nothing (named so, whatever else is wrong)."""
    ctx, spec = budget_ctx(tmp_path / "a", rps=1.0, load=3.2, ago=40.0, down=True)
    r = asyncio.run(dash.plc1_budget(ctx, spec))
    assert r.status == "pass", r.summary
    assert r.evidence["waited_for_min_window_s"] < 1 and 39 <= r.evidence["window_s"] <= 42
    assert (
        "peaked at 3.2 req/s (budget 20) in the 40 s judged (from the start of probing to its end)" in r.summary["en"]
    )
    assert r.summary["zh-TW"].startswith("評量的 40 秒內（自探測開始至結束）PLC-1 總負載峰值 3.2 請求/秒")
    ctx, spec = budget_ctx(tmp_path / "b", rps=1.0, load=25.0, ago=40.0, down=True)
    r = asyncio.run(dash.plc1_budget(ctx, spec))
    assert r.status == "fail" and "over its budget of 20" in r.summary["en"]
    spec_short = {**spec, "params": {"min_window_s": 2.0}}  # the checks before it took 0.5 s: it keeps watching
    ctx, _ = budget_ctx(tmp_path / "c", rps=4.0, load=3.0, ago=0.5, down=True)
    r = asyncio.run(dash.plc1_budget(ctx, spec_short))
    assert r.status == "pass" and r.evidence["window_s"] >= 2.0 and r.evidence["waited_for_min_window_s"] >= 1.0
    assert "at least 2 s" in r.evidence["window_is"]
    ctx, spec = budget_ctx(tmp_path / "d", rps=0.0, load=3.0, ago=40.0, down=True)
    r = asyncio.run(dash.plc1_budget(ctx, spec))
    # no request to PLC-1 is the brief's one reason for "not assessable", named as such even when the exporter is down
    assert (r.status, r.blocked_by) == ("not_assessable", "exporter-no-plc1-requests")
    ctx, spec = budget_ctx(tmp_path / "e", rps=0.0, load=3.0, ago=40.0, down=False)
    r = asyncio.run(dash.plc1_budget(ctx, spec))
    assert (r.status, r.blocked_by) == ("not_assessable", "exporter-no-plc1-requests")
    ctx, spec = budget_ctx(tmp_path / "f", rps=1.0, load=None, ago=40.0, down=False)
    r = asyncio.run(dash.plc1_budget(ctx, spec))
    assert (r.status, r.blocked_by) == ("not_assessable", "grader-no-plc1-truth")


def test_numbers_are_printed_finely_enough_to_tell_apart() -> None:
    """A value and the truth it missed never print alike (1.79593e+09 twice), and float noise never shows."""
    assert dash.num(1795934274.0, 0.002) == "1795934274"
    assert dash.num(1795934279.641166, 0.002) == "1795934279.6412"
    assert dash.num(45.10000000000001) == "45.1" and dash.num(45.10000000000001, 0.011) == "45.1"
    assert dash.num(0.918866, 0.002) == "0.9189" and dash.num(-0.00001, 0.002) == "0"
    assert dash.num(123456789.123, 72000) == "123456789" and dash.num(None) == "none"


def test_a_value_mismatch_is_worded_in_each_language() -> None:
    """The value, the tolerance and the truth samples it was held against (not a range of accepted values), in
    English and in zh-TW words of its own."""
    first = {
        "value": 1795934274.0,
        "truth_latest_at_probe": 1795934279.641166,
        "truth_samples_in_window": 2,
        "truth_range_in_window": [1795934274.6412868, 1795934279.641166],
        "truth_values_in_window": [1795934274.6412868, 1795934279.641166],
    }
    key = 'plant_sensor_last_report_timestamp_seconds{node="vib-01"}'
    en, zh = dash.mismatch(key, first, 0.002, 5.0, sensor=True)
    assert en == (
        f"{key} = 1795934274, but no truth sample of the 5 s before that scrape is within ±0.002 of it: the node's "
        "messages that were its latest then carried 1795934274.6413 and 1795934279.6412"
    )
    assert zh == (
        f"{key} = 1795934274，但抓取前 5 秒內沒有任何真值樣本與之相差在 ±0.002 以內：節點當時最新的訊息為 "
        "1795934274.6413、1795934279.6412"
    )
    device = {"value": 0.918866, "truth_latest_at_probe": 0.93298, "truth_samples_in_window": 50}
    device["truth_range_in_window"] = [0.9314528359113196, 0.934034766697049]
    en, zh = dash.mismatch("plant_line_performance_ratio", device, 0.002, 5.0, sensor=False)
    assert en.endswith("the plant's 50 samples there lay between 0.9315 and 0.934, the latest 0.933"), en
    assert zh.endswith("該期間工廠的 50 個樣本介於 0.9315 與 0.934 之間，最新為 0.933"), zh
    for text in (zh,):
        assert not any(w in text for w in ("while", "truth", "latest", "before")), text


def test_a_refused_scrape_is_said_plainly(aiot_home: Path) -> None:
    """A real refused connection: "connection refused", the library's own text kept apart as evidence."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    got = asyncio.run(dash.scrape(f"http://127.0.0.1:{port}/metrics"))
    assert (got.error, got.error_kind) == ("connection refused", "refused") and "ssl:default" in got.error_detail
    assert dash.scrape_failure(got) == (
        f"connection refused at http://127.0.0.1:{port}/metrics",
        f"http://127.0.0.1:{port}/metrics 拒絕連線",
    )


def test_a_missing_rule_file_is_named_with_what_is_there_instead(aiot_home: Path, tmp_path: Path) -> None:
    """The rule file saved as alerts.yaml: the summary names the path the brief gives and what the folder holds."""
    ctx = fake_ctx(tmp_path)
    (tmp_path / "monitoring").mkdir(exist_ok=True)
    (tmp_path / "monitoring" / "alerts.yaml").write_text("groups: []\n")
    (tmp_path / "monitoring" / "dashboard.json").write_text("{}")
    spec = next(c for c in ctx.lab.checks if c["id"] == "dash.rules_valid")
    r = asyncio.run(dash.rules_valid(ctx, spec))
    assert r.status == "fail" and ctx.blockers[dash.RULES_REJECTED]["check"] == "dash.rules_valid"
    assert r.summary["en"] == (
        "The rule file monitoring/alerts.yml is missing from your workspace (monitoring/ holds alert-plan.json, "
        "alerts.yaml, dashboard.json)"
    )
    assert (
        r.summary["zh-TW"]
        == "規則檔 monitoring/alerts.yml 不在您的工作目錄中（monitoring/ 內有 alert-plan.json、alerts.yaml、dashboard.json）"
    )
    ctx = fake_ctx(tmp_path / "none", plan=False)
    r = asyncio.run(dash.rules_valid(ctx, spec))
    assert r.summary["en"] == (
        "The rule file monitoring/alerts.yml is missing from your workspace (there is no folder monitoring/)"
    )


class AnyServer(FakeServer):
    """A Prometheus that returns one series for every query, ALERTS included, at any time."""

    async def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        return [{"metric": {"__name__": "x"}, "value": [at or 0.0, "1"]}]


def test_panel_queries_summary_says_how_alerts_queries_were_judged(aiot_home: Path, tmp_path: Path) -> None:
    """No alert of the candidate's fired during grading (rules missing): the ALERTS queries are judged by their
    selectors, and the summary says so in a sentence, in both languages."""
    ctx = fake_ctx(tmp_path)
    plan = json.loads((tmp_path / ctx.params["alert_plan_file"]).read_text())
    board = tmp_path / ctx.params["dashboard_file"]
    board.parent.mkdir(parents=True, exist_ok=True)
    board.write_text(json.dumps(reference_module().dashboard(ctx.params, plan, None)))
    ctx.cache["dash.prometheus"] = AnyServer({})
    spec = next(c for c in ctx.lab.checks if c["id"] == "dash.panel_queries")
    r = asyncio.run(dash.panel_queries(ctx, spec))
    assert r.status == "pass", r.summary
    assert r.summary["en"].startswith(
        "Every panel query runs and returns data; no alert of yours fired during grading, so the ALERTS queries were "
        "judged by their selectors, which select the documented alerts by their labels ("
    ), r.summary
    assert "評分期間您的警示皆未觸發，故 ALERTS 查詢改以其選擇器判定" in r.summary["zh-TW"], r.summary
