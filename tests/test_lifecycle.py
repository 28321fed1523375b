"""Plant lifecycle through the CLI: side by side, reproducible, failures that name the device, clean shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aiotlab.simulators import addressing as ad
from aiotlab.simulators.supervisor import Supervisor

from conftest import AIOTLAB, PlantHandle, cli, start_plant
from modbus_util import client, decode


def listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def test_two_candidates_side_by_side(plant: PlantHandle, aiot_home: Path) -> None:
    bob = start_plant("bob", aiot_home)
    try:
        assert bob.sheet["network"]["block"] != plant.sheet["network"]["block"]
        assert bob.sheet["parameter_fingerprint"] != plant.sheet["parameter_fingerprint"]
        assert bob.info["params"] != plant.info["params"]

        async def energy(p: PlantHandle) -> float:
            tag = p.reg("em1", "energy")
            c = await client(p.sheet["em1"]["host"], p.sheet["em1"]["port"], p.workstation)
            try:
                rr = await c.read_input_registers(tag["address"], count=2, device_id=p.sheet["em1"]["unit_id"])
                return decode(tag, rr.registers)
            finally:
                c.close()

        a, b = asyncio.run(energy(plant)), asyncio.run(energy(bob))
        assert abs(a - plant.value("energy.energy_kwh")) < 0.05 and abs(b - bob.value("energy.energy_kwh")) < 0.05
        assert abs(a - b) > 1.0  # seeded initial counters differ by thousands of kWh
    finally:
        cli("plant", "down", "-c", "bob")


def test_same_seed_reproduces_the_same_plant(aiot_home: Path) -> None:
    first = []
    for name in ("seed-a", "seed-b"):
        p = start_plant(name, aiot_home, seed=4242)
        truth = p.control.get(f"/v1/truth?tags=tank.level_m,heater.temp_c,energy.voltage_v&start=0&end={time.time()}")
        first.append(
            (
                {k: v[:5] for k, v in truth.items() if k != "t"},
                p.info["params"],
                p.sheet["plc1"]["tables"],
                p.sheet["plc2"]["default_users"],
            )
        )
        cli("plant", "down", "-c", name)
    assert first[0] == first[1]


def test_port_in_use_names_the_device_and_leaves_nothing_running(aiot_home: Path) -> None:
    p = start_plant("busy", aiot_home)
    hosts, ports = p.hosts, p.ports
    cli("plant", "down", "-c", "busy")
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind((hosts["plc2"], ports["opcua"]))
    blocker.listen()
    try:
        proc = cli("plant", "up", "-c", "busy", "--detach", check=False)
        assert proc.returncode != 0
        assert "plc2" in proc.stderr and "in use" in proc.stderr
        time.sleep(0.3)
        assert not listening(hosts["broker"], ports["mqtt"])
        assert not listening(hosts["plc1"], ports["modbus"])
        st = ad.read_state("busy")
        assert st["status"] == "failed" and not ad.pid_alive(st.get("pid"))
    finally:
        blocker.close()


def test_bad_config_names_file_and_line(aiot_home: Path) -> None:
    p = start_plant("badcfg", aiot_home)
    cli("plant", "down", "-c", "badcfg")
    p.config("plc2.yaml").write_text(
        "security_policies: [None]\nidentity_tokens: [anonymous]\nroles:\n  viewer: read\n"
    )
    proc = cli("plant", "up", "-c", "badcfg", "--detach", check=False)
    assert proc.returncode != 0 and "plc2.yaml:4" in proc.stderr
    assert not listening(p.hosts["broker"], p.ports["mqtt"])


def test_missing_mosquitto_falls_back_loudly(aiot_home: Path) -> None:
    env = {**os.environ, "AIOTLAB_MOSQUITTO": "/nonexistent/mosquitto"}
    proc = subprocess.run(
        [*AIOTLAB, "plant", "up", "-c", "nomosq", "--detach", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    try:
        assert proc.returncode == 0, proc.stderr
        assert "FALLBACK" in proc.stderr
        state = json.loads(proc.stdout)
        host, port = state["endpoints"][3]["endpoint"].removeprefix("mqtt://").split(":")
        assert listening(host, int(port))
    finally:
        cli("plant", "down", "-c", "nomosq")


def test_killed_plant_leaves_no_broker_and_restarts(aiot_home: Path) -> None:
    p = start_plant("crashy", aiot_home)
    state = json.loads((p.dir / "plant.json").read_text())
    os.kill(state["pid"], signal.SIGKILL)
    deadline = time.time() + 5
    while ad.pid_alive(state["mosquitto_pid"]) and time.time() < deadline:
        time.sleep(0.1)
    assert not ad.pid_alive(state["mosquitto_pid"])  # PR_SET_PDEATHSIG: the broker died with its plant
    status = json.loads(cli("plant", "status", "-c", "crashy", "--json").stdout)
    assert status[0]["status"] == "crashed"
    cli("plant", "down", "-c", "crashy")
    p2 = start_plant("crashy", aiot_home)
    assert p2.sheet["network"]["block"] == p.sheet["network"]["block"]  # same slot again
    cli("plant", "down", "-c", "crashy")


def test_supervisor_restarts_a_crashed_device() -> None:
    events: list[tuple[str, dict]] = []
    runs = []

    async def flaky() -> None:
        runs.append(time.monotonic())
        if len(runs) < 3:
            raise RuntimeError("boom")
        await asyncio.sleep(3600)

    async def go() -> None:
        sup = Supervisor(lambda kind, **d: events.append((kind, d)))
        sup.run("flaky", flaky)
        await asyncio.sleep(1.5)
        assert sup.status()["flaky"]["running"] and sup.status()["flaky"]["restarts"] == 2
        await sup.stop()

    asyncio.run(go())
    assert [e[0] for e in events] == ["device_restart", "device_restart"]
    assert "boom" in events[0][1]["error"]


def test_cli_rejects_bad_candidate_ids() -> None:
    proc = subprocess.run([*AIOTLAB, "plant", "datasheet", "-c", "../etc"], capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "candidate id" in proc.stderr + proc.stdout


@pytest.mark.parametrize("lang, marker", [("zh-TW", "工廠規格書"), ("en", "Plant datasheet")])
def test_datasheet_formats(plant: PlantHandle, lang: str, marker: str) -> None:
    md = cli("plant", "datasheet", "-c", plant.candidate, "--lang", lang).stdout
    html = cli("plant", "datasheet", "-c", plant.candidate, "--lang", lang, "--format", "html").stdout
    assert marker in md and marker in html and html.startswith("<!doctype html>")
    for tag in plant.sheet["plc1"]["tables"]["input_registers"]:
        assert f"| {tag['name']} | {tag['address']} |" in md
    assert plant.sheet["plc2"]["default_users"]["operator"]["password"] in md
    # the P&ID facts an alarm design needs, as the plant runs them
    params = plant.info["params"]["process"]
    facts = plant.sheet["process"]["tank"]
    assert (
        facts["area_m2"] == params["tank"]["area_m2"]
        and facts["pump_rated_flow_m3h"] == params["tank"]["pump_flow_m3h"]
    )
    assert facts["alarms_m"]["high_high"] == params["tank"]["alarm_high_high_m"]
    assert f"| {facts['area_m2']} | m² |" in md
    # nothing of the model's internals, no control-plane address or token
    text = json.dumps(plant.sheet)
    for secret in (params["tank"]["valve_cv"], params["heater"]["max_power_kw"]):
        # as a number of its own: 12.9 is inside an address like 127.64.12.90 and says nothing there
        assert not re.search(rf"(?<![\d.]){re.escape(str(secret))}(?![\d])", text), secret
    token = (plant.dir / "control.token").read_text().strip()
    assert token not in md and plant.hosts["control"] not in md
    assert sys.executable  # keep import used


def test_a_candidates_addresses_never_change(aiot_home: Path) -> None:
    """If something else holds a candidate's block, the start fails and says so, instead of moving the candidate
    to addresses their collector and device configs do not know."""
    p = start_plant("sticky", aiot_home)
    block = p.sheet["network"]["block"]
    hosts, ports = p.hosts, p.ports
    cli("plant", "down", "-c", "sticky")
    squatter = socket.socket()  # what another plant (e.g. of another AIOTLAB_HOME) holds on this block
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind((hosts["control"], ports["control"]))
    squatter.listen()
    try:
        proc = cli("plant", "up", "-c", "sticky", "--detach", check=False)
        assert proc.returncode != 0 and "in use" in proc.stderr and block in proc.stderr.replace("\n", "")
        assert not listening(hosts["broker"], ports["mqtt"])
    finally:
        squatter.close()
    p2 = start_plant("sticky", aiot_home)
    assert p2.sheet["network"]["block"] == block
    cli("plant", "down", "-c", "sticky")
