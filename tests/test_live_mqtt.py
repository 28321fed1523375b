"""Sensors through the real Mosquitto: mosquitto_sub sees what ground truth says was emitted; config topic works."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from conftest import PlantHandle, need


def sub(p: PlantHandle, topic: str, count: int, timeout: float) -> list[tuple[str, str]]:
    binary = need("mosquitto_sub")
    out = subprocess.run(
        [
            binary,
            "-h",
            p.sheet["mqtt"]["host"],
            "-p",
            str(p.sheet["mqtt"]["port"]),
            "-t",
            topic,
            "-v",
            "-C",
            str(count),
            "-W",
            str(int(timeout)),
            "-A",
            p.workstation,
        ],
        capture_output=True,
        text=True,
        timeout=timeout + 5,
    )
    return [tuple(line.split(" ", 1)) for line in out.stdout.splitlines() if " " in line]  # type: ignore[misc]


def test_mosquitto_sub_sees_live_readings_that_match_truth(plant: PlantHandle) -> None:
    msgs = [m for m in sub(plant, "#", 8, 15) if m[0].endswith("/data")]
    assert msgs, "no sensor data"
    now = time.time()
    emitted = {(e["node"], e["seq"]): e for e in plant.control.get(f"/v1/emissions?start={now - 60}&end={now + 1}")}
    for topic, payload in msgs:
        body = json.loads(payload)
        node = body["node"]
        assert topic == f"{plant.sheet['mqtt']['topic_root']}/{node}/data"
        truth = emitted[(node, body["seq"])]
        assert json.loads(truth["payload"]) == body  # byte-for-byte what the plant recorded as emitted
        spec = next(n for n in plant.sheet["mqtt"]["nodes"] if n["id"] == node)
        assert set(body) == {"node", "seq", "ts", "battery_pct", "report_period_s"} | {
            f["name"] for f in spec["fields"]
        }
        assert body["ts"].endswith("Z") and abs(truth["t"] - now) < 30


def test_status_is_retained(plant: PlantHandle) -> None:
    msgs = sub(plant, f"{plant.sheet['mqtt']['topic_root']}/+/status", 2, 5)
    assert sorted(m[1] for m in msgs) == ["online", "online"]


def test_config_topic_changes_the_reporting_period(own_plant: PlantHandle) -> None:
    p = own_plant
    pub = need("mosquitto_pub")
    node = p.sheet["mqtt"]["nodes"][0]
    host, port = p.sheet["mqtt"]["host"], str(p.sheet["mqtt"]["port"])
    ack = subprocess.Popen(
        [need("mosquitto_sub"), "-h", host, "-p", port, "-t", node["config_topic"] + "/ack", "-C", "2", "-W", "10"],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)
    subprocess.run([pub, "-h", host, "-p", port, "-t", node["config_topic"], "-m", "not json"], check=True, timeout=5)
    subprocess.run(
        [pub, "-h", host, "-p", port, "-t", node["config_topic"], "-m", '{"report_period_s": 1}'], check=True, timeout=5
    )
    acks = [json.loads(x) for x in ack.communicate(timeout=15)[0].splitlines()]
    assert acks[0]["ok"] is False and acks[1] == {"ok": True, "report_period_s": 1.0}
    msgs = [json.loads(m[1]) for m in sub(p, node["data_topic"], 5, 12)]
    assert len(msgs) == 5 and all(m["report_period_s"] == 1.0 for m in msgs[1:])
    stamps = [m["ts"] for m in msgs[1:]]
    from datetime import datetime

    t = [datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() for s in stamps]
    gaps = [b - a for a, b in zip(t, t[1:], strict=False)]
    assert all(0.8 < g < 1.3 for g in gaps), gaps
    assert [m["seq"] for m in msgs] == list(range(msgs[0]["seq"], msgs[0]["seq"] + 5))  # no gaps


def test_sensor_offline_fault_silences_the_node(own_plant: PlantHandle) -> None:
    p = own_plant
    node = p.sheet["mqtt"]["nodes"][0]
    p.control.post("/v1/faults", {"kind": "offline", "target": node["id"], "duration_s": 60})
    assert sub(p, node["data_topic"], 1, 2 * node["default_report_period_s"] + 1) == []


def test_broker_crash_is_restarted_by_the_supervisor(own_plant: PlantHandle) -> None:
    p = own_plant
    state = json.loads((p.dir / "plant.json").read_text())
    os.kill(state["mosquitto_pid"], signal.SIGKILL)
    deadline = time.time() + 15
    while time.time() < deadline:
        st = p.control.get("/v1/status")
        if (
            st["broker"]["restarts"] >= 1
            and st["broker"]["alive"]
            and all(s["connected"] for s in st["sensors"].values())
        ):
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"broker not restarted: {p.control.get('/v1/status')['broker']}")
    assert sub(p, "+/+/+/data", 1, 15)
    events = p.control.get(f"/v1/events?start={time.time() - 30}")
    assert any(e["kind"] == "device_restart" and e["detail"]["device"] == "broker" for e in events)
