"""One interface for where a plant runs: `process` (practice mode: a daemon of this user's), `docker` (containers
on a Docker engine, with a workstation per candidate in exam mode), `compose` (a plant started by docker-compose
from the compose file, recorded here). The CLI and the exam ask a backend; they do not branch on its name.
Swarm comes next as another implementation of the same interface."""

from __future__ import annotations

from typing import Any, Protocol

from . import addressing as ad


class BackendError(Exception):
    """A plant could not be started, stopped or inspected; the message says why, for the instructor."""


class PlantBackend(Protocol):
    name: str
    isolated: bool  # candidates get their own workstation (exam mode) and never the plants' own user

    def up(self, plant: str, seed: int | None = None, workstation: Any = None) -> dict[str, Any]:
        """Start the plant (and its workstation, where isolated); its recorded state once it runs."""
        ...

    def down(self, plant: str) -> str:
        """Stop the plant; what was done, in words."""
        ...

    def status(self, plant: str) -> dict[str, str]:
        """Each of the plant's parts -> its state (running, exited, ...)."""
        ...

    def leftovers(self, keep: set[str] = frozenset()) -> list[str]:
        """Plants with parts still present but no running plant recorded (a crashed or killed run)."""
        ...


class ProcessBackend:
    """Practice mode: each plant one daemon process of this user (simulators/daemonctl.py)."""

    name = "process"
    isolated = False

    def up(self, plant: str, seed: int | None = None, workstation: Any = None) -> dict[str, Any]:
        from .daemonctl import detach

        if workstation is not None:
            raise BackendError("the process backend has no workstations: exam mode needs backend docker")
        try:
            st = detach(plant, seed)
        except ValueError as exc:
            raise BackendError(str(exc)) from None
        if st.get("status") != "running":
            raise BackendError(f"{plant}: {st.get('error')}")
        return st

    def down(self, plant: str) -> str:
        from .daemonctl import down

        return down(plant)

    def status(self, plant: str) -> dict[str, str]:
        st = ad.read_state(plant)
        return {"plant": "running" if ad.is_running(st) else str((st or {}).get("status", "absent"))}

    def leftovers(self, keep: set[str] = frozenset()) -> list[str]:
        return []  # a daemon that died takes its devices with it; its broker dies with it (PR_SET_PDEATHSIG)


class ComposeRecord:
    """A plant docker-compose started from the compose file: recorded here, started and removed by compose."""

    name = "compose"
    isolated = False

    def up(self, plant: str, seed: int | None = None, workstation: Any = None) -> dict[str, Any]:
        raise BackendError("a compose plant is started by docker-compose: aiotlab plant compose-env, then up")

    def down(self, plant: str) -> str:
        from .daemonctl import mark

        st = ad.read_state(plant) or {}
        mark(plant, status="stopped")
        return f"compose plant marked stopped; remove it with: docker-compose -p {st.get('project', plant)} down"

    def status(self, plant: str) -> dict[str, str]:
        return ProcessBackend().status(plant)

    def leftovers(self, keep: set[str] = frozenset()) -> list[str]:
        return []


def backend_named(name: str, image: str | None = None) -> PlantBackend:
    """The backend an exam file or `--backend` names."""
    if name == "process":
        return ProcessBackend()
    if name == "docker":
        from .containers import DEFAULT_IMAGE, DockerBackend

        return DockerBackend(image or DEFAULT_IMAGE)
    if name == "compose":
        return ComposeRecord()
    raise BackendError(f"unknown backend {name!r}: process or docker")


def backend_of(state: dict[str, Any] | None, default: str = "process") -> PlantBackend:
    """The backend a recorded plant runs on (its image too)."""
    st = state or {}
    return backend_named(str(st.get("backend") or default), st.get("image"))
