"""Bring a candidate's plant up in this process (foreground) or as a detached daemon; bring it down."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from . import addressing as ad
from .params import PlantIdentity, resolve
from .runtime import Plant, PlantStartError
from .yamlconf import ConfigError, load_yaml

DEFAULT_SPEC = "default-plant.yaml"


def spec_path(path: str | Path | None = None) -> Path:
    if path:
        return Path(path)
    return Path(str(resources.files("aiotlab.simulators") / "specs" / DEFAULT_SPEC))


def load_spec(path: str | Path | None = None) -> dict[str, Any]:
    p = spec_path(path)
    spec = load_yaml(p)
    if not isinstance(spec, dict) or spec.get("spec_version") != 1:
        raise ConfigError(p, "not an aiotlab plant spec (spec_version: 1 expected)")
    return spec


def plant_params(
    candidate: str, seed: int | None = None, secret: str | None = None, spec: dict[str, Any] | None = None
) -> tuple[PlantIdentity, dict[str, Any], dict[str, Any]]:
    spec = spec or load_spec()
    identity = PlantIdentity.for_candidate(ad.validate_candidate(candidate), secret=secret, seed=seed)
    return identity, spec, resolve(spec, identity)


def build_plant(candidate: str, seed: int | None = None, secret: str | None = None, **kw: Any) -> Plant:
    identity, spec, params = plant_params(candidate, seed, secret)
    with ad.registry_lock():
        previous = ad.read_state(candidate)
        if previous and ad.pid_alive(previous.get("pid")) and previous.get("pid") != os.getpid():
            raise PlantStartError(
                "plant", f"candidate {candidate!r} already has a running plant (pid {previous['pid']})"
            )
        slot = ad.allocate_slot(candidate, spec["addressing"])
        addresses = ad.Addresses.for_slot(slot, spec["addressing"])
        ad.write_state(
            candidate,
            {
                "candidate": candidate,
                "seed": seed,
                "slot": slot,
                "pid": os.getpid(),
                "status": "starting",
                "state_dir": str(ad.plant_dir(candidate)),
                "addresses": addresses.as_dict(),
                "since": time.time(),
            },
        )
    return Plant(identity, spec, params, addresses, ad.plant_dir(candidate), **kw)


async def serve(
    candidate: str,
    seed: int | None = None,
    on_ready: Callable[[Plant], None] | None = None,
    stop_event: asyncio.Event | None = None,
) -> None:
    """Run a plant until SIGINT/SIGTERM (or stop_event); record its state for `plant status` / `plant down`."""
    try:
        plant = build_plant(candidate, seed)
    except (PlantStartError, ConfigError, ValueError) as exc:
        _mark(candidate, status="failed", error=str(exc))
        raise
    stop = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await plant.start()
    except PlantStartError as exc:
        _mark(candidate, status="failed", error=str(exc), pid=None)
        plant.close()
        raise
    warnings = []
    if plant.broker is not None and plant.broker.binary is None:
        warnings.append(
            "mosquitto is not installed: the broker is the embedded Python FALLBACK (amqtt); it ignores "
            "config/mosquitto.conf and cannot be hardened. Install mosquitto (apt-get install mosquitto)."
        )
    _mark(
        candidate,
        status="running",
        endpoints=plant.endpoints(),
        warnings=warnings,
        control={
            "url": f"http://{plant.h['control']}:{plant.p['control']}",
            "token_file": str(plant.dir / "control.token"),
        },
        mosquitto_pid=plant.broker.proc.pid if plant.broker and plant.broker.proc else None,
    )
    if on_ready:
        on_ready(plant)
    try:
        await stop.wait()
    finally:
        await plant.stop()
        plant.close()
        _mark(candidate, status="stopped", pid=None, mosquitto_pid=None)


def _mark(candidate: str, **fields: Any) -> None:
    with ad.registry_lock():
        state = ad.read_state(candidate) or {"candidate": candidate}
        state.update(fields)
        state["since"] = time.time()
        ad.write_state(candidate, state)


def detach(candidate: str, seed: int | None, timeout: float = 30.0) -> dict[str, Any]:
    """Start the plant as a daemon and wait until it runs or fails; returns its state."""
    d = ad.plant_dir(candidate)
    (d / "logs").mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "aiotlab.simulators.daemon", "--candidate", candidate]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    with open(d / "logs" / "plant.log", "ab") as logf:
        proc = subprocess.Popen(
            cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
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
        time.sleep(0.05)
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
    _mark(candidate, status="stopped", pid=None, mosquitto_pid=None)
    return done


def _is_mosquitto(pid: int) -> bool:
    try:
        return "mosquitto" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
