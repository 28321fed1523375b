"""EM-1 energy meter: three-phase totals of every load in the plant, with an integrating kWh counter."""

from __future__ import annotations

import math
import random
from typing import Any


class EnergyMeter:
    def __init__(self, p: dict[str, Any]) -> None:
        self.p = p
        self.energy_kwh = float(p["initial_energy_kwh"])
        self.power_kw = float(p["base_load_kw"])

    def step(self, dt: float, loads_kw: float) -> None:
        self.power_kw = float(self.p["base_load_kw"]) + loads_kw
        self.energy_kwh += self.power_kw * dt / 3600.0

    def measurements(self, rng: random.Random) -> dict[str, float]:
        n = self.p["noise"]
        voltage = float(self.p["nominal_voltage_v"]) + rng.gauss(0.0, n["voltage_v"])
        power = max(0.0, self.power_kw + rng.gauss(0.0, n["power_kw"]))
        pf = float(self.p["power_factor"])
        current = power * 1000.0 / (math.sqrt(3.0) * voltage * pf)
        return {
            "energy.voltage_v": voltage,
            "energy.current_a": current,
            "energy.power_kw": power,
            "energy.power_factor": pf,
            "energy.frequency_hz": float(self.p["frequency_hz"]) + rng.gauss(0.0, 0.01),
            "energy.energy_kwh": self.energy_kwh,
        }
