"""The dashboard-alerting lab graded end to end with Debian's real promtool and Prometheus: the reference scores
full marks, each flawed solution fails exactly what it targets, a hostile candidate fails everything with reasons
in bounded time, and the kit's Prometheus configuration is the one promtool accepts."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiotlab.grader import report
from aiotlab.grader.checks.dashboard import for_testing, grafana_substitute
from aiotlab.grader.engine import grade
from aiotlab.labs.loader import load_lab

from conftest import cli

pytestmark = pytest.mark.timeout(900)  # eight plants graded at once, each with its own Prometheus

SECRET = "test-exam-secret"
LAB = "dashboard-alerting"


@pytest.fixture(scope="module")
def graded(aiot_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("dashboard")
    lab = load_lab(LAB)

    async def one(sol: str) -> tuple[str, dict[str, Any]]:
        cand = f"d-{sol}"[:40]
        cli("plant", "down", "-c", cand, check=False)
        t0 = time.monotonic()
        run = await grade(lab, cand, solution=sol, out_dir=out / cand)
        doc = report.write_all(run, out / cand)
        return sol, {"doc": doc, "dir": out / cand, "cand": cand, "seconds": time.monotonic() - t0}

    async def all_() -> dict[str, dict[str, Any]]:
        return dict(await asyncio.gather(*(one(sol) for sol in lab.solutions)))

    results = asyncio.run(all_())
    for r in results.values():
        cli("plant", "down", "-c", r["cand"], check=False)
    return results


def failed(doc: dict[str, Any]) -> set[str]:
    return {c["id"] for c in doc["checks"] if c["status"] != "pass"}


def explain(doc: dict[str, Any]) -> str:
    return "\n".join(f"{c['id']}: {c['status']} - {c['summary']['en']}" for c in doc["checks"])


def evidence(run: dict[str, Any], check_id: str) -> dict[str, Any]:
    return json.loads((run["dir"] / "evidence" / f"{check_id}.json").read_text())


def test_reference_scores_full_marks(graded: dict) -> None:
    doc = graded["reference"]["doc"]
    assert doc["score"]["percent"] == 100.0, explain(doc)
    assert all(i["achieved"] for i in doc["indicators"])


@pytest.mark.parametrize("solution", [s for s in load_lab(LAB).solutions if s != "reference"])
def test_flawed_solution_fails_exactly_its_targets(graded: dict, solution: str) -> None:
    expected = set(load_lab(LAB).solutions[solution].expect_fail)
    doc = graded[solution]["doc"]
    assert expected, "a flawed solution must declare what it fails"
    assert failed(doc) == expected, explain(doc)


def test_live_alerts_fired_and_resolved_on_the_real_prometheus(graded: dict) -> None:
    """The reference's timeline: fired after its for: (not before), resolved once the grader cleared it."""
    lab = load_lab(LAB)
    run = graded["reference"]
    params = json.loads((run["dir"] / "workspace" / ".aiotlab" / "lab-params.json").read_text())
    ev = evidence(run, "dash.live_alert")
    tl = ev["timeline_s"]
    assert params["level_for_s"] <= tl["level_fired"] <= params["level_for_s"] + params["fire_slack_s"]
    assert tl["level_resolved"] - tl["level_cleared"] <= params["resolve_within_s"]
    assert tl["silent_fired"] <= params["silent_after_s"] + params["fire_slack_s"]
    assert tl["silent_resolved"] > params["live_silence_s"]  # only after the node reported again
    assert ev["prometheus"].endswith(":19090") and ev["rules_loaded"] is True
    # the dashboard's ALERTS panel was evaluated while an alert was firing, and returned it
    pq = evidence(run, "dash.panel_queries")
    alerts_row = next(p for p in pq["probes"] if "ALERTS" in p["what"] and "series" in p)
    assert alerts_row["at"] and alerts_row["series"] >= 1
    assert {c["id"] for c in lab.checks} == {c["id"] for c in run["doc"]["checks"]}


def test_evidence_names_the_fault(graded: dict) -> None:
    """An assessor can see why: promtool's own words, the failing hidden case, the value against ground truth."""
    lint = evidence(graded["flawed-counter-as-gauge"], "dash.exporter_lint")
    assert 'non-counter metrics should not have "_total" suffix' in lint["promtool"]["output"]
    contract = evidence(graded["flawed-counter-as-gauge"], "dash.metric_contract")
    bad = [p for p in contract["probes"] if not p["ok"]]
    assert [p["what"] for p in bad] == ["plant_energy_imported_joules_total"] and "gauge" in bad[0]["why"]
    values = evidence(graded["flawed-wrong-unit"], "dash.exporter_values")
    wrong = {k for k, r in values["metrics"].items() if r["ok"] < r["n"]}
    assert wrong == {"plant_active_power_watts"}
    timing = evidence(graded["flawed-no-for"], "dash.rules_timing")
    assert {c["case"] for c in timing["cases"] if not c["ok"]} == {"level-for", "level-flapping"}
    thresholds = evidence(graded["flawed-wrong-threshold"], "dash.rules_thresholds")
    assert {c["case"] for c in thresholds["cases"] if not c["ok"]} == {"level-above"}
    oee = evidence(graded["flawed-oee"], "dash.oee")
    assert [p["what"] for p in oee["probes"] if not p["ok"]] == ["OEE"]
    queries = evidence(graded["flawed-missing-metric"], "dash.panel_queries")
    bad = [p for p in queries["probes"] if not p["ok"]]
    assert bad and all(p["panel"] == "Active power" for p in bad)


def test_hostile_candidate_fails_everything_in_bounded_time(graded: dict) -> None:
    run = graded["hostile-endless-page"]
    assert all(c["status"] == "fail" for c in run["doc"]["checks"]), explain(run["doc"])
    scrape = evidence(run, "dash.exporter_lint")["scrape"]
    assert "larger than" in scrape["error"]
    summaries = {c["id"]: c["summary"]["en"] for c in run["doc"]["checks"]}
    assert "not usable JSON" in summaries["dash.dashboard_model"]
    assert "promtool check rules rejects" in summaries["dash.rules_valid"]
    assert "No alert can fire" in summaries["dash.live_alert"]
    assert run["seconds"] < graded["reference"]["seconds"] + 60


def test_reports_verify(graded: dict) -> None:
    assert cli("report", "verify", str(graded["reference"]["dir"] / "report.json")).returncode == 0


def test_kit_prometheus_config_is_accepted_by_promtool(aiot_home: Path, tmp_path: Path) -> None:
    """The candidate's kit: the grader's own Prometheus configuration, valid for promtool once rules exist."""
    cli("lab", "kit", LAB, "-c", "kitty", "--workspace", str(tmp_path))
    kit = tmp_path / ".aiotlab"
    params = json.loads((kit / "lab-params.json").read_text())
    sheet = json.loads((kit / "datasheet.json").read_text())
    rules = tmp_path / params["rules_file"]
    rules.parent.mkdir(parents=True)
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
        assert str(params["level_warning_m"]) in brief and str(params["oee_target"]) in brief
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
