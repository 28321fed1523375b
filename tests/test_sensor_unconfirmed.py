"""A sensor message the broker delivered but never acknowledged is ground truth all the same (issue #12: a node
restarted mid-publish by a factory reset, or a broker restart, dropped the emission record while a collector had
forwarded the message, which then looked like a message that never existed).

Over real sockets: a real Mosquitto, a real subscriber (the collector) and a real sensor node (aiomqtt), with a small
TCP proxy between node and broker that withholds the broker's PUBACKs on request. The node's truth goes to a real
TruthRecorder and is read back with the TruthReader the control plane serves."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from aiotlab.simulators.devices.sensors import SensorLink, SensorNode
from aiotlab.simulators.truth import UNCONFIRMED, TruthReader, TruthRecorder

from conftest import need

pytestmark = pytest.mark.timeout(120)
HOST = "127.0.0.1"
ROOT = "t"
NODE = "env-01"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class PubackProxy:
    """Relays node <-> broker byte for byte, except that while `drop` is set the broker's PUBACKs to the node are
    withheld (the broker has taken and delivered the message; the node never hears so)."""

    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port
        self.drop = False
        self.dropped = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def cut(self) -> None:
        """Drop every relayed connection, as a restarting broker does."""
        for w in self.writers:
            w.close()
        self.writers.clear()

    async def _serve(self, node_r: asyncio.StreamReader, node_w: asyncio.StreamWriter) -> None:
        broker_r, broker_w = await asyncio.open_connection(HOST, self.broker_port)
        self.writers += [node_w, broker_w]

        async def up() -> None:
            while data := await node_r.read(65536):
                broker_w.write(data)
                await broker_w.drain()

        async def down() -> None:
            while True:
                head = await broker_r.readexactly(1)
                length, mult, raw = 0, 1, b""
                while True:
                    b = await broker_r.readexactly(1)
                    raw += b
                    length += (b[0] & 0x7F) * mult
                    mult *= 128
                    if not b[0] & 0x80:
                        break
                body = await broker_r.readexactly(length)
                if head[0] >> 4 == 4 and self.drop:  # PUBACK
                    self.dropped += 1
                    continue
                node_w.write(head + raw + body)
                await node_w.drain()

        tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except Exception:  # noqa: BLE001 - a cut connection ends the relay
            pass
        finally:
            for t in tasks:
                t.cancel()
            for w in (node_w, broker_w):
                w.close()


class Truth:
    """The node's truth callbacks, as the plant wires them, into a real recorder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rec = TruthRecorder(path)

    def emission(self, node: str, seq: int, t: float, topic: str, payload: str) -> None:
        self.rec.emission(node, seq, t, topic, payload)

    def event(self, kind: str, **detail: Any) -> None:
        self.rec.event(time.time(), kind, **detail)

    def read(self) -> list[dict[str, Any]]:
        self.rec.flush()
        reader = TruthReader(self.path)
        try:
            return reader.emissions(0, time.time() + 1)
        finally:
            reader.close()


def sensor(truth: Truth, port: int) -> SensorNode:
    spec = {"id": NODE, "report_period_s": 0.3, "fields": [{"name": "temp_c", "source": "env.temp_c"}]}
    wireless = {"battery_capacity_mwh": 1000.0, "tx_energy_mwh": 0.01, "idle_power_mw": 0.1}
    return SensorNode(
        spec,
        ROOT,
        (0.1, 60.0),
        wireless,
        HOST,
        HOST,
        lambda: SensorLink(port=port),
        lambda: {"env.temp_c": 21.5},
        time.time,
        truth.emission,
        lambda _node: (False, 0.0),
        truth.event,
    )


async def until(cond: Any, limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture()
def broker(tmp_path: Path) -> Any:
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} {HOST}\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([need("mosquitto"), "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise AssertionError("mosquitto did not start") from None
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(5)


async def scenario(tmp_path: Path, broker_port: int, interrupt: str) -> tuple[list[dict], list[dict], PubackProxy]:
    """Run a node through the proxy with a subscriber on the broker; once a few messages are confirmed, withhold
    PUBACKs until the subscriber has a message the node has not had confirmed, then interrupt the node's publish:
    'restart' cancels the node (a sensors reload), 'broker' cuts its connection (a broker restart). Returns
    (what the subscriber got, the recorded emissions, the proxy)."""
    truth = Truth(tmp_path / f"truth-{interrupt}.db")
    proxy = PubackProxy(broker_port)
    await proxy.start()
    got: list[dict[str, Any]] = []
    async with aiomqtt.Client(HOST, broker_port, identifier=f"collector-{interrupt}") as sub:
        await sub.subscribe(f"{ROOT}/+/data", qos=1)

        async def collect() -> None:
            async for msg in sub.messages:
                got.append(json.loads(bytes(msg.payload).decode()))  # type: ignore[arg-type]

        collector = asyncio.create_task(collect())
        node = sensor(truth, proxy.port)
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: node.published >= 3 and len(got) >= 3, 15, "three confirmed messages")
            proxy.drop = True
            confirmed = node.published
            await until(lambda: proxy.dropped >= 1 and len(got) > confirmed, 10, "a delivered, unacknowledged message")
            assert node.published == confirmed  # the node is still waiting for that PUBACK
            if interrupt == "restart":
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            else:
                proxy.cut()
                proxy.drop = False  # the broker is back: later messages are acknowledged again
                await until(lambda: node.published > confirmed + 2, 20, "confirmed messages after reconnecting")
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await asyncio.sleep(0.3)  # the subscriber has everything the broker delivered
        finally:
            task.cancel()
            collector.cancel()
            await asyncio.gather(task, collector, return_exceptions=True)
            await proxy.stop()
    return got, truth.read(), proxy


@pytest.mark.parametrize("interrupt", ["restart", "broker"])
def test_a_delivered_unacknowledged_message_is_recorded_unconfirmed(
    tmp_path: Path, broker: int, interrupt: str
) -> None:
    got, emitted, _proxy = asyncio.run(scenario(tmp_path, broker, interrupt))
    by_seq = {e["seq"]: e for e in emitted}
    # every message the collector received exists in the ground truth, byte for byte
    for body in got:
        e = by_seq.get(body["seq"])
        assert e is not None, f"seq {body['seq']} was delivered but is not in the truth: {sorted(by_seq)}"
        assert json.loads(e["payload"]) == body and e["topic"] == f"{ROOT}/{NODE}/data"
    unconfirmed = [e for e in emitted if not e["confirmed"]]
    assert len(unconfirmed) == 1, emitted
    assert unconfirmed[0]["seq"] in {b["seq"] for b in got}  # delivered although never acknowledged
    assert all(e["confirmed"] for e in emitted if e["seq"] < unconfirmed[0]["seq"])
    if interrupt == "broker":  # the node carried on after the broker came back, acknowledged as before
        later = [e for e in emitted if e["seq"] > unconfirmed[0]["seq"]]
        assert later and all(e["confirmed"] for e in later)


def test_unconfirmed_marker_matches_only_its_own_emission(tmp_path: Path) -> None:
    """The marker names node, seq and emission time: a later emission that reuses the seq (a restarted node counts
    from 1 again) is not taken for the unconfirmed one."""
    rec = TruthRecorder(tmp_path / "truth.db")
    rec.event(100.5, UNCONFIRMED, node=NODE, seq=7, emitted_t=100.25)
    rec.emission(NODE, 7, 100.25, f"{ROOT}/{NODE}/data", "{}")
    rec.emission("vib-01", 7, 100.25, f"{ROOT}/vib-01/data", "{}")
    rec.flush()
    reader = TruthReader(tmp_path / "truth.db")
    assert {(e["node"], e["confirmed"]) for e in reader.emissions(100, 101)} == {(NODE, False), ("vib-01", True)}
    rec.emission(NODE, 7, 300.0, f"{ROOT}/{NODE}/data", "{}")  # the restarted node's seq 7 replaces the row
    rec.flush()
    assert [e["confirmed"] for e in reader.emissions(100, 400)] == [True, True]
    reader.close()
    rec.close()
