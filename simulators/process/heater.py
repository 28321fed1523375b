"""Heater unit: lumped thermal mass, losses to ambient, PID to an operator setpoint."""

from __future__ import annotations

import random
from typing import Any

from .pid import Pid


class Heater:
    def __init__(self, p: dict[str, Any], ambient_c: float) -> None:
        self.p = p
        self.ambient = ambient_c
        self.temp = float(p["initial_temp_c"])
        self.setpoint = float(p["setpoint_c"])
        self.enabled = True
        self.max_kw = float(p["max_power_kw"])
        gains = p["pid"]
        self.pid = Pid(float(gains["kp"]), float(gains["ki"]), float(gains["kd"]), 0.0, 100.0)
        self.output_pct = 0.0
        self.temp_offset = 0.0  # from a triggered over-temperature event

    def step(self, dt: float, measured_temp: float) -> None:
        self.output_pct = self.pid.update(self.setpoint, measured_temp, dt) if self.enabled else 0.0
        if not self.enabled:
            self.pid.integral = 0.0
        heat_in = self.power_kw
        loss = float(self.p["loss_kw_per_c"]) * (self.temp - self.ambient)
        self.temp += (heat_in - loss) * dt / float(self.p["heat_capacity_kj_per_c"])

    @property
    def power_kw(self) -> float:
        return self.max_kw * self.output_pct / 100.0

    def measurements(self, rng: random.Random) -> dict[str, float]:
        return {"heater.temp_c": self.temp + self.temp_offset + rng.gauss(0.0, self.p["noise"]["temp_c"])}

    def states(self) -> dict[str, Any]:
        return {
            "heater.setpoint_c": self.setpoint,
            "heater.power_kw": self.power_kw,
            "heater.enabled": self.enabled,
            "phys.heater.temp_c": self.temp,
        }

    def write(self, tag: str, value: Any) -> None:
        if tag == "heater.setpoint_c":
            self.setpoint = float(value)
        elif tag == "heater.enabled":
            self.enabled = bool(value)
        else:
            raise KeyError(tag)
