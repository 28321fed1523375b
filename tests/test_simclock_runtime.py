"""The real plant runtime on the fast simulated clock: physics runs far ahead of wall time, devices keep serving."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aiotlab.simulators import addressing as ad
from aiotlab.simulators.clock import SimClock
from aiotlab.simulators.launch import build_plant
from aiotlab.simulators.truth import TruthReader

from modbus_util import client, decode


def test_an_hour_of_plant_in_seconds_with_devices_serving(aiot_home: Path) -> None:
    async def go() -> None:
        clock = SimClock()
        plant = build_plant("simclock", seed=7, clock=clock, with_hmi=False, with_sensors=False, with_control=False)
        t0 = clock.now()
        await plant.start()
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while clock.now() - t0 < 3600 and loop.time() < deadline:
                await asyncio.sleep(0.05)
            assert clock.now() - t0 >= 3600, "the simulated clock did not run an hour within 60 s of wall time"
            tag = plant.plc1_map.tag("level")
            c = await client(plant.h["plc1"], plant.p["modbus"], plant.h["workstation"])
            try:
                rr = await c.read_input_registers(tag.address, count=1, device_id=1)
                assert not rr.isError()
                served = decode(tag.as_dict(), rr.registers)
            finally:
                c.close()
            assert abs(served - plant.model.plc1_image["tank.level_m"]) < 0.5  # fresh image, moving fast
        finally:
            await plant.stop()
            plant.close()
        reader = TruthReader(plant.truth.path)
        series = reader.series(["tank.level_m"], t0, t0 + 3600)
        reader.close()
        assert len(series["t"]) == pytest.approx(36000, abs=2)  # every 0.1 s of simulated time recorded

    asyncio.run(go())
    ad.write_state("simclock", {**(ad.read_state("simclock") or {}), "status": "stopped", "pid": None})


def test_privileged_port_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = {"hosts": {"plc1": 11}, "ports": {"modbus": 502, "opcua": 4840}, "privileged_port_offset": 10000}
    monkeypatch.setattr(ad, "may_bind_privileged", lambda: False)
    assert ad.Addresses.for_slot(3, spec).ports == {"modbus": 10502, "opcua": 4840}
    monkeypatch.setattr(ad, "may_bind_privileged", lambda: True)
    assert ad.Addresses.for_slot(3, spec).ports == {"modbus": 502, "opcua": 4840}
    assert ad.Addresses.for_slot(300, spec).hosts == {"plc1": "127.65.44.11"}
