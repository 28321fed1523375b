"""Hardening must survive a restart: devices are power-cycled and earlier probe checks run again.

Only controls that held before the restart are rechecked: a check that failed before is its own failure, not this
one's. Scores only when something held: on a plant where no rechecked control held (a factory plant) there is
nothing that could persist, and this check is not assessable (no points)."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

from ..probes import opcua as up
from ..results import GRADER_OVERLOADED, NOT_ASSESSABLE, PASS, CheckResult
from . import check, registry
from .common import control_post, hosts
from .probing import block, judge, probe

READY_TIMEOUT_S = 30.0


async def wait_ready(ctx: Any, devices: list[str]) -> dict[str, Any]:
    """Poll (with a deadline) until the restarted devices answer again: PLC-2 its endpoints, FW-1 a Modbus request
    from the collector (any reply, an exception included). The broker's checks bound their own waits."""
    from ..probes import modbus as mp

    deadline = time.monotonic() + READY_TIMEOUT_S
    waiting: dict[str, Any] = {}
    if "plc2" in devices:
        waiting["plc2"] = lambda: up.endpoints(ctx.sheet["plc2"]["endpoint"])
    if "fw1" in devices or "plc1" in devices:
        plc1 = ctx.sheet["plc1"]

        async def fw1() -> None:
            r = await mp.request(
                plc1["host"], int(plc1["port"]), int(plc1["unit_id"]), hosts(ctx)["workstation"], mp.read_pdu(3, 0)
            )
            if r.outcome not in ("ok", "exception"):
                raise ConnectionError(r.detail)

        waiting["fw1"] = fw1
    ready: dict[str, Any] = {}
    while waiting and time.monotonic() < deadline:
        for name, fn in list(waiting.items()):
            got = await up.attempt(fn(), 5.0)
            if got.accepted:
                ready[name] = round(time.monotonic() - deadline + READY_TIMEOUT_S, 2)
                waiting.pop(name)
        if waiting:
            await asyncio.sleep(0.5)
    return {"ready_after_s": ready, "not_ready": sorted(waiting)}


def status_of(ctx: Any, check_id: str) -> str:
    r = ctx.probe_results.get(check_id)
    return {"fail": "fails", "not_assessable": "not assessable"}.get(r.status, r.status) if r else "not run"


@check("hardening.persists")
async def persists(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    params = spec.get("params", {})
    held = [c for c in params["recheck"] if (r := ctx.probe_results.get(c)) is not None and r.status == PASS]
    if not held:
        en = "no rechecked control held before the restart: there was nothing that could persist"
        zh = "重新啟動前沒有任何受複查的控制成立：沒有可以持續有效的強化"
        block(ctx, spec, "nothing-hardened", en, zh, "")  # no check's defect: there was nothing to recheck
        return ctx.blocked(spec, "nothing-hardened", {"recheck": params["recheck"]})
    restarted = []
    for device in params["restart"]:
        try:
            await control_post(ctx, f"/v1/restart/{device}", {})
            restarted.append({"device": device, "restarted": True})
        except Exception as exc:  # noqa: BLE001 - a device that cannot restart with its saved config is evidence
            restarted.append({"device": device, "restarted": False, "error": str(exc)[:300]})
    readiness = await wait_ready(ctx, params["restart"])
    await asyncio.sleep(float(params.get("settle_s", 1.0)))
    ctx.cache.clear()
    fns = registry()
    by_id = {c["id"]: c for c in ctx.lab.checks}
    probes = []
    for r in restarted:
        if not r["restarted"]:
            probes.append(
                probe(
                    f"restart {r['device']} with its saved config",
                    r["error"],
                    False,
                    why=f"{r['device']} did not come back with its saved config: {r['error']}",
                    why_zh=f"{r['device']} 未能以其已儲存的設定重新啟動：{r['error']}",
                )
            )
    for check_id in params["recheck"]:
        if check_id not in held:
            continue
        again = fns[by_id[check_id]["fn"]](ctx, {**by_id[check_id], "fresh": True})
        if inspect.isawaitable(again):
            again = await again
        what = f"{check_id} after restarting {', '.join(params['restart'])}"
        observed = {"before": PASS, "after": again.status, "after_summary": again.summary.get("en")}
        if again.status != PASS:  # what the re-run saw, so the report can be audited (not only its summary)
            observed["after_failing_probes"] = [
                p for p in (again.evidence or {}).get("probes", []) if isinstance(p, dict) and not p.get("ok")
            ][:5]
        if again.status == PASS:
            probes.append(probe(what, observed, True, expected="still holds"))
        elif again.status == NOT_ASSESSABLE and again.blocked_by in (
            GRADER_OVERLOADED,
            "plc2-no-answer",
            "probe-inconclusive",
        ):
            probes.append(
                probe(
                    what,
                    observed,
                    None,
                    cause=again.blocked_by,
                    unsure=f"{check_id} could not be re-assessed after the restart: {again.summary.get('en')}",
                    unsure_zh=f"重新啟動後無法再評量 {check_id}：{again.summary.get('zh-TW')}",
                )
            )
        else:
            probes.append(
                probe(
                    what,
                    observed,
                    False,
                    expected="still holds",
                    why=f"{check_id} held before the restart and not after: {again.summary.get('en')}",
                    why_zh=f"{check_id} 於重新啟動前成立、重新啟動後不成立：{again.summary.get('zh-TW') or again.summary.get('en')}",
                )
            )
    return judge(
        ctx,
        spec,
        probes,
        "Hardening survives a restart of every device",
        "所有裝置重新啟動後強化設定仍然有效",
        restarted=restarted,
        readiness=readiness,
        not_rechecked={
            c: f"did not pass before the restart (its own check: {status_of(ctx, c)}), so it was not rechecked"
            for c in params["recheck"]
            if c not in held
        },
    )
