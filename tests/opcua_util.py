"""OPC UA helpers for tests: client certificates and connected clients."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID

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


async def raw_none_session(url: str, username: str | None = "anyone", password: str = "x") -> str:
    """Hand-built session over a SecurityPolicy#None channel, bypassing the client's endpoint checks.

    Returns the browse name of the Server object if the server let the session read, else raises. This is the
    probe from check-catalog.md pitfall 1: "no None endpoint listed" is no proof, only this attempt is.
    """
    c = Client(url, timeout=5)
    await c.connect_socket()
    try:
        await c.send_hello()
        await c.open_secure_channel()
        params = ua.CreateSessionParameters()
        params.ClientNonce = b"\x00" * 32
        params.ClientDescription = (
            c.application_description if hasattr(c, "application_description") else ua.ApplicationDescription()
        )
        params.EndpointUrl = url
        params.SessionName = "none-probe"
        params.RequestedSessionTimeout = 60000
        params.MaxResponseMessageSize = 0
        await c.uaclient.create_session(params)
        act = ua.ActivateSessionParameters()
        act.LocaleIds = ["en"]
        if username is None:
            token = ua.AnonymousIdentityToken()
            token.PolicyId = "anonymous"
        else:
            token = ua.UserNameIdentityToken()
            token.UserName = username
            token.Password = password.encode()
            token.PolicyId = "username"
        act.UserIdentityToken = token
        act.ClientSignature = ua.SignatureData()
        await c.uaclient.activate_session(act)
        name = await c.nodes.server.read_browse_name()
        return name.Name
    finally:
        with contextlib.suppress(Exception):
            c.uaclient._uasocket.transport.close()  # noqa: SLF001 - no session teardown on a probe
