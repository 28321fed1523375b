"""Wireless sensor physics: pump-motor vibration and temperature, ambient climate, node batteries."""

from __future__ import annotations

import math
import random
from typing import Any


class Wireless:
    def __init__(self, p: dict[str, Any]) -> None:
        self.p = p
        self.ambient = float(p["ambient_temp_c"])
        self.humidity = float(p["ambient_humidity_pct"])
        self.motor_temp = self.ambient
        self.vib = 0.3
        self.wear = 0.0  # bearing wear grows slowly with running time
        self._phase = 0.0

    def step(self, dt: float, pump_running: bool, rng: random.Random) -> None:
        self._phase += dt
        target_vib = float(self.p["vibration_base_mm_s"]) * (1.0 + self.wear) if pump_running else 0.15
        self.vib += (target_vib - self.vib) * min(1.0, dt / 3.0)
        target_temp = self.ambient + (28.0 if pump_running else 0.0)
        self.motor_temp += (target_temp - self.motor_temp) * min(1.0, dt / 600.0)
        if pump_running:
            self.wear += dt * 1e-6
        # slow diurnal-like drift of the climate, period one hour
        self.ambient_now = self.ambient + 0.8 * math.sin(2 * math.pi * self._phase / 3600.0)
        self.humidity_now = self.humidity - 1.5 * math.sin(2 * math.pi * self._phase / 3600.0)

    def measurements(self, rng: random.Random) -> dict[str, float]:
        return {
            "wireless.vib_vrms_mm_s": max(0.0, self.vib + rng.gauss(0.0, 0.05)),
            "wireless.motor_temp_c": self.motor_temp + rng.gauss(0.0, 0.1),
            "wireless.ambient_temp_c": getattr(self, "ambient_now", self.ambient) + rng.gauss(0.0, 0.05),
            "wireless.ambient_humidity_pct": getattr(self, "humidity_now", self.humidity) + rng.gauss(0.0, 0.2),
        }


class Battery:
    """A node battery: an idle drain plus an energy cost per report, so short periods drain it faster."""

    def __init__(self, p: dict[str, Any]) -> None:
        self.capacity = float(p["battery_capacity_mwh"])
        self.remaining = self.capacity
        self.tx = float(p["tx_energy_mwh"])
        self.idle_mw = float(p["idle_power_mw"])

    def idle(self, dt: float) -> None:
        self.remaining = max(0.0, self.remaining - self.idle_mw * dt / 3600.0)

    def transmit(self) -> None:
        self.remaining = max(0.0, self.remaining - self.tx)

    @property
    def percent(self) -> float:
        return 100.0 * self.remaining / self.capacity
