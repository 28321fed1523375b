"""Bring a candidate's plant up in this process (foreground) or as a detached daemon; bring it down."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from . import addressing as ad
from .daemonctl import mark
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
        if previous and ad.is_container_plant(previous) and ad.holds_slot(previous):
            raise PlantStartError(
                "plant",
                f"candidate {candidate!r} has a plant in containers ({previous['backend']} backend, project "
                f"{previous.get('project')}): bring it down first",
            )
        if previous and ad.pid_alive(previous.get("pid")) and previous.get("pid") != os.getpid():
            raise PlantStartError(
                "plant", f"candidate {candidate!r} already has a running plant (pid {previous['pid']})"
            )
        try:
            slot = ad.allocate_slot(candidate, spec["addressing"])
        except ad.SlotInUse as exc:
            raise PlantStartError("plant", str(exc)) from None
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
        mark(candidate, status="failed", error=str(exc))
        raise
    stop = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await plant.start()
    except PlantStartError as exc:
        mark(candidate, status="failed", error=str(exc), pid=None)
        plant.close()
        raise
    warnings = []
    if plant.broker is not None and plant.broker.binary is None:
        warnings.append(
            "mosquitto is not installed: the broker is the embedded Python FALLBACK (amqtt); it ignores "
            "config/mosquitto.conf and cannot be hardened. Install mosquitto (apt-get install mosquitto)."
        )
    mark(
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
        mark(candidate, status="stopped", pid=None, mosquitto_pid=None)
