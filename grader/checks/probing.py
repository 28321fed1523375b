"""Verdicts of probe checks that fail closed: a refusal counts only beside a positive control in the same run.

A probe is a dict an assessor can follow:
- `what`: what the grader tried, `expected`: what the brief requires, `observed`: what came back;
- `ok`: True (as required), False (a violation was observed), or None (nothing could be concluded: `cause` names
  why, `unsure` says it in words);
- `why`: only on a violation, what was observed in words (a passing probe carries no failure wording).

A check passes only when every probe is ok; it fails when any probe observed a violation (a violation observed is
conclusive even when a control could not run); otherwise it is not assessable, never a pass.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..results import GRADER_OVERLOADED, CheckResult, not_assessable, passed
from .common import probes_failed

HOST_STALL_S = 1.0  # a plant physics-loop stall longer than this: the host fell behind (engine.MAX_LOOP_LAG_S)


def probe(
    what: str,
    observed: Any,
    ok: bool | None,
    *,
    expected: str | None = None,
    why: str | None = None,
    why_zh: str | None = None,
    cause: str | None = None,
    unsure: str | None = None,
    unsure_zh: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {"what": what}
    if expected is not None:
        out["expected"] = expected
    out["observed"] = observed
    out["ok"] = ok
    if ok is False:
        out["why"] = why or f"{what}: {observed}"
        if why_zh:
            out["why_zh"] = why_zh
    elif ok is None:
        out["cause"] = cause or "probe-inconclusive"
        out["unsure"] = unsure or f"{what}: {observed}"
        out["unsure_zh"] = unsure_zh or out["unsure"]
    return {**out, **extra}


def block(ctx: Any, spec: dict[str, Any], cause: str, en: str, zh: str, owner: str) -> None:
    """Record a candidate defect that keeps the grader from assessing other checks (not during a re-run after a
    restart: its verdicts are evidence of hardening.persists, not checks of their own)."""
    if not spec.get("fresh"):
        ctx.block(cause, en, zh, owner)


def owner_of(ctx: Any, preferred: str, candidates: tuple[str, ...], current: str) -> str:
    """The check that owns a defect: `preferred` when the lab has it, else the first of `candidates` in the lab's
    order (the first to meet the defect fails; the later ones say not assessable), else the current check."""
    ids = [c["id"] for c in ctx.lab.checks]
    if preferred in ids:
        return preferred
    for cid in ids:
        if cid in candidates:
            return cid
    return current


def judge(ctx: Any, spec: dict[str, Any], probes: list[dict[str, Any]], en: str, zh: str, **extra: Any) -> CheckResult:
    """Pass when every probe is ok; fail on any violation observed; otherwise not assessable naming the cause."""
    evidence = {"probes": probes, **extra}
    bad = [p for p in probes if p["ok"] is False]
    if bad:
        return probes_failed(spec, probes, bad, evidence)
    unsure = [p for p in probes if p["ok"] is None]
    if unsure or not probes:
        cause = unsure[0]["cause"] if unsure else "nothing-probed"
        if cause in ctx.blockers or cause == GRADER_OVERLOADED:
            return ctx.blocked(spec, cause, evidence)
        en_why = unsure[0]["unsure"] if unsure else "nothing could be probed"
        zh_why = unsure[0]["unsure_zh"] if unsure else "沒有可探測的項目"
        return not_assessable(spec["id"], spec["points"], cause, en_why, zh_why, evidence)
    return passed(
        spec["id"],
        spec["points"],
        f"{en} ({len(probes)} probe{'s' if len(probes) != 1 else ''})",
        f"{zh}（{len(probes)} 項探測）",
        evidence,
    )


class LoopLag:
    """The grader's own event-loop lag while a timing-sensitive probe waits (a 0.2 s sleep's overshoot): many
    gradings share one loop, and a loop that fell behind reads messages late or not before its deadline."""

    def __init__(self) -> None:
        self.max_s = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.2)
            self.max_s = max(self.max_s, time.monotonic() - t - 0.2)

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


async def host_stall(ctx: Any, t0: float, t1: float) -> float:
    """The longest stall of the plant's physics loop between t0 and t1 (s): the host's lag, not the candidate's."""
    try:
        events = await asyncio.to_thread(ctx.control.get, f"/v1/events?start={t0}&end={t1}")
    except Exception:  # noqa: BLE001 - no evidence of a stall is no stall
        return 0.0
    stalls = [float(e.get("detail", {}).get("late_ms", 0)) / 1000.0 for e in events if e.get("kind") == "tick_stall"]
    return max(stalls, default=0.0)


async def overloaded_or(
    ctx: Any, spec: dict[str, Any], result: CheckResult, t0: float, t1: float, lag: LoopLag | None = None
) -> CheckResult:
    """A timing-sensitive check that did not pass while the host stalled (the plant's physics loop, or the grader's
    own loop while it waited) is not assessable, and the engine grades again: the host's lag is never the
    candidate's fault."""
    if result.status == "pass":
        return result
    stall = max(await host_stall(ctx, t0, t1), lag.max_s if lag else 0.0)
    if stall > HOST_STALL_S:
        return ctx.blocked(spec, GRADER_OVERLOADED, {**result.evidence, "host_stall_s": round(stall, 2)})
    return result
