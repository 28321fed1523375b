"""Hardening must survive a restart: devices are power-cycled and earlier probe checks run again.

A check that failed before the restart is its own failure, not this one's: only regressions count here."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from ..results import PASS, CheckResult
from . import check, registry
from .common import all_ok, control_post


@check("hardening.persists")
async def persists(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    params = spec.get("params", {})
    restarted = []
    for device in params["restart"]:
        try:
            await control_post(ctx, f"/v1/restart/{device}", {})
            restarted.append({"device": device, "restarted": True})
        except Exception as exc:  # noqa: BLE001 - a device that cannot restart with its saved config is evidence
            restarted.append({"device": device, "restarted": False, "error": str(exc)[:300]})
    await asyncio.sleep(float(params.get("settle_s", 4.0)))
    ctx.cache.clear()
    fns = registry()
    probes = []
    by_id = {c["id"]: c for c in ctx.lab.checks}
    for check_id in params["recheck"]:
        before = ctx.probe_results.get(check_id)
        again = fns[by_id[check_id]["fn"]](ctx, {**by_id[check_id], "fresh": True})
        if inspect.isawaitable(again):
            again = await again
        regressed = before is not None and before.status == PASS and again.status != PASS
        probes.append(
            {
                "what": f"{check_id} after restarting {', '.join(params['restart'])}",
                "observed": {
                    "before": before.status if before else None,
                    "after": again.status,
                    "after_summary": again.summary.get("en"),
                },
                "ok": not regressed,
                "why": f"{check_id} held before the restart and not after",
            }
        )
    for r in restarted:
        if not r["restarted"]:
            probes.append(
                {
                    "what": f"restart {r['device']} with its saved config",
                    "observed": r["error"],
                    "ok": False,
                    "why": f"{r['device']} did not come back with its saved config",
                }
            )
    return all_ok(
        spec,
        probes,
        "Hardening survives a restart of every device",
        "所有裝置重新啟動後強化設定仍然有效",
        restarted=restarted,
    )
