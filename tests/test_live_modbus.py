"""PLC-1 and EM-1 over real Modbus TCP through FW-1, checked against the plant's ground truth."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time

import pytest

from conftest import PlantHandle, need
from modbus_util import adu, client, decode, raw_request


async def read_tag(p: PlantHandle, device: str, name: str, source: str | None = None) -> float:
    tag = p.reg(device, name)
    c = await client(p.sheet[device]["host"], p.sheet[device]["port"], source or p.workstation)
    try:
        unit = p.sheet[device]["unit_id"]
        fn = c.read_input_registers if tag["table"] == "input_registers" else c.read_holding_registers
        rr = await fn(tag["address"], count=tag["registers"], device_id=unit)
        assert not rr.isError(), rr
        return decode(tag, rr.registers)
    finally:
        c.close()


def test_plc1_values_match_truth(plant: PlantHandle) -> None:
    for name, source, tol in [
        ("level", "tank.level_m", 0.03),
        ("outflow", "tank.outflow_m3h", 0.5),
        ("pressure", "tank.pressure_bar", 0.05),
        ("pump_starts", "tank.pump_starts", 0),
    ]:
        got = asyncio.run(read_tag(plant, "plc1", name))
        truth = plant.value(source)
        assert abs(got - truth) <= tol + 1e-9, (name, got, truth)


def test_em1_cdab_floats_match_truth(plant: PlantHandle) -> None:
    assert plant.sheet["em1"]["unit_id"] != 1
    for name, source, tol in [
        ("voltage", "energy.voltage_v", 5.0),
        ("energy", "energy.energy_kwh", 0.05),
        ("frequency", "energy.frequency_hz", 0.1),
    ]:
        tag = plant.reg("em1", name)
        assert tag["word_order"] == "CDAB"
        got = asyncio.run(read_tag(plant, "em1", name))
        assert abs(got - plant.value(source)) <= tol, (name, got)


def test_values_change_over_time(plant: PlantHandle) -> None:
    a = asyncio.run(read_tag(plant, "em1", "energy"))
    time.sleep(2.5)
    b = asyncio.run(read_tag(plant, "em1", "energy"))
    assert b > a


def mbpoll_read(host: str, unit: int, dtype: str, address: int) -> float:
    """One reading with the independent Debian mbpoll client (0-based addresses, one poll)."""
    out = subprocess.run(
        [
            need("mbpoll"),
            "-1",
            "-m",
            "tcp",
            "-a",
            str(unit),
            "-t",
            dtype,
            "-r",
            str(address),
            "-c",
            "1",
            "-0",
            "-o",
            "2",
            host,
        ],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return float(re.search(r"\[\d+\]:\s+(-?[\d.]+)", out.stdout).group(1))


def test_mbpoll_reads_plc1_and_em1(plant: PlantHandle) -> None:
    level = plant.reg("plc1", "level")
    raw = mbpoll_read(plant.sheet["plc1"]["host"], 1, "3", level["address"])
    assert abs(raw / level["scale"] - plant.value("tank.level_m")) < 0.03
    volt = plant.reg("em1", "voltage")
    value = mbpoll_read(plant.sheet["em1"]["host"], plant.sheet["em1"]["unit_id"], "3:float", volt["address"])
    assert abs(value - plant.value("energy.voltage_v")) < 5  # mbpoll's default float word order is CDAB, as EM-1's


def test_exception_responses(plant: PlantHandle) -> None:
    host, port = plant.sheet["plc1"]["host"], plant.sheet["plc1"]["port"]
    ir = plant.sheet["plc1"]["tables"]["input_registers"]
    beyond = ir[-1]["address"] + ir[-1]["registers"] + 5

    async def go() -> None:
        r = await raw_request(host, port, adu(bytes([4]) + beyond.to_bytes(2, "big") + b"\x00\x01"))
        assert r[7:] == bytes([0x84, 0x02])  # illegal address
        r = await raw_request(host, port, adu(bytes([8, 0, 0, 0x12, 0x34])))
        assert r[7:] == bytes([0x88, 0x01])  # unsupported function
        r = await raw_request(host, port, adu(bytes([4, 0, 0, 0, 1]), unit=99))
        assert r[7:] == bytes([0x84, 0x0B])  # wrong unit id
        sp = plant.reg("plc1", "level_setpoint")
        bad = int(9.99 * sp["scale"]) & 0xFFFF
        r = await raw_request(host, port, adu(bytes([6]) + sp["address"].to_bytes(2, "big") + bad.to_bytes(2, "big")))
        assert r[7:] == bytes([0x86, 0x03])  # out of range
        ro = plant.reg("plc1", "level")
        r = await raw_request(host, port, adu(bytes([6]) + ro["address"].to_bytes(2, "big") + b"\x00\x01"))
        assert r[7:] == bytes([0x86, 0x02])  # input registers are not writable
        r = await raw_request(host, port, adu(bytes([43, 0x0E, 0x01, 0x00])))
        assert r[7] == 43 and b"PLC-1" in r  # device identification

    asyncio.run(go())


def test_direct_field_access_is_refused(plant: PlantHandle) -> None:
    """PLC-1 and EM-1 accept only FW-1's field-side address (zones and conduits)."""
    field = plant.hosts["plc1_field"]

    async def go() -> bytes:
        return await raw_request(field, plant.ports["modbus"], adu(bytes([4, 0, 0, 0, 1])), source=plant.workstation)

    assert asyncio.run(go()) == b""


def test_setpoint_write_changes_the_process(own_plant: PlantHandle) -> None:
    p = own_plant
    sp = p.reg("plc1", "level_setpoint")
    valve = p.reg("plc1", "valve_position")

    async def go() -> None:
        c = await client(p.sheet["plc1"]["host"], p.sheet["plc1"]["port"], p.workstation)
        try:
            rr = await c.write_register(sp["address"], int(round(1.2 * sp["scale"])), device_id=1)
            assert not rr.isError()
            rr = await c.write_registers(valve["address"], [int(round(77.5 * valve["scale"]))], device_id=1)
            assert not rr.isError()
            coil = p.reg("plc1", "auto_mode")
            rr = await c.write_coil(coil["address"], False, device_id=1)
            assert not rr.isError()
        finally:
            c.close()

    asyncio.run(go())
    assert p.value("tank.level_setpoint_m") == 1.2
    assert p.value("tank.valve_pct") == 77.5
    assert p.value("tank.auto_mode") is False
    events = p.control.get(f"/v1/events?start={time.time() - 30}")
    assert any(e["kind"] == "write" and e["detail"]["tag"] == "tank.valve_pct" for e in events)


def test_overpolling_degrades_scan_time(own_plant: PlantHandle) -> None:
    p = own_plant
    budget = p.sheet["plc1"]["comm_budget_rps"]
    base = p.value("plc1.scan_time_ms")
    level = p.reg("plc1", "level")

    async def hammer() -> None:
        c = await client(p.sheet["plc1"]["host"], p.sheet["plc1"]["port"], p.workstation)
        try:
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                await c.read_input_registers(level["address"], count=1, device_id=1)
        finally:
            c.close()

    asyncio.run(hammer())
    st = p.control.get("/v1/status")["plc1"]
    assert st["load_rps"] > budget * 2
    assert p.value("plc1.scan_time_ms") > base * 3
    assert asyncio.run(read_tag(p, "plc1", "scan_time")) > base * 3  # visible to anyone polling the diagnostic


def test_plants_own_modbus_client(own_plant: PlantHandle) -> None:
    """The HMI's client (the plant's codec, no pymodbus): reads, writes, exceptions, timeouts, closed connections."""
    from aiotlab.simulators.protocols.modbus_client import ModbusClient, ModbusError

    p = own_plant
    level, sp = p.reg("plc1", "level"), p.reg("plc1", "level_setpoint")

    async def go() -> None:
        c = ModbusClient(p.sheet["plc1"]["host"], p.sheet["plc1"]["port"], 1, source=p.workstation, timeout=2)
        await c.connect()
        try:
            words = await c.read_input_registers(level["address"], 1)
            assert abs(decode(level, words) - p.value("tank.level_m")) < 0.03
            await c.write_register(sp["address"], int(round(1.4 * sp["scale"])))
            assert p.value("tank.level_setpoint_m") == 1.4
            with pytest.raises(ModbusError) as exc:
                await c.write_register(sp["address"], int(round(9.9 * sp["scale"])) & 0xFFFF)
            assert exc.value.code == 0x03 and c.connected  # an exception answer keeps the connection
            with pytest.raises(ModbusError) as exc:
                await c.read_input_registers(level["address"] + 500, 1)
            assert exc.value.code == 0x02
        finally:
            c.close()
        with pytest.raises(ModbusError, match="cannot connect"):
            await ModbusClient(p.hosts["plc1_field"], p.ports["modbus"] + 1, 1, timeout=1).connect()
        field = ModbusClient(p.hosts["plc1_field"], p.ports["modbus"], 1, source=p.workstation, timeout=1)
        await field.connect()  # the field device accepts then closes anyone but FW-1
        with pytest.raises(ModbusError):
            await field.read_input_registers(level["address"], 1)
        assert not field.connected

    asyncio.run(go())
