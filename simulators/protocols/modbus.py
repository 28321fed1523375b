"""Modbus TCP framing and PDU codec (the one parser behind PLC-1, EM-1 and FW-1's deep-packet inspection).

Hand-written rather than taken from pymodbus: the firewall must inspect every request before any server sees it,
the servers must account request load per scan and filter by source, and a malformed frame must be judged by our
rules (close the connection) rather than a library's. pymodbus remains the client and the benchmark baseline.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

MBAP = struct.Struct(">HHHB")
MAX_PDU = 253

# exception codes
ILLEGAL_FUNCTION = 0x01
ILLEGAL_DATA_ADDRESS = 0x02
ILLEGAL_DATA_VALUE = 0x03
SERVER_DEVICE_FAILURE = 0x04
GATEWAY_PATH_UNAVAILABLE = 0x0A
GATEWAY_TARGET_NO_RESPONSE = 0x0B

COILS, DISCRETE_INPUTS, INPUT_REGISTERS, HOLDING_REGISTERS = (
    "coils",
    "discrete_inputs",
    "input_registers",
    "holding_registers",
)
READ_FCS = {1: COILS, 2: DISCRETE_INPUTS, 3: HOLDING_REGISTERS, 4: INPUT_REGISTERS}
WRITE_FCS = {
    5: COILS,
    6: HOLDING_REGISTERS,
    15: COILS,
    16: HOLDING_REGISTERS,
    22: HOLDING_REGISTERS,
    23: HOLDING_REGISTERS,
}


class FrameError(Exception):
    """The byte stream is not Modbus TCP; the only safe answer is to close the connection."""


@dataclass(frozen=True)
class Adu:
    tid: int
    unit: int
    pdu: bytes

    @property
    def fc(self) -> int:
        return self.pdu[0]


async def read_adu(reader: asyncio.StreamReader, idle_timeout: float, frame_timeout: float = 5.0) -> Adu | None:
    """Read one request ADU. None on a clean EOF; FrameError on garbage; TimeoutError when idle or truncated."""
    # asyncio.timeout, not wait_for: in Python 3.11 wait_for wraps every read in a new Task (measured: ~2x the
    # server's CPU per request, bench/bench_modbus.py)
    try:
        async with asyncio.timeout(idle_timeout):
            header = await reader.readexactly(7)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise FrameError(f"truncated MBAP header ({len(exc.partial)} bytes)") from None
    tid, pid, length, unit = MBAP.unpack(header)
    if pid != 0:
        raise FrameError(f"protocol id {pid} is not Modbus (0)")
    if length < 2 or length > MAX_PDU + 1:
        raise FrameError(f"MBAP length {length} outside 2..{MAX_PDU + 1}")
    try:
        async with asyncio.timeout(frame_timeout):
            pdu = await reader.readexactly(length - 1)
    except asyncio.IncompleteReadError as exc:
        raise FrameError(f"truncated PDU ({len(exc.partial)} of {length - 1} bytes)") from None
    return Adu(tid, unit, pdu)


def encode_adu(tid: int, unit: int, pdu: bytes) -> bytes:
    return MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu


def exception_pdu(fc: int, code: int) -> bytes:
    return bytes([(fc | 0x80) & 0xFF, code])


@dataclass(frozen=True)
class Request:
    """What a request asks for, as the firewall and the servers judge it."""

    fc: int
    table: str | None
    start: int
    count: int
    write: bool
    values: tuple[int, ...] = ()  # register or bit values being written
    write_start: int | None = None  # FC23: the write part
    write_count: int = 0


class PduError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def parse_request(pdu: bytes) -> Request:
    """Decode a request PDU; PduError(exception code) when it is malformed or out of the protocol's limits."""
    if not pdu:
        raise PduError(ILLEGAL_FUNCTION, "empty PDU")
    fc = pdu[0]
    body = pdu[1:]
    try:
        if fc in (1, 2, 3, 4):
            start, count = struct.unpack(">HH", body[:4])
            limit = 2000 if fc in (1, 2) else 125
            if len(body) != 4 or not 1 <= count <= limit:
                raise PduError(ILLEGAL_DATA_VALUE, f"quantity {count} outside 1..{limit}")
            return Request(fc, READ_FCS[fc], start, count, False)
        if fc == 5:
            addr, value = struct.unpack(">HH", body[:4])
            if len(body) != 4 or value not in (0x0000, 0xFF00):
                raise PduError(ILLEGAL_DATA_VALUE, f"coil value 0x{value:04X} is not 0x0000 or 0xFF00")
            return Request(fc, COILS, addr, 1, True, (1 if value else 0,))
        if fc == 6:
            addr, value = struct.unpack(">HH", body[:4])
            if len(body) != 4:
                raise PduError(ILLEGAL_DATA_VALUE, "FC6 body must be 4 bytes")
            return Request(fc, HOLDING_REGISTERS, addr, 1, True, (value,))
        if fc == 15:
            start, count, nbytes = struct.unpack(">HHB", body[:5])
            if not 1 <= count <= 1968 or nbytes != (count + 7) // 8 or len(body) != 5 + nbytes:
                raise PduError(ILLEGAL_DATA_VALUE, "FC15 quantity/byte count mismatch")
            bits = tuple((body[5 + i // 8] >> (i % 8)) & 1 for i in range(count))
            return Request(fc, COILS, start, count, True, bits)
        if fc == 16:
            start, count, nbytes = struct.unpack(">HHB", body[:5])
            if not 1 <= count <= 123 or nbytes != 2 * count or len(body) != 5 + nbytes:
                raise PduError(ILLEGAL_DATA_VALUE, "FC16 quantity/byte count mismatch")
            return Request(fc, HOLDING_REGISTERS, start, count, True, struct.unpack(f">{count}H", body[5:]))
        if fc == 22:
            addr, and_mask, or_mask = struct.unpack(">HHH", body[:6])
            if len(body) != 6:
                raise PduError(ILLEGAL_DATA_VALUE, "FC22 body must be 6 bytes")
            return Request(fc, HOLDING_REGISTERS, addr, 1, True, (and_mask, or_mask))
        if fc == 23:
            rstart, rcount, wstart, wcount, nbytes = struct.unpack(">HHHHB", body[:9])
            if not 1 <= rcount <= 125 or not 1 <= wcount <= 121 or nbytes != 2 * wcount or len(body) != 9 + nbytes:
                raise PduError(ILLEGAL_DATA_VALUE, "FC23 quantity/byte count mismatch")
            values = struct.unpack(f">{wcount}H", body[9:])
            return Request(fc, HOLDING_REGISTERS, rstart, rcount, True, values, wstart, wcount)
        if fc == 43:
            if len(body) < 3 or body[0] != 0x0E:
                raise PduError(ILLEGAL_FUNCTION, "only MEI type 0x0E (device identification) is supported")
            return Request(fc, None, body[2], 1, False)
    except struct.error:
        raise PduError(ILLEGAL_DATA_VALUE, f"FC{fc} body too short") from None
    return Request(fc, None, 0, 0, False)


def touched_ranges(req: Request) -> list[tuple[str, int, int]]:
    """(table, first, last) address ranges a request reads or writes."""
    if req.table is None:
        return []
    out = [(req.table, req.start, req.start + req.count - 1)]
    if req.fc == 23 and req.write_start is not None:
        out.append((req.table, req.write_start, req.write_start + req.write_count - 1))
    return out


def written_ranges(req: Request) -> list[tuple[str, int, int]]:
    if not req.write:
        return []
    if req.fc == 23 and req.write_start is not None:
        return [(HOLDING_REGISTERS, req.write_start, req.write_start + req.write_count - 1)]
    return [(req.table or "", req.start, req.start + req.count - 1)]


# -- value encodings ------------------------------------------------------------------------------
def encode_value(value: float, dtype: str, scale: float = 1.0, word_order: str = "ABCD") -> list[int]:
    """Engineering value -> register words. Saturates integers instead of wrapping (as PLCs clamp)."""
    if dtype == "int16":
        raw = int(round(value * scale))
        raw = max(-32768, min(32767, raw))
        return [raw & 0xFFFF]
    if dtype == "uint16":
        return [max(0, min(0xFFFF, int(round(value * scale))))]
    if dtype == "uint32":
        raw = max(0, min(0xFFFFFFFF, int(round(value * scale))))
        words = [raw >> 16, raw & 0xFFFF]
    elif dtype == "float32":
        hi, lo = struct.unpack(">HH", struct.pack(">f", float(value)))
        words = [hi, lo]
    else:
        raise ValueError(f"unknown register type {dtype}")
    return _order(words, word_order)


def decode_value(words: list[int], dtype: str, scale: float = 1.0, word_order: str = "ABCD") -> float:
    """Register words -> engineering value (the inverse of encode_value)."""
    if dtype == "int16":
        raw = words[0] - 0x10000 if words[0] & 0x8000 else words[0]
        return raw / scale
    if dtype == "uint16":
        return words[0] / scale
    hi, lo = _order(list(words[:2]), word_order)
    if dtype == "uint32":
        return ((hi << 16) | lo) / scale
    if dtype == "float32":
        return struct.unpack(">f", struct.pack(">HH", hi, lo))[0]
    raise ValueError(f"unknown register type {dtype}")


def _order(words: list[int], word_order: str) -> list[int]:
    """ABCD: high word first (big-endian). CDAB: low word first. BADC/DCBA swap bytes within words too."""
    hi, lo = words
    if word_order == "ABCD":
        return [hi, lo]
    if word_order == "CDAB":
        return [lo, hi]
    swap = lambda w: ((w & 0xFF) << 8) | (w >> 8)  # noqa: E731
    if word_order == "BADC":
        return [swap(hi), swap(lo)]
    if word_order == "DCBA":
        return [swap(lo), swap(hi)]
    raise ValueError(f"unknown word order {word_order}")


def register_width(dtype: str) -> int:
    return 2 if dtype in ("float32", "uint32") else 1
