"""Hostile solution: floods the telemetry topics with plausible but false readings and ignores SIGTERM.

The grader must keep its memory bounded (message cap), finish within its time bounds and SIGKILL the process.
"""

import datetime as dt
import json
import os
import random
import signal
import time
from pathlib import Path

import paho.mqtt.client as mqtt

signal.signal(signal.SIGTERM, signal.SIG_IGN)
sheet = json.loads(Path(os.environ["AIOTLAB_DATASHEET"]).read_text())
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="flood", reconnect_on_failure=True)
c.max_queued_messages_set(10000)
c.connect(sheet["mqtt"]["host"], sheet["mqtt"]["port"])
c.loop_start()
streams = [
    ("plc1", "level", "m", "modbus"),
    ("em1", "energy", "kWh", "modbus"),
    ("vib-01", "vrms_mm_s", "mm/s", "mqtt"),
]
end = time.time() + 600
while time.time() < end:
    for _ in range(200):
        d, t, u, s = random.choice(streams)
        ts = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        body = {
            "device": d,
            "tag": t,
            "value": random.uniform(-1e6, 1e6),
            "unit": u,
            "quality": "good",
            "ts": ts,
            "source": s,
        }
        c.publish(f"telemetry/{d}/{t}", json.dumps(body), qos=0)
    time.sleep(0.04)  # about 5,000 messages/s
