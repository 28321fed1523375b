"""Where a plant lives: its loopback /24 block, its ports, its state directory, and the registry of plants.

Linux routes all of 127.0.0.0/8 to lo, so each plant gets 127.A.B.0/24 (A = 64 + slot // 256, B = slot % 256)
and every device its own address in it: many candidates' plants side by side, each on standard ports.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_SLOTS = 64 * 256
CANDIDATE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def home() -> Path:
    return Path(os.environ.get("AIOTLAB_HOME", Path.home() / ".local" / "state" / "aiotlab"))


def plants_dir() -> Path:
    h = home()
    if not h.exists():
        h.mkdir(parents=True, mode=0o700, exist_ok=True)  # several plants may start at once
    return h / "plants"


def validate_candidate(candidate: str) -> str:
    if not CANDIDATE_RE.match(candidate):
        raise ValueError(f"candidate id {candidate!r} must be 1-64 of A-Z a-z 0-9 _ . - (starting alphanumeric)")
    return candidate


def plant_dir(candidate: str) -> Path:
    return plants_dir() / validate_candidate(candidate)


def block(slot: int) -> str:
    if not 0 <= slot < MAX_SLOTS:
        raise ValueError(f"slot {slot} out of range")
    return f"127.{64 + slot // 256}.{slot % 256}"


def may_bind_privileged() -> bool:
    if os.geteuid() == 0:
        return True
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text()) <= 502
    except (OSError, ValueError):
        return False


def container_nets(slot: int) -> dict[str, str]:
    """The /24 prefixes of a containerised plant's networks: `plant` (candidate-facing: the devices' client
    sides, the workstation in exam mode), `field` (PLC-1, EM-1 and FW-1's field side) and `control` (the core
    and the plant-side devices: the bus and the control plane, never reachable from the plant network). Same
    slot numbering as the loopback blocks; the host holds .254 of the plant and control networks."""
    block(slot)
    a, b = 64 + slot // 256, slot % 256
    return {"plant": f"10.{a}.{b}", "field": f"10.{a + 64}.{b}", "control": f"10.{a + 128}.{b}"}


@dataclass(frozen=True)
class Addresses:
    slot: int
    hosts: dict[str, str]
    ports: dict[str, int]
    # where FW-1 listens for each conduit when not at (hosts[name], ports["modbus"]): a container has one address
    listen: dict[str, tuple[str, int]] | None = None

    @classmethod
    def for_slot(cls, slot: int, spec_addressing: dict[str, Any]) -> Addresses:
        prefix = block(slot)
        hosts = {name: f"{prefix}.{int(h)}" for name, h in spec_addressing["hosts"].items()}
        offset = 0 if may_bind_privileged() else int(spec_addressing.get("privileged_port_offset", 10000))
        ports = {name: (p + offset if p < 1024 else p) for name, p in spec_addressing["ports"].items()}
        return cls(slot, hosts, ports)

    @classmethod
    def published(cls, slot: int, spec_addressing: dict[str, Any]) -> Addresses:
        """A containerised plant as clients reach it: the slot's loopback block, on the standard ports (the
        engine, not this process, binds the published ports)."""
        return cls(slot, cls.for_slot(slot, spec_addressing).hosts, dict(spec_addressing["ports"]))

    @classmethod
    def in_containers(cls, slot: int, spec_addressing: dict[str, Any]) -> Addresses:
        """The plant as its containers see it: devices on the plant and field networks at the same host numbers,
        standard ports, the workstation being the plant network's gateway (the host, where docker-proxy relays
        the published ports from). FW-1 holds one plant address (.11, PLC-1's) and serves EM-1's conduit on
        port 1502 there; the datasheet still gives EM-1 at its own published address and port 502."""
        hosts = cls.on_networks(slot, spec_addressing).hosts
        hosts["em1"] = hosts["plc1"]
        ports = dict(spec_addressing["ports"])
        return cls(slot, hosts, ports, {"plc1": (hosts["plc1"], ports["modbus"]), "em1": (hosts["plc1"], 1502)})

    @classmethod
    def on_networks(cls, slot: int, spec_addressing: dict[str, Any]) -> Addresses:
        """Exam mode: the plant on its own networks, as the candidate's workstation (and the host, which holds
        .254 of the plant network) reach it: every device at its datasheet host number on the plant network,
        standard ports, nothing published. FW-1 holds .11 and .12 (PLC-1's and EM-1's conduits); the core is
        on the control network."""
        nets = container_nets(slot)
        hosts = {
            name: f"{nets['field' if name.endswith('_field') else 'plant']}.{int(h)}"
            for name, h in spec_addressing["hosts"].items()
        }
        hosts["control"] = f"{nets['control']}.{int(spec_addressing['hosts']['control'])}"
        return cls(slot, hosts, dict(spec_addressing["ports"]))

    def conduit_listen(self, name: str) -> tuple[str, int]:
        return (self.listen or {}).get(name) or (self.hosts[name], self.ports["modbus"])

    def as_dict(self) -> dict[str, Any]:
        return {"slot": self.slot, "hosts": self.hosts, "ports": self.ports}


@contextlib.contextmanager
def registry_lock() -> Iterator[None]:
    plants_dir().mkdir(parents=True, exist_ok=True)
    with open(plants_dir() / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_state(candidate: str) -> dict[str, Any] | None:
    path = plant_dir(candidate) / "plant.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_state(candidate: str, state: dict[str, Any]) -> None:
    d = plant_dir(candidate)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / "plant.json.tmp"
    tmp.write_text(json.dumps(state, indent=2, default=str))
    os.replace(tmp, d / "plant.json")


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie or a recycled pid is not our plant
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


CONTAINER_BACKENDS = ("compose", "docker")


def is_container_plant(state: dict[str, Any] | None) -> bool:
    return bool(state) and state.get("backend") in CONTAINER_BACKENDS


def control_reachable(url: str, timeout: float = 0.5) -> bool:
    import socket
    import urllib.parse

    u = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((u.hostname or "", u.port or 80), timeout):
            return True
    except OSError:
        return False


def is_running(state: dict[str, Any] | None) -> bool:
    """A recorded plant that says it runs and whose process is alive (a container plant: whose control plane
    accepts connections)."""
    if not state or state.get("status") != "running":
        return False
    if is_container_plant(state):
        return control_reachable(state.get("control", {}).get("url", ""))
    return pid_alive(state.get("pid"))


def holds_slot(state: dict[str, Any]) -> bool:
    """A plant that keeps its slot: a live process, or containers recorded and not brought down."""
    if is_container_plant(state):
        return state.get("status") not in ("stopped", "failed")
    return pid_alive(state.get("pid"))


def all_states() -> list[dict[str, Any]]:
    out = []
    if not plants_dir().is_dir():
        return out
    for d in sorted(plants_dir().iterdir()):
        if d.is_dir():
            st = read_state(d.name)
            if st:
                out.append(st)
    return out


def block_free(slot: int, spec_addressing: dict[str, Any]) -> bool:
    """True when nothing on this machine (another registry, another user) holds the slot's key endpoints."""
    import socket

    # Only the control endpoint is probed: every plant holds it, and nothing else binds it. (A wildcard listener,
    # e.g. a system Mosquitto on 0.0.0.0:1883, must surface as "broker: address in use", not as "no free slot".)
    addrs = Addresses.for_slot(slot, spec_addressing)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is not "in use"
        try:
            s.bind((addrs.hosts["control"], addrs.ports["control"]))
        except OSError:
            return False
    # A container plant of this slot (any registry's) holds nothing on the loopback control address: its
    # networks give this host .254 of the slot's plant network, which exists only while they do.
    with socket.socket() as s:
        try:
            s.bind((f"{container_nets(slot)['plant']}.254", 0))
            return False
        except OSError:
            pass
    return True


class SlotInUse(Exception):
    pass


def allocate_slot(candidate: str, spec_addressing: dict[str, Any] | None = None) -> int:
    """The candidate's slot: the one they were first given (their addresses, datasheet, collector and device
    configs all name it), else the lowest free one. Call under the registry lock.

    A slot is free when no live plant of this registry holds it and (given the spec's addressing) its control
    endpoint can be bound, so plants of different registries on one machine do not collide."""
    taken: dict[int, str] = {}
    mine = None
    for st in all_states():
        if st.get("candidate") == candidate:
            mine = st.get("slot")
            continue
        if holds_slot(st) and st.get("slot") is not None:
            taken[int(st["slot"])] = st["candidate"]

    # slots a previous start of this plant lost to another registry's plant (their control endpoint may have been
    # free at the time, its devices' addresses were not): daemonctl names them, so a retry takes another slot
    avoid = {int(s) for s in os.environ.get("AIOTLAB_AVOID_SLOTS", "").split(",") if s.strip().isdigit()}

    def usable(slot: int) -> bool:
        return (
            slot not in taken and slot not in avoid and (spec_addressing is None or block_free(slot, spec_addressing))
        )

    if mine is not None:
        if usable(int(mine)):
            return int(mine)
        holder = taken.get(int(mine), "another plant on this machine (another AIOTLAB_HOME?)")
        raise SlotInUse(
            f"candidate {candidate!r} owns {block(int(mine))}.0/24 (slot {mine}), now in use by {holder}; "
            "stop that plant first (a candidate's addresses never change between restarts)"
        )
    for slot in range(MAX_SLOTS):
        if usable(slot):
            return slot
    raise RuntimeError("no free plant slot")
