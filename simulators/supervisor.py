"""The plant's supervisor: runs each device's long-lived task, logs a crash and restarts it with backoff."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Supervised:
    name: str
    factory: Callable[[], Awaitable[None]]
    task: asyncio.Task[None] | None = None
    restarts: int = 0
    last_error: str | None = None
    started_at: float = field(default_factory=time.time)


class Supervisor:
    def __init__(self, on_event: Callable[..., None], max_backoff_s: float = 10.0) -> None:
        self.items: dict[str, Supervised] = {}
        self.on_event = on_event
        self.max_backoff = max_backoff_s

    def run(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        item = Supervised(name, factory)
        self.items[name] = item
        item.task = asyncio.create_task(self._keep(item), name=f"supervised:{name}")

    async def _keep(self, item: Supervised) -> None:
        backoff = 0.2
        while True:
            started = time.monotonic()
            try:
                await item.factory()
                item.last_error = "returned unexpectedly"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the supervisor exists to survive any device failure
                item.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("device %s crashed", item.name)
            item.restarts += 1
            self.on_event("device_restart", device=item.name, error=item.last_error, restarts=item.restarts)
            if time.monotonic() - started > 30:
                backoff = 0.2
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    async def stop(self, name: str | None = None) -> None:
        names = [name] if name else list(self.items)
        tasks = []
        for n in names:
            item = self.items.pop(n, None)
            if item and item.task:
                item.task.cancel()
                tasks.append(item.task)
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)

    def status(self) -> dict[str, dict[str, object]]:
        return {
            n: {"running": bool(i.task and not i.task.done()), "restarts": i.restarts, "last_error": i.last_error}
            for n, i in self.items.items()
        }
