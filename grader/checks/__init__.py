"""Check library. A check is `fn(ctx, spec) -> CheckResult`, registered under a name labs refer to."""

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
    from . import daq  # noqa: F401 - importing registers the checks

    return dict(_REGISTRY)
