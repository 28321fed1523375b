"""OPC UA helpers for tests: client certificates and connected clients."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID

from aiotlab.grader.probes.opcua import raw_none_session  # noqa: F401 - re-exported for tests

CLIENT_URI = "urn:aiotlab:test-client"


async def client_cert(directory: Path, name: str = "client") -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.der", directory / f"{name}.pem"
    await setup_self_signed_certificate(
        key, cert, f"{CLIENT_URI}:{name}", "localhost", [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": name}
    )
    return cert, key


@contextlib.asynccontextmanager
async def connect(
    url: str,
    policy: str | None = None,
    cert: tuple[Path, Path] | None = None,
    user: str | None = None,
    password: str | None = None,
    name: str = "client",
) -> AsyncIterator[Client]:
    c = Client(url, timeout=5)
    c.application_uri = f"{CLIENT_URI}:{name}"
    if user:
        c.set_user(user)
        c.set_password(password or "")
    if policy:
        pol, mode = policy.split("_")
        assert cert is not None
        await c.set_security_string(f"{pol},{mode},{cert[0]},{cert[1]}")
    await c.connect()
    try:
        yield c
    finally:
        with contextlib.suppress(Exception):
            await c.disconnect()


async def node(c: Client, path: str) -> ua.NodeId:
    ns = await c.get_namespace_index("urn:aiotlab:plant")
    return c.get_node(f"ns={ns};s={path}")
