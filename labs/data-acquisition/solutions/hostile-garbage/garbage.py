"""Hostile solution: garbage of every kind on the telemetry topics and a 'database' that is not one.

Never polls PLC-1: the production-impact check fails too, since doing nothing earns no "does no harm" points.
"""

import json
import os
import random
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt

sheet = json.loads(Path(os.environ["AIOTLAB_DATASHEET"]).read_text())
ws = Path(os.environ["AIOTLAB_WORKSPACE"])
(ws / "data").mkdir(parents=True, exist_ok=True)
(ws / "data" / "telemetry.db").write_bytes(b"this is not an SQLite database\x00" * 64)
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="garbage")
c.connect(sheet["mqtt"]["host"], sheet["mqtt"]["port"])
c.loop_start()
root = sys.argv[1] if len(sys.argv) > 1 else "telemetry"
payloads = [
    b"\xff\xfe not json at all",
    b"[1, 2, 3]",
    json.dumps(
        {
            "device": "plc1",
            "tag": "level",
            "value": "high",
            "unit": "furlongs",
            "quality": "good",
            "ts": "yesterday",
            "source": "modbus",
        }
    ).encode(),
    json.dumps(
        {
            "device": "plc1",
            "tag": "level",
            "value": float("1e308") * 10 if False else 1e308,
            "unit": "m",
            "quality": "excellent",
            "ts": "2026-13-45T99:99:99Z",
            "source": "carrier pigeon",
        }
    ).encode(),
    b"{" * 5000,
    b"x" * (1024 * 1024),  # 1 MB
    json.dumps({"device": "plc1", "tag": "level", "value": None, "extra": list(range(1000))}).encode(),
]
while True:
    for p in payloads:
        c.publish(f"{root}/plc1/level", p, qos=0)
    time.sleep(0.37 + random.random() * 0.01)
