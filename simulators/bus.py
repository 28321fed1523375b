"""The plant's backplane when its devices run as separate processes (one container each).

The process model, its clock and the ground truth stay in one place, the core; a device process sees the process
through a mirror the core refreshes every tick, sends back what it does (operator writes, method calls, events,
sensor emissions, its counters) and obeys the core's device commands (reload a config). The wires between a PLC
and its tank are not an IP network a candidate can reach: the bus runs on the plant's internal networks and every
connection must present the plant's control token.

Framing: one JSON object per line, at most MAX_LINE bytes; a peer that sends anything else is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

BUS_PORT = 9901
MAX_LINE = 1 << 20
HELLO_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 60.0  # a device command may restart an OPC UA server that first makes its certificate
STATS_PERIOD_S = 1.0


def _line(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg, separators=(",", ":"), default=str).encode() + b"\n"


async def _read(reader: asyncio.StreamReader, timeout: float | None = None) -> dict[str, Any] | None:
    """The next message, or None at end of stream. Raises ValueError on a frame that is not a JSON object."""
    try:
        raw = await asyncio.wait_for(reader.readline(), timeout)
    except (asyncio.LimitOverrunError, asyncio.IncompleteReadError) as exc:
        raise ValueError(f"bus frame too long or cut: {exc}") from None
    if not raw:
        return None
    msg = json.loads(raw)
    if not isinstance(msg, dict):
        raise ValueError("bus frame is not a JSON object")
    return msg


class _Requests:
    """Request/response pairing over one line stream."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}

    async def ask(self, writer: asyncio.StreamWriter, msg: dict[str, Any], timeout: float) -> Any:
        rid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        try:
            writer.write(_line({**msg, "id": rid}))
            await writer.drain()
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._waiting.pop(rid, None)

    def answer(self, msg: dict[str, Any]) -> None:
        fut = self._waiting.get(int(msg.get("reply", -1)))
        if fut is None or fut.done():
            return
        if "error" in msg:
            fut.set_exception(BusError(str(msg["error"])))
        else:
            fut.set_result(msg.get("result"))

    def fail_all(self, why: str) -> None:
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(BusError(why))


class BusError(Exception):
    pass


# -- the core's side -------------------------------------------------------------------------------------------
class BusServer:
    """Serves the device processes of one plant. `on_message(role, msg)` applies what they send; `call(method)`
    answers their OPC UA method calls."""

    def __init__(
        self,
        host: str,
        port: int,
        token: str,
        on_message: Callable[[str, dict[str, Any]], None],
        call: Callable[[str], bool],
    ) -> None:
        self.host, self.port, self.token = host, port, token
        self._on_message, self._call = on_message, call
        self.peers: dict[str, asyncio.StreamWriter] = {}
        self.stats: dict[str, dict[str, Any]] = {}  # role -> its latest counters
        self.seen: dict[str, float] = {}  # role -> when it last said anything
        self.ready: set[str] = set()  # roles whose device serves (connected first, then started)
        self._requests = _Requests()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True, limit=MAX_LINE)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self.peers.values()):
            w.close()
        self._requests.fail_all("plant stopping")
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    def broadcast(self, snapshot: dict[str, Any]) -> None:
        """Push the process image to every device process (a slow peer is dropped, never waited for)."""
        data = _line({"snap": snapshot})
        for role, w in list(self.peers.items()):
            transport = w.transport
            if transport.is_closing() or transport.get_write_buffer_size() > 4 * MAX_LINE:
                log.warning("bus: dropping %s (not reading its snapshots)", role)
                w.close()
                self.peers.pop(role, None)
                continue
            w.write(data)

    async def command(self, role: str, cmd: dict[str, Any], timeout: float = REQUEST_TIMEOUT_S) -> Any:
        w = self.peers.get(role)
        if w is None:
            raise BusError(f"{role} is not connected to the plant core")
        return await self._requests.ask(w, {"cmd": cmd}, timeout)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        role = None
        try:
            hello = await _read(reader, HELLO_TIMEOUT_S)
            if (
                not hello
                or not isinstance(hello.get("role"), str)
                or not hmac.compare_digest(str(hello.get("token", "")), self.token)
            ):
                writer.write(_line({"error": "bad hello (role and the plant's control token expected)"}))
                return
            role = hello["role"]
            old = self.peers.pop(role, None)
            if old is not None:
                old.close()
            self.peers[role] = writer
            self._on_message(role, {"op": "event", "kind": "bus_connect", "detail": {"role": role}})
            writer.write(_line({"welcome": role}))
            while (msg := await _read(reader)) is not None:
                self.seen[role] = time.time()
                self._handle(role, msg, writer)
        except (ValueError, TimeoutError, ConnectionError, OSError) as exc:
            log.warning("bus: peer %s dropped: %s", role or "?", exc)
        finally:
            if role is not None and self.peers.get(role) is writer:
                self.peers.pop(role, None)
                self.ready.discard(role)
                self._on_message(role, {"op": "event", "kind": "bus_disconnect", "detail": {"role": role}})
            writer.close()

    def _handle(self, role: str, msg: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        if "reply" in msg:
            self._requests.answer(msg)
        elif msg.get("op") == "ready":
            self.ready.add(role)
        elif msg.get("op") == "stats":
            self.stats[role] = msg.get("stats") or {}
        elif msg.get("op") == "call":
            try:
                reply: dict[str, Any] = {"reply": msg.get("id"), "result": bool(self._call(str(msg.get("method"))))}
            except Exception as exc:  # noqa: BLE001 - an unknown method is the caller's error, not the core's
                reply = {"reply": msg.get("id"), "error": repr(exc)}
            writer.write(_line(reply))
        else:
            try:
                self._on_message(role, msg)
            except Exception as exc:  # noqa: BLE001 - one bad message must not drop the device
                log.warning("bus: %s sent %r: %r", role, msg.get("op"), exc)


# -- a device process's side -----------------------------------------------------------------------------------
class FaultsMirror:
    def __init__(self) -> None:
        self.active: dict[str, tuple[bool, float]] = {}

    def device_fault(self, device: str, t: float) -> tuple[bool, float]:
        return self.active.get(device, (False, 0.0))


class ModelMirror:
    """What a device process sees of the process model: the core's latest snapshot."""

    def __init__(self) -> None:
        self.t = 0.0
        self.values: dict[str, Any] = {}
        self.plc1_image: dict[str, Any] = {}
        self.faults = FaultsMirror()
        self.updated = asyncio.Event()

    def apply(self, snap: dict[str, Any]) -> None:
        self.t = float(snap.get("t", self.t))
        self.values = snap.get("values") or self.values
        self.plc1_image = snap.get("plc1_image") or self.plc1_image
        self.faults.active = {k: (bool(v[0]), float(v[1])) for k, v in (snap.get("faults") or {}).items()}
        self.updated.set()


class TruthRelay:
    """The ground-truth recorder's interface for a device process: everything goes to the core, which records."""

    path = None

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        self._send = send

    def emission(self, node: str, seq: int, t: float, topic: str, payload: str) -> None:
        self._send({"op": "emission", "args": [node, seq, t, topic, payload]})

    def event(self, t: float, kind: str, **detail: Any) -> None:
        self._send({"op": "event", "t": t, "kind": kind, "detail": detail})

    def set_meta(self, **items: Any) -> None:
        pass

    def sample(self, t: float, values: dict[str, Any]) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class BusLink:
    """A device process's connection to its plant core."""

    def __init__(self, host: str, port: int, role: str, token: str) -> None:
        self.host, self.port, self.role, self.token = host, port, role, token
        self.mirror = ModelMirror()
        self.truth = TruthRelay(self.send)
        self.dropped = 0
        self.on_command: Callable[[dict[str, Any]], Awaitable[Any]] | None = None
        self.stats_source: Callable[[], dict[str, Any]] = dict
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None
        self._requests = _Requests()
        self._tasks: list[asyncio.Task[Any]] = []
        self.lost = asyncio.Event()

    async def connect(self, timeout: float = 60.0) -> None:
        """Connect (retrying while the core starts) and wait for the first process image."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self._reader, self._writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port, limit=MAX_LINE), 3.0
                )
                self._writer.write(_line({"role": self.role, "token": self.token}))
                await self._writer.drain()
                first = await _read(self._reader, HELLO_TIMEOUT_S)
                if not first or "welcome" not in first:
                    raise BusError(f"core refused {self.role}: {first and first.get('error')}")
                break
            except (OSError, TimeoutError) as exc:
                last = exc
                await asyncio.sleep(0.5)
        else:
            raise BusError(f"no plant core at {self.host}:{self.port} after {timeout:.0f} s: {last}")
        self._tasks = [asyncio.create_task(self._receive()), asyncio.create_task(self._push_stats())]
        await asyncio.wait_for(self.mirror.updated.wait(), max(1.0, deadline - time.monotonic()))

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._writer is not None:
            self._writer.close()

    def send(self, msg: dict[str, Any]) -> None:
        w = self._writer
        if w is None or w.transport.is_closing():
            self.dropped += 1
            return
        w.write(_line(msg))

    def write(self, tag: str, value: Any, via: str) -> None:
        self.send({"op": "write", "tag": tag, "value": value, "via": via})

    async def call(self, method: str) -> bool:
        if self._writer is None:
            raise BusError("not connected")
        return bool(await self._requests.ask(self._writer, {"op": "call", "method": method}, 5.0))

    async def _receive(self) -> None:
        assert self._reader is not None
        try:
            while (msg := await _read(self._reader)) is not None:
                if "snap" in msg:
                    self.mirror.apply(msg["snap"])
                elif "reply" in msg:
                    self._requests.answer(msg)
                elif "cmd" in msg:
                    asyncio.create_task(self._run_command(msg))
        except (ValueError, ConnectionError, OSError) as exc:
            log.warning("bus: lost the core: %s", exc)
        finally:
            self._requests.fail_all("lost the plant core")
            self.lost.set()

    async def _run_command(self, msg: dict[str, Any]) -> None:
        try:
            if self.on_command is None:
                raise BusError(f"{self.role} takes no commands")
            reply: dict[str, Any] = {"reply": msg.get("id"), "result": await self.on_command(msg["cmd"])}
        except Exception as exc:  # noqa: BLE001 - the error goes back to whoever asked (the control plane)
            reply = {"reply": msg.get("id"), "error": f"{type(exc).__name__}: {exc}"}
        self.send(reply)

    async def _push_stats(self) -> None:
        while True:
            try:
                self.send({"op": "stats", "stats": self.stats_source()})
            except Exception as exc:  # noqa: BLE001 - counters are best effort
                log.warning("bus: stats: %r", exc)
            await asyncio.sleep(STATS_PERIOD_S)
