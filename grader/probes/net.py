"""TCP reachability: which ports on a host accept connections (a connect scan, bounded)."""

from __future__ import annotations

import asyncio
import contextlib


async def port_open(host: str, port: int, timeout: float = 0.5, source: str | None = None) -> bool:
    try:
        async with asyncio.timeout(timeout):
            _, w = await asyncio.open_connection(host, port, local_addr=(source, 0) if source else None)
    except (OSError, TimeoutError):
        return False
    w.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(w.wait_closed(), 0.5)
    return True


async def open_ports(
    host: str, ports: range | list[int], concurrency: int = 400, timeout: float = 0.5, source: str | None = None
) -> list[int]:
    """Every port in `ports` accepting a TCP connection. A full 1-65535 scan of a loopback host takes seconds."""
    sem = asyncio.Semaphore(concurrency)
    found: list[int] = []

    async def one(p: int) -> None:
        async with sem:
            if await port_open(host, p, timeout, source):
                found.append(p)

    await asyncio.gather(*(one(p) for p in ports))
    return sorted(found)
