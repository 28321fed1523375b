"""OPC UA probes: endpoint discovery, secured sessions with chosen identities, and the raw None-channel session.

asyncua accepts a session over a SecurityPolicy#None channel even when no None endpoint is listed (check-catalog
pitfall 1): only attempting that session proves a server refuses it, so `raw_none_session` builds it by hand.
The asyncua client cannot choose its source address; probes are told apart by user name and ApplicationUri.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID

GRADER_URI = "urn:aiotlab:grader"
STRONG_POLICIES = {"Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"}
TIMEOUT_S = 10  # per request: a loaded 2-core host takes seconds for the RSA work of a secure channel
TRANSIENT = ("timeout", "closed")  # outcomes worth another try: the host was slow, not the server refusing


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


def asyncua_policy(name: str) -> str:
    """asyncua's class-name form of a policy URI's fragment: `Aes128_Sha256_RsaOaep` -> `Aes128Sha256RsaOaep`
    (set_security_string looks up SecurityPolicy<name>; the URI fragment has underscores, the class has none)."""
    return name.replace("_", "")


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
        await c.set_security_string(f"{asyncua_policy(policy)},{mode},{cert[0]},{cert[1]}")
    await c.connect()
    try:
        yield c
    finally:
        with contextlib.suppress(Exception):
            await c.disconnect()


@dataclass
class Outcome:
    """What a session or an operation attempt came to, as the grader judges it.

    kind: "accepted" (the server let it through), "status" (the server answered with a status code, `detail` names
    it), "unreachable" (no connection), "timeout", "closed" (the connection dropped), "client" (the client library
    refused before asking the server) or "error". Only "accepted" and "status" are answers of the server."""

    kind: str
    detail: str = ""
    value: Any = None

    @property
    def accepted(self) -> bool:
        return self.kind == "accepted"

    def refused_with(self, codes: set[str]) -> bool:
        """The server itself refused with one of the status codes the probe expects."""
        return self.kind == "status" and self.detail in codes

    def describe(self) -> str:
        if self.kind == "accepted":
            return "accepted" + (f" ({self.detail})" if self.detail else "")
        if self.kind == "status":
            return f"refused by the server: {self.detail}"
        return f"{self.kind}: {self.detail}"


def outcome_of(exc: BaseException) -> Outcome:
    """Classify an exception from a session or operation attempt."""
    code = getattr(exc, "code", None)
    if isinstance(exc, ua.UaStatusCodeError) and code is not None:
        try:
            return Outcome("status", ua.StatusCode(code).name)
        except Exception:  # noqa: BLE001 - an unknown code still is the server's answer
            return Outcome("status", f"0x{int(code):08X}")
    if isinstance(exc, TimeoutError):
        return Outcome("timeout", "no answer within the probe's time limit")
    if isinstance(exc, ConnectionRefusedError):
        return Outcome("unreachable", str(exc)[:160] or "connection refused")
    if isinstance(exc, ConnectionError | EOFError | asyncio.IncompleteReadError):
        return Outcome("closed", f"{type(exc).__name__}: {str(exc)[:140]}")
    if isinstance(exc, OSError):
        return Outcome("unreachable", f"{type(exc).__name__}: {str(exc)[:140]}")
    if isinstance(exc, ua.UaError):
        return Outcome("client", f"{type(exc).__name__}: {str(exc)[:140]}")
    return Outcome("error", f"{type(exc).__name__}: {str(exc)[:140]}")


async def attempt(coro: Awaitable[Any], limit: float = 15.0, detail: str = "") -> Outcome:
    """Run one attempt with a time limit and classify what it came to."""
    try:
        async with asyncio.timeout(limit):
            value = await coro
    except Exception as exc:  # noqa: BLE001 - every failure is classified, none is a pass by itself
        return outcome_of(exc)
    return Outcome("accepted", detail, value)


async def attempts(
    make: Callable[[], Awaitable[Any]], limit: float = 30.0, detail: str = "", tries: int = 3
) -> Outcome:
    """`attempt`, tried again (up to `tries` times) while it only timed out or lost its connection: a slow host is
    not an answer. A refusal or an acceptance is final at once."""
    got = Outcome("error", "not tried")
    for i in range(tries):
        got = await attempt(make(), limit, detail)
        if got.kind not in TRANSIENT:
            return got
        await asyncio.sleep(1.0 + i)
    return got


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
            c.disconnect_socket()  # no session teardown on a probe: just drop the connection


async def plant_node(c: Client, path: str) -> Any:
    ns = await c.get_namespace_index("urn:aiotlab:plant")
    return c.get_node(f"ns={ns};s={path}")
