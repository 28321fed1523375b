"""The plant model: every unit stepped together, PLC scans, faults and events, one flat tag dictionary.

Deterministic: given the same parameters, seed, operator writes and request loads at the same ticks, it
produces the same values. It knows nothing about protocols or wall time.
"""

from __future__ import annotations

import random
from typing import Any

from .conveyor import Conveyor
from .energy import EnergyMeter
from .faults import FaultSet
from .heater import Heater
from .tank import Tank
from .wireless import Wireless

EVENTS = {
    "tank_high_level": "Raise the tank into the high-alarm band and hold it there (upstream surge)",
    "tank_low_level": "Drain the tank below the low-alarm limit",
    "over_temperature": "Heater contactor welded: full power regardless of the PID",
    "conveyor_fault": "Trip the filling line (jam)",
}


class PlcScan:
    """PLC-1's scan cycle: its period stretches with the communication load beyond the budget."""

    def __init__(self, p: dict[str, Any]) -> None:
        self.base_ms = float(p["base_scan_ms"])
        self.budget = float(p["comm_budget_rps"])
        self.cost = float(p["scan_cost_ms_per_excess_rps"])
        self.watchdog_ms = float(p["scan_watchdog_ms"])
        self.load_rps = 0.0
        self.scan_time_ms = self.base_ms
        self.next_scan = 0.0
        self.scans = 0

    def due(self, t: float) -> bool:
        if t + 1e-9 < self.next_scan:
            return False
        excess = max(0.0, self.load_rps - self.budget)
        self.scan_time_ms = self.base_ms + self.cost * excess
        self.next_scan = t + self.scan_time_ms / 1000.0
        self.scans += 1
        return True


class PlantModel:
    def __init__(self, params: dict[str, Any], seed: int, t0: float) -> None:
        proc = params["process"]
        self.rng = random.Random(seed)
        self.t = t0
        self.tank = Tank(proc["tank"])
        self.wireless = Wireless(proc["wireless"])
        self.heater = Heater(proc["heater"], self.wireless.ambient)
        self.conveyor = Conveyor(proc["conveyor"])
        self.energy = EnergyMeter(proc["energy"])
        self.scan = PlcScan(params["devices"]["plc1"])
        self.faults = FaultSet()
        self._event_until: dict[str, float] = {}
        self.values: dict[str, Any] = {}
        self.plc1_image: dict[str, Any] = {}
        self.step(0.0)

    # -- time ------------------------------------------------------------------------------------
    def step(self, dt: float) -> dict[str, Any]:
        self.t += dt
        t, rng = self.t, self.rng
        self._run_events(t)
        self.tank.step(dt)
        self.heater.step(dt, self.values.get("heater.temp_c", self.heater.temp))
        self.conveyor.step(dt, rng)
        self.energy.step(dt, self.tank.power_kw + self.heater.power_kw + self.conveyor.power_kw)
        self.wireless.step(dt, self.tank.pump_running, rng)
        measured: dict[str, Any] = {}
        measured.update(self.tank.measurements(rng))
        measured.update(self.heater.measurements(rng))
        measured.update(self.energy.measurements(rng))
        measured.update(self.wireless.measurements(rng))
        self.faults.expire(t)
        self.faults.apply(measured, t, rng)
        if self.scan.due(t):
            self.tank.control(measured["tank.level_m"])
            self.plc1_image = {**measured, **self.tank.states(), **self._plc1_diag()}
        values = {**measured, **self.tank.states(), **self.heater.states(), **self.conveyor.states()}
        values.update(self._plc1_diag())
        values["plc1.load_rps"] = self.scan.load_rps
        self.values = values
        return values

    def _plc1_diag(self) -> dict[str, Any]:
        return {
            "plc1.scan_time_ms": self.scan.scan_time_ms,
            "plc1.scan_overrun": self.scan.scan_time_ms > self.scan.watchdog_ms,
        }

    # -- operator actions ------------------------------------------------------------------------
    def write(self, tag: str, value: Any) -> None:
        """An operator write as a PLC would apply it (takes effect on the process from the next tick)."""
        unit = tag.split(".", 1)[0]
        target = {"tank": self.tank, "heater": self.heater}.get(unit)
        if target is None:
            raise KeyError(tag)
        target.write(tag, value)
        if unit == "tank":
            self.plc1_image.update(self.tank.states())
        self.values.update(target.states())

    def call(self, method: str) -> bool:
        fn = {"Start": self.conveyor.start, "Stop": self.conveyor.stop, "ResetFault": self.conveyor.reset_fault}
        if method not in fn:
            raise KeyError(method)
        ok = fn[method]()
        self.values.update(self.conveyor.states())
        return ok

    # -- process events --------------------------------------------------------------------------
    def trigger(self, event: str, duration_s: float = 60.0) -> None:
        if event not in EVENTS:
            raise KeyError(f"unknown event {event!r}; expected one of {sorted(EVENTS)}")
        self._event_until[event] = self.t + duration_s
        if event == "tank_high_level":
            self.tank.level = (self.tank.alarm_high_m + self.tank.alarm_hh_m) / 2.0
        elif event == "tank_low_level":
            self.tank.level = max(0.05, self.tank.alarm_low_m - 0.15)
        elif event == "conveyor_fault":
            self.conveyor.trip(1)

    def _run_events(self, t: float) -> None:
        active = {e for e, until in self._event_until.items() if t < until}
        self._event_until = {e: u for e, u in self._event_until.items() if e in active}
        tank = self.tank
        if "tank_high_level" in active:
            # an upstream surge that exactly balances the outflow while the pump is off: the level holds
            valve = float(tank.p["valve_cv"]) * tank.valve_pct / 100.0
            tank.extra_inflow = valve * max(tank.level, 0.0) ** 0.5
        elif "tank_low_level" in active:
            tank.extra_inflow = 0.0
            tank.level = min(tank.level, max(0.05, tank.alarm_low_m - 0.15))
        else:
            tank.extra_inflow = 0.0
        if "over_temperature" in active:
            self.heater.output_pct = 100.0
            self.heater.pid.integral = 1e6
        elif self.heater.pid.integral >= 1e6:
            self.heater.pid.integral = 0.0

    def active_events(self) -> dict[str, float]:
        return dict(self._event_until)
