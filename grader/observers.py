"""Observers record what the candidate's system does during the observation window, with hard bounds.

A hostile candidate may flood, send huge or garbage payloads or nothing at all: every observer caps what it keeps
and never blocks longer than the window plus a grace period.

The telemetry observer subscribes with MQTT 5 so that it sees each message as it was published: QoS 2 on the
subscription (a message is delivered at the QoS it was published with), Retain As Published (the retain flag as the
publisher set it) and Retain Handling 2 (retained messages left on the broker by an earlier run are not sent: only
what is published during the window is observed). A broker without MQTT 5 is observed with MQTT 3.1.1; the retain
flag is then unknown (None).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from paho.mqtt.subscribeoptions import SubscribeOptions


@dataclass
class Message:
    topic: str
    rx: float  # grader's receive time (epoch s)
    raw: bytes | None  # None when over the size cap
    size: int
    body: Any = None  # the payload as strict JSON (RFC 8259: no NaN/Infinity), None when it is not
    parse_error: str | None = None
    qos: int | None = None  # the QoS it was published with (None: not observed, e.g. in a replay)
    retain: bool | None = None  # its retain flag as published (None: not observable)
    loose: Any = None  # the payload parsed leniently (NaN/Infinity accepted): only to tell which stream it is of


class NonStandardNumber(ValueError):
    """A payload with NaN, Infinity or -Infinity: Python's json accepts them, JSON (RFC 8259) does not."""


def _reject_constant(name: str) -> Any:
    raise NonStandardNumber(f"{name} is not a JSON number (RFC 8259)")


def strict_json(raw: bytes | str) -> Any:
    """JSON as RFC 8259 defines it: NaN, Infinity and -Infinity are refused, not read as floats."""
    return json.loads(raw, parse_constant=_reject_constant)


def parse_into(m: Message, max_payload: int) -> Message:
    """Parse a message body the one way both live observation and replay do."""
    if m.raw is None:
        m.parse_error = f"payload of {m.size} bytes exceeds {max_payload}"
        return m
    try:
        m.body = strict_json(m.raw)
        m.loose = m.body
    except NonStandardNumber as exc:
        m.parse_error = f"not JSON: {exc}"
        try:
            m.loose = json.loads(m.raw)
        except (ValueError, UnicodeDecodeError):
            m.loose = None
    except (ValueError, UnicodeDecodeError) as exc:
        m.parse_error = f"not JSON: {str(exc)[:120]}"
    return m


def topic_stream(topic: str) -> tuple[str, str] | None:
    """(device, tag) from a reading topic `<root>/<device>/<tag>`."""
    parts = topic.split("/")
    return (parts[-2], parts[-1]) if len(parts) >= 3 and parts[-2] and parts[-1] else None


def stream_of(m: Message) -> tuple[str, str] | None:
    """Which stream a message is of: its body's device and tag (also when the body is not strict JSON, e.g. a NaN
    value), else its topic. Counting checks use this, so an invalid value is judged by the schema check alone."""
    b = m.loose if isinstance(m.loose, dict) else None
    if b is not None and isinstance(b.get("device"), str) and isinstance(b.get("tag"), str):
        return b["device"], b["tag"]
    return topic_stream(m.topic)


@dataclass
class MqttObservation:
    messages: list[Message] = field(default_factory=list)
    dropped: int = 0  # beyond max_messages
    oversized: int = 0
    error: str | None = None
    window: tuple[float, float] = (0.0, 0.0)
    protocol: int | None = None  # 5: QoS and retain flags observed as published; 4: MQTT 3.1.1, retain unknown
    subscribed: bool = False


def subscribe_options(protocol: int) -> dict[str, Any]:
    if protocol == 5:
        return {
            "options": SubscribeOptions(
                qos=2, retainAsPublished=True, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND
            )
        }
    return {"qos": 2}


async def observe_mqtt(
    host: str,
    port: int,
    topic: str,
    seconds: float,
    max_messages: int,
    max_payload: int,
    client_id: str,
    bind: str | None = None,
    username: str | None = None,
    password: str | None = None,
    tls: Any = None,
) -> MqttObservation:
    """Observe `topic` for `seconds`: with MQTT 5 when the broker speaks it, else MQTT 3.1.1."""
    obs = await _observe(
        host, port, topic, seconds, max_messages, max_payload, client_id, bind, username, password, tls, 5
    )
    if obs.error and not obs.subscribed and tls is None:  # e.g. the plant's amqtt fallback broker (no MQTT 5)
        obs = await _observe(
            host, port, topic, seconds, max_messages, max_payload, client_id, bind, username, password, tls, 4
        )
    return obs


async def _observe(
    host: str,
    port: int,
    topic: str,
    seconds: float,
    max_messages: int,
    max_payload: int,
    client_id: str,
    bind: str | None,
    username: str | None,
    password: str | None,
    tls: Any,
    protocol: int,
) -> MqttObservation:
    obs = MqttObservation(protocol=protocol)
    start = time.time()
    try:
        async with aiomqtt.Client(
            host,
            port,
            identifier=client_id,
            bind_address=bind or "",
            username=username,
            password=password,
            tls_context=tls,
            timeout=5,
            protocol=aiomqtt.ProtocolVersion.V5 if protocol == 5 else aiomqtt.ProtocolVersion.V311,
            max_queued_incoming_messages=max_messages,
        ) as client:
            await client.subscribe(topic, **subscribe_options(protocol))
            obs.subscribed = True
            start = time.time()
            try:
                async with asyncio.timeout(seconds):
                    async for msg in client.messages:
                        payload = bytes(msg.payload or b"")
                        if len(obs.messages) >= max_messages:
                            obs.dropped += 1
                            continue
                        m = Message(
                            str(msg.topic),
                            time.time(),
                            payload if len(payload) <= max_payload else None,
                            len(payload),
                            qos=int(msg.qos),
                            retain=bool(msg.retain) if protocol == 5 else None,
                        )
                        if m.raw is None:
                            obs.oversized += 1
                        parse_into(m, max_payload)
                        obs.messages.append(m)
            except TimeoutError:
                pass
    except aiomqtt.MqttError as exc:
        obs.error = f"MQTT: {exc}"
    obs.window = (start, time.time())
    return obs
