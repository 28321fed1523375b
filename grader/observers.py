"""Observers record what the candidate's system does during the observation window, with hard bounds.

A hostile candidate may flood, send huge or garbage payloads or nothing at all: every observer caps what it keeps
and never blocks longer than the window plus a grace period.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiomqtt


@dataclass
class Message:
    topic: str
    rx: float  # grader's receive time (epoch s)
    raw: bytes | None  # None when over the size cap
    size: int
    body: Any = None
    parse_error: str | None = None


def parse_into(m: Message, max_payload: int) -> Message:
    """Parse a message body the one way both live observation and replay do."""
    if m.raw is None:
        m.parse_error = f"payload of {m.size} bytes exceeds {max_payload}"
        return m
    try:
        m.body = json.loads(m.raw)
    except (ValueError, UnicodeDecodeError) as exc:
        m.parse_error = f"not JSON: {str(exc)[:120]}"
    return m


@dataclass
class MqttObservation:
    messages: list[Message] = field(default_factory=list)
    dropped: int = 0  # beyond max_messages
    oversized: int = 0
    error: str | None = None
    window: tuple[float, float] = (0.0, 0.0)


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
    obs = MqttObservation()
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
            max_queued_incoming_messages=max_messages,
        ) as client:
            await client.subscribe(topic, qos=1)
            start = time.time()
            try:
                async with asyncio.timeout(seconds):
                    async for msg in client.messages:
                        payload = bytes(msg.payload or b"")
                        if len(obs.messages) >= max_messages:
                            obs.dropped += 1
                            continue
                        m = Message(
                            str(msg.topic), time.time(), payload if len(payload) <= max_payload else None, len(payload)
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
