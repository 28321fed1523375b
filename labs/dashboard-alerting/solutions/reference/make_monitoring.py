"""Reference alert rules and Grafana dashboard for the dashboard-alerting lab, from the brief and lab parameters.

Writes the alert plan (the early-warning decision, from the datasheet's tank facts), the rule file and the dashboard
JSON model where the brief says. `--plan early|late` is how TankLevelHigh is decided (two sound decisions: the lowest
threshold that is silent in normal operation with a 30 s for:, or the highest that still gives the lead time with
a short for:). `--flaw NAME` injects one deliberate mistake: the lab's flawed plans, rule files and dashboards are
these plus one flaw.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

import yaml

FLAWS = (
    "no-for",
    "wrong-threshold",
    "missing-metric",
    "severity",
    "panel-unit",
    "alerts-panel-empty",
    "oee-panel-percent",
    "silent-for",
    "for-plus-5",
    "silent-env-only",
    "plan-too-late",
    "plan-rate",
    "rules-yaml-colon",
)


def alert_plan(p: dict[str, Any], sheet: dict[str, Any], style: str, flaw: str | None) -> dict[str, Any]:
    """TankLevelHigh's threshold and for:, decided as the brief asks (section 2a)."""
    t = sheet["process"]["tank"]
    rate = t["pump_rated_flow_m3h"] / 3600.0 / t["area_m2"]  # m/s, pump at rated flow, outlet closed
    hh, high = t["alarms_m"]["high_high"], t["alarms_m"]["high"]
    lowest = t["level_control"]["operating_setpoint_m"][1] + t["level_control"]["deadband_m"]
    lowest += p["noise_margin_sd"] * t["level_noise_sd_m"]
    need, delay = p["lead_time_s"], p["detection_delay_s"]
    lo_for, hi_for = p["level_for_range_s"]

    def lead(threshold: float, for_s: int) -> float:
        return (hh - threshold) / rate - for_s - delay

    if style == "early":  # the lowest silent threshold (to the cm above), the longest for: up to 30 s that still fits
        threshold = math.ceil(lowest * 100 - 1e-6) / 100
        for_s = next(f for f in range(30, lo_for - 1, -1) if lead(threshold, f) >= need)
        why = "lowest threshold silent in normal operation, for: 30 s or less to keep the lead time"
    else:  # the highest threshold that keeps the lead time with for: 15 s, below H (fewest nuisance alarms)
        for_s = 15
        threshold = math.floor(min(hh - rate * (need + for_s + delay), high - 0.01) * 100 + 1e-6) / 100
        why = "highest threshold that still gives the lead time with for: 15 s, below the H alarm"
    if flaw == "plan-too-late":  # 20 s short of the need, all bounds kept: the warning comes too late to act on
        for_s = lo_for
        threshold = round(hh - rate * (need - 20 + for_s + delay), 3)
        why = "a threshold close to H with the shortest for:, for the fewest warnings"
    claimed_rate = rate * 60 if flaw == "plan-rate" else rate  # the flaw: m³/h ÷ 60 (per minute), not ÷ 3600
    return {
        "TankLevelHigh": {
            "threshold_m": threshold,
            "for_s": for_s,
            "worst_case_fill_rate_m_per_s": round(claimed_rate, 7),
            "lead_time_s": round((hh - threshold) / claimed_rate - for_s - delay, 1),
            "rationale": f"{why}; fill rate {rate:.6f} m/s, HH {hh} m, need {need} s.",
        }
    }


def rules(p: dict[str, Any], plan: dict[str, Any], flaw: str | None) -> dict[str, Any]:
    planned = plan["TankLevelHigh"]
    p = {**p, "level_warning_m": planned["threshold_m"], "level_for_s": planned["for_s"]}
    level = 2.5 if flaw == "wrong-threshold" else p["level_warning_m"]  # the flaw: a figure from another P&ID
    tank: dict[str, Any] = {
        "alert": "TankLevelHigh",
        "expr": f"plant_tank_level_meters > {level}",
        "for": f"{p['level_for_s']}s",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": 'Tank level {{ $value | printf "%.2f" }} m above the early-warning level',
            "description": f"Level above {level} m for {p['level_for_s']} s; PLC-1's H alarm is next.",
        },
    }
    if flaw == "no-for":
        del tank["for"]
    if flaw == "for-plus-5":  # 35 s for a documented 30 s: a round-4/5 outsider's case that passed 5 s test points
        tank["for"] = f"{int(p['level_for_s']) + 5}s"
    silent: dict[str, Any] = {
        "alert": "SensorSilent",
        # the flaw "silent-env-only": written for the node the brief says the live test silences, and no other
        "expr": "time() - plant_sensor_last_report_timestamp_seconds"
        + ('{node="env-01"}' if flaw == "silent-env-only" else "")
        + f" > {p['silent_after_s']}",
        # the flaw: the age is the delay already, and a for: waits it out a second time
        **({"for": f"{p['silent_after_s']}s"} if flaw == "silent-for" else {}),
        "labels": {"severity": "warning"},
        "annotations": {"summary": "Sensor {{ $labels.node }} silent for {{ $value | humanizeDuration }}"},
    }
    return {
        "groups": [
            {
                "name": "plant-process",
                "rules": [
                    tank,
                    {
                        "alert": "HeaterOverTemperature",
                        "expr": f"plant_heater_temperature_celsius > {p['overtemp_c']}",
                        "for": f"{p['overtemp_for_s']}s",
                        "labels": {
                            "severity": "warning" if flaw == "severity" else "critical"
                        },  # flaw: a page-worthy alarm filed as a warning
                        "annotations": {"summary": 'Heater at {{ $value | printf "%.1f" }} °C'},
                    },
                    {
                        "alert": "OeeBelowTarget",
                        "expr": f"plant_line_oee_ratio < {p['oee_target']}",
                        "for": f"{p['oee_for_s']}s",
                        "labels": {"severity": "warning"},
                        "annotations": {"summary": "Filling-line OEE {{ $value | humanizePercentage }} under target"},
                    },
                ],
            },
            {
                "name": "plant-sensors",
                "rules": [silent],
            },
        ]
    }


def panel(i: int, title: str, expr: str, kind: str, unit: str, uid: str, threshold: float | None = None) -> dict:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if threshold is not None:
        steps.append({"color": "red", "value": threshold})
    return {
        "id": i,
        "title": title,
        "type": kind,
        "gridPos": {"x": (i - 1) % 4 * 6, "y": (i - 1) // 4 * 8, "w": 6, "h": 8},
        "datasource": {"type": "prometheus", "uid": uid},
        "targets": [{"refId": "A", "expr": expr, "datasource": {"type": "prometheus", "uid": uid}}],
        "fieldConfig": {
            "defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
    }


def dashboard(p: dict[str, Any], plan: dict[str, Any], flaw: str | None) -> dict[str, Any]:
    uid = p["datasource_uid"]
    power = "plant_active_power_kilowatts" if flaw == "missing-metric" else "plant_active_power_watts"
    power_unit = "kwatt" if flaw == "panel-unit" else "watt"  # the flaw: values in W shown as kW
    alarms = 'ALERTS{alertstate="active"}' if flaw == "alerts-panel-empty" else 'ALERTS{alertstate="firing"}'
    oee_expr = "plant_line_oee_ratio * 100" if flaw == "oee-panel-percent" else "plant_line_oee_ratio"
    oee_target = p["oee_target"]
    panels = [
        panel(
            1,
            "Tank level",
            "plant_tank_level_meters",
            "timeseries",
            "lengthm",
            uid,
            plan["TankLevelHigh"]["threshold_m"],
        ),
        panel(
            2, "Heater temperature", "plant_heater_temperature_celsius", "timeseries", "celsius", uid, p["overtemp_c"]
        ),
        panel(3, "Active power", power, "timeseries", power_unit, uid),
        panel(4, "Active alarms", alarms, "table", "none", uid),  # the flaw: no alert is ever in state "active"
        panel(5, "OEE", oee_expr, "gauge", "percentunit", uid, oee_target),  # the flaw: percent on a 0-1 panel
        panel(6, "Availability", "plant_line_availability_ratio", "stat", "percentunit", uid),
        panel(7, "Performance", "plant_line_performance_ratio", "stat", "percentunit", uid),
        panel(8, "Quality", "plant_line_quality_ratio", "stat", "percentunit", uid),
        panel(9, "Energy use", "rate(plant_energy_imported_joules_total[$__rate_interval])", "timeseries", "watt", uid),
    ]
    panels[4]["fieldConfig"]["defaults"]["thresholds"]["steps"] = [
        {"color": "red", "value": None},
        {"color": "green", "value": oee_target},
    ]
    return {
        "title": "Plant monitoring",
        "uid": "aiotlab-plant",
        "schemaVersion": 38,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "5s",
        "panels": panels,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flaw", choices=FLAWS)
    parser.add_argument("--plan", choices=("early", "late"), default="early")
    args = parser.parse_args()
    p = json.loads(Path(os.environ["AIOTLAB_LAB_PARAMS"]).read_text())
    sheet = json.loads(Path(os.environ["AIOTLAB_DATASHEET"]).read_text())
    ws = Path(os.environ.get("AIOTLAB_WORKSPACE", "."))
    plan = alert_plan(p, sheet, args.plan, args.flaw)
    paths = {k: ws / p[k] for k in ("alert_plan_file", "rules_file", "dashboard_file")}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    paths["alert_plan_file"].write_text(json.dumps(plan, indent=2, ensure_ascii=False), encoding="utf-8")
    text = yaml.safe_dump(rules(p, plan, args.flaw), sort_keys=False, allow_unicode=True)
    if args.flaw == "rules-yaml-colon":  # one more alert typed by hand: its unquoted "Level: ..." is no YAML
        text += (
            "  - alert: TankLevelVeryHigh\n"
            "    expr: plant_tank_level_meters > 2.9\n"
            "    annotations:\n"
            "      summary: Level: above 2.9 m\n"
        )
    paths["rules_file"].write_text(text, encoding="utf-8")
    paths["dashboard_file"].write_text(json.dumps(dashboard(p, plan, args.flaw), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
