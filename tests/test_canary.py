"""The canary beside the candidate's solution (grader/canary.py): a process stalled while it is observed is seen,
and a grading whose candidate environment stalled is the host's fault (graded again), never the candidate's."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from aiotlab.grader import canary
from aiotlab.grader.engine import MAX_LOOP_LAG_S, GradeContext, LagMonitor, health_of
from aiotlab.labs.loader import load_lab


async def stalled(tmp_path: Path, stop_s: float) -> dict:
    c = await canary.start(4.0, tmp_path, {"PATH": os.environ["PATH"]})
    assert c.proc is not None
    await asyncio.sleep(1.0)
    if stop_s:
        os.kill(c.proc.pid, signal.SIGSTOP)  # what a starved container looks like to the process in it
        await asyncio.sleep(stop_s)
        os.kill(c.proc.pid, signal.SIGCONT)
    return await c.result(grace_s=10.0)


def test_a_stalled_environment_is_seen_and_nothing_is_left(tmp_path: Path) -> None:
    got = asyncio.run(stalled(tmp_path, 1.6))
    assert got["ran"] and got["finished"], got
    assert got["max_wake_lag_s"] >= 1.4, got
    assert got["max_sync_s"] >= 0.0
    assert list(tmp_path.iterdir()) == []  # its sync file was unlinked as soon as it was opened


def test_an_environment_that_stalled_makes_the_grading_the_hosts(tmp_path: Path) -> None:
    """health_of names the candidate's environment as the reason (the grading is then done again); the same
    canary report within the limits is no reason; a canary that could not run is no evidence either way."""
    lab = load_lab("data-acquisition")
    ctx = GradeContext(lab, "c", lab.params_for("c"), {}, {}, None, tmp_path)  # type: ignore[arg-type]
    ctx.observation.window = (time.time() - 30, time.time())
    monitor = LagMonitor()
    slow = {"ran": True, "max_wake_lag_s": MAX_LOOP_LAG_S + 3.2, "max_sync_s": 0.01, "finished": True}
    h = health_of(ctx, monitor, 30.0, [], slow)
    assert h["overloaded"] and "the candidate's environment stalled 4.20 s" in h["reasons"][0]
    disk = {"ran": True, "max_wake_lag_s": 0.05, "max_sync_s": 2.5, "finished": True}
    assert "to sync 4 KiB" in health_of(ctx, monitor, 30.0, [], disk)["reasons"][0]
    quiet = {"ran": True, "max_wake_lag_s": 0.05, "max_sync_s": 0.01, "finished": True}
    assert not health_of(ctx, monitor, 30.0, [], quiet)["overloaded"]
    assert not health_of(ctx, monitor, 30.0, [], {"ran": False, "error": "no python3"})["overloaded"]
