"""MQTT probes: hand-built CONNECTs (plain or TLS, from a chosen source address) and delivery tests.

Mosquitto acknowledges denied SUBSCRIBEs and PUBLISHes (check-catalog pitfall 3), so access control is judged
only by whether a message actually arrives. TLS 1.0/1.1 probes lower OpenSSL's security level on the client
side (pitfall 4): otherwise the client refuses, and a server that accepts TLS 1.1 would pass by mistake.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from . import sources

CONNACK_MEANING = {
    0: "accepted",
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


@dataclass
class ConnectResult:
    port: int
    tls: bool
    source: str
    local_port: int | None = None
    connack: int | None = None  # MQTT 3.1.1 return code; None = no CONNACK
    error: str | None = None
    tls_version: str | None = None
    at: float = field(default_factory=time.time)

    @property
    def accepted(self) -> bool:
        return self.connack == 0

    def describe(self) -> str:
        how = "TLS" if self.tls else "plaintext"
        if self.connack is not None:
            return f"{how} port {self.port}: CONNACK {self.connack} ({CONNACK_MEANING.get(self.connack, '?')})"
        return f"{how} port {self.port}: no CONNACK ({self.error})"


def _encode_str(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def connect_packet(client_id: str, username: str | None = None, password: str | None = None) -> bytes:
    flags = 0x02  # clean session
    payload = _encode_str(client_id)
    if username is not None:
        flags |= 0x80
        payload += _encode_str(username)
        if password is not None:
            flags |= 0x40
            payload += _encode_str(password)
    var = _encode_str("MQTT") + bytes([4, flags]) + struct.pack(">H", 30)
    body = var + payload
    length, rem = b"", len(body)
    while True:
        byte, rem = rem % 128, rem // 128
        length += bytes([byte | (0x80 if rem else 0)])
        if not rem:
            break
    return bytes([0x10]) + length + body


def insecure_tls(version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client context that accepts any certificate (for reachability and version probes only)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if version is not None:
        if version < ssl.TLSVersion.TLSv1_2:
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def verified_tls(cafile: str) -> ssl.SSLContext:
    """A client context that verifies the broker against the candidate's CA and its IP address (SAN)."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


async def raw_connect(
    host: str,
    port: int,
    source: str,
    *,
    tls: ssl.SSLContext | None = None,
    client_id: str | None = None,
    username: str | None = None,
    password: str | None = None,
    timeout: float = 3.0,
) -> ConnectResult:
    """One CONNECT; returns the CONNACK code (or why there was none) and the local port (to find it in logs)."""
    res = ConnectResult(port, tls is not None, source)
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await sources.open_connection(
                host, port, source, ssl=tls, server_hostname=host if tls else None
            )
            res.local_port = writer.get_extra_info("sockname")[1]
            ssl_obj = writer.get_extra_info("ssl_object")
            res.tls_version = ssl_obj.version() if ssl_obj else None
            writer.write(connect_packet(client_id or f"aiotlab-probe-{os.urandom(4).hex()}", username, password))
            await writer.drain()
            head = await reader.readexactly(4)
            if head[0] == 0x20 and head[1] == 2:
                res.connack = head[3]
            else:
                res.error = f"not an MQTT CONNACK: {head.hex()}"
    except ssl.SSLError as exc:
        res.error = f"TLS: {exc.reason or exc}"
    except asyncio.IncompleteReadError:
        res.error = "connection closed without CONNACK"
    except TimeoutError:
        res.error = f"no answer within {timeout:.0f} s"
    except OSError as exc:
        res.error = f"{type(exc).__name__}: {exc.strerror or exc}"
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 0.5)
    return res


def any_tls() -> ssl.SSLContext:
    """A client context that completes a handshake with any TLS version from 1.0 to 1.3 and any certificate: finds
    every port that speaks TLS at all, including one that speaks only TLS 1.0 or 1.1."""
    ctx = insecure_tls()
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version, ctx.maximum_version = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_3
    return ctx


async def tls_handshake(
    host: str,
    port: int,
    source: str,
    version: ssl.TLSVersion | None,
    timeout: float = 3.0,
    context: ssl.SSLContext | None = None,
) -> str | None:
    """The negotiated version if a handshake pinned to `version` (None: any version, see any_tls) succeeds."""
    tls = context or (insecure_tls(version) if version is not None else any_tls())
    try:
        async with asyncio.timeout(timeout):
            _, w = await sources.open_connection(host, port, source, ssl=tls, server_hostname=host)
    except (OSError, TimeoutError, ssl.SSLError):
        return None
    ssl_obj = w.get_extra_info("ssl_object")
    got = ssl_obj.version() if ssl_obj else None
    w.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(w.wait_closed(), 0.5)
    return got


async def verify_tls(host: str, port: int, source: str, tls: ssl.SSLContext, timeout: float = 5.0) -> dict[str, Any]:
    """A verifying TLS handshake, as the grader's own clients make it: {"ok", "stage", "observed"} where a failing
    stage is "tcp" (nothing accepts a connection), "tls" (no TLS handshake) or "verify" (the certificate does not
    verify against the CA for the name `host`)."""
    try:
        async with asyncio.timeout(timeout):
            _, w = await sources.open_connection(host, port, source)
    except (OSError, TimeoutError) as exc:
        why = f"no answer within {timeout:.0f} s" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        return {"ok": False, "stage": "tcp", "observed": f"TCP connection to {host}:{port} failed: {why}"}
    try:
        async with asyncio.timeout(timeout):
            await w.start_tls(tls, server_hostname=host)
        ssl_obj = w.get_extra_info("ssl_object")
        version = ssl_obj.version() if ssl_obj else "?"
        return {"ok": True, "stage": "verified", "observed": f"certificate verified for {host}, {version}"}
    except ssl.SSLCertVerificationError as exc:
        return {"ok": False, "stage": "verify", "observed": f"certificate rejected: {exc.verify_message or exc}"}
    except (ssl.SSLError, OSError, TimeoutError, ConnectionError) as exc:
        why = (
            f"no handshake within {timeout:.0f} s" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        )
        return {"ok": False, "stage": "tls", "observed": f"TLS handshake failed: {why}"}
    finally:
        w.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(w.wait_closed(), 0.5)


@dataclass
class Account:
    username: str
    password: str


@contextlib.asynccontextmanager
async def session(
    host: str, port: int, tls: ssl.SSLContext | None, account: Account | None, source: str, client_id: str
) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(
        host,
        port,
        identifier=client_id,
        username=account.username if account else None,
        password=account.password if account else None,
        tls_context=tls,
        bind_address=sources.bindable(source) or "",
        timeout=10,
        protocol=aiomqtt.ProtocolVersion.V311,
    ) as client:
        yield client


async def delivered(
    host: str,
    port: int,
    tls: ssl.SSLContext | None,
    source: str,
    publisher: Account,
    topic: str,
    subscriber: Account,
    sub_filter: str,
    wait: float = 3.0,
) -> dict[str, Any]:
    """Does a message `publisher` sends to `topic` reach `subscriber` subscribed to `sub_filter`?"""
    nonce = f"aiotlab-acl-probe {os.urandom(6).hex()}"
    out: dict[str, Any] = {
        "publisher": publisher.username,
        "topic": topic,
        "subscriber": subscriber.username,
        "filter": sub_filter,
    }
    try:
        async with asyncio.timeout(wait + 25):
            async with session(host, port, tls, subscriber, source, f"aiotlab-sub-{nonce[-12:]}") as sub:
                await sub.subscribe(sub_filter, qos=1)
                async with session(host, port, tls, publisher, source, f"aiotlab-pub-{nonce[-12:]}") as pub:
                    await pub.publish(topic, nonce.encode(), qos=1)
                try:
                    async with asyncio.timeout(wait):
                        async for m in sub.messages:
                            if bytes(m.payload or b"") == nonce.encode():
                                out["delivered"] = True
                                return out
                except TimeoutError:
                    pass
    except (aiomqtt.MqttError, TimeoutError, OSError, ssl.SSLError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["delivered"] = False
    return out


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic-filter matching (+ one level, # the rest, including the parent level)."""
    f, t = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(f) == len(t)


async def acl_matrix(
    host: str,
    port: int,
    tls: ssl.SSLContext | None,
    source: str,
    accounts: dict[str, Account],
    publishes: list[tuple[str, str]],
    wait: float = 3.0,
) -> dict[str, Any]:
    """Every account subscribes twice (to each probed topic by name, and to `#`), then each (account, topic) of
    `publishes` is sent once with its own nonce; after `wait` s: which subscriptions received which publish.

    Mosquitto acknowledges denied SUBSCRIBEs and PUBLISHes alike, so only arrival tells. Returns
    {"received": {"<sub>|<mode>": [publish index, ...]}, "errors": {"<who>": "..."}}."""
    topics = sorted({t for _, t in publishes})
    nonces = [f"aiotlab-acl {os.urandom(6).hex()}" for _ in publishes]
    index = {n.encode(): i for i, n in enumerate(nonces)}
    received: dict[str, set[int]] = {}
    errors: dict[str, str] = {}
    ready = asyncio.Event()
    done = asyncio.Event()
    settled: set[str] = set()  # listeners subscribed or failed
    listeners = [(name, mode) for name in accounts for mode in ("named", "wildcard")]

    async def listen(name: str, mode: str) -> None:
        key = f"{name}|{mode}"
        got = received.setdefault(key, set())
        try:
            async with asyncio.timeout(wait + 70):
                async with session(host, port, tls, accounts[name], source, f"aiotlab-acl-{os.urandom(5).hex()}") as c:
                    if mode == "named":
                        await c.subscribe([(t, 1) for t in topics])
                    else:
                        await c.subscribe("#", qos=1)
                    settled.add(key)
                    if len(settled) == len(listeners):
                        ready.set()

                    async def collect() -> None:
                        async for m in c.messages:
                            i = index.get(bytes(m.payload or b""))
                            if i is not None and str(m.topic) == publishes[i][1]:
                                got.add(i)

                    reader = asyncio.create_task(collect())
                    try:
                        await done.wait()
                    finally:
                        reader.cancel()
                        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                            await reader
        except (aiomqtt.MqttError, TimeoutError, OSError, ssl.SSLError) as exc:
            errors[key] = f"{type(exc).__name__}: {exc}"
            settled.add(key)
            if len(settled) == len(listeners):
                ready.set()

    async def publish_all() -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait + 30):
                await ready.wait()
        by_account: dict[str, list[int]] = {}
        for i, (name, _) in enumerate(publishes):
            by_account.setdefault(name, []).append(i)

        async def one(name: str, items: list[int]) -> None:
            try:
                async with asyncio.timeout(25):
                    async with session(
                        host, port, tls, accounts[name], source, f"aiotlab-aclp-{os.urandom(5).hex()}"
                    ) as c:
                        for i in items:
                            await c.publish(publishes[i][1], nonces[i].encode(), qos=1)
            except (aiomqtt.MqttError, TimeoutError, OSError, ssl.SSLError) as exc:
                errors[f"{name}|publish"] = f"{type(exc).__name__}: {exc}"

        await asyncio.gather(*(one(n, items) for n, items in by_account.items()))
        await asyncio.sleep(wait)
        done.set()

    await asyncio.gather(publish_all(), *(listen(n, m) for n, m in listeners))
    return {"received": {k: sorted(v) for k, v in received.items()}, "errors": errors}


async def receives_any(
    host: str, port: int, tls: ssl.SSLContext | None, source: str, account: Account, sub_filter: str, wait: float
) -> dict[str, Any]:
    """Topics an account receives on `sub_filter` within `wait` s (retained messages arrive at once)."""
    topics: list[str] = []
    out: dict[str, Any] = {"account": account.username, "filter": sub_filter}
    try:
        async with asyncio.timeout(wait + 25):
            async with session(host, port, tls, account, source, f"aiotlab-recv-{os.urandom(4).hex()}") as c:
                await c.subscribe(sub_filter, qos=0)
                try:
                    async with asyncio.timeout(wait):
                        async for m in c.messages:
                            topics.append(str(m.topic))
                            if len(topics) >= 20:
                                break
                except TimeoutError:
                    pass
    except (aiomqtt.MqttError, TimeoutError, OSError, ssl.SSLError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["received_topics"] = sorted(set(topics))
    return out
