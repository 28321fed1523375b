"""The HMI: a legitimate operator panel polling PLC-1 through FW-1 and now and then writing a setpoint.

It connects from its own fixed source address, so it is the normal-traffic baseline and the "legitimate user"
that hardening must keep working. Every operation is logged as a JSON line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

from ..protocols.modbus_client import ModbusClient, ModbusError
from .register_map import RegisterMap

log = logging.getLogger(__name__)


class Hmi:
    def __init__(
        self,
        host: str,
        port: int,
        source: str,
        unit: int,
        regmap: RegisterMap,
        poll_s: float,
        write_every_s: float,
        log_path: Path,
        rng: random.Random,
        setpoint_range: tuple[float, float] = (1.3, 2.2),
    ) -> None:
        self.host, self.port, self.source, self.unit = host, port, source, unit
        self.regmap = regmap
        self.poll_s = poll_s
        self.write_every_s = write_every_s
        self.log_path = log_path
        self.rng = rng
        self.setpoint_range = setpoint_range
        # writes_started counts a write before it is sent: a write can land in PLC-1 while its reply is still on its way
        self.stats = {"reads_ok": 0, "reads_failed": 0, "writes_started": 0, "writes_ok": 0, "writes_failed": 0}
        self.last_values: dict[str, float] = {}

    def _log(self, **rec: Any) -> None:
        with self.log_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"ts": time.time(), **rec}) + "\n")

    async def run(self) -> None:
        level = self.regmap.tag("level")
        sp = self.regmap.tag("level_setpoint")
        loop = asyncio.get_running_loop()
        next_write = loop.time() + self.write_every_s
        while True:
            client = ModbusClient(self.host, self.port, self.unit, source=self.source, timeout=2.0)
            try:
                await client.connect()
                while client.connected:
                    await self._read(client, level.address, sp.address)
                    if loop.time() >= next_write:
                        next_write = loop.time() + self.write_every_s
                        await self._write_setpoint(client, sp)
                    await asyncio.sleep(self.poll_s)
            except ModbusError as exc:
                self._log(op="connect", ok=False, error=str(exc)[:200])
            finally:
                client.close()
            self.stats["reads_failed"] += 1
            await asyncio.sleep(2.0)

    async def _read(self, client: ModbusClient, level_addr: int, sp_addr: int) -> None:
        try:
            ir = await client.read_input_registers(level_addr, 1)
            await client.read_holding_registers(sp_addr, 2)
        except ModbusError as exc:
            self.stats["reads_failed"] += 1
            self._log(op="read", ok=False, error=str(exc)[:200])
            return
        self.stats["reads_ok"] += 1
        raw = ir[0]
        self.last_values["level"] = (raw - 0x10000 if raw & 0x8000 else raw) / self.regmap.tag("level").scale

    async def _write_setpoint(self, client: ModbusClient, sp: Any) -> None:
        lo, hi = max(sp.min, self.setpoint_range[0]), min(sp.max, self.setpoint_range[1])
        value = round(self.rng.uniform(lo, hi), 2)
        self.stats["writes_started"] += 1
        try:
            await client.write_register(sp.address, int(round(value * sp.scale)))
            ok, error = True, None
        except ModbusError as exc:
            ok, error = False, str(exc)[:200]
        self.stats["writes_ok" if ok else "writes_failed"] += 1
        self._log(op="write", tag="level_setpoint", value=value, ok=ok, **({"error": error} if error else {}))
