"""A Modbus TCP server device (PLC-1, EM-1): serves a register image, applies writes, accounts request load."""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..protocols import modbus as mb
from .register_map import BIT_TABLES, MappedTag, RegisterMap

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 120.0
MAX_CONNECTIONS = 16


class RequestLoad:
    """Requests per second over a sliding window (what stretches PLC-1's scan)."""

    def __init__(self, window_s: float) -> None:
        self.window = window_s
        self._stamps: deque[float] = deque()
        self.total = 0

    def hit(self) -> None:
        now = time.monotonic()
        self._stamps.append(now)
        self.total += 1
        self._trim(now)

    def _trim(self, now: float) -> None:
        cutoff = now - self.window
        while self._stamps and self._stamps[0] < cutoff:
            self._stamps.popleft()

    def rate(self) -> float:
        self._trim(time.monotonic())
        return len(self._stamps) / self.window


class ModbusDevice:
    def __init__(
        self,
        name: str,
        unit_id: int,
        regmap: RegisterMap,
        image: Callable[[], dict[str, Any]],
        write: Callable[[str, Any], None],
        fault_state: Callable[[], tuple[bool, float]],
        allowed_sources: set[str] | None,
        identity: dict[int, str],
        load_window_s: float = 5.0,
    ) -> None:
        self.name = name
        self.unit_id = unit_id
        self.regmap = regmap
        self._image = image
        self._write = write
        self._fault_state = fault_state
        self.allowed_sources = allowed_sources
        self.identity = identity
        self.load = RequestLoad(load_window_s)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._cache_src: dict[str, Any] | None = None
        self._cache: dict[str, dict[int, int]] = {}
        self.stats = {"connections": 0, "refused": 0, "requests": 0, "exceptions": 0, "frame_errors": 0}

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, reuse_address=True, backlog=64)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            except TimeoutError:
                pass
            self._server = None

    # -- connection handling ---------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        src = peer[0] if peer else "?"
        offline, _ = self._fault_state()
        if (
            offline
            or (self.allowed_sources is not None and src not in self.allowed_sources)
            or len(self._writers) >= MAX_CONNECTIONS
        ):
            self.stats["refused"] += 1
            writer.close()
            return
        self._writers.add(writer)
        self.stats["connections"] += 1
        try:
            while True:
                try:
                    adu = await mb.read_adu(reader, IDLE_TIMEOUT_S)
                except (mb.FrameError, TimeoutError) as exc:
                    self.stats["frame_errors"] += 1
                    log.info("%s: closing %s: %s", self.name, src, exc or "idle")
                    return
                if adu is None:
                    return
                offline, delay = self._fault_state()
                if offline:
                    return
                if delay:
                    await asyncio.sleep(delay)
                self.load.hit()
                self.stats["requests"] += 1
                reply = self.handle(adu.unit, adu.pdu)
                if reply[0] & 0x80:
                    self.stats["exceptions"] += 1
                writer.write(mb.encode_adu(adu.tid, adu.unit, reply))
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    # -- request semantics -----------------------------------------------------------------------
    def handle(self, unit: int, pdu: bytes) -> bytes:
        fc = pdu[0] if pdu else 0
        if unit != self.unit_id:
            return mb.exception_pdu(fc, mb.GATEWAY_TARGET_NO_RESPONSE)
        try:
            req = mb.parse_request(pdu)
            if req.fc == 43:
                return self._device_identification(req.start)
            if req.table is None:
                return mb.exception_pdu(fc, mb.ILLEGAL_FUNCTION)
            if req.fc in mb.READ_FCS:
                return self._read_reply(req.fc, req.table, req.start, req.count)
            return self._apply_write(req)
        except mb.PduError as exc:
            return mb.exception_pdu(fc, exc.code)

    def _words(self, table: str) -> dict[int, int]:
        image = self._image()
        if image is not self._cache_src:
            self._cache = self.encode(image)
            self._cache_src = image
        return self._cache[table]

    def encode(self, image: dict[str, Any]) -> dict[str, dict[int, int]]:
        return encode_image(self.regmap, image)

    def _read_reply(self, fc: int, table: str, start: int, count: int) -> bytes:
        words = self._words(table)
        if start + count - 1 > 0xFFFF or any(a not in words for a in range(start, start + count)):
            raise mb.PduError(mb.ILLEGAL_DATA_ADDRESS, "address outside the map")
        values = [words[a] for a in range(start, start + count)]
        if table in BIT_TABLES:
            packed = bytearray((count + 7) // 8)
            for i, bit in enumerate(values):
                if bit:
                    packed[i // 8] |= 1 << (i % 8)
            return bytes([fc, len(packed)]) + bytes(packed)
        return bytes([fc, 2 * count]) + struct.pack(f">{count}H", *values)

    def _apply_write(self, req: mb.Request) -> bytes:
        table = req.table or ""
        mapping = self.regmap.by_addr[table]
        start = req.write_start if req.fc == 23 and req.write_start is not None else req.start
        count = req.write_count if req.fc == 23 else req.count
        values = list(req.values)
        if req.fc == 22:
            current = self._words(table).get(start)
            if current is None:
                raise mb.PduError(mb.ILLEGAL_DATA_ADDRESS, "address outside the map")
            and_mask, or_mask = values
            values = [(current & and_mask) | (or_mask & ~and_mask & 0xFFFF)]
        addrs = range(start, start + count)
        if any(a not in mapping or not mapping[a][0].writable for a in addrs):
            raise mb.PduError(mb.ILLEGAL_DATA_ADDRESS, "address not writable")
        # whole tags only: a write must not split a 32-bit value
        tags: dict[str, MappedTag] = {}
        for a in addrs:
            tag, _ = mapping[a]
            tags[tag.name] = tag
        for tag in tags.values():
            if tag.address < start or tag.address + tag.width - 1 > start + count - 1:
                raise mb.PduError(mb.ILLEGAL_DATA_ADDRESS, f"write splits {tag.name}")
        decoded: list[tuple[MappedTag, Any]] = []
        for tag in tags.values():
            off = tag.address - start
            if tag.dtype == "bool":
                value: Any = bool(values[off])
            else:
                value = mb.decode_value(values[off : off + tag.width], tag.dtype, tag.scale, tag.word_order)
                if tag.min is not None and not (tag.min <= value <= tag.max):
                    raise mb.PduError(mb.ILLEGAL_DATA_VALUE, f"{tag.name}={value} outside [{tag.min}, {tag.max}]")
            decoded.append((tag, value))
        for tag, value in decoded:
            self._write(tag.source, value)
        self._cache_src = None
        if req.fc == 23:
            return self._read_reply(23, table, req.start, req.count)
        if req.fc == 5:
            return struct.pack(">BHH", 5, req.start, 0xFF00 if req.values[0] else 0)
        if req.fc == 6:
            return struct.pack(">BHH", 6, req.start, req.values[0])
        if req.fc == 22:
            return struct.pack(">BHHH", 22, req.start, *req.values)
        return struct.pack(">BHH", req.fc, req.start, req.count)  # FC15 / FC16

    def _device_identification(self, object_id: int) -> bytes:
        objs = b"".join(bytes([k, len(v.encode())]) + v.encode() for k, v in sorted(self.identity.items()))
        return bytes([43, 0x0E, 0x01, 0x01, 0x00, 0x00, len(self.identity)]) + objs


def encode_image(regmap: RegisterMap, image: dict[str, Any]) -> dict[str, dict[int, int]]:
    """Register words as a device with this map serves them for this process image."""
    out: dict[str, dict[int, int]] = {t: {} for t in regmap.by_addr}
    for tag in regmap.tags:
        value = image.get(tag.source, 0)
        if tag.dtype == "bool":
            out[tag.table][tag.address] = 1 if value else 0
        else:
            for i, w in enumerate(mb.encode_value(float(value), tag.dtype, tag.scale, tag.word_order)):
                out[tag.table][tag.address + i] = w
    return out
