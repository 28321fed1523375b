"""Reference alert rules and Grafana dashboard for the dashboard-alerting lab, from the brief and lab parameters.

Writes the rule file and the dashboard JSON model where the brief says. `--flaw NAME` injects one deliberate
mistake: the lab's flawed rule files and dashboards are these plus one flaw.
"""

from __future__ import annotations

import argparse
import json
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
)


def rules(p: dict[str, Any], flaw: str | None) -> dict[str, Any]:
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


def dashboard(p: dict[str, Any], flaw: str | None) -> dict[str, Any]:
    uid = p["datasource_uid"]
    power = "plant_active_power_kilowatts" if flaw == "missing-metric" else "plant_active_power_watts"
    power_unit = "kwatt" if flaw == "panel-unit" else "watt"  # the flaw: values in W shown as kW
    alarms = 'ALERTS{alertstate="active"}' if flaw == "alerts-panel-empty" else 'ALERTS{alertstate="firing"}'
    oee_expr = "plant_line_oee_ratio * 100" if flaw == "oee-panel-percent" else "plant_line_oee_ratio"
    oee_target = p["oee_target"]
    panels = [
        panel(1, "Tank level", "plant_tank_level_meters", "timeseries", "lengthm", uid, p["level_warning_m"]),
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
    args = parser.parse_args()
    p = json.loads(Path(os.environ["AIOTLAB_LAB_PARAMS"]).read_text())
    ws = Path(os.environ.get("AIOTLAB_WORKSPACE", "."))
    rules_path, dash_path = ws / p["rules_file"], ws / p["dashboard_file"]
    rules_path.parent.mkdir(parents=True, exist_ok=True)
    dash_path.parent.mkdir(parents=True, exist_ok=True)
    rules_path.write_text(yaml.safe_dump(rules(p, args.flaw), sort_keys=False, allow_unicode=True), encoding="utf-8")
    dash_path.write_text(json.dumps(dashboard(p, args.flaw), indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
