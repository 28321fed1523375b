"""Modbus probes from a chosen source address: one request, classified as answered, exception, or refused."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from aiotlab.simulators.protocols.modbus_client import ModbusClient, ModbusError

from . import sources

READ_FCS = (1, 2, 3, 4)


@dataclass
class ProbeReply:
    fc: int
    outcome: str  # "ok", "exception", "refused" (no connection, dropped or timed out)
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def said(self) -> str:
        """What came back, in words: "ok 0402...", "exception 01" (the detail already names it), "refused ..."."""
        if self.detail.startswith(self.outcome):
            return self.detail
        return f"{self.outcome} {self.detail}".strip()


def read_pdu(fc: int, address: int, count: int = 1) -> bytes:
    return struct.pack(">BHH", fc, address, count)


def write_pdu(fc: int, address: int, value: int) -> bytes:
    """A write of one value with the given function code (5, 6, 15, 16, 22 or 23)."""
    if fc == 5:
        return struct.pack(">BHH", 5, address, 0xFF00 if value else 0)
    if fc == 6:
        return struct.pack(">BHH", 6, address, value & 0xFFFF)
    if fc == 15:
        return struct.pack(">BHHBB", 15, address, 1, 1, 1 if value else 0)
    if fc == 16:
        return struct.pack(">BHHBH", 16, address, 1, 2, value & 0xFFFF)
    if fc == 22:  # mask write: result = (current AND and_mask) OR (or_mask AND NOT and_mask) = value
        return struct.pack(">BHHH", 22, address, 0x0000, value & 0xFFFF)
    if fc == 23:  # read 1 register at address, write 1 register at address
        return struct.pack(">BHHHHBH", 23, address, 1, address, 1, 2, value & 0xFFFF)
    raise ValueError(f"not a write function code: {fc}")


async def request(host: str, port: int, unit: int, source: str, pdu: bytes, timeout: float = 2.0) -> ProbeReply:
    client = ModbusClient(host, port, unit, source=source, timeout=timeout, opener=sources.open_connection)
    try:
        await client.connect()
        reply = await client.request(pdu)
    except ModbusError as exc:
        if exc.code is not None:
            return ProbeReply(pdu[0], "exception", f"exception {exc.code:02X}")
        return ProbeReply(pdu[0], "refused", str(exc))
    finally:
        client.close()
    return ProbeReply(pdu[0], "ok", reply.hex()[:40])
