"""Reference exporter for the dashboard-alerting lab, written from the brief and the datasheet alone.

Polls PLC-1 and EM-1 (one block read each, through FW-1, from the workstation address), reads PLC-2's heater and
filling-line nodes in one OPC UA Read, follows the wireless sensors over MQTT, and serves the documented metrics
in base units on <workstation>:<exporter_port>/metrics. Counters mirror the devices' own counters, so they are
exposed through a custom collector (prometheus_client's Counter can only be incremented).
`--flaw NAME` injects one deliberate mistake: the lab's flawed exporters are this program plus one flaw.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiomqtt
from asyncua import Client as UaClient
from prometheus_client import start_http_server
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily

FLAWS = (
    "counter-as-gauge",
    "wrong-unit",
    "oee-wrong",
    "own-metric-ms",
    "over-polling",
    "drop-silent-node",
    "bind-localhost",
    "receipt-time",
)
SILENT_DROP_S = 20.0  # drop-silent-node: a node quiet this long disappears from the page (hides SensorSilent)
MODBUS_DEVICES = ["plc1", "em1"]  # read as the acquisition lab's collector reads them (a superset of what is needed)
UA_TAGS = [
    "Heater.Temperature",
    "FillingLine.GoodCount",
    "FillingLine.RejectCount",
    "FillingLine.RunTime",
    "FillingLine.PlannedTime",
    "FillingLine.IdealCycleTime",
]


class PlantCollector:
    """Builds the page from the latest snapshot (replaced whole by the poller, so a scrape never sees half)."""

    def __init__(self, flaw: str | None) -> None:
        self.flaw = flaw
        self.snapshot: dict[str, Any] = {}
        self.sensors: dict[str, dict[str, float]] = {}

    def collect(self):  # noqa: ANN201 - prometheus_client's collector protocol
        s, flaw = self.snapshot, self.flaw
        if not s:
            return
        yield gauge("plant_tank_level_meters", "Tank level (PLC-1).", s["level"])
        yield gauge("plant_tank_outflow_cubic_meters_per_second", "Tank outlet flow (PLC-1).", s["outflow"] / 3600.0)
        yield counter("plant_pump_starts", "Inlet pump starts (PLC-1's counter).", s["pump_starts"])
        power = s["active_power"] if flaw == "wrong-unit" else s["active_power"] * 1000.0  # kW -> W
        yield gauge("plant_active_power_watts", "Total active power (EM-1).", power)
        joules = s["energy"] * 3.6e6  # kWh -> J
        if flaw == "counter-as-gauge":
            yield gauge("plant_energy_imported_joules_total", "Imported active energy (EM-1).", joules)
        else:
            yield counter("plant_energy_imported_joules", "Imported active energy (EM-1).", joules)
        yield gauge("plant_heater_temperature_celsius", "Heater process temperature (PLC-2).", s["Heater.Temperature"])
        units = CounterMetricFamily("plant_line_units", "Filling-line units by result (PLC-2).", labels=["result"])
        units.add_metric(["good"], s["FillingLine.GoodCount"])
        units.add_metric(["reject"], s["FillingLine.RejectCount"])
        yield units
        for name, value in oee(s, flaw).items():
            yield gauge(f"plant_line_{name}_ratio", f"Filling-line {name} since the counters' reset (0-1).", value)
        if flaw == "own-metric-ms":  # the flaw: an extra metric of one's own, named in milliseconds
            yield gauge("plant_exporter_poll_duration_milliseconds", "Duration of the last device poll.", s["_poll_ms"])
        vib = GaugeMetricFamily(
            "plant_vibration_velocity_rms_meters_per_second", "RMS vibration velocity.", labels=["node"]
        )
        last = GaugeMetricFamily(
            "plant_sensor_last_report_timestamp_seconds", "Time of the node's latest report.", labels=["node"]
        )
        for node, body in sorted(self.sensors.items()):
            if flaw == "drop-silent-node" and time.time() - body["ts"] > SILENT_DROP_S:
                continue  # the flaw: "only fresh data" - a silent node vanishes, so SensorSilent has nothing to see
            last.add_metric([node], body["ts"])
            if "vrms_mm_s" in body:
                vib.add_metric([node], body["vrms_mm_s"] / 1000.0)  # mm/s -> m/s
        yield vib
        yield last


def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def oee(s: dict[str, Any], flaw: str | None) -> dict[str, float]:
    run, planned = s["FillingLine.RunTime"], s["FillingLine.PlannedTime"]
    good, reject = s["FillingLine.GoodCount"], s["FillingLine.RejectCount"]
    total = good + reject
    if run <= 0 or planned <= 0 or total <= 0:
        return {}
    a = run / planned
    p = s["FillingLine.IdealCycleTime"] * total / run
    q = good / total
    overall = (a + p + q) / 3 if flaw == "oee-wrong" else a * p * q  # the flaw: the factors' mean, not product
    return {"availability": a, "performance": p, "quality": q, "oee": overall}


async def run(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(args.labs_dir) / "data-acquisition" / "solutions" / "reference"))
    from collector import block_plan, modbus_clients, poll_modbus  # the acquisition lab's Modbus reading, reused

    sheet = json.loads(Path(os.environ["AIOTLAB_DATASHEET"]).read_text())
    params = json.loads(Path(os.environ["AIOTLAB_LAB_PARAMS"]).read_text())
    ws = sheet["network"]["workstation"]
    collector = PlantCollector(args.flaw)
    registry = CollectorRegistry()
    registry.register(collector)
    # the bind-localhost flaw: "keep it off the network" - the page is served on loopback, where no one scrapes it,
    # while the devices are still polled from the workstation address
    listen = "127.0.0.1" if args.flaw == "bind-localhost" else ws
    start_http_server(int(params["exporter_port"]), addr=listen, registry=registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    mb = await modbus_clients(sheet, MODBUS_DEVICES, ws)
    blocks = {r["device"]: r for r in block_plan(sheet, args.period)["modbus_reads"]}  # one block read per device
    ua = UaClient(sheet["plc2"]["endpoint"], timeout=5)
    await ua.connect()
    ns = await ua.get_namespace_index(sheet["plc2"]["namespace_uri"])
    nodes = [ua.get_node(f"ns={ns};s=Plant.{t}") for t in UA_TAGS]

    async def poll() -> None:
        while True:
            started = time.monotonic()
            snap: dict[str, Any] = {}
            try:
                for device, client in mb.items():
                    readings = await poll_modbus(sheet, blocks[device], client, None)
                    if not readings:
                        raise RuntimeError(f"{device}: Modbus read failed")
                    snap.update({name: value for name, value, _ in readings})
                for tag, dv in zip(UA_TAGS, await ua.read_attributes(nodes), strict=True):
                    snap[tag] = float(dv.Value.Value)
            except Exception as exc:  # noqa: BLE001 - a failed poll keeps the last page (its values age); the next runs
                print(f"poll failed ({type(exc).__name__}: {exc}); page unchanged", file=sys.stderr, flush=True)
            else:
                snap["_poll_ms"] = (time.monotonic() - started) * 1000.0
                collector.snapshot = snap
            await asyncio.sleep(args.period)

    async def sensors() -> None:
        m = sheet["mqtt"]
        async with aiomqtt.Client(m["host"], m["port"], identifier=f"exporter-{ws}", bind_address=ws) as client:
            for n in m["nodes"]:
                await client.subscribe(n["data_topic"], qos=1)
            async for msg in client.messages:
                try:
                    body = json.loads(bytes(msg.payload))
                    ts = dt.datetime.fromisoformat(body["ts"]).timestamp()
                    if args.flaw == "receipt-time":  # "close enough": when the message arrived, not its own ts
                        ts = time.time() + 0.002
                    values = {k: float(v) for k, v in body.items() if k == "vrms_mm_s"}
                    collector.sensors[str(body["node"])] = {"ts": ts, **values}
                except (ValueError, KeyError, TypeError):
                    continue  # not a sensor reading: ignore, never crash

    async def hammer() -> None:
        """The over-polling flaw: PLC-1's block read again 30 times a second "to keep the level fresh"."""
        extra = await modbus_clients(sheet, ["plc1"], ws)
        while True:
            started = time.monotonic()
            await poll_modbus(sheet, blocks["plc1"], extra["plc1"], None)
            await asyncio.sleep(max(0.0, 1 / 30 - (time.monotonic() - started)))

    tasks = [asyncio.create_task(poll()), asyncio.create_task(sensors())]
    if args.flaw == "over-polling":
        tasks.append(asyncio.create_task(hammer()))
    done = asyncio.create_task(stop.wait())
    finished, _ = await asyncio.wait([*tasks, done], return_when=asyncio.FIRST_COMPLETED)
    for t in tasks:
        t.cancel()
    await ua.disconnect()
    for c in mb.values():
        c.close()
    for t in finished:
        if t is not done and t.exception():
            raise t.exception()  # type: ignore[misc]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--labs-dir", required=True, help="aiotlab's labs/ (the acquisition lab's decoder)")
    parser.add_argument("--period", type=float, default=1.0)
    parser.add_argument("--flaw", choices=FLAWS)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
