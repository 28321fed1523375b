"""Reference collector for the data-acquisition lab, written from the brief and the datasheet alone.

`--plan FILE` follows the candidate's acquisition plan (the reads and periods make_plan.py decides); `--period S`
(the secure-pipeline lab) makes one block read per Modbus device and one OPC UA Read for both nodes every S seconds.
Every sensor message is forwarded; each reading published to telemetry/<device>/<tag> and stored in SQLite.
Commits at least once a second (a committer task), publishes QoS 1 not retained, timestamps RFC 3339 UTC with
milliseconds (OPC UA: the value's SourceTimestamp, MQTT: the sensor message's own ts).
`--flaw NAME` injects one deliberate mistake: the flawed solutions of this lab are this program plus one flaw.
`--secure` is the secure-pipeline lab's variant: MQTT over TLS and OPC UA SignAndEncrypt with the collector's
issued accounts (from the lab parameters), and data at rest readable by its owner only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import signal
import sqlite3
import ssl
import struct
import sys
from pathlib import Path
from typing import Any

import aiomqtt
from asyncua import Client as UaClient
from pymodbus.client import AsyncModbusTcpClient

MODBUS_STREAMS = {"plc1": ["level", "outflow", "pressure", "pump_starts"], "em1": ["active_power", "energy"]}
UNITS = {
    "level": "m",
    "outflow": "m3/h",
    "pressure": "bar",
    "pump_starts": "1",
    "active_power": "kW",
    "energy": "kWh",
    "Heater.Temperature": "degC",
    "FillingLine.GoodCount": "1",
    "vrms_mm_s": "mm/s",
    "temp_c": "degC",
}
OPCUA_TAGS = ["Heater.Temperature", "FillingLine.GoodCount"]
SENSOR_FIELDS = {"vib-01": "vrms_mm_s", "env-01": "temp_c"}
FLAWS = (
    "word-order",
    "scale",
    "missed-samples",
    "schema-timestamps",
    "over-polling",
    "world-readable-db",
    "retained",
    "commit-at-shutdown",
    "duplicate-sensors",
    "no-milliseconds",
    "opcua-read-time",
    "nan",
    "rounding",
    "topic",
    "fast-period",
    "unit-symbol",
    "storage-ts",
    "locked-db",
    "repr-payload",
    "two-missed",
    "storage-columns",
    "no-opcua",
    "per-tag-reads",
    "unbound-reconnect",
    "unbound-em1",
    "ts-mislabelled",
    "uncertain-quality",
)
NAN_EVERY = 3  # flaw "nan": every 3rd read of PLC-2's temperature is treated as failed (a slow period is 4 s)


def rfc3339(t: dt.datetime, flaw: str | None) -> str:
    if (
        flaw == "ts-mislabelled"
    ):  # UTC digits labelled +08:00: every instant 8 h early (secure-pipeline: not its matter)
        return t.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "+08:00")
    if flaw == "no-milliseconds":  # valid RFC 3339, but whole seconds: the brief asks for milliseconds
        return t.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return t.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_ts(flaw: str | None) -> str:
    if flaw == "schema-timestamps":  # the classic mistake: local wall time without an offset
        return dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return rfc3339(dt.datetime.now(dt.UTC), flaw)


def decode(tag: dict[str, Any], words: list[int], flaw: str | None) -> float:
    order = tag.get("word_order", "ABCD")
    if flaw == "word-order" and tag["type"] == "float32":
        order = "CDAB" if order == "ABCD" else "ABCD"
    if tag["type"] in ("float32", "uint32"):
        hi, lo = (words[0], words[1]) if order == "ABCD" else (words[1], words[0])
        if tag["type"] == "float32":
            value = struct.unpack(">f", struct.pack(">HH", hi, lo))[0]
            if flaw == "word-order" and not math.isfinite(value):
                # swapped words can spell NaN/inf; a real collector would crash or skip here. This flawed one
                # publishes an impossible value instead, so that its failure stays about values, for every candidate.
                return -1.0
            return value
        return ((hi << 16) | lo) / tag.get("scale", 1)
    raw = words[0] - 0x10000 if tag["type"] == "int16" and words[0] & 0x8000 else words[0]
    scale = tag.get("scale", 1)
    if flaw == "scale" and tag["name"] == "level":
        scale = 10  # ignores the datasheet's scale factor
    return raw / scale


class Sink:
    """Publish and store each reading (same JSON, same ts)."""

    def __init__(self, mqtt: aiomqtt.Client, db: sqlite3.Connection, root: str, flaw: str | None = None) -> None:
        self.mqtt, self.db, self.root, self.flaw = mqtt, db, root, flaw
        self.pending = 0

    async def emit(self, device: str, tag: str, value: float, ts: str, source: str, quality: str = "good") -> None:
        if not math.isfinite(value):
            return  # not a reading: JSON cannot carry it and the brief says not to publish what was not read
        if self.flaw == "rounding":  # "two decimals is enough": below the resolution of most streams
            value = round(value, 2)
        unit = "°C" if self.flaw == "unit-symbol" and UNITS[tag] == "degC" else UNITS[tag]
        reading = {"device": device, "tag": tag, "value": value, "unit": unit, "quality": quality, "ts": ts}
        reading["source"] = source
        retain = self.flaw == "retained"  # a new subscriber would get a stale reading as if it were current
        # flaw "repr-payload": Python's repr of the dict ({'device': ...}), which is not JSON
        payload = repr(reading) if self.flaw == "repr-payload" else json.dumps(reading)
        await self.mqtt.publish(self.topic(device, tag), payload.encode(), qos=1, retain=retain)
        stored_ts: str | float = ts
        if self.flaw == "storage-ts":  # "epoch seconds sort better": no longer the published string
            stored_ts = dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        if self.flaw == "storage-columns":  # "unit and source are in the datasheet anyway": not stored
            self.db.execute("INSERT INTO readings VALUES (?, ?, ?, ?, ?)", (device, tag, value, "good", stored_ts))
        else:
            self.db.execute(
                "INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?)",
                (device, tag, value, unit, quality, stored_ts, source),
            )
        self.pending += 1

    def topic(self, device: str, tag: str) -> str:
        if self.flaw == "topic":  # "Heater.Temperature" made two topic levels
            return f"{self.root}/{device}/{tag.replace('.', '/')}"
        return f"{self.root}/{device}/{tag}"

    async def emit_failed_read(self, device: str, tag: str, ts: str, source: str) -> None:
        """Flaw "nan": a failed read published as {"value": NaN, "quality": "bad"} instead of not at all (Python's
        json writes the non-JSON token NaN). Not stored: the column is REAL NOT NULL."""
        reading = {"device": device, "tag": tag, "value": float("nan"), "unit": UNITS[tag], "quality": "bad"}
        reading.update({"ts": ts, "source": source})
        await self.mqtt.publish(self.topic(device, tag), json.dumps(reading).encode(), qos=1)

    def commit(self, final: bool = False) -> None:
        if self.flaw == "commit-at-shutdown" and not final:
            return  # one long transaction: nothing is visible in the database until the collector stops
        if self.pending:
            self.db.commit()
            self.pending = 0


def block_plan(sheet: dict[str, Any], period: float) -> dict[str, Any]:
    """The plan that --period means: one input-register block per Modbus device and both OPC UA nodes, every period."""
    reads = []
    for device, names in MODBUS_STREAMS.items():
        tags = [t for t in sheet[device]["tables"]["input_registers"] if t["name"] in names]
        start = min(t["address"] for t in tags)
        end = max(t["address"] + t["registers"] for t in tags)
        reads.append(
            {"device": device, "table": "input_registers", "address": start, "count": end - start, "period_s": period}
            | {"streams": names}
        )
    return {"modbus_reads": reads, "opcua": {t: {"period_s": period} for t in OPCUA_TAGS}}


async def modbus_clients(sheet: dict[str, Any], devices: list[str], source: str) -> dict[str, AsyncModbusTcpClient]:
    """One connected client per device, from the given source address (FW-1 tells clients apart by it)."""
    clients = {
        d: AsyncModbusTcpClient(sheet[d]["host"], port=sheet[d]["port"], source_address=(source, 0), timeout=2)
        for d in devices
    }
    for c in clients.values():
        await c.connect()
    return clients


async def poll_modbus(
    sheet: dict[str, Any], read: dict[str, Any], client: AsyncModbusTcpClient, flaw: str | None
) -> list[tuple[str, float, str]]:
    """One read of the plan: its registers in one request, decoded into the streams it carries."""
    device, start, count = read["device"], int(read["address"]), int(read["count"])
    tags = {t["name"]: t for t in sheet[device]["tables"][read["table"]] if t["name"] in read["streams"]}
    unit = sheet[device]["unit_id"]
    fn = client.read_input_registers if read["table"] == "input_registers" else client.read_holding_registers
    if flaw in ("over-polling", "per-tag-reads") and device == "plc1":  # one request per tag (not the plan's block)
        out = []
        for name, t in tags.items():
            rr = await fn(t["address"], count=t["registers"], device_id=unit)
            if not rr.isError():
                out.append((name, decode(t, rr.registers, flaw), now_ts(flaw)))
        return out
    rr = await fn(start, count=count, device_id=unit)
    ts = now_ts(flaw)
    if rr.isError():
        return []
    return [
        (n, decode(t, rr.registers[t["address"] - start : t["address"] - start + t["registers"]], flaw), ts)
        for n, t in tags.items()
    ]


async def run(args: argparse.Namespace) -> None:
    sheet = json.loads(Path(os.environ["AIOTLAB_DATASHEET"]).read_text())
    workspace = Path(os.environ.get("AIOTLAB_WORKSPACE", "."))
    flaw = args.flaw
    lab = json.loads(Path(os.environ["AIOTLAB_LAB_PARAMS"]).read_text()) if args.secure else {}
    if args.secure:
        os.umask(0o077)  # the database, its journal and the audit log: owner only
    (workspace / "data").mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(workspace / "data" / "telemetry.db")
    if flaw == "locked-db":  # "faster writes": the connection keeps its lock, no other reader sees a row until exit
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
    if flaw == "world-readable-db":
        os.chmod(workspace / "data", 0o755)
        os.chmod(workspace / "data" / "telemetry.db", 0o644)
    db.execute(
        "CREATE TABLE IF NOT EXISTS readings (device TEXT NOT NULL, tag TEXT NOT NULL, value REAL NOT NULL, "
        + (
            "quality TEXT NOT NULL, ts TEXT NOT NULL)"
            if flaw == "storage-columns"
            else "unit TEXT NOT NULL, quality TEXT NOT NULL, ts TEXT NOT NULL, source TEXT NOT NULL)"
        )
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    ws = sheet["network"]["workstation"]
    mb = await modbus_clients(sheet, list(MODBUS_STREAMS), ws)
    if flaw == "unbound-em1":  # "only PLC-1's load is counted": EM-1's client forgets the source address
        mb["em1"].close()
        mb["em1"] = AsyncModbusTcpClient(sheet["em1"]["host"], port=sheet["em1"]["port"], timeout=2)
        await mb["em1"].connect()
    ua = UaClient(sheet["plc2"]["endpoint"], timeout=5)
    if args.secure:
        ua.application_uri = "urn:aiotlab:collector"
        ua.set_user("collector")
        ua.set_password(str(lab["ua_accounts"]["collector"]))
        pki = workspace / "pki"
        await ua.set_security_string(
            f"Basic256Sha256,SignAndEncrypt,{pki / 'collector-ua.der'},{pki / 'collector-ua.pem'}"
        )
    await ua.connect()
    ns = await ua.get_namespace_index(sheet["plc2"]["namespace_uri"])
    plan = json.loads((workspace / args.plan).read_text()) if args.plan else block_plan(sheet, args.period)
    m = sheet["mqtt"]
    secure: dict[str, Any] = {}
    if args.secure:
        tls = ssl.create_default_context(cafile=str(workspace / "pki" / "ca.crt"))
        secure = {"tls_context": tls, "username": "collector", "password": str(lab["mqtt_accounts"]["collector"])}
    async with aiomqtt.Client(
        m["host"],
        int(lab["mqtt_tls_port"]) if args.secure else m["port"],
        identifier=f"collector-{os.environ.get('AIOTLAB_CANDIDATE', 'x')}",
        bind_address=ws,
        **secure,
    ) as mqtt:
        sink = Sink(mqtt, db, args.topic_root, flaw)
        for node in SENSOR_FIELDS:
            await mqtt.subscribe(f"{m['topic_root']}/{node}/data", qos=1)

        async def sensors() -> None:
            n = 0
            async for msg in mqtt.messages:
                try:
                    body = json.loads(bytes(msg.payload))
                    body["node"], body["ts"]  # noqa: B018 - a reading has both
                except (ValueError, KeyError, TypeError):
                    continue  # not a sensor reading: ignore, never crash
                n += 1
                if flaw == "missed-samples" and n % 3 == 0:
                    continue
                node = body["node"]
                ts = body["ts"]
                if flaw == "schema-timestamps":
                    ts = now_ts(flaw)
                elif flaw == "no-milliseconds":  # re-formatted by the collector's one formatter
                    ts = rfc3339(dt.datetime.fromisoformat(ts.replace("Z", "+00:00")), flaw)
                await sink.emit(node, SENSOR_FIELDS[node], body[SENSOR_FIELDS[node]], ts, "mqtt")
                if flaw == "duplicate-sensors":  # e.g. subscribed twice (data topic and a wildcard): sent twice
                    await sink.emit(node, SENSOR_FIELDS[node], body[SENSOR_FIELDS[node]], ts, "mqtt")

        plc1_block = next(r for r in plan["modbus_reads"] if r["device"] == "plc1")

        async def hammer() -> None:  # over-polling: keeps PLC-1 busy between periods, on a second connection
            extra = AsyncModbusTcpClient(
                sheet["plc1"]["host"], port=sheet["plc1"]["port"], source_address=(ws, 0), timeout=2
            )
            await extra.connect()
            while True:
                await poll_modbus(sheet, plc1_block, extra, flaw)
                await asyncio.sleep(0.02)

        locks = {d: asyncio.Lock() for d in mb}  # one request at a time per connection

        async def modbus_read(cycle: int, read: dict[str, Any], skip: bool) -> None:
            if flaw == "unbound-reconnect" and read["device"] == "plc1" and cycle % 8 == 0:
                # "refresh the connection now and then": the new socket forgets the source address
                fresh = AsyncModbusTcpClient(sheet["plc1"]["host"], port=sheet["plc1"]["port"], timeout=2)
                await fresh.connect()
                readings = await poll_modbus(sheet, read, fresh, flaw)
                fresh.close()
            else:
                async with locks[read["device"]]:
                    readings = await poll_modbus(sheet, read, mb[read["device"]], flaw)
            if not skip:
                for name, value, ts in readings:
                    await sink.emit(read["device"], name, value, ts, "modbus")

        last_source_ts: dict[str, str] = {}

        async def opcua_read(cycle: int, tags: list[str], skip: bool) -> None:
            read_at = now_ts(flaw)
            values = await ua.read_attributes([ua.get_node(f"ns={ns};s=Plant.{t}") for t in tags])
            if skip or flaw == "no-opcua":  # the flaw: its OPC UA streams are never published
                return
            for tag, dv in zip(tags, values, strict=True):
                if flaw in ("schema-timestamps", "opcua-read-time"):  # the read time, not SourceTimestamp
                    ts = read_at
                else:
                    ts = rfc3339(dv.SourceTimestamp.replace(tzinfo=dt.UTC), flaw)
                if flaw == "nan" and tag == "Heater.Temperature" and cycle % NAN_EVERY == 0:
                    await sink.emit_failed_read("plc2", tag, ts, "opcua")
                    continue
                # flaw "uncertain-quality": a value whose SourceTimestamp did not change (and every 5th read, which the
                # collector deems slow) is called uncertain, although PLC-2 says Good (the brief: uncertain only when
                # the source marked it so)
                stale = flaw == "uncertain-quality" and (last_source_ts.get(tag) == ts or cycle % 5 == 0)
                last_source_ts[tag] = ts
                await sink.emit("plc2", tag, float(dv.Value.Value), ts, "opcua", "uncertain" if stale else "good")

        async def every(period: float, action: Any) -> None:
            """One read of the plan, repeated at its own period on a fixed grid (no drift)."""
            cycle = 0
            next_at = loop.time()
            while True:
                cycle += 1
                skip = flaw == "missed-samples" and cycle % 4 == 0
                # flaw "two-missed": two polls skipped, about 15 s and 25 s after the start (inside the window):
                # 2 of 30 slots at 1 s (6.7 %), 2 of 15 at 2 s
                skip = skip or (flaw == "two-missed" and cycle in {round(15 / period), round(25 / period)})
                try:
                    await action(cycle, skip)
                except Exception as exc:  # noqa: BLE001 - a failed read is not published (the brief); the next one runs
                    print(f"read failed ({type(exc).__name__}: {exc}); not published", file=sys.stderr, flush=True)
                sink.commit()
                next_at += period / 2 if flaw == "fast-period" else period
                await asyncio.sleep(max(0.0, next_at - loop.time()))

        schedules = [every(float(r["period_s"]), lambda c, k, r=r: modbus_read(c, r, k)) for r in plan["modbus_reads"]]
        by_period: dict[float, list[str]] = {}
        for tag, v in plan["opcua"].items():
            by_period.setdefault(float(v["period_s"]), []).append(tag)
        schedules += [every(p, lambda c, k, tags=tags: opcua_read(c, tags, k)) for p, tags in by_period.items()]

        async def polled() -> None:
            await asyncio.gather(*schedules)

        async def committer() -> None:  # sensor messages arrive between polls: commit at least once a second
            while True:
                await asyncio.sleep(0.5)
                sink.commit()

        tasks = [asyncio.create_task(sensors()), asyncio.create_task(polled()), asyncio.create_task(committer())]
        if flaw == "over-polling":
            tasks.append(asyncio.create_task(hammer()))
        await stop.wait()
        for t in tasks:
            t.cancel()
        sink.commit(final=True)
    await ua.disconnect()
    for c in mb.values():
        c.close()
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--plan", help="the acquisition plan (a path in the workspace): its reads and periods")
    how.add_argument("--period", type=float, help="every stream at this period (one block read per device)")
    parser.add_argument("--topic-root", default="telemetry")
    parser.add_argument("--flaw", choices=FLAWS)
    parser.add_argument("--secure", action="store_true", help="TLS, SignAndEncrypt, issued accounts, private data")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
