"""Tank unit: inlet pump, outlet valve, level/flow/pressure, PLC-1 level control with L/H/HH alarms."""

from __future__ import annotations

import math
import random
from typing import Any


class Tank:
    def __init__(self, p: dict[str, Any]) -> None:
        self.p = p
        self.area = float(p["area_m2"])
        self.height = float(p["height_m"])
        self.level = float(p["initial_level_m"])
        self.setpoint = float(p["level_setpoint_m"])
        self.deadband = float(p["deadband_m"])
        self.valve_pct = float(p["initial_valve_pct"])
        self.alarm_low_m = float(p["alarm_low_m"])
        self.alarm_high_m = float(p["alarm_high_m"])
        self.alarm_hh_m = float(p["alarm_high_high_m"])
        self.auto_mode = True
        self.pump_manual_cmd = False
        self.pump_running = self.level < self.setpoint
        self.pump_starts = 0
        self.inflow = 0.0
        self.outflow = 0.0
        self.alarms = {"low": False, "high": False, "high_high": False}
        self.latched = dict(self.alarms)
        self.extra_inflow = 0.0  # m3/h from a triggered process event (e.g. upstream surge)

    def control(self, level_measured: float) -> None:
        """PLC-1's level logic on the measured level (what the PLC sees), run once per PLC scan."""
        want = self.pump_running
        if self.auto_mode:
            if level_measured < self.setpoint - self.deadband:
                want = True
            elif level_measured > self.setpoint + self.deadband:
                want = False
        else:
            want = self.pump_manual_cmd
        a = self.alarms
        a["low"] = level_measured < self.alarm_low_m
        a["high"] = level_measured > self.alarm_high_m
        a["high_high"] = level_measured > self.alarm_hh_m
        for k, v in a.items():
            self.latched[k] = self.latched[k] or v
        if a["high_high"]:
            want = False  # HH trips the pump whatever the mode
        if want and not self.pump_running:
            self.pump_starts += 1
        self.pump_running = want

    def acknowledge(self) -> None:
        for k in self.latched:
            self.latched[k] = self.alarms[k]

    def step(self, dt: float) -> None:
        self.inflow = (float(self.p["pump_flow_m3h"]) if self.pump_running else 0.0) + self.extra_inflow
        head = max(self.level, 0.0)
        self.outflow = float(self.p["valve_cv"]) * (self.valve_pct / 100.0) * math.sqrt(head)
        dlevel = (self.inflow - self.outflow) / 3600.0 * dt / self.area
        self.level = min(self.height, max(0.0, self.level + dlevel))

    def measurements(self, rng: random.Random) -> dict[str, float]:
        n = self.p["noise"]
        level = self.level + rng.gauss(0.0, n["level_m"])
        pressure = 0.0981 * self.level + (float(self.p["pump_head_bar"]) if self.pump_running else 0.0)
        return {
            "tank.level_m": level,
            "tank.level_deviation_m": level - self.setpoint,
            "tank.inflow_m3h": max(0.0, self.inflow + (rng.gauss(0.0, n["flow_m3h"]) if self.inflow else 0.0)),
            "tank.outflow_m3h": max(0.0, self.outflow + (rng.gauss(0.0, n["flow_m3h"]) if self.outflow else 0.0)),
            "tank.pressure_bar": max(0.0, pressure + rng.gauss(0.0, n["pressure_bar"])),
        }

    def states(self) -> dict[str, Any]:
        return {
            "tank.auto_mode": self.auto_mode,
            "tank.pump_manual_cmd": self.pump_manual_cmd,
            "tank.alarm_ack": False,
            "tank.pump_running": self.pump_running,
            "tank.alarm_low": self.latched["low"],
            "tank.alarm_high": self.latched["high"],
            "tank.alarm_high_high": self.latched["high_high"],
            "tank.pump_starts": self.pump_starts,
            "tank.level_setpoint_m": self.setpoint,
            "tank.valve_pct": self.valve_pct,
            "tank.alarm_high_m": self.alarm_high_m,
            "tank.alarm_low_m": self.alarm_low_m,
            "phys.tank.level_m": self.level,
        }

    def write(self, tag: str, value: Any) -> None:
        if tag == "tank.auto_mode":
            self.auto_mode = bool(value)
        elif tag == "tank.pump_manual_cmd":
            self.pump_manual_cmd = bool(value)
        elif tag == "tank.alarm_ack":
            if value:
                self.acknowledge()
        elif tag == "tank.level_setpoint_m":
            self.setpoint = float(value)
        elif tag == "tank.valve_pct":
            self.valve_pct = min(100.0, max(0.0, float(value)))
        elif tag == "tank.alarm_high_m":
            self.alarm_high_m = float(value)
        elif tag == "tank.alarm_low_m":
            self.alarm_low_m = float(value)
        else:
            raise KeyError(tag)

    @property
    def power_kw(self) -> float:
        return float(self.p["pump_power_kw"]) if self.pump_running else 0.0
