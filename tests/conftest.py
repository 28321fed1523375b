"""Fixtures: real plants started through the real CLI, in a private AIOTLAB_HOME, torn down after the tests."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

AIOTLAB = [sys.executable, "-m", "aiotlab.cli"]


@pytest.fixture(scope="session", autouse=True)
def no_plants_of_earlier_test_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The container tier starts on a clean engine: plants an earlier, killed test run left behind (their registry
    is another run's pytest folder) are removed with their workstation fences before anything starts. Their
    restart policy would otherwise keep dozens of containers busy on a 2-core host under this run's gradings."""
    if not any(item.get_closest_marker("docker") for item in request.session.items):
        return
    import docker

    from aiotlab.simulators.containers import LABEL, LABEL_HOME, DockerBackend

    this_run = tmp_path_factory.getbasetemp()

    def earlier_run(home: str) -> bool:
        return bool(home) and Path(home).is_relative_to(this_run.parent) and not Path(home).is_relative_to(this_run)

    client = docker.from_env(timeout=60)
    projects = set()
    for c in client.containers.list(all=True, filters={"label": f"{LABEL}=true"}):
        if earlier_run(c.labels.get(LABEL_HOME, "")):
            projects.add(c.name.removesuffix("-" + c.labels.get("io.aiotlab.service", "")))
            c.remove(force=True)
    for project in projects:
        DockerBackend.unfence(project)
    for n in client.networks.list(filters={"label": f"{LABEL}=true"}):
        if earlier_run((n.attrs.get("Labels") or {}).get(LABEL_HOME, "")):
            n.remove()


@pytest.fixture(scope="session")
def aiot_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("aiotlab-home")
    old = os.environ.get("AIOTLAB_HOME")
    os.environ["AIOTLAB_HOME"] = str(home)
    os.environ.setdefault("AIOTLAB_EXAM_SECRET", "test-exam-secret")
    yield home
    subprocess.run([*AIOTLAB, "plant", "down", "--all"], capture_output=True, timeout=60)
    if old is None:
        os.environ.pop("AIOTLAB_HOME", None)
    else:
        os.environ["AIOTLAB_HOME"] = old


def cli(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*AIOTLAB, *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"aiotlab {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


class PlantHandle:
    """A running plant as a test sees it: its datasheet (candidate view) and its control plane (grader view)."""

    def __init__(self, candidate: str, home: Path) -> None:
        from aiotlab.simulators.control_client import ControlClient

        self.candidate = candidate
        self.home = home
        self.dir = home / "plants" / candidate
        self.sheet: dict[str, Any] = json.loads(cli("plant", "datasheet", "-c", candidate, "--format", "json").stdout)
        self.control = ControlClient.for_candidate(candidate)
        self.info = self.control.get("/v1/info")
        self.hosts = self.info["addresses"]["hosts"]
        self.ports = self.info["addresses"]["ports"]

    def value(self, tag: str) -> Any:
        return self.control.get("/v1/values")["values"][tag]

    def reg(self, device: str, name: str) -> dict[str, Any]:
        for tags in self.sheet[device]["tables"].values():
            for t in tags:
                if t["name"] == name:
                    return t
        raise KeyError(name)

    @property
    def workstation(self) -> str:
        return self.sheet["network"]["workstation"]

    def config(self, name: str) -> Path:
        return self.dir / "config" / name

    def reload(self, device: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return cli("plant", "reload", device, "-c", self.candidate, check=check)


def start_plant(candidate: str, home: Path, seed: int | None = None) -> PlantHandle:
    args = ["plant", "up", "-c", candidate, "--detach", "--json"]
    if seed is not None:
        args += ["--seed", str(seed)]
    out = json.loads(cli(*args).stdout)
    assert out["status"] == "running", out
    handle = PlantHandle(candidate, home)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # sensors connected and at least one physics second recorded
        st = handle.control.get("/v1/status")
        if st["ticks"] >= 10 and all(s["connected"] for s in st["sensors"].values()):
            return handle
        time.sleep(0.1)
    raise AssertionError(f"plant {candidate} not ready: {handle.control.get('/v1/status')}")


@pytest.fixture(scope="session")
def plant(aiot_home: Path) -> Iterator[PlantHandle]:
    """The shared read-mostly plant. Tests that change configs use their own plants."""
    handle = start_plant("alice", aiot_home)
    yield handle
    cli("plant", "down", "-c", "alice", check=False)


@pytest.fixture()
def own_plant(aiot_home: Path, request: pytest.FixtureRequest) -> Iterator[PlantHandle]:
    name = "t-" + re.sub(r"[^A-Za-z0-9-]+", "-", request.node.name.replace("test_", ""))[:48].strip("-")
    shutil.rmtree(aiot_home / "plants" / name, ignore_errors=True)
    handle = start_plant(name, aiot_home)
    yield handle
    cli("plant", "down", "-c", name, check=False)


def need(binary: str) -> str:
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    if path is None:
        pytest.fail(f"{binary} is not installed: .ci/run installs it (apt-get); interop tests must not be skipped")
    return path
