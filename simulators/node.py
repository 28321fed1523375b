"""One role of a plant split over processes: the entry point of every plant container.

    python -m aiotlab.simulators.node --role core|broker|plc1|em1|fw1|plc2|sensors|hmi

Configured by the environment, as a compose file or the Docker backend sets it:
AIOTLAB_CANDIDATE, AIOTLAB_SEED (optional), AIOTLAB_SLOT (the plant's slot: its networks and published
addresses), AIOTLAB_STATE_DIR (the plant's state folder, shared by all its containers), AIOTLAB_CORE (host:port
of the core's bus; device roles only), AIOTLAB_ADDRESSING ("containers", default: clients reach the plant through
published ports; "workstation": exam mode, clients on the plant network; or "loopback" to run the split plant on
this machine's loopback block, as the tests do). The plant's parameter key is read from `plant.key` in the state
folder (written by the host, 0600): no container ever holds the exam secret.

A device role exits (status 3) when it loses the core, so a restart policy brings it back connected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path

from .addressing import Addresses
from .bus import BUS_PORT, BusError, BusLink
from .launch import load_spec, plant_params
from .params import PlantIdentity, resolve
from .runtime import ROLES, Plant, PlantStartError
from .yamlconf import ConfigError

log = logging.getLogger("aiotlab.node")
TOKEN_WAIT_S = 60.0
PLANT_KEY_FILE = "plant.key"


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None or value == "":
        raise ValueError(f"{name} must be set")
    return value


def _addresses(slot: int, spec: dict, mode: str) -> tuple[Addresses, Addresses]:
    """(where devices bind, how clients reach them)."""
    if mode == "loopback":
        local = Addresses.for_slot(slot, spec["addressing"])
        return local, local
    if mode == "workstation":  # exam mode: clients are on the plant network, nothing is published
        net = Addresses.on_networks(slot, spec["addressing"])
        return net, net
    return Addresses.in_containers(slot, spec["addressing"]), Addresses.published(slot, spec["addressing"])


async def _wait_token(state_dir: Path, timeout: float) -> str:
    path = state_dir / "control.token"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            token = path.read_text().strip()
            if token:
                return token
        await asyncio.sleep(0.2)
    raise BusError(f"no control token at {path} after {timeout:.0f} s: is the core running with this state folder?")


async def run(role: str) -> int:
    candidate = _env("AIOTLAB_CANDIDATE")
    seed_text = os.environ.get("AIOTLAB_SEED") or None
    slot = int(_env("AIOTLAB_SLOT"))
    state_dir = Path(_env("AIOTLAB_STATE_DIR", "/var/lib/aiotlab/plant"))
    mode = _env("AIOTLAB_ADDRESSING", "containers")
    seed = int(seed_text) if seed_text else None
    key_file = state_dir / PLANT_KEY_FILE
    if seed is None and key_file.is_file():  # the host derived this plant's key: the exam secret stays there
        spec = load_spec()
        identity = PlantIdentity(candidate, None, bytes.fromhex(key_file.read_text().strip()))
        params = resolve(spec, identity)
    else:
        identity, spec, params = plant_params(candidate, seed)
    inside, public = _addresses(slot, spec, mode)
    state_dir.mkdir(parents=True, exist_ok=True)
    link = None
    if role != "core":
        token = await _wait_token(state_dir, TOKEN_WAIT_S)
        core = _env("AIOTLAB_CORE", f"{inside.hosts['control']}:{BUS_PORT}")
        host, _, port = core.rpartition(":")
        link = BusLink(host, int(port), role, token)
        await link.connect()
    config_dir = os.environ.get("AIOTLAB_CONFIG_DIR")  # exam mode: the validated copy of the candidate's folder
    plant = Plant(
        identity,
        spec,
        params,
        inside,
        state_dir,
        roles=frozenset({role}),
        link=link,
        public=public,
        config_dir=Path(config_dir) if config_dir else None,
    )
    if role == "core" and mode != "loopback":
        plant.bus_host = "0.0.0.0"  # the core's containers' networks only; the bus asks for the control token  # noqa: S104
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await plant.start()
    if link is not None:
        link.send({"op": "ready"})  # the core counts this device as serving from now on
    log.info("%s of %s running (slot %d, %s addressing)", role, candidate, slot, mode)
    waits = [asyncio.create_task(stop.wait())]
    if link is not None:
        waits.append(asyncio.create_task(link.lost.wait()))
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    lost = link is not None and link.lost.is_set() and not stop.is_set()
    for w in waits:
        w.cancel()
    await plant.stop()
    if link is not None:
        await link.close()
    plant.close()
    if lost:
        log.error("%s lost its plant core; exiting to be restarted", role)
        return 3
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="aiotlab-node", description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", required=True, choices=ROLES)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("asyncua", "aiohttp.access", "transitions", "amqtt"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return asyncio.run(run(args.role))
    except (PlantStartError, ConfigError, ValueError, BusError) as exc:
        print(f"{args.role} failed to start: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
