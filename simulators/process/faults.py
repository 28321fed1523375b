"""Faults injected by the grader: they corrupt what instruments report, or make devices misbehave."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

MEASUREMENT_KINDS = {"stuck", "drift", "noise_burst"}
DEVICE_KINDS = {"offline", "delay"}
KINDS = MEASUREMENT_KINDS | DEVICE_KINDS


@dataclass
class Fault:
    id: int
    kind: str
    target: str  # a tag (measurement faults) or a device / sensor node id (device faults)
    start: float
    end: float | None
    params: dict[str, Any] = field(default_factory=dict)
    held: float | None = None  # stuck value

    def active(self, t: float) -> bool:
        return t >= self.start and (self.end is None or t < self.end)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "target": self.target,
            "start": self.start,
            "end": self.end,
            "params": self.params,
        }


class FaultSet:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._next_id = 1

    def add(self, kind: str, target: str, t: float, duration_s: float | None, params: dict[str, Any]) -> Fault:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(KINDS)}")
        end = t + float(duration_s) if duration_s else None
        fault = Fault(self._next_id, kind, target, t, end, dict(params))
        self._next_id += 1
        self._faults.append(fault)
        return fault

    def clear(self, fault_id: int | None = None) -> int:
        before = len(self._faults)
        self._faults = [f for f in self._faults if fault_id is not None and f.id != fault_id]
        return before - len(self._faults)

    def expire(self, t: float) -> None:
        self._faults = [f for f in self._faults if f.end is None or t < f.end]

    def listing(self) -> list[dict[str, Any]]:
        return [f.as_dict() for f in self._faults]

    def apply(self, values: dict[str, Any], t: float, rng: random.Random) -> None:
        """Corrupt measured values in place for every active measurement fault."""
        for f in self._faults:
            if f.kind not in MEASUREMENT_KINDS or f.target not in values or not f.active(t):
                continue
            v = values[f.target]
            if f.kind == "stuck":
                if f.held is None:
                    f.held = float(f.params.get("value", v))
                values[f.target] = f.held
            elif f.kind == "drift":
                values[f.target] = v + float(f.params.get("rate_per_s", 0.01)) * (t - f.start)
            elif f.kind == "noise_burst":
                values[f.target] = v + rng.gauss(0.0, float(f.params.get("sigma", 1.0)))

    def device_fault(self, device: str, t: float) -> tuple[bool, float]:
        """(offline, added delay in seconds) for a device or sensor node at time t."""
        offline, delay = False, 0.0
        for f in self._faults:
            if f.target == device and f.active(t):
                if f.kind == "offline":
                    offline = True
                elif f.kind == "delay":
                    delay += float(f.params.get("delay_s", 0.5))
        return offline, delay
