"""Lab parameters derived from the candidate's plant (a lab's `derived:` map names them), and the formulas they share
with the checks that judge the candidate's decisions.

A need stated in a brief must bind on every candidate's plant, whose tank and pump vary: dashboard-alerting's lead
time is placed inside the band the plant allows (so the lowest silent threshold meets it, a threshold just below
the H alarm does not), instead of a fixed figure that one plant meets with anything and another with nothing."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def tank_facts(tank: dict[str, Any]) -> dict[str, float]:
    """The tank as its P&ID describes it (the same figures as the datasheet's process section)."""
    return {
        "area_m2": float(tank["area_m2"]),
        "pump_flow_m3h": float(tank["pump_flow_m3h"]),
        "setpoint_max_m": float(tank["operating_setpoint_m"][1]),
        "deadband_m": float(tank["deadband_m"]),
        "noise_sd_m": float(tank["noise"]["level_m"]),
        "high_m": float(tank["alarm_high_m"]),
        "high_high_m": float(tank["alarm_high_high_m"]),
    }


def worst_fill_rate(f: dict[str, float]) -> float:
    """m/s: the pump at its rated flow, the outlet closed."""
    return f["pump_flow_m3h"] / 3600.0 / f["area_m2"]


def lowest_threshold(p: dict[str, Any], f: dict[str, float]) -> float:
    """The lowest level that stays silent in normal operation: the highest operating setpoint + deadband, plus the
    stated number of noise standard deviations."""
    return f["setpoint_max_m"] + f["deadband_m"] + float(p["noise_margin_sd"]) * f["noise_sd_m"]


def lead_time(p: dict[str, Any], f: dict[str, float], threshold: float, for_s: float) -> float:
    """Seconds from the alert firing to the HH trip at the worst-case fill rate: the level crosses the threshold,
    the alert fires `detection_delay_s` + for: later, HH trips when the level reaches it."""
    return (f["high_high_m"] - threshold) / worst_fill_rate(f) - for_s - float(p["detection_delay_s"])


def tank_lead_time(p: dict[str, Any], plant: dict[str, Any]) -> int:
    """The lead time operators need, in whole 5 s: `_lead_time_fraction` of the way from what a threshold 1 cm under
    the H alarm gives to what the lowest silent threshold gives (both with the shortest allowed for:)."""
    f = tank_facts(plant["process"]["tank"])
    shortest = float(p["level_for_range_s"][0])
    at_h = lead_time(p, f, f["high_m"] - 0.01, shortest)
    at_lowest = lead_time(p, f, lowest_threshold(p, f), shortest)
    return int(5 * math.floor((at_h + float(p["_lead_time_fraction"]) * (at_lowest - at_h)) / 5))


def plc1_rates(needs: dict[str, float]) -> tuple[float, float]:
    """(requests/s of one block read at PLC-1's fastest need, of one request per PLC-1 stream at its own need):
    what the least and the most naive sound plans cost (PLC-1's acquired streams lie in one block of its input
    registers)."""
    plc1 = [float(v) for k, v in needs.items() if k.startswith("plc1/")]
    return 1.0 / min(plc1), sum(1.0 / n for n in plc1)


def daq_allotment(p: dict[str, Any], plant: dict[str, Any]) -> float:
    """data-acquisition: the collector's share of PLC-1's budget, in requests/s rounded down to 0.1:
    `_allotment_fraction` of the way from one block read at the fastest need to one request per stream. One request
    per stream then never fits, a block read always does, and so do plans between (a fast stream read alone)."""
    least, naive = plc1_rates(p["needs_s"])
    return math.floor(10 * (least + float(p["_allotment_fraction"]) * (naive - least)) + 1e-9) / 10


DERIVATIONS: dict[str, Callable[[dict[str, Any], dict[str, Any]], Any]] = {
    "tank_lead_time": tank_lead_time,
    "daq_allotment": daq_allotment,
}
