"""Interop with a second OPC UA implementation: node-opcua (npm), installed by .ci/run under tests/interop."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import PlantHandle

HERE = Path(__file__).parent / "interop"


def node_ua(url: str, *security: str) -> dict:
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "node-opcua-client").is_dir():
        pytest.fail("node-opcua is not installed: run `npm ci --prefix tests/interop` (.ci/run does)")
    out = subprocess.run(
        [node, str(HERE / "node_ua.mjs"), url, *security], capture_output=True, text=True, timeout=90, cwd=HERE
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    assert lines, out.stdout + out.stderr
    return json.loads(lines[-1])


def test_node_opcua_reads_writes_and_calls(own_plant: PlantHandle) -> None:
    p = own_plant
    r = node_ua(p.sheet["plc2"]["endpoint"])
    assert r["ok"], r
    assert abs(r["temperature"] - p.value("heater.temp_c")) < 1.0
    assert r["write_status"] == "Good" and p.value("heater.setpoint_c") == pytest.approx(r["setpoint"] + 0.5)
    assert r["call_status"] == "Good"


@pytest.mark.parametrize(
    "policy, mode",
    [
        ("Basic256Sha256", "SignAndEncrypt"),
        ("Aes128_Sha256_RsaOaep", "Sign"),
        ("Aes256_Sha256_RsaPss", "SignAndEncrypt"),
    ],
)
def test_node_opcua_on_secured_policies(own_plant: PlantHandle, policy: str, mode: str) -> None:
    p = own_plant
    p.config("plc2.yaml").write_text("""
security_policies: [Basic256Sha256_SignAndEncrypt, Aes128Sha256RsaOaep_Sign, Aes256Sha256RsaPss_SignAndEncrypt]
identity_tokens: [username]
users:
  eng1: {password: eng-pass, role: engineer}
roles:
  engineer: [read, write, call]
""")
    p.reload("plc2")
    url = p.sheet["plc2"]["endpoint"]
    ok = node_ua(url, policy, mode, "eng1", "eng-pass")
    assert ok["ok"], ok
    assert not node_ua(url, policy, mode, "eng1", "nope")["ok"]
    assert not node_ua(url, "None", "None")["ok"]
