"""The plant HMI's setpoint write can reach PLC-1 before its reply reaches the HMI (after FW-1 restarts, up to the
HMI's timeout). mb.writes_blocked allows the HMI's own writes, so it must count one in flight, or the HMI's write is
taken for a probe's (the reference failed hardening.persists once so in CI)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from test_robustness import fuzz_params

from aiotlab.grader.checks.modbus import hmi_writes_that_may_land
from aiotlab.simulators.devices.hmi import Hmi
from aiotlab.simulators.devices.register_map import RegisterMap
from aiotlab.simulators.protocols.modbus_client import ModbusClient


async def held_write(tmp_path: Path) -> None:
    got_write = asyncio.Event()
    release = asyncio.Event()

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Reads one request (MBAP header + PDU), lets the test look while the reply is held, then answers it."""
        head = await reader.readexactly(7)
        pdu = await reader.readexactly(int.from_bytes(head[4:6], "big") - 1)
        got_write.set()
        await release.wait()
        writer.write(head[:4] + (len(pdu) + 1).to_bytes(2, "big") + head[6:7] + pdu)  # FC 6's reply echoes the request
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    regmap = RegisterMap(fuzz_params()["devices"]["plc1"]["tables"])
    hmi = Hmi("127.0.0.1", port, "127.0.0.1", 1, regmap, 1.0, 60.0, tmp_path / "hmi.jsonl", random.Random(1))
    client = ModbusClient("127.0.0.1", port, 1, timeout=5.0)
    await client.connect()
    before = dict(hmi.stats)
    task = asyncio.create_task(hmi._write_setpoint(client, regmap.tag("level_setpoint")))
    await asyncio.wait_for(got_write.wait(), 5.0)
    in_flight = dict(hmi.stats)
    assert in_flight["writes_ok"] + in_flight["writes_failed"] == 0
    assert hmi_writes_that_may_land(before, in_flight) == 1, in_flight
    # the write was in flight at the first reading and answered before the second: still one, never two
    release.set()
    await asyncio.wait_for(task, 5.0)
    assert hmi.stats["writes_ok"] == 1
    assert hmi_writes_that_may_land(in_flight, dict(hmi.stats)) == 1
    assert hmi_writes_that_may_land(dict(hmi.stats), dict(hmi.stats)) == 0
    client.close()
    server.close()


def test_a_write_in_flight_counts_as_the_hmis(tmp_path: Path) -> None:
    asyncio.run(held_write(tmp_path))


class _Status:
    """A control plane whose HMI counters reach it late (a split plant's come over the bus once a second)."""

    def __init__(self, fresh_after: int) -> None:
        self.calls, self.fresh_after = 0, fresh_after

    def get(self, path: str) -> dict[str, object]:
        self.calls += 1
        import time

        stale = self.calls <= self.fresh_after
        return {"hmi": {"writes_started": 0 if stale else 1, "at": time.time() - (5 if stale else 0)}}


def test_counters_read_after_the_probes_are_waited_for() -> None:
    """The HMI write that started during the probes is in the counters the check reads, not in a stale copy (an
    outsider's reference-like case failed hardening.persists so)."""
    import time
    from types import SimpleNamespace

    from aiotlab.grader.checks.modbus import hmi_stats

    status = _Status(fresh_after=3)
    stats = asyncio.run(hmi_stats(SimpleNamespace(control=status), time.time()))  # type: ignore[arg-type]
    assert stats["writes_started"] == 1 and status.calls == 4
