"""Check library. A check is `fn(ctx, spec) -> CheckResult`, registered under a name labs refer to.

Passive checks are plain functions judging what was recorded; active checks are coroutines that probe the live
plant (the engine runs those one at a time, in the lab's order, while the candidate's system still runs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_REGISTRY: dict[str, Callable[..., Any]] = {}


def check(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY[name] = fn
        return fn

    return deco


def registry() -> dict[str, Callable[..., Any]]:
    # importing registers the checks
    from . import acq_plan, alert_plan, broker, daq, dashboard, modbus, opcua, persist, pipeline, risk, sensors  # noqa: F401

    return dict(_REGISTRY)
