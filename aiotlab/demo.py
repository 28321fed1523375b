"""`aiotlab demo`: a plant up, a reference acquisition of every endpoint, each reading checked against truth.

Until the grader lands (issue 3) this is the main job: it shows the plant end to end from a candidate's seat
(the workstation address, the datasheet) and from the grader's (recorded ground truth), and writes the evidence.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import aiomqtt
from asyncua import Client
from pymodbus.client import AsyncModbusTcpClient
from rich.console import Console
from rich.table import Table

from aiotlab.simulators import launch
from aiotlab.simulators.datasheet import build as build_datasheet
from aiotlab.simulators.protocols.modbus import decode_value
from aiotlab.simulators.runtime import Plant
from aiotlab.simulators.truth import TruthReader

CANDIDATE = "demo"
SEED = 2026


def _match(reader: TruthReader, tag: str, value: float, t0: float, t1: float, tol: float) -> tuple[bool, float]:
    """Does value equal the truth of tag at some tick in [t0, t1] within tol? Returns (ok, smallest error)."""
    series = reader.series([tag], t0, t1)
    errors = [abs(value - v) for v in series[tag]]
    best = min(errors) if errors else float("inf")
    return best <= tol, best


async def acquire_modbus(plant: Plant, sheet: dict[str, Any], device: str) -> list[dict[str, Any]]:
    d = sheet[device]
    ws = sheet["network"]["workstation"]
    client = AsyncModbusTcpClient(d["host"], port=d["port"], source_address=(ws, 0), timeout=3, retries=0)
    await client.connect()
    out = []
    try:
        for table, tags in d["tables"].items():
            if table in ("coils", "discrete_inputs"):
                continue
            start = tags[0]["address"]
            count = tags[-1]["address"] + tags[-1]["registers"] - start
            fn = client.read_input_registers if table == "input_registers" else client.read_holding_registers
            t0 = time.time() - 0.5  # the image is at most one scan old
            rr = await fn(start, count=count, device_id=d["unit_id"])
            t1 = time.time() + 0.1
            if rr.isError():
                out.append({"device": device, "table": table, "error": str(rr)})
                continue
            for tag in tags:
                off = tag["address"] - start
                words = rr.registers[off : off + tag["registers"]]
                value = decode_value(words, tag["type"], float(tag.get("scale", 1)), tag.get("word_order", "ABCD"))
                tol = 0.5 / float(tag.get("scale", 1)) + 1e-9 if tag["type"] != "float32" else abs(value) * 1e-6 + 1e-6
                out.append({"device": device, "tag": tag["name"], "value": value, "t0": t0, "t1": t1, "tol": tol})
    finally:
        client.close()
    return out


async def acquire_opcua(sheet: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    async with Client(sheet["plc2"]["endpoint"], timeout=5) as c:
        ns = await c.get_namespace_index(sheet["plc2"]["namespace_uri"])
        for n in sheet["plc2"]["nodes"]:
            dv = await c.get_node(f"ns={ns};s={n['node_id']}").read_data_value()
            ts = dv.SourceTimestamp.replace(tzinfo=dt.UTC).timestamp()
            out.append(
                {
                    "device": "plc2",
                    "tag": n["node_id"],
                    "value": float(dv.Value.Value),
                    "t0": ts - 0.05,
                    "t1": ts + 0.05,
                    "tol": 1e-9,
                }
            )
    return out


async def acquire_mqtt(sheet: dict[str, Any], seconds: float) -> list[dict[str, Any]]:
    m = sheet["mqtt"]
    out = []
    async with aiomqtt.Client(
        m["host"], m["port"], identifier="demo-collector", bind_address=sheet["network"]["workstation"]
    ) as c:
        await c.subscribe(f"{m['topic_root']}/+/data", qos=1)
        try:
            async with asyncio.timeout(seconds):
                async for msg in c.messages:
                    out.append({"topic": str(msg.topic), "payload": bytes(msg.payload).decode(), "rx": time.time()})
        except TimeoutError:
            pass
    return out


SOURCES = {
    "plc2": {
        "Plant.Heater.Temperature": "heater.temp_c",
        "Plant.Heater.Setpoint": "heater.setpoint_c",
        "Plant.Heater.HeaterPower": "heater.power_kw",
        "Plant.Heater.Enabled": "heater.enabled",
        "Plant.FillingLine.State": "conveyor.state",
        "Plant.FillingLine.GoodCount": "conveyor.good_count",
        "Plant.FillingLine.RejectCount": "conveyor.reject_count",
        "Plant.FillingLine.CycleTime": "conveyor.cycle_time_s",
        "Plant.FillingLine.IdealCycleTime": "conveyor.ideal_cycle_s",
        "Plant.FillingLine.RunTime": "conveyor.run_time_s",
        "Plant.FillingLine.PlannedTime": "conveyor.planned_time_s",
        "Plant.FillingLine.FaultCode": "conveyor.fault_code",
    },
}


async def run_demo(out_dir: Path, seconds: float, console: Console) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    ready = asyncio.Event()
    stop = asyncio.Event()
    holder: dict[str, Plant] = {}

    def on_ready(plant: Plant) -> None:
        holder["plant"] = plant
        ready.set()

    console.print(f"[bold]aiotlab demo[/]: starting the plant of candidate [cyan]{CANDIDATE}[/] (seed {SEED})")
    t_start = time.monotonic()
    server = asyncio.create_task(launch.serve(CANDIDATE, SEED, on_ready=on_ready, stop_event=stop))
    done, _ = await asyncio.wait({server, asyncio.create_task(ready.wait())}, return_when=asyncio.FIRST_COMPLETED)
    if server in done:
        server.result()  # raises the start error
    plant = holder["plant"]
    cold_start = time.monotonic() - t_start
    console.print(
        f"plant up in {cold_start:.2f} s; acquiring every endpoint for {seconds:.0f} s from the workstation address"
    )
    try:
        sheet = build_datasheet(CANDIDATE)
        (out_dir / "datasheet.json").write_text(json.dumps(sheet, indent=2, ensure_ascii=False))
        mqtt_task = asyncio.create_task(acquire_mqtt(sheet, seconds))
        readings: list[dict[str, Any]] = []
        while not mqtt_task.done():
            readings += await acquire_modbus(plant, sheet, "plc1")
            readings += await acquire_modbus(plant, sheet, "em1")
            readings += await acquire_opcua(sheet)
            await asyncio.sleep(1.0)
        messages = mqtt_task.result()
        plant.truth.flush()
        await asyncio.sleep(0.2)
        plant.truth.flush()
        results = check(plant, sheet, readings, messages)
    finally:
        stop.set()
        await server
    (out_dir / "acquisition.json").write_text(json.dumps(results, indent=2, default=str))
    table = Table(title="reference acquisition vs ground truth")
    for col in ("source", "readings", "matched", "max error", "verdict"):
        table.add_column(col)
    ok_all = True
    for src, r in results["summary"].items():
        ok = r["matched"] == r["readings"] and r["readings"] > 0
        ok_all &= ok
        table.add_row(
            src,
            str(r["readings"]),
            str(r["matched"]),
            f"{r['max_error']:.3g}",
            "[green]PASS[/]" if ok else "[red]FAIL[/]",
        )
    console.print(table)
    console.print(f"evidence: {out_dir / 'acquisition.json'}; datasheet: {out_dir / 'datasheet.json'}")
    console.print("[dim]Grading against lab checks and signed reports arrive with the grader (issue 3).[/]")
    return 0 if ok_all else 1


def check(
    plant: Plant, sheet: dict[str, Any], readings: list[dict[str, Any]], messages: list[dict[str, Any]]
) -> dict[str, Any]:
    reader = TruthReader(plant.truth.path)
    sources = {}
    for device in ("plc1", "em1"):
        for tags in sheet[device]["tables"].values():
            for t in tags:
                sources[(device, t["name"])] = _source_of(plant, device, t["name"])
    for node_id, tag in SOURCES["plc2"].items():
        sources[("plc2", node_id)] = tag
    rows = []
    summary: dict[str, dict[str, Any]] = {}
    for r in readings:
        if "error" in r:
            rows.append({**r, "ok": False})
            continue
        tag = sources[(r["device"], r["tag"])]
        ok, err = _match(reader, tag, r["value"], r["t0"], r["t1"], r["tol"])
        rows.append({**r, "truth_tag": tag, "ok": ok, "error": err})
        s = summary.setdefault(r["device"], {"readings": 0, "matched": 0, "max_error": 0.0})
        s["readings"] += 1
        s["matched"] += ok
        s["max_error"] = max(s["max_error"], err)
    emitted = {(e["node"], e["seq"]): e for e in reader.emissions(0, time.time() + 10)}
    s = summary.setdefault("mqtt", {"readings": 0, "matched": 0, "max_error": 0.0})
    for m in messages:
        body = json.loads(m["payload"])
        truth = emitted.get((body.get("node"), body.get("seq")))
        ok = truth is not None and json.loads(truth["payload"]) == body
        s["readings"] += 1
        s["matched"] += ok
        rows.append({"device": "mqtt", "topic": m["topic"], "seq": body.get("seq"), "ok": ok})
    reader.close()
    return {"candidate": CANDIDATE, "generated": time.time(), "summary": summary, "readings": rows}


def _source_of(plant: Plant, device: str, name: str) -> str:
    rm = plant.plc1_map if device == "plc1" else plant.em1_map
    return rm.tag(name).source
