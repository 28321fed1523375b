"""Wireless IoT sensor nodes: MQTT clients that publish JSON readings and obey a config topic.

Topics (per node, under the spec's topic_root):
  <root>/<node>/data        JSON reading, QoS 1
  <root>/<node>/status      "online" / "offline" (retained; "offline" is the last will)
  <root>/<node>/config      write {"report_period_s": N} here to change the reporting period
  <root>/<node>/config/ack  the node's answer: {"ok": true, ...} or {"ok": false, "error": ...}

Every reading handed to the broker is ground truth (an emission): after its PUBACK as confirmed; when the publish
is interrupted first (the broker restarted, the node was restarted mid-publish) as unconfirmed, since the broker
may have delivered it all the same (truth.UNCONFIRMED).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from ..process.wireless import Battery
from ..truth import UNCONFIRMED
from ..yamlconf import ConfigError, load_yaml

log = logging.getLogger(__name__)


@dataclass
class SensorLink:
    """How the gateway reaches the broker (the candidate changes this when securing the pipeline)."""

    port: int
    tls: bool = False
    ca_file: Path | None = None
    credentials: dict[str, tuple[str, str]] = field(default_factory=dict)


def load_link(path: Path, default_port: int) -> SensorLink:
    doc = load_yaml(path) or {}
    if not isinstance(doc, dict):
        raise ConfigError(path, "top level must be a mapping")
    b = doc.get("broker") or {}
    link = SensorLink(port=int(b.get("port", default_port)), tls=bool(b.get("tls", False)))
    if b.get("ca_file"):
        link.ca_file = (path.parent / str(b["ca_file"])).resolve()
        if not link.ca_file.is_file():
            raise ConfigError(
                path, f"ca_file {link.ca_file} not found", getattr(b, "line_of", lambda k: None)("ca_file")
            )
    for node, c in (doc.get("nodes") or {}).items():
        if c and c.get("username"):
            link.credentials[str(node)] = (str(c["username"]), str(c.get("password", "")))
    return link


def rfc3339(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SensorNode:
    def __init__(
        self,
        spec: dict[str, Any],
        root: str,
        limits: tuple[float, float],
        wireless_params: dict[str, Any],
        host: str,
        source: str,
        link: Callable[[], SensorLink],
        values: Callable[[], dict[str, Any]],
        clock: Callable[[], float],
        record: Callable[[str, int, float, str, str], None],
        fault_state: Callable[[str], tuple[bool, float]],
        on_event: Callable[..., None],
        phase: float = 0.0,
    ) -> None:
        self.spec = spec
        self.id = spec["id"]
        self.base = f"{root}/{self.id}"
        self.period = float(spec["report_period_s"])
        self.limits = limits
        self.battery = Battery(wireless_params)
        self.host, self.source = host, source
        self._link, self._values, self._clock = link, values, clock
        self._record, self._fault_state, self._on_event = record, fault_state, on_event
        self.seq = 0
        self.phase = phase
        self.published = 0
        self.connected = False
        self._last_t: float | None = None

    def payload(self, t: float) -> dict[str, Any]:
        values = self._values()
        if self._last_t is not None:
            self.battery.idle(t - self._last_t)
        self._last_t = t
        self.battery.transmit()
        self.seq += 1
        out: dict[str, Any] = {"node": self.id, "seq": self.seq, "ts": rfc3339(t)}
        for f in self.spec["fields"]:
            out[f["name"]] = round(float(values[f["source"]]), 3)
        out["battery_pct"] = round(self.battery.percent, 2)
        out["report_period_s"] = self.period
        return out

    async def run(self) -> None:
        """Connect, publish forever, reconnect with backoff; returns only when cancelled."""
        backoff = 0.5
        while True:
            link = self._link()
            tls = None
            if link.tls:
                tls = ssl.create_default_context(cafile=str(link.ca_file) if link.ca_file else None)
            user, password = link.credentials.get(self.id, (None, None))
            will = aiomqtt.Will(f"{self.base}/status", b"offline", qos=1, retain=True)
            try:
                async with aiomqtt.Client(
                    self.host,
                    link.port,
                    identifier=self.id,
                    username=user,
                    password=password,
                    tls_context=tls,
                    will=will,
                    bind_address=self.source,
                    timeout=5,
                    keepalive=30,
                ) as client:
                    self.connected = True
                    backoff = 0.5
                    await client.publish(f"{self.base}/status", b"online", qos=1, retain=True)
                    await client.subscribe(f"{self.base}/config", qos=1)
                    listener = asyncio.create_task(self._config_listener(client))
                    try:
                        await self._publish_loop(client)
                    finally:
                        listener.cancel()
            except aiomqtt.MqttError as exc:
                log.info("%s: broker connection lost: %s", self.id, exc)
            finally:
                self.connected = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() - self.period + self.phase * self.period  # nodes are not synchronised
        while True:
            next_at += self.period
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            if next_at < loop.time() - self.period:  # fell far behind (e.g. after a period change): resync
                next_at = loop.time()
            offline, delay = self._fault_state(self.id)
            t = self._clock()
            message = self.payload(t)
            if offline:
                continue  # the node is silent: the reading is taken but never reaches the broker
            if delay:
                await asyncio.sleep(delay)
            text = json.dumps(message, separators=(",", ":"))
            topic = f"{self.base}/data"
            try:
                await client.publish(topic, text.encode(), qos=1)
            except BaseException:
                # Interrupted before the broker's PUBACK (connection lost, publish timed out, the node restarted):
                # the broker may still have delivered it, so it is ground truth too, flagged unconfirmed.
                self._record_unconfirmed(message["seq"], t, topic, text)
                raise
            self.published += 1
            self._record(self.id, message["seq"], t, topic, text)

    def _record_unconfirmed(self, seq: int, t: float, topic: str, text: str) -> None:
        """Record an emission whose PUBACK never came: the marker event first (truth.UNCONFIRMED, matched by node,
        seq and emission time), then the emission itself, so that no reader sees it without its flag."""
        try:
            self._on_event(UNCONFIRMED, node=self.id, seq=seq, emitted_t=t)
            self._record(self.id, seq, t, topic, text)
        except Exception:  # noqa: BLE001 - recording must never hide why the publish was interrupted
            log.exception("%s: could not record unconfirmed emission %s", self.id, seq)

    async def _config_listener(self, client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            if str(msg.topic) != f"{self.base}/config":
                continue
            ack: dict[str, Any]
            try:
                body = json.loads(bytes(msg.payload or b"").decode())
                period = float(body["report_period_s"])
                lo, hi = self.limits
                if not lo <= period <= hi:
                    raise ValueError(f"report_period_s must be within [{lo}, {hi}]")
                self.period = period
                ack = {"ok": True, "report_period_s": period}
                self._on_event("sensor_config", node=self.id, report_period_s=period)
            except (ValueError, KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                ack = {"ok": False, "error": str(exc)[:200]}
            await client.publish(f"{self.base}/config/ack", json.dumps(ack).encode(), qos=1)
