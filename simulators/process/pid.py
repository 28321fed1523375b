"""A textbook PID with output clamping and conditional-integration anti-windup."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Pid:
    kp: float
    ki: float
    kd: float
    out_min: float = 0.0
    out_max: float = 100.0
    integral: float = 0.0
    last_error: float | None = None

    def update(self, setpoint: float, measured: float, dt: float) -> float:
        error = setpoint - measured
        derivative = 0.0 if self.last_error is None or dt <= 0 else (error - self.last_error) / dt
        self.last_error = error
        unclamped = self.kp * error + self.ki * (self.integral + error * dt) + self.kd * derivative
        out = min(self.out_max, max(self.out_min, unclamped))
        if out == unclamped:  # only integrate while not saturated
            self.integral += error * dt
        return out
