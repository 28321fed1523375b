"""Modbus server CPU per request: aiotlab's PLC-1, a plain pymodbus server, a minimal asyncio server.

Method: each server runs alone in its own process on loopback; a load generator in another process keeps
C connections busy with FC4 reads of 10 registers, back to back, for T seconds. Server CPU (user+system, from
/proc) divided by requests answered = CPU per request. All three are measured in the same run, same load.
aiotlab is measured twice: the PLC-1 device alone, and the candidate's real path (FW-1 -> PLC-1: two processes'
worth of work in one: inspection, logging, relay).
Usage: python bench/bench_modbus.py [seconds] [connections]
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import struct
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import save  # noqa: E402

HOST = "127.63.200.1"


def run_minimal(port: int) -> None:
    """The smallest correct-enough asyncio Modbus TCP server: FC3/FC4 from a fixed table."""
    regs = list(range(1000))

    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                hdr = await r.readexactly(7)
                tid, _, length, unit = struct.unpack(">HHHB", hdr)
                pdu = await r.readexactly(length - 1)
                fc, start, count = pdu[0], *struct.unpack(">HH", pdu[1:5])
                body = bytes([fc, 2 * count]) + struct.pack(f">{count}H", *regs[start : start + count])
                w.write(struct.pack(">HHHB", tid, 0, len(body) + 1, unit) + body)
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            w.close()

    async def main() -> None:
        server = await asyncio.start_server(serve, HOST, port)
        await server.serve_forever()

    asyncio.run(main())


def run_pymodbus(port: int) -> None:
    from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
    from pymodbus.server import StartAsyncTcpServer

    block = ModbusSequentialDataBlock(1, list(range(1000)))  # 3.16: 1-based (it stores address - 1)
    ctx = ModbusServerContext(devices=ModbusDeviceContext(ir=block, hr=block), single=True)
    asyncio.run(StartAsyncTcpServer(context=ctx, address=(HOST, port)))


def _aiotlab_device():
    from aiotlab.simulators.devices.modbus_device import ModbusDevice
    from aiotlab.simulators.devices.register_map import RegisterMap
    from aiotlab.simulators.launch import load_spec
    from aiotlab.simulators.params import PlantIdentity, resolve
    from aiotlab.simulators.process.model import PlantModel

    params = resolve(load_spec(), PlantIdentity.for_candidate("bench", seed=1))
    model = PlantModel(params, 1, time.time())
    rm = RegisterMap(params["devices"]["plc1"]["tables"])
    dev = ModbusDevice("plc1", 1, rm, lambda: model.plc1_image, model.write, lambda: (False, 0.0), None, {0: "x"})
    return dev, rm, model


def run_aiotlab(port: int) -> None:
    async def main() -> None:
        dev, _, model = _aiotlab_device()
        await dev.start(HOST, port)

        async def physics() -> None:  # the image changes every tick, as in a real plant
            while True:
                model.step(0.1)
                await asyncio.sleep(0.1)

        await physics()

    asyncio.run(main())


def run_aiotlab_fw(port: int) -> None:
    import tempfile

    from aiotlab.simulators.devices.firewall import Conduit, Firewall

    async def main() -> None:
        dev, _, model = _aiotlab_device()
        await dev.start("127.63.200.111", port)
        d = Path(tempfile.mkdtemp())
        (d / "fw1.yaml").write_text("default_action: allow\nlog_allowed: true\nrules: []\n")
        fw = Firewall(
            d / "fw1.yaml", d / "fw1.jsonl", "127.63.200.101", [Conduit("plc1", (HOST, port), ("127.63.200.111", port))]
        )
        await fw.start()
        while True:
            model.step(0.1)
            await asyncio.sleep(0.1)

    asyncio.run(main())


async def load(port: int, seconds: float, conns: int, start: int, count: int) -> int:
    done = 0
    req = struct.pack(">HHHBBHH", 1, 0, 6, 1, 4, start, count)

    async def one() -> None:
        nonlocal done
        r, w = await asyncio.open_connection(HOST, port)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            w.write(req)
            await w.drain()
            hdr = await r.readexactly(7)
            await r.readexactly(struct.unpack(">H", hdr[4:6])[0] - 1)
            done += 1
        w.close()

    await asyncio.gather(*(one() for _ in range(conns)))
    return done


def measure(name: str, target, port: int, seconds: float, conns: int, start: int) -> dict:
    proc = mp.Process(target=target, args=(port,), daemon=True)
    proc.start()
    deadline = time.time() + 10
    import socket

    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                break
        time.sleep(0.05)
    ps = psutil.Process(proc.pid)
    time.sleep(0.5)
    c0 = sum(ps.cpu_times()[:2])
    t0 = time.perf_counter()
    n = asyncio.run(load(port, seconds, conns, start, 10))
    wall = time.perf_counter() - t0
    cpu = sum(ps.cpu_times()[:2]) - c0
    proc.terminate()
    proc.join(5)
    return {
        "server": name,
        "requests": n,
        "req_per_s": round(n / wall),
        "server_cpu_s": round(cpu, 2),
        "cpu_us_per_request": round(cpu / n * 1e6, 1),
    }


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    conns = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    _, rm, _ = _aiotlab_device()
    start = rm.tag("level").address
    rows = [
        measure("minimal asyncio server", run_minimal, 15020, seconds, conns, 0),
        measure("pymodbus 3.16.1 ModbusTcpServer", run_pymodbus, 15021, seconds, conns, 0),
        measure("aiotlab PLC-1 device", run_aiotlab, 15022, seconds, conns, start),
        measure("aiotlab FW-1 -> PLC-1 (one process)", run_aiotlab_fw, 15023, seconds, conns, start),
    ]
    save(
        "modbus",
        {"method": f"FC4 x10 registers, {conns} connections back to back, {seconds:.0f} s per server", "results": rows},
    )


if __name__ == "__main__":
    main()
