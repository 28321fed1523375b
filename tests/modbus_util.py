"""Small pymodbus helpers for tests: clients bound to a chosen source address, decoding per datasheet."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from pymodbus.client import AsyncModbusTcpClient

from aiotlab.simulators.protocols.modbus import decode_value


async def client(host: str, port: int, source: str) -> AsyncModbusTcpClient:
    c = AsyncModbusTcpClient(host, port=port, source_address=(source, 0), timeout=3, retries=0)
    await asyncio.wait_for(c.connect(), 5)
    assert c.connected, f"cannot connect to {host}:{port} from {source}"
    return c


def decode(tag: dict[str, Any], words: list[int]) -> float:
    return decode_value(words, tag["type"], float(tag.get("scale", 1)), tag.get("word_order", "ABCD"))


async def raw_request(
    host: str, port: int, payload: bytes, source: str | None = None, timeout: float = 3.0, half_close: bool = False
) -> bytes:
    """Send raw bytes, return whatever comes back before close or timeout (b'' on close without reply).

    half_close sends EOF after the payload, so a server waiting for the rest of a frame closes at once."""
    r, w = await asyncio.wait_for(
        asyncio.open_connection(host, port, local_addr=(source, 0) if source else None), timeout
    )
    try:
        try:
            w.write(payload)
            await w.drain()
            if half_close:
                w.write_eof()
        except OSError:
            return b""  # the peer closed first: that is an answer too
        try:
            if half_close:
                return await asyncio.wait_for(r.read(), timeout)
            return await asyncio.wait_for(r.read(1024), timeout)
        except (ConnectionError, TimeoutError):
            return b""
    finally:
        w.close()


def adu(pdu: bytes, unit: int = 1, tid: int = 7) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu
