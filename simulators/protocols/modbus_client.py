"""A minimal Modbus TCP client on the plant's own codec, for the HMI.

pymodbus would do, but importing it costs every plant process 2.2 MiB (measured: 58.1 -> 60.3 MiB PSS), the
difference between meeting the 60 MB-per-plant budget and not. The grader and tests keep using pymodbus.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from . import modbus as mb


class ModbusError(Exception):
    """A Modbus exception response, a timeout, or a broken connection."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class ModbusClient:
    def __init__(
        self,
        host: str,
        port: int,
        unit: int,
        source: str | None = None,
        timeout: float = 2.0,
        opener: Any = None,
    ) -> None:
        """`opener(host, port, source)`: how to open the connection from `source` when binding it here is not
        enough (the grader's probes in exam mode, from a container's address)."""
        self.host, self.port, self.unit, self.source, self.timeout = host, port, unit, source, timeout
        self.opener = opener
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tid = 0

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self) -> None:
        local = (self.source, 0) if self.source else None
        try:
            async with asyncio.timeout(self.timeout):
                if self.opener is not None:
                    self._reader, self._writer = await self.opener(self.host, self.port, self.source)
                else:
                    self._reader, self._writer = await asyncio.open_connection(self.host, self.port, local_addr=local)
        except (OSError, TimeoutError) as exc:
            raise ModbusError(f"cannot connect to {self.host}:{self.port}: {exc}") from None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def request(self, pdu: bytes) -> bytes:
        if not self.connected or self._reader is None or self._writer is None:
            raise ModbusError("not connected")
        self._tid = (self._tid + 1) & 0xFFFF
        try:
            self._writer.write(mb.encode_adu(self._tid, self.unit, pdu))
            await self._writer.drain()
            reply = await mb.read_adu(self._reader, self.timeout, self.timeout)
        except (OSError, TimeoutError, mb.FrameError) as exc:
            self.close()
            raise ModbusError(f"no valid reply: {exc or 'timeout'}") from None
        if reply is None:
            self.close()
            raise ModbusError("connection closed by the server")
        if reply.tid != self._tid or not reply.pdu or (reply.pdu[0] & 0x7F) != pdu[0]:
            self.close()
            raise ModbusError("reply does not match the request")
        if reply.pdu[0] & 0x80:
            code = reply.pdu[1] if len(reply.pdu) > 1 else None
            raise ModbusError(f"exception {code:#04x}" if code is not None else "exception", code)
        return reply.pdu

    async def _read(self, fc: int, address: int, count: int) -> list[int]:
        pdu = await self.request(struct.pack(">BHH", fc, address, count))
        if len(pdu) != 2 + 2 * count or pdu[1] != 2 * count:
            raise ModbusError("malformed read reply")
        return list(struct.unpack(f">{count}H", pdu[2:]))

    async def read_holding_registers(self, address: int, count: int) -> list[int]:
        return await self._read(3, address, count)

    async def read_input_registers(self, address: int, count: int) -> list[int]:
        return await self._read(4, address, count)

    async def write_register(self, address: int, value: int) -> None:
        pdu = struct.pack(">BHH", 6, address, value & 0xFFFF)
        if await self.request(pdu) != pdu:
            raise ModbusError("write echo does not match")
