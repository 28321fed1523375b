"""Clocks: wall time for live plants, a fast simulated clock for tests and replays."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...
    async def sleep_until(self, t: float) -> None: ...


class RealClock:
    """Wall-clock time (epoch seconds); sleeps really sleep."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, t: float) -> None:
        delay = t - time.time()
        if delay > 0:
            await asyncio.sleep(delay)


class SimClock:
    """Simulated time that jumps forward instead of sleeping: an hour of plant runs in seconds."""

    def __init__(self, t0: float = 1_800_000_000.0) -> None:
        self._t = t0

    def now(self) -> float:
        return self._t

    async def sleep_until(self, t: float) -> None:
        if t > self._t:
            self._t = t
        await asyncio.sleep(0)
