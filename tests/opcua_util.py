"""OPC UA helpers for tests: client certificates and connected clients."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from asyncua import Client

from aiotlab.grader.probes.opcua import make_cert, session
from aiotlab.grader.probes.opcua import plant_node as node  # noqa: F401 - tests address nodes through it

CLIENT_URI = "urn:aiotlab:test-client"


async def client_cert(directory: Path, name: str = "client") -> tuple[Path, Path]:
    return await make_cert(directory, name, f"{CLIENT_URI}:{name}")


@contextlib.asynccontextmanager
async def connect(
    url: str,
    policy: str | None = None,
    cert: tuple[Path, Path] | None = None,
    user: str | None = None,
    password: str | None = None,
    name: str = "client",
) -> AsyncIterator[Client]:
    """`policy` as in plc2.yaml (e.g. Basic256Sha256_SignAndEncrypt); None connects without security."""
    pol, mode = policy.split("_") if policy else (None, None)
    async with session(url, pol, mode, cert, user or None, password, f"{CLIENT_URI}:{name}") as c:
        yield c
