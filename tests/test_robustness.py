"""Hostile input: malformed, truncated and oversized frames, unknown functions, garbage, floods.

Each device must answer per protocol (exception or close) and keep serving everyone else. Fuzzing is bounded.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import struct
import subprocess
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiotlab.simulators.devices.modbus_device import ModbusDevice
from aiotlab.simulators.devices.register_map import RegisterMap
from aiotlab.simulators.launch import load_spec
from aiotlab.simulators.params import PlantIdentity, resolve

from conftest import PlantHandle, need
from modbus_util import adu, client, decode, raw_request

SUPPORTED = {1, 2, 3, 4, 5, 6, 15, 16, 22, 23, 43}


@functools.cache
def fuzz_params() -> dict:
    return resolve(load_spec(), PlantIdentity.for_candidate("fuzz", seed=1))


def device() -> ModbusDevice:
    params = fuzz_params()
    rm = RegisterMap(params["devices"]["plc1"]["tables"])
    image = {t.source: 1.0 for t in rm.tags}
    return ModbusDevice(
        "plc1", 1, rm, lambda: image, lambda tag, v: image.__setitem__(tag, v), lambda: (False, 0.0), None, {0: "x"}
    )


@settings(max_examples=3000, deadline=None)
@given(st.integers(0, 255), st.binary(max_size=260))
def test_any_pdu_gets_a_protocol_answer(unit: int, pdu: bytes) -> None:
    reply = device().handle(unit, pdu)
    fc = pdu[0] if pdu else 0
    assert reply[0] in (fc, (fc | 0x80) & 0xFF)
    if reply[0] & 0x80:
        assert len(reply) == 2 and reply[1] in (1, 2, 3, 4, 0x0B)


def test_every_unsupported_function_code_gets_exception_01(plant: PlantHandle) -> None:
    host, port = plant.sheet["plc1"]["host"], plant.sheet["plc1"]["port"]

    async def go() -> None:
        r, w = await asyncio.open_connection(host, port)
        try:
            for fc in range(1, 128):
                if fc in SUPPORTED:
                    continue
                w.write(adu(bytes([fc, 0, 0, 0, 1]), tid=fc))
                await w.drain()
                reply = await asyncio.wait_for(r.readexactly(9), 3)
                assert struct.unpack(">H", reply[:2])[0] == fc and reply[7:] == bytes([fc | 0x80, 0x01]), (fc, reply)
        finally:
            w.close()

    asyncio.run(go())


def assert_still_serving(p: PlantHandle) -> None:
    tag = p.reg("plc1", "level")

    async def go() -> float:
        c = await client(p.sheet["plc1"]["host"], p.sheet["plc1"]["port"], p.workstation)
        try:
            rr = await c.read_input_registers(tag["address"], count=1, device_id=1)
            assert not rr.isError()
            return decode(tag, rr.registers)
        finally:
            c.close()

    assert abs(asyncio.run(go()) - p.value("tank.level_m")) < 0.05


def test_malformed_frames_are_closed_and_service_continues(plant: PlantHandle) -> None:
    host, port = plant.sheet["plc1"]["host"], plant.sheet["plc1"]["port"]
    bad = [
        struct.pack(">HHHB", 1, 7, 6, 1) + bytes([4, 0, 0, 0, 1]),  # protocol id 7
        struct.pack(">HHHB", 1, 0, 0, 1),  # length 0
        struct.pack(">HHHB", 1, 0, 300, 1) + bytes(299),  # oversized (> 254)
        struct.pack(">HHHB", 1, 0, 6, 1) + bytes([4, 0]),  # truncated PDU, then EOF
        b"\x00\x01\x00",  # truncated header
        b"GET / HTTP/1.1\r\nHost: plc\r\n\r\n",  # wrong protocol
    ]
    for payload in bad:
        reply = asyncio.run(raw_request(host, port, payload, timeout=6, half_close=True))
        assert reply == b"", (payload, reply)
    assert_still_serving(plant)


def test_truncated_frame_times_out_and_closes(plant: PlantHandle) -> None:
    host, port = plant.sheet["plc1"]["host"], plant.sheet["plc1"]["port"]

    async def go() -> float:
        r, w = await asyncio.open_connection(host, port)
        w.write(struct.pack(">HHHB", 1, 0, 6, 1) + bytes([4]))  # promise 5 PDU bytes, send 1, keep the socket open
        await w.drain()
        t0 = time.monotonic()
        data = await asyncio.wait_for(r.read(), 15)
        w.close()
        assert data == b""
        return time.monotonic() - t0

    assert asyncio.run(go()) < 10
    assert_still_serving(plant)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=1, max_size=400))
def test_fuzzed_bytes_never_break_fw1(plant: PlantHandle, payload: bytes) -> None:
    host, port = plant.sheet["plc1"]["host"], plant.sheet["plc1"]["port"]
    reply = asyncio.run(raw_request(host, port, payload, timeout=2.0, half_close=True))
    if reply:
        assert len(reply) >= 9 and reply[2:4] == b"\x00\x00"  # a well-formed Modbus answer, or nothing


def test_fuzz_aftermath(plant: PlantHandle) -> None:
    assert_still_serving(plant)
    st_ = plant.control.get("/v1/status")
    assert st_["supervised"]["physics"]["restarts"] == 0


def test_connection_flood_does_not_starve_others(plant: PlantHandle) -> None:
    host, port = plant.sheet["plc1"]["host"], plant.sheet["plc1"]["port"]
    socks = []
    try:
        for i in range(300):
            s = socket.socket()
            s.settimeout(2)
            try:
                s.bind((f"127.64.251.{1 + i % 250}", 0))
                s.connect((host, port))
                socks.append(s)
            except OSError:
                s.close()
        assert len(socks) > 64
        before = plant.control.get("/v1/status")["hmi"]["reads_ok"]
        time.sleep(2.5)
        assert plant.control.get("/v1/status")["hmi"]["reads_ok"] > before  # the HMI's session survives
    finally:
        for s in socks:
            s.close()
    time.sleep(0.5)
    assert_still_serving(plant)


def test_garbage_on_mqtt_and_opcua_ports(plant: PlantHandle) -> None:
    targets = [(plant.sheet["mqtt"]["host"], plant.sheet["mqtt"]["port"]), (plant.hosts["plc2"], plant.ports["opcua"])]
    for host, port in targets:
        for payload in (
            os.urandom(64),
            b"\x10\xff\xff\xff\xff\x7f" + os.urandom(32),
            b"HEL\x00" * 100,
            os.urandom(5000),
        ):
            asyncio.run(raw_request(host, port, payload, timeout=2, half_close=True))
    out = subprocess.run(
        [
            need("mosquitto_sub"),
            "-h",
            targets[0][0],
            "-p",
            str(targets[0][1]),
            "-t",
            "+/+/+/data",
            "-C",
            "1",
            "-W",
            "15",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 0 and out.stdout

    async def ua_read() -> float:
        from opcua_util import connect, node

        async with connect(plant.sheet["plc2"]["endpoint"]) as c:
            return await (await node(c, "Plant.Heater.Temperature")).read_value()

    assert isinstance(asyncio.run(ua_read()), float)


def test_opcua_connection_flood(plant: PlantHandle) -> None:
    host, port = plant.hosts["plc2"], plant.ports["opcua"]
    socks = []
    try:
        for _ in range(150):
            s = socket.create_connection((host, port), timeout=2)
            socks.append(s)

        async def ua_read() -> float:
            from opcua_util import connect, node

            async with connect(plant.sheet["plc2"]["endpoint"]) as c:
                return await (await node(c, "Plant.Heater.Temperature")).read_value()

        assert isinstance(asyncio.run(ua_read()), float)
    finally:
        for s in socks:
            s.close()
