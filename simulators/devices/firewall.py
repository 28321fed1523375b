"""FW-1: a Modbus-aware industrial firewall, the only conduit between the control zone and the field zone.

Listens on each conduit's public address, inspects every request (source, unit, function code, register
ranges), forwards allowed requests to the field device from its own field-side address, and logs every
connection and decision as a JSON line. Rules come from its config file and are reloaded on demand.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..protocols import modbus as mb
from ..yamlconf import ConfigError, LineDict, load_yaml

log = logging.getLogger(__name__)

ALL_FCS = frozenset(range(1, 128))
READ_ONLY_FCS = frozenset({1, 2, 3, 4})
TABLE_ALIASES = {
    "coils": mb.COILS,
    "discrete_inputs": mb.DISCRETE_INPUTS,
    "input_registers": mb.INPUT_REGISTERS,
    "holding_registers": mb.HOLDING_REGISTERS,
    "holding": mb.HOLDING_REGISTERS,
    "input": mb.INPUT_REGISTERS,
}
UPSTREAM_TIMEOUT_S = 3.0
IDLE_TIMEOUT_S = 120.0
MAX_CONNECTIONS = 64


@dataclass
class Rule:
    name: str
    sources: list[ipaddress.IPv4Network]
    targets: set[str] | None
    function_codes: frozenset[int]
    ranges: list[tuple[str, int, int]] | None
    write_ranges: list[tuple[str, int, int]] | None
    action: str

    def matches_source(self, src: str, target: str) -> bool:
        ip = ipaddress.ip_address(src)
        return any(ip in net for net in self.sources) and (self.targets is None or target in self.targets)


@dataclass
class Policy:
    default_action: str = "allow"
    deny_response: str = "exception"  # exception | drop
    log_allowed: bool = True
    rules: list[Rule] = field(default_factory=list)

    def decide(self, src: str, target: str, req: mb.Request | None) -> tuple[str, str, int]:
        """(allow|deny, rule name, exception code to answer a denial with)."""
        for rule in self.rules:
            if not rule.matches_source(src, target):
                continue
            if req is None:  # connection-level decision: any rule for this source admits the connection
                return rule.action, rule.name, 0
            if req.fc not in rule.function_codes:
                continue
            if rule.ranges is not None and not _within(mb.touched_ranges(req), rule.ranges):
                continue
            if rule.write_ranges is not None and req.write and not _within(mb.written_ranges(req), rule.write_ranges):
                continue
            return rule.action, rule.name, 0
        if req is None:
            return self.default_action, "default", 0
        code = mb.ILLEGAL_FUNCTION if self.default_action == "deny" else 0
        return self.default_action, "default", code


def _within(touched: list[tuple[str, int, int]], allowed: list[tuple[str, int, int]]) -> bool:
    return all(any(t == a and lo >= alo and hi <= ahi for a, alo, ahi in allowed) for t, lo, hi in touched)


def load_policy(path: Path) -> Policy:
    """Parse FW-1's rule file; every mistake is reported with file and line."""
    doc = load_yaml(path)
    if doc is None:
        doc = LineDict()
    if not isinstance(doc, dict):
        raise ConfigError(path, "top level must be a mapping")

    def line(m: Any, k: str) -> int | None:
        return m.line_of(k) if isinstance(m, LineDict) else None

    unknown = set(doc) - {"default_action", "deny_response", "log_allowed", "rules"}
    if unknown:
        k = sorted(unknown)[0]
        raise ConfigError(path, f"unknown key '{k}'", line(doc, k))
    policy = Policy(
        default_action=str(doc.get("default_action", "allow")),
        deny_response=str(doc.get("deny_response", "exception")),
        log_allowed=bool(doc.get("log_allowed", True)),
    )
    if policy.default_action not in ("allow", "deny"):
        raise ConfigError(path, "default_action must be allow or deny", line(doc, "default_action"))
    if policy.deny_response not in ("exception", "drop"):
        raise ConfigError(path, "deny_response must be exception or drop", line(doc, "deny_response"))
    rules = doc.get("rules") or []
    if not isinstance(rules, list):
        raise ConfigError(path, "rules must be a list", line(doc, "rules"))
    for i, r in enumerate(rules):
        if not isinstance(r, dict):
            raise ConfigError(path, f"rule {i + 1} must be a mapping", line(doc, "rules"))
        known = {"name", "sources", "targets", "function_codes", "read_only", "ranges", "write_ranges", "action"}
        bad = set(r) - known
        if bad:
            k = sorted(bad)[0]
            raise ConfigError(path, f"rule {i + 1}: unknown key '{k}' (expected {sorted(known)})", line(r, k))
        try:
            sources = [ipaddress.ip_network(str(s), strict=False) for s in r.get("sources", ["0.0.0.0/0"])]
        except ValueError as exc:
            raise ConfigError(path, f"rule {i + 1}: bad source: {exc}", line(r, "sources")) from None
        targets = r.get("targets")
        if targets is not None and (not isinstance(targets, list) or not targets):
            raise ConfigError(path, f"rule {i + 1}: targets must be a non-empty list", line(r, "targets"))
        fcs = r.get("function_codes")
        if r.get("read_only"):
            fcs_set = READ_ONLY_FCS if fcs is None else frozenset(int(f) for f in fcs) & READ_ONLY_FCS
        elif fcs is None:
            fcs_set = ALL_FCS
        else:
            if not isinstance(fcs, list) or not all(isinstance(f, int) and 1 <= f <= 127 for f in fcs):
                raise ConfigError(
                    path, f"rule {i + 1}: function_codes must be integers 1..127", line(r, "function_codes")
                )
            fcs_set = frozenset(fcs)
        action = str(r.get("action", "allow"))
        if action not in ("allow", "deny"):
            raise ConfigError(path, f"rule {i + 1}: action must be allow or deny", line(r, "action"))
        policy.rules.append(
            Rule(
                name=str(r.get("name", f"rule-{i + 1}")),
                sources=sources,
                targets=set(map(str, targets)) if targets else None,
                function_codes=fcs_set,
                ranges=_ranges(r.get("ranges"), path, i, line(r, "ranges")),
                write_ranges=_ranges(r.get("write_ranges"), path, i, line(r, "write_ranges")),
                action=action,
            )
        )
    return policy


def _ranges(spec: Any, path: Path, i: int, ln: int | None) -> list[tuple[str, int, int]] | None:
    if spec is None:
        return None
    if not isinstance(spec, list):
        raise ConfigError(path, f"rule {i + 1}: ranges must be a list", ln)
    out = []
    for item in spec:
        try:
            table = TABLE_ALIASES[str(item["table"])]
            out.append((table, int(item["start"]), int(item["end"])))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(
                path, f"rule {i + 1}: each range needs table ({'/'.join(TABLE_ALIASES)}), start, end", ln
            ) from None
    return out


class JsonLineLog:
    """FW-1's decision log: one JSON object per line, size-bounded with one rotation.

    Denials and connection events are flushed at once (they are the evidence an assessor or an IDS reads);
    allowed requests are buffered and flushed within FLUSH_S, because flushing every allowed request cost more
    CPU than the inspection itself (bench/bench_modbus.py).
    """

    FLUSH_S = 0.25
    MAX_BYTES = 50 * 1024 * 1024

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = path.open("a", encoding="utf-8", buffering=64 * 1024)
        self._size = path.stat().st_size
        self._last_flush = time.monotonic()
        self._flusher: asyncio.Task[None] | None = None

    def write(self, urgent: bool = True, **record: Any) -> None:
        line = json.dumps({"ts": time.time(), **record}, separators=(",", ":")) + "\n"
        self._fh.write(line)
        self._size += len(line)
        if self._size > self.MAX_BYTES:
            self._rotate()
        elif urgent or time.monotonic() - self._last_flush > self.FLUSH_S:
            self.flush()

    def flush(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
        self._last_flush = time.monotonic()

    def start_flusher(self) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(self.FLUSH_S)
                self.flush()

        self._flusher = asyncio.create_task(loop())

    def _rotate(self) -> None:
        self._fh.close()
        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        self._fh = self.path.open("a", encoding="utf-8", buffering=64 * 1024)
        self._size = 0

    def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        if not self._fh.closed:
            self._fh.close()


@dataclass
class Conduit:
    name: str  # target device (plc1 / em1)
    listen: tuple[str, int]
    upstream: tuple[str, int]


class Firewall:
    def __init__(self, config_path: Path, log_path: Path, field_source: str, conduits: list[Conduit]) -> None:
        self.config_path = config_path
        self.policy = load_policy(config_path)
        self.log = JsonLineLog(log_path)
        self.field_source = field_source
        self.conduits = conduits
        self._servers: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self.stats = {"connections": 0, "allowed": 0, "denied": 0, "malformed": 0}
        self.requests_by_source: dict[str, dict[str, int]] = {}  # src -> target -> requests forwarded

    def reload(self, path: Path | None = None) -> None:
        """Apply an edited rule file; on a bad file the old rules stay in force and the error is raised."""
        self.policy = load_policy(path or self.config_path)
        self.config_path = path or self.config_path
        self.log.write(event="reload", rules=len(self.policy.rules), default_action=self.policy.default_action)

    async def start(self) -> None:
        self.log.start_flusher()
        for c in self.conduits:
            server = await asyncio.start_server(
                lambda r, w, c=c: self._serve(r, w, c), c.listen[0], c.listen[1], reuse_address=True, backlog=128
            )
            self._servers.append(server)

    async def stop(self) -> None:
        for s in self._servers:
            s.close()
        for w in list(self._writers):
            w.close()
        self._servers.clear()
        self.log.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conduit: Conduit) -> None:
        peer = writer.get_extra_info("peername")
        src = peer[0] if peer else "?"
        action, rule, _ = self.policy.decide(src, conduit.name, None)
        self.log.write(
            event="connect", src=src, sport=peer[1] if peer else None, target=conduit.name, action=action, rule=rule
        )
        if action != "allow" or len(self._writers) >= MAX_CONNECTIONS:
            writer.close()
            return
        self._writers.add(writer)
        self.stats["connections"] += 1
        up_reader = up_writer = None
        try:
            while True:
                try:
                    adu = await mb.read_adu(reader, IDLE_TIMEOUT_S)
                except (mb.FrameError, TimeoutError) as exc:
                    self.stats["malformed"] += 1
                    self.log.write(
                        event="malformed",
                        src=src,
                        target=conduit.name,
                        reason=str(exc) or "idle timeout",
                        action="close",
                    )
                    return
                if adu is None:
                    return
                try:
                    req: mb.Request | None = mb.parse_request(adu.pdu)
                except mb.PduError:
                    req = None  # let the device answer malformed PDUs per protocol, if the rules allow the FC
                probe = req or mb.Request(adu.fc, None, 0, 0, False)
                action, rule, code = self.policy.decide(src, conduit.name, probe)
                record = {
                    "event": "request",
                    "src": src,
                    "target": conduit.name,
                    "unit": adu.unit,
                    "fc": adu.fc,
                    "table": probe.table,
                    "start": probe.start,
                    "count": probe.count,
                    "write": probe.write,
                    "action": action,
                    "rule": rule,
                }
                if action != "allow":
                    self.stats["denied"] += 1
                    self.log.write(**record)
                    if self.policy.deny_response == "drop":
                        return
                    writer.write(
                        mb.encode_adu(adu.tid, adu.unit, mb.exception_pdu(adu.fc, code or mb.ILLEGAL_FUNCTION))
                    )
                    await writer.drain()
                    continue
                self.stats["allowed"] += 1
                per_target = self.requests_by_source.setdefault(src, {})
                per_target[conduit.name] = per_target.get(conduit.name, 0) + 1
                if self.policy.log_allowed:
                    self.log.write(urgent=False, **record)
                if up_writer is None:
                    try:
                        up_reader, up_writer = await asyncio.wait_for(
                            asyncio.open_connection(*conduit.upstream, local_addr=(self.field_source, 0)),
                            UPSTREAM_TIMEOUT_S,
                        )
                    except (OSError, TimeoutError):
                        writer.write(
                            mb.encode_adu(adu.tid, adu.unit, mb.exception_pdu(adu.fc, mb.GATEWAY_PATH_UNAVAILABLE))
                        )
                        await writer.drain()
                        continue
                reply = await self._forward(up_reader, up_writer, adu)
                if reply is None:
                    if up_writer is not None:
                        up_writer.close()
                    up_reader = up_writer = None
                    reply = mb.encode_adu(adu.tid, adu.unit, mb.exception_pdu(adu.fc, mb.GATEWAY_TARGET_NO_RESPONSE))
                writer.write(reply)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            if up_writer is not None:
                up_writer.close()
            self.log.write(event="close", src=src, target=conduit.name)

    @staticmethod
    async def _forward(up_reader: Any, up_writer: Any, adu: mb.Adu) -> bytes | None:
        try:
            up_writer.write(mb.encode_adu(adu.tid, adu.unit, adu.pdu))
            await up_writer.drain()
            reply = await mb.read_adu(up_reader, UPSTREAM_TIMEOUT_S)
        except (mb.FrameError, TimeoutError, ConnectionError, OSError):
            return None
        if reply is None:
            return None
        return mb.encode_adu(reply.tid, reply.unit, reply.pdu)
