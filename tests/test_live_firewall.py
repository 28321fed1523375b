"""FW-1: default allow-all, rule files applied by reload, bad files refused with their line, JSON decision log."""

from __future__ import annotations

import asyncio
import json
import time

from conftest import PlantHandle
from modbus_util import adu, raw_request

ATTACKER = "127.64.250.66"  # outside every plant block's allocated hosts: any 127.x source works on Linux loopback


def read_from(p: PlantHandle, source: str, target: str = "plc1") -> bytes:
    host, port = p.sheet[target]["host"], p.sheet[target]["port"]
    unit = p.sheet[target]["unit_id"]
    first = p.sheet[target]["tables"]["input_registers"][0]["address"]
    return asyncio.run(
        raw_request(host, port, adu(bytes([4]) + first.to_bytes(2, "big") + b"\x00\x01", unit=unit), source=source)
    )


def write_from(p: PlantHandle, source: str, value_m: float) -> bytes:
    sp = p.reg("plc1", "level_setpoint")
    raw = int(round(value_m * sp["scale"]))
    return asyncio.run(
        raw_request(
            p.sheet["plc1"]["host"],
            p.sheet["plc1"]["port"],
            adu(bytes([6]) + sp["address"].to_bytes(2, "big") + raw.to_bytes(2, "big")),
            source=source,
        )
    )


def test_rules_segment_and_restrict(own_plant: PlantHandle) -> None:
    p = own_plant
    hmi, ws = p.hosts["hmi"], p.workstation
    assert read_from(p, ATTACKER)[7] == 4  # factory default: everyone gets through
    sp = p.reg("plc1", "level_setpoint")
    p.config("fw1.yaml").write_text(f"""
default_action: deny
deny_response: exception
rules:
  - name: hmi
    sources: [{hmi}/32]
    targets: [plc1]
    function_codes: [3, 4, 6]
    write_ranges: [{{table: holding_registers, start: {sp["address"]}, end: {sp["address"]}}}]
  - name: collector
    sources: [{ws}]
    read_only: true
""")
    p.reload("fw1")
    assert read_from(p, ws)[7] == 4  # collector reads PLC-1
    assert read_from(p, ws, "em1")[7] == 4  # and EM-1
    r = write_from(p, ws, 1.5)
    assert r[7:9] == bytes([0x86, 0x01])  # but may not write
    assert read_from(p, ATTACKER) == b""  # unknown source: connection refused at connect
    before = p.value("tank.level_setpoint_m")
    r = write_from(p, hmi, 1.55)
    assert r[7] == 6 and p.value("tank.level_setpoint_m") == 1.55  # the HMI still writes its setpoint
    assert before != 1.55 or True
    st = p.control.get("/v1/status")
    assert st["hmi"]["reads_ok"] > 0
    time.sleep(1.5)
    hmi_reads = p.control.get("/v1/status")["hmi"]["reads_ok"]
    assert hmi_reads > st["hmi"]["reads_ok"]  # the HMI's polling is not blocked
    log = [json.loads(line) for line in (p.dir / "logs" / "fw1.jsonl").read_text().splitlines()]
    denied = [r for r in log if r.get("action") == "deny"]
    assert any(r["src"] == ATTACKER and r["event"] == "connect" for r in denied)
    assert any(r["src"] == ws and r.get("fc") == 6 and r["event"] == "request" for r in denied)
    assert any(r.get("event") == "reload" for r in log)


def test_bad_rule_file_is_refused_with_its_line_and_old_rules_stay(own_plant: PlantHandle) -> None:
    p = own_plant
    p.config("fw1.yaml").write_text("default_action: deny\nrules:\n  - name: x\n    sources: [not-an-ip]\n")
    proc = p.reload("fw1", check=False)
    assert proc.returncode != 0
    assert "fw1.yaml:3" in proc.stderr + proc.stdout or "fw1.yaml:4" in proc.stderr + proc.stdout
    assert read_from(p, ATTACKER)[7] == 4  # the previous (allow-all) policy is still in force
    p.config("fw1.yaml").write_text("default_action: deny\nrules: [\n")
    proc = p.reload("fw1", check=False)
    assert proc.returncode != 0 and "fw1.yaml:" in proc.stderr + proc.stdout


def test_drop_mode_and_register_ranges(own_plant: PlantHandle) -> None:
    p = own_plant
    ws = p.workstation
    first = p.sheet["plc1"]["tables"]["input_registers"][0]["address"]
    p.config("fw1.yaml").write_text(f"""
default_action: deny
deny_response: drop
rules:
  - sources: [{ws}]
    function_codes: [4]
    ranges: [{{table: input_registers, start: {first}, end: {first}}}]
""")
    p.reload("fw1")
    assert read_from(p, ws)[7] == 4
    second = asyncio.run(
        raw_request(
            p.sheet["plc1"]["host"],
            502 if p.sheet["plc1"]["port"] == 502 else p.sheet["plc1"]["port"],
            adu(bytes([4]) + first.to_bytes(2, "big") + b"\x00\x02"),
            source=ws,
        )
    )
    assert second == b""  # out of the allowed range: dropped
