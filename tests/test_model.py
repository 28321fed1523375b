"""Plant physics on the fast simulated clock: determinism, operator writes, control, alarms, load, faults."""

from __future__ import annotations

import random

import pytest

from aiotlab.simulators.launch import load_spec
from aiotlab.simulators.params import PlantIdentity, resolve
from aiotlab.simulators.process.model import PlantModel
from aiotlab.simulators.process.wireless import Battery


def model(seed: int = 7) -> PlantModel:
    ident = PlantIdentity.for_candidate("m", seed=seed)
    return PlantModel(resolve(load_spec(), ident), ident.physics_seed, 1_800_000_000.0)


def run(m: PlantModel, seconds: float) -> list[dict]:
    return [dict(m.step(0.1)) for _ in range(int(seconds * 10))]


def test_same_seed_same_trajectory() -> None:
    a, b = run(model(1), 600), run(model(1), 600)
    assert a == b
    c = run(model(2), 600)
    assert a != c


def test_level_control_holds_setpoint_band() -> None:
    m = model()
    series = run(m, 1800)
    sp = m.tank.setpoint
    late = [v["phys.tank.level_m"] for v in series[-6000:]]
    assert min(late) > sp - 0.3 and max(late) < sp + 0.3
    assert m.tank.pump_starts >= 2  # on/off control cycles the pump


def test_closing_the_valve_raises_the_level_until_high_high_trips_the_pump() -> None:
    m = model()
    m.write("tank.auto_mode", False)
    m.write("tank.pump_manual_cmd", True)
    m.write("tank.valve_pct", 0.0)
    run(m, 3600)
    assert m.tank.alarms["high_high"] or m.tank.level >= m.tank.alarm_hh_m - 0.05
    assert m.values["tank.alarm_high_high"] is True
    assert m.tank.pump_running is False


def test_setpoint_write_moves_the_level() -> None:
    m = model()
    run(m, 600)
    m.write("tank.level_setpoint_m", 1.0)
    run(m, 1800)
    assert abs(m.tank.level - 1.0) < 0.25


def test_heater_reaches_setpoint_and_follows_a_change() -> None:
    m = model()
    run(m, 1800)
    assert abs(m.heater.temp - m.heater.setpoint) < 1.5
    m.write("heater.setpoint_c", m.heater.setpoint - 10)
    run(m, 1800)
    assert abs(m.heater.temp - m.heater.setpoint) < 1.5
    m.write("heater.enabled", False)
    run(m, 10)
    assert m.values["heater.power_kw"] == 0.0


def test_conveyor_counts_and_stops() -> None:
    m = model()
    run(m, 120)
    produced = m.conveyor.good + m.conveyor.reject
    assert produced > 120 / (m.conveyor.ideal + 1.0)
    m.call("Stop")
    before = m.conveyor.good + m.conveyor.reject
    run(m, 60)
    assert m.conveyor.good + m.conveyor.reject == before
    assert m.values["conveyor.state"] == 0


def test_conveyor_fault_needs_reset() -> None:
    m = model()
    m.trigger("conveyor_fault")
    m.step(0.1)
    assert m.values["conveyor.state"] == 2
    assert m.call("Start") is False
    assert m.call("ResetFault") is True
    assert m.call("Start") is True


def test_energy_counter_integrates_power() -> None:
    m = model()
    e0 = m.energy.energy_kwh
    series = run(m, 3600)
    mean_kw = sum(v["energy.power_kw"] for v in series) / len(series)
    assert m.energy.energy_kwh - e0 == pytest.approx(mean_kw, rel=0.02)


def test_request_load_stretches_plc_scan() -> None:
    m = model()
    run(m, 5)
    base = m.values["plc1.scan_time_ms"]
    m.scan.load_rps = m.scan.budget + 100
    run(m, 5)
    assert m.values["plc1.scan_time_ms"] > base + 300
    assert m.values["plc1.scan_overrun"] is True
    scans_over = m.scan.scans
    run(m, 10)
    assert m.scan.scans - scans_over < 100 / 2  # far fewer scans than ticks: a slow PLC


def test_battery_drains_faster_at_short_periods() -> None:
    params = resolve(load_spec(), PlantIdentity.for_candidate("b", seed=1))["process"]["wireless"]
    fast, slow = Battery(params), Battery(params)
    for _ in range(3600):  # one hour: 1 s period vs 60 s period
        fast.idle(1.0)
        fast.transmit()
    for _ in range(60):
        slow.idle(60.0)
        slow.transmit()
    assert 100 - fast.percent > 10 * (100 - slow.percent)


def test_faults_stuck_drift_noise() -> None:
    m = model()
    run(m, 5)
    m.faults.add("stuck", "tank.level_m", m.t, 30, {})
    vals = [v["tank.level_m"] for v in run(m, 5)]
    assert len(set(vals)) == 1
    m.faults.clear()
    m.faults.add("drift", "heater.temp_c", m.t, None, {"rate_per_s": 1.0})
    run(m, 10)
    assert m.values["heater.temp_c"] - m.values["phys.heater.temp_c"] > 8
    m.faults.clear()
    m.faults.add("offline", "vib-01", m.t, 10, {})
    assert m.faults.device_fault("vib-01", m.t + 1) == (True, 0.0)
    assert m.faults.device_fault("vib-01", m.t + 11) == (False, 0.0)
    with pytest.raises(ValueError):
        m.faults.add("melt", "x", m.t, 1, {})


def test_noise_is_present_but_small() -> None:
    m = model()
    vals = [v["tank.level_m"] - v["phys.tank.level_m"] for v in run(m, 60)]
    assert 0.0005 < (sum(x * x for x in vals) / len(vals)) ** 0.5 < 0.01
    rng = random.Random(0)
    assert rng  # deterministic streams come from the identity, not global random
