"""The container tier, on a real Docker engine (./run.sh test-docker builds the images first).

The compose plant from docker-compose.yml, brought up by Debian's docker-compose, is graded like the process
plant: the reference full marks, flawed solutions (on Docker SDK plants) exactly their declared failures. The
field network is reachable only through FW-1; the Docker backend labels, limits and cleans up what it makes,
leftovers of a crashed run included."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from aiotlab.labs.loader import load_lab

from conftest import AIOTLAB, cli

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("AIOTLAB_TEST_IMAGE", "aiotlab-plant:latest")


@pytest.fixture(scope="module")
def engine() -> Any:
    import docker

    client = docker.from_env(timeout=60)
    client.ping()  # no engine is a failure of this tier, not a skip
    client.images.get(IMAGE)
    return client


def failed_checks(report: Path) -> set[str]:
    doc = json.loads(report.read_text())
    return {c["id"] for c in doc["checks"] if c["status"] != "pass"}


MODBUS_PROBE = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], 502), 2.0) as s:
        s.settimeout(2.0)
        s.sendall(bytes([0, 1, 0, 0, 0, 6, int(sys.argv[2]), 3, 0, 0, 0, 1]))
        reply = s.recv(260)
except OSError:
    reply = b""
unit = int(sys.argv[2])
modbus = len(reply) >= 9 and reply[:4] == bytes([0, 1, 0, 0]) and reply[6] == unit and reply[7] in (3, 0x83)
print("answered" if modbus else "silent")
"""


def modbus_answers(host: str, unit: int, via: list[str] | None = None) -> bool:
    """Does a Modbus server answer at host:502 (from this machine, or inside a container with `via`)?

    A TCP connect alone proves nothing here: this sandbox's outer network accepts connections to any address (and
    answers them with an HTTP 400), so only a Modbus reply to our own transaction counts."""
    out = subprocess.run(
        [*(via or [sys.executable]), "-c", MODBUS_PROBE, host, str(unit)], capture_output=True, text=True, timeout=30
    )
    return out.stdout.strip() == "answered"


def http_ready(url: str, within_s: float) -> bool:
    """200 from a readiness endpoint within the time (a service may still be starting)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - the plant's own published port
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def modbus_read(host: str, port: int, unit: int) -> bytes:
    """One FC03 read of holding register 0 (any valid reply or exception proves a Modbus server answered)."""
    with socket.create_connection((host, port), 3.0) as s:
        s.settimeout(3.0)
        s.sendall(bytes([0, 1, 0, 0, 0, 6, unit, 3, 0, 0, 0, 1]))
        return s.recv(260)


def test_compose_plant_graded_full_marks(aiot_home: Path, engine: Any, tmp_path: Path) -> None:
    cand = "compose-ref"
    env_text = cli("plant", "compose-env", "-c", cand, "--image", IMAGE).stdout
    env_file = tmp_path / "plant.env"
    env_file.write_text(env_text)
    env = dict(line.split("=", 1) for line in env_text.splitlines())
    compose = ["docker-compose", "--project-directory", str(REPO), "-f", str(REPO / "docker-compose.yml")]
    compose += ["--env-file", str(env_file)]
    up = subprocess.run([*compose, "up", "-d"], capture_output=True, text=True, timeout=180)
    assert up.returncode == 0, up.stderr
    try:
        cli("plant", "wait", "-c", cand, "--timeout", "120", timeout=150)
        ps = subprocess.run(
            [*compose, "ps", "--services", "--filter", "status=running"], capture_output=True, text=True
        )
        assert set(ps.stdout.split()) == {
            "core",
            "broker",
            "fw1",
            "plc1",
            "em1",
            "plc2",
            "sensors",
            "hmi",
            "prometheus",
        }
        pub = env["AIOTLAB_PUBLISH"]
        field = env["AIOTLAB_FIELD_NET"]
        # PLC-1 and EM-1 answer through FW-1's published conduits ...
        assert modbus_read(f"{pub}.11", 502, 1)[7] == 3
        assert modbus_answers(f"{pub}.12", 21)
        # ... and not directly: the field network has no route from the host or from the plant network.
        hmi = ["docker", "exec", f"{env['COMPOSE_PROJECT_NAME']}_hmi_1", "python"]
        for unit, host in ((1, f"{field}.111"), (21, f"{field}.112")):
            assert not modbus_answers(host, unit)
            assert not modbus_answers(host, unit, via=hmi)
        # the plant's Prometheus runs (from the image's Debian package) and says it is ready
        assert http_ready(f"http://{pub}.90:9090/-/ready", 30.0)
        out = tmp_path / "graded"
        graded = cli("grade", "data-acquisition", "-c", cand, "--solution", "reference", "-o", str(out), timeout=240)
        report = out / cand / "data-acquisition" / "latest" / "report.json"
        assert failed_checks(report) == set(), graded.stdout
        assert json.loads(report.read_text())["score"]["points"] == 100
    finally:
        subprocess.run([*compose, "down", "-t", "5"], capture_output=True, timeout=120)
        cli("plant", "down", "-c", cand, check=False)


@pytest.fixture(scope="module")
def sdk_plants(aiot_home: Path, engine: Any) -> Any:
    from aiotlab.simulators.containers import DockerBackend

    backend = DockerBackend(IMAGE)
    names = {"flawed-scale": "sdk-scale", "flawed-over-polling": "sdk-poll"}
    for cand in names.values():
        backend.up(cand)
    yield backend, names
    for cand in names.values():
        backend.down(cand)


def test_docker_backend_gives_the_process_plants_verdicts(sdk_plants: Any, tmp_path: Path) -> None:
    backend, names = sdk_plants
    lab = load_lab("data-acquisition")

    async def grade_all() -> None:
        procs = [
            await asyncio.create_subprocess_exec(
                *AIOTLAB,
                "grade",
                "data-acquisition",
                "-c",
                cand,
                "--solution",
                sol,
                "-o",
                str(tmp_path),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            for sol, cand in names.items()
        ]
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), 300)

    asyncio.run(grade_all())
    for sol, cand in names.items():
        assert failed_checks(tmp_path / cand / "data-acquisition" / "latest" / "report.json") == set(
            lab.solutions[sol].expect_fail
        ), sol


def test_docker_backend_isolates_labels_and_limits(sdk_plants: Any, engine: Any) -> None:
    backend, names = sdk_plants
    nets = {}
    for cand in names.values():
        containers = engine.containers.list(filters={"label": f"io.aiotlab.candidate={cand}"})
        assert {c.labels["io.aiotlab.service"] for c in containers} >= {"core", "plc1", "em1", "fw1", "plc2"}
        for c in containers:
            hc = c.attrs["HostConfig"]
            assert hc["Memory"] > 0 and hc["NanoCpus"] > 0 and hc["PidsLimit"] > 0, c.name
        nets[cand] = {n.name for n in engine.networks.list(filters={"label": f"io.aiotlab.candidate={cand}"})}
        assert len(nets[cand]) == 3  # its own plant, field and control networks
    a, b = nets.values()
    assert not a & b


def test_exam_on_docker_backend_and_crashed_run_leftovers(aiot_home: Path, engine: Any, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("docker-tier-secret\n")
    (tmp_path / "roster.csv").write_text("id,name\nex-a,A\nex-b,B\n")
    (tmp_path / "exam.yaml").write_text(
        f"exam: docker-tier\nlabs: [data-acquisition]\nbackend: docker\nimage: {IMAGE}\n"
        "secret: {file: secret.txt}\nroster: roster.csv\nout: out\n"
    )
    exam = str(tmp_path / "exam.yaml")
    cli("exam", "up", exam, timeout=240)
    st = cli("exam", "status", exam, timeout=60)
    # nine plant services, the config service, the workstation (an 80-column table may wrap "running" below)
    assert st.stdout.count("11/11") == 2, st.stdout
    assert (tmp_path / "out" / "ex-a" / "workspace" / "data-acquisition" / ".aiotlab" / "datasheet.json").is_file()
    # a crashed run: the launcher's record of ex-b is gone, its containers are not
    shutil.rmtree(aiot_home / "plants" / "ex-b")
    from aiotlab.simulators.containers import DockerBackend

    assert DockerBackend(IMAGE).leftovers() == ["ex-b"]
    cli("exam", "down", exam, timeout=120)
    left = engine.containers.list(all=True, filters={"label": f"io.aiotlab.home={aiot_home}"})
    assert [c.name for c in left if c.labels.get("io.aiotlab.candidate", "").startswith("ex-")] == []
    assert not engine.networks.list(filters={"label": "io.aiotlab.candidate=ex-b"})


def test_docker_backend_refuses_clearly_without_an_image(aiot_home: Path, engine: Any) -> None:
    proc = subprocess.run(
        [*AIOTLAB, "plant", "up", "--backend", "docker", "-c", "no-image", "--image", "aiotlab-absent:0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "image aiotlab-absent:0 not found" in proc.stderr + proc.stdout
