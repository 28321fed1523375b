"""OPC UA probes: endpoint discovery, secured sessions with chosen identities, and the raw None-channel session.

asyncua accepts a session over a SecurityPolicy#None channel even when no None endpoint is listed (check-catalog
pitfall 1): only attempting that session proves a server refuses it, so `raw_none_session` builds it by hand.
The asyncua client cannot choose its source address; probes are told apart by user name and ApplicationUri.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID

GRADER_URI = "urn:aiotlab:grader"
STRONG_POLICIES = {"Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"}
TIMEOUT_S = 5


async def make_cert(directory: Path, name: str, uri: str) -> tuple[Path, Path]:
    """A self-signed client application certificate (DER) and key (PEM), created once.

    Created under a lock and renamed into place: many gradings start at once and copy the certificate, and a
    half-written one (found by a 12-candidate test run) breaks the trust list it is copied into."""
    import fcntl

    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.der", directory / f"{name}.pem"
    with open(directory / f".{name}.lock", "w") as lock:
        await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
        try:
            if not (cert.is_file() and key.is_file()):
                tmp_cert, tmp_key = directory / f".{name}.der.tmp", directory / f".{name}.pem.tmp"
                await setup_self_signed_certificate(
                    tmp_key, tmp_cert, uri, "localhost", [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": name}
                )
                tmp_key.chmod(0o600)
                os.replace(tmp_key, key)
                os.replace(tmp_cert, cert)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return cert, key


def grader_pki_dir() -> Path:
    from aiotlab.simulators.addressing import home

    return home() / "grader" / "pki"


async def grader_cert() -> tuple[Path, Path]:
    """The grader's own OPC UA application certificate; candidates put the DER into PLC-2's trust list."""
    return await make_cert(grader_pki_dir(), "aiotlab-grader", GRADER_URI)


def policy_name(uri: str) -> str:
    return uri.rsplit("#", 1)[-1]


async def endpoints(url: str) -> list[dict[str, Any]]:
    """Every endpoint the server offers (discovery over None is normal and allowed)."""
    c = Client(url, timeout=TIMEOUT_S)
    eps = await c.connect_and_get_server_endpoints()
    return [
        {
            "policy": policy_name(e.SecurityPolicyUri),
            "mode": e.SecurityMode.name.rstrip("_"),
            "tokens": sorted({t.TokenType.name for t in e.UserIdentityTokens}),
        }
        for e in eps
    ]


@contextlib.asynccontextmanager
async def session(
    url: str,
    policy: str | None,
    mode: str | None,
    cert: tuple[Path, Path] | None,
    user: str | None = None,
    password: str | None = None,
    app_uri: str = GRADER_URI,
) -> AsyncIterator[Client]:
    """A session (policy like Basic256Sha256, mode Sign or SignAndEncrypt; policy None: no security); raises if
    refused."""
    c = Client(url, timeout=TIMEOUT_S)
    c.application_uri = app_uri
    if user is not None:
        c.set_user(user)
        c.set_password(password or "")
    if policy is not None:
        assert cert is not None, "a secured session needs a client certificate"
        await c.set_security_string(f"{policy},{mode},{cert[0]},{cert[1]}")
    await c.connect()
    try:
        yield c
    finally:
        with contextlib.suppress(Exception):
            await c.disconnect()


def refusal(exc: BaseException) -> str:
    """A short name for why a session was refused (status code name when there is one)."""
    code = getattr(exc, "code", None)
    if code is not None:
        with contextlib.suppress(Exception):
            return ua.StatusCode(code).name
    text = str(exc) or type(exc).__name__
    for marker in (
        "BadUserAccessDenied",
        "BadIdentityTokenRejected",
        "BadCertificateUntrusted",
        "BadSecurityPolicyRejected",
        "BadIdentityTokenInvalid",
        "BadSecurityChecksFailed",
    ):
        if marker in text:
            return marker
    return f"{type(exc).__name__}: {text[:160]}"


async def raw_none_session(url: str, username: str | None = "anyone", password: str = "x") -> str:
    """Hand-built session over a SecurityPolicy#None channel, bypassing the client's endpoint checks.

    Returns the browse name of the Server object if the server let the session read, else raises."""
    c = Client(url, timeout=TIMEOUT_S)
    await c.connect_socket()
    try:
        await c.send_hello()
        await c.open_secure_channel()
        params = ua.CreateSessionParameters()
        params.ClientNonce = os.urandom(32)
        params.ClientDescription = (
            c.application_description if hasattr(c, "application_description") else (ua.ApplicationDescription())
        )
        params.EndpointUrl = url
        params.SessionName = "aiotlab-none-probe"
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


async def plant_node(c: Client, path: str) -> Any:
    ns = await c.get_namespace_index("urn:aiotlab:plant")
    return c.get_node(f"ns={ns};s={path}")
