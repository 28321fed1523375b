"""The grader-only control plane: token, truth, direct state, faults, process events, isolation."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from aiotlab.simulators.control_client import ControlClient, ControlError

from conftest import PlantHandle, cli
from modbus_util import client, decode


def test_token_required(plant: PlantHandle) -> None:
    url = plant.control.url + "/v1/info"
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(url, timeout=5)
    assert exc.value.code == 401
    with pytest.raises(ControlError, match="401"):
        ControlClient(plant.control.url, "wrong").get("/v1/info")
    assert (plant.dir / "control.token").stat().st_mode & 0o077 == 0


def test_control_plane_is_not_on_candidate_endpoints(plant: PlantHandle) -> None:
    control_host = plant.hosts["control"]
    candidate_hosts = {plant.sheet["plc1"]["host"], plant.sheet["em1"]["host"], plant.sheet["mqtt"]["host"]}
    assert control_host not in candidate_hosts
    assert control_host not in json.dumps(plant.sheet)


def test_truth_series_and_emissions(plant: PlantHandle) -> None:
    deadline = time.time() + 10  # a plant started just now has less than 5 s of history: wait for it
    while True:
        now = time.time()
        series = plant.control.get(f"/v1/truth?tags=tank.level_m,heater.temp_c&start={now - 5}&end={now}")
        ts = series["t"]
        if len(ts) >= 20 or time.time() > deadline:
            break
        time.sleep(0.5)
    assert len(ts) >= 20 and now - ts[-1] < 0.5  # recorded up to now
    assert len(ts) == pytest.approx((ts[-1] - ts[0]) * 10 + 1, abs=1)  # every 0.1 s tick, none missing
    assert all(b - a == pytest.approx(0.1, abs=1e-6) for a, b in zip(series["t"], series["t"][1:], strict=False))
    assert len(series["tank.level_m"]) == len(series["t"])
    deadline = time.time() + 15
    while not (em := plant.control.get(f"/v1/emissions?start={now - 60}&end={time.time()}")) and time.time() < deadline:
        time.sleep(0.5)
    assert em and {"node", "seq", "t", "topic", "payload"} <= set(em[0])


def test_bad_requests_get_clear_errors(plant: PlantHandle) -> None:
    with pytest.raises(ControlError, match="unknown tags"):
        plant.control.get("/v1/truth?tags=nope")
    with pytest.raises(ControlError, match="400"):
        plant.control.post("/v1/faults", {"kind": "melt", "target": "x"})
    with pytest.raises(ControlError, match="400"):
        plant.control.post("/v1/process-events", {"event": "meteor"})


def test_direct_write_and_stuck_fault(own_plant: PlantHandle) -> None:
    p = own_plant
    p.control.post("/v1/tags", {"tank.valve_pct": 12.5})
    assert p.value("tank.valve_pct") == 12.5
    words = p.control.get("/v1/registers/plc1")
    valve = p.reg("plc1", "valve_position")
    assert words["holding_registers"][str(valve["address"])] == 125
    f = p.control.post("/v1/faults", {"kind": "stuck", "target": "tank.level_m", "duration_s": 30})
    level = p.reg("plc1", "level")

    async def read_levels() -> list[float]:
        c = await client(p.sheet["plc1"]["host"], p.sheet["plc1"]["port"], p.workstation)
        out = []
        try:
            for _ in range(5):
                rr = await c.read_input_registers(level["address"], count=1, device_id=1)
                out.append(decode(level, rr.registers))
                await asyncio.sleep(0.3)
        finally:
            c.close()
        return out

    assert len(set(asyncio.run(read_levels()))) == 1
    p.control.delete(f"/v1/faults/{f['id']}")
    assert len(set(asyncio.run(read_levels()))) > 1


def test_device_offline_fault(own_plant: PlantHandle) -> None:
    p = own_plant
    p.control.post("/v1/faults", {"kind": "offline", "target": "plc1", "duration_s": 20})
    first = p.sheet["plc1"]["tables"]["input_registers"][0]["address"]

    async def go() -> bytes:
        from modbus_util import adu, raw_request

        return await raw_request(
            p.sheet["plc1"]["host"],
            p.sheet["plc1"]["port"],
            adu(bytes([4]) + first.to_bytes(2, "big") + b"\x00\x01"),
            source=p.workstation,
        )

    r = asyncio.run(go())
    assert r[7:9] in (bytes([0x84, 0x0A]), bytes([0x84, 0x0B]))  # FW-1: gateway path / target failed
    p.control.delete("/v1/faults")
    assert asyncio.run(go())[7] == 4


def test_tank_high_level_event_raises_the_alarm(own_plant: PlantHandle) -> None:
    p = own_plant
    p.control.post("/v1/process-events", {"event": "tank_high_level", "duration_s": 30})
    time.sleep(0.5)
    assert p.value("tank.alarm_high") is True
    assert p.value("tank.level_m") > p.value("tank.alarm_high_m")
    time.sleep(3)
    assert p.value("tank.level_m") > p.value("tank.alarm_high_m")  # held while the event lasts


def test_factory_reset_restores_saved_and_running_configs(own_plant: PlantHandle, tmp_path: Path) -> None:
    """What a lab whose brief describes a factory plant starts from, whatever an earlier lab left on the plant."""
    p = own_plant
    factory = {name: p.config(name).read_text() for name in ("fw1.yaml", "mosquitto.conf")}
    p.config("fw1.yaml").write_text("default_action: deny\ndeny_response: exception\nrules: []\n")
    p.reload("fw1")
    deny = tmp_path / "deny.yaml"
    deny.write_text("default_action: deny\ndeny_response: drop\nrules: []\n")
    cli("plant", "apply", "fw1", str(deny), "-c", p.candidate)
    assert p.control.get("/v1/status")["unsaved_configs"] == ["fw1"]
    done = p.control.post("/v1/factory-reset", {})
    assert done["factory_reset"] == ["fw1"]  # only what changed is restarted
    assert p.control.post("/v1/factory-reset", {})["factory_reset"] == []  # at factory already: nothing restarted
    assert p.control.get("/v1/status")["unsaved_configs"] == []
    assert {name: p.config(name).read_text() for name in factory} == factory
    first = p.sheet["plc1"]["tables"]["input_registers"][0]["address"]

    async def read() -> bytes:
        from modbus_util import adu, raw_request

        return await raw_request(
            p.sheet["plc1"]["host"],
            p.sheet["plc1"]["port"],
            adu(bytes([4]) + first.to_bytes(2, "big") + b"\x00\x01"),
            source=p.workstation,
        )

    assert asyncio.run(read())[7] == 4  # the factory FW-1 forwards the workstation's read again
