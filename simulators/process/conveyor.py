"""Filling / packaging conveyor: idle / running / fault, good and reject counters, cycle times (OEE inputs)."""

from __future__ import annotations

import random
from typing import Any

IDLE, RUNNING, FAULT = 0, 1, 2


class Conveyor:
    def __init__(self, p: dict[str, Any]) -> None:
        self.p = p
        self.ideal = float(p["ideal_cycle_s"])
        self.state = RUNNING if p.get("starts_running", True) else IDLE
        self.good = 0
        self.reject = 0
        self.cycle_time = 0.0
        self.run_time = 0.0
        self.planned_time = 0.0
        self.fault_code = 0
        self._progress = 0.0
        self._current_cycle: float | None = None

    def step(self, dt: float, rng: random.Random) -> None:
        if self.state == IDLE:
            return
        self.planned_time += dt
        if self.state == FAULT:
            return
        self.run_time += dt
        if rng.random() < dt / float(self.p["mtbf_s"]):
            self.trip(rng.choice([1, 2]))
            return
        if self._current_cycle is None:
            jitter = abs(rng.gauss(0.0, float(self.p["cycle_jitter_s"])))
            self._current_cycle = self.ideal + jitter
        self._progress += dt
        if self._progress >= self._current_cycle:
            self.cycle_time = self._current_cycle
            self._progress -= self._current_cycle
            self._current_cycle = None
            if rng.random() < float(self.p["reject_rate"]):
                self.reject += 1
            else:
                self.good += 1

    def trip(self, code: int) -> None:
        self.state = FAULT
        self.fault_code = code

    def start(self) -> bool:
        if self.state == FAULT:
            return False
        self.state = RUNNING
        return True

    def stop(self) -> bool:
        if self.state == RUNNING:
            self.state = IDLE
        return True

    def reset_fault(self) -> bool:
        if self.state != FAULT:
            return False
        self.state = IDLE
        self.fault_code = 0
        self._progress = 0.0
        self._current_cycle = None
        return True

    @property
    def power_kw(self) -> float:
        return float(self.p["motor_power_kw"]) if self.state == RUNNING else 0.0

    def states(self) -> dict[str, Any]:
        return {
            "conveyor.state": self.state,
            "conveyor.good_count": self.good,
            "conveyor.reject_count": self.reject,
            "conveyor.cycle_time_s": self.cycle_time,
            "conveyor.ideal_cycle_s": self.ideal,
            "conveyor.run_time_s": self.run_time,
            "conveyor.planned_time_s": self.planned_time,
            "conveyor.fault_code": self.fault_code,
        }
