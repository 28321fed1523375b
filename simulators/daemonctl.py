"""Start and stop plant daemons without importing the plant itself (keeps `aiotlab plant up -d` fast)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import addressing as ad

# a fresh plant whose slot another registry's plant took meanwhile (a shared host starting many at once) tries
# another, never a lost one again
START_TRIES = 6


def mark(candidate: str, **fields: Any) -> None:
    """Update a plant's recorded state under the registry lock."""
    with ad.registry_lock():
        state = ad.read_state(candidate) or {"candidate": candidate}
        state.update(fields)
        state["since"] = time.time()
        ad.write_state(candidate, state)


def detach(candidate: str, seed: int | None, timeout: float = 30.0) -> dict[str, Any]:
    """Start the plant as a daemon and wait until it runs or fails; returns its state.

    A plant that had no slot yet and lost its new one to a plant of another registry starting at the same moment
    (its addresses turned out to be in use) is given another slot and started again."""
    before = ad.read_state(candidate)
    fresh = not (before and before.get("slot") is not None)
    lost: list[int] = []
    for _ in range(START_TRIES):
        st = _detach_once(candidate, seed, timeout, lost)
        if not (fresh and st.get("status") == "failed" and "address already in use" in str(st.get("error")).lower()):
            return st
        # Never handed out: take another slot (never the lost one again). The configs the failed start wrote name
        # the lost slot's addresses (a fresh plant has no configs of the candidate's own yet), so they are made
        # anew for the next one.
        if st.get("slot") is not None:
            lost.append(int(st["slot"]))
        mark(candidate, slot=None, status="stopped")
        for sub in ("config", "running-config"):
            shutil.rmtree(ad.plant_dir(candidate) / sub, ignore_errors=True)
        time.sleep(0.2)
    return st


def _detach_once(candidate: str, seed: int | None, timeout: float, avoid: list[int] | None = None) -> dict[str, Any]:
    d = ad.plant_dir(candidate)
    (d / "logs").mkdir(parents=True, exist_ok=True)
    from .params import env_without_secret, exam_secret

    cmd = [sys.executable, "-m", "aiotlab.simulators.daemon", "--candidate", candidate, "--secret-stdin"]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    secret = exam_secret()
    with open(d / "logs" / "plant.log", "ab") as logf:
        proc = subprocess.Popen(
            cmd,
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE,
            start_new_session=True,
            env={**env_without_secret(), "AIOTLAB_AVOID_SLOTS": ",".join(map(str, avoid or []))},
        )
    assert proc.stdin is not None
    try:
        proc.stdin.write((secret + "\n").encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass  # it exited at once: the loop below reports why
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = ad.read_state(candidate) or {}
        if st.get("status") == "running" and st.get("pid") == proc.pid:
            return st
        if st.get("status") == "failed" and proc.poll() is not None:
            return st
        if proc.poll() is not None:
            st = ad.read_state(candidate) or {}
            if st.get("status") != "failed":
                st = {
                    **st,
                    "status": "failed",
                    "error": f"plant process exited with {proc.returncode}; see {d / 'logs' / 'plant.log'}",
                }
            return st
        time.sleep(0.01)
    proc.terminate()
    return {
        "candidate": candidate,
        "status": "failed",
        "error": f"not running after {timeout:.0f} s; see {d / 'logs' / 'plant.log'}",
    }


def down(candidate: str, timeout: float = 10.0) -> str:
    """Stop a candidate's plant (and any leftover broker of a crashed one). Returns what was done."""
    st = ad.read_state(candidate)
    if not st:
        return "no such plant"
    pid = st.get("pid")
    done = "not running"
    if ad.pid_alive(pid) and pid != os.getpid():
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while ad.pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if ad.pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            done = "killed"
        else:
            done = "stopped"
    mpid = st.get("mosquitto_pid")
    if ad.pid_alive(mpid) and _is_mosquitto(mpid):
        os.kill(mpid, signal.SIGTERM)
        done += " (and a leftover broker)"
    mark(candidate, status="stopped", pid=None, mosquitto_pid=None)
    return done


def _is_mosquitto(pid: int) -> bool:
    try:
        return "mosquitto" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
