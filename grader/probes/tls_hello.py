"""Which TLS version a server picks, read from its ServerHello: a hand-built ClientHello, not a full handshake.

A full handshake pinned to TLS 1.1 fails on a listener that demands a client certificate even when the listener
accepts TLS 1.1 (it picks 1.1, asks for a certificate, and aborts when none comes), so "the handshake failed" does
not mean "TLS 1.1 is refused". The server's first answer says it: a ServerHello naming the version (accepted) or an
alert (refused). Built by hand because a client library refuses to offer TLS 1.0/1.1 at all under OpenSSL 3's
defaults, and because only the first flight is needed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct

from . import sources

VERSIONS = {"TLSv1": 0x0301, "TLSv1_1": 0x0302, "TLSv1_2": 0x0303}
# ECDHE and RSA key exchange with AES-CBC/GCM: what a TLS 1.0-1.2 server with an RSA or EC key can pick
CIPHERS = [0xC02F, 0xC02B, 0xC030, 0xC02C, 0xC013, 0xC009, 0xC014, 0xC00A, 0x009C, 0x009D, 0x002F, 0x0035]


def client_hello(version: int) -> bytes:
    """A TLS ClientHello offering exactly `version` (no supported_versions extension: TLS 1.3 is not offered)."""
    suites = b"".join(struct.pack("!H", c) for c in CIPHERS)
    groups = struct.pack("!HHH", 0x001D, 0x0017, 0x0018)  # x25519, secp256r1, secp384r1
    sig_algs = struct.pack("!HHHHHHH", 0x0401, 0x0501, 0x0601, 0x0403, 0x0503, 0x0804, 0x0201)
    extensions = (
        struct.pack("!HHH", 0x000A, len(groups) + 2, len(groups))
        + groups
        + struct.pack("!HHB", 0x000B, 2, 1)
        + b"\x00"  # ec_point_formats: uncompressed
        + struct.pack("!HHH", 0x000D, len(sig_algs) + 2, len(sig_algs))
        + sig_algs
        + struct.pack("!HH", 0xFF01, 1)
        + b"\x00"  # renegotiation_info (empty)
    )
    body = (
        struct.pack("!H", version)
        + os.urandom(32)
        + b"\x00"  # no session id
        + struct.pack("!H", len(suites))
        + suites
        + b"\x01\x00"  # compression: null only
        + struct.pack("!H", len(extensions))
        + extensions
    )
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def server_answer(data: bytes) -> tuple[str, int | None]:
    """("server_hello", version) | ("alert", description) | ("other", None) from the server's first record."""
    if len(data) >= 11 and data[0] == 0x16 and data[5] == 0x02:
        return "server_hello", struct.unpack("!H", data[9:11])[0]
    if len(data) >= 7 and data[0] == 0x15:
        return "alert", data[6]
    return "other", None


async def picks(host: str, port: int, source: str | None, version: str, timeout: float = 3.0) -> dict[str, object]:
    """Whether the TLS server at host:port accepts `version` ("TLSv1" / "TLSv1_1"): {"accepted": True | False | None,
    "observed": words}. Call it on a port known to speak TLS: a close without an answer is then a refusal. None:
    nothing conclusive (the connection failed or timed out)."""
    want = VERSIONS[version]
    try:
        async with asyncio.timeout(timeout):
            r, w = await sources.open_connection(host, port, source)
            try:
                w.write(client_hello(want))
                await w.drain()
                head = await r.readexactly(5)
                body = await r.readexactly(min(struct.unpack("!H", head[3:5])[0], 16384))
            finally:
                w.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(w.wait_closed(), 0.5)
    except asyncio.IncompleteReadError:  # closed instead of answering: how some TLS stacks refuse a version
        return {"accepted": False, "observed": "connection closed without a ServerHello (refused)"}
    except (OSError, TimeoutError) as exc:
        return {"accepted": None, "observed": f"no TLS answer ({type(exc).__name__})"}
    kind, value = server_answer(head + body)
    if kind == "server_hello":
        named = next((k for k, v in VERSIONS.items() if v == value), hex(value or 0))
        return {"accepted": value == want, "observed": f"ServerHello chose {named}"}
    if kind == "alert":
        return {"accepted": False, "observed": f"alert {value} (refused)"}
    return {"accepted": None, "observed": "not a TLS answer"}
