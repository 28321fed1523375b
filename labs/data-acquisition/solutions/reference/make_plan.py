"""Reference acquisition plans for the data-acquisition lab, decided from the brief, the lab parameters and the
datasheet alone, written to the workspace where the brief says (plan_file).

`--style` is how the decision is made (two sound ones, and the lab's flawed ones):
- block: one block read per Modbus device, at the fastest need of its streams; OPC UA streams grouped by need;
- split: PLC-1's fastest stream read alone at its need, the rest of PLC-1 in one block at their fastest need; EM-1
  one read per stream at its own need; each OPC UA stream at its own need;
- naive (flawed): one request per Modbus stream at its own need: over PLC-1's allotment;
- slow-heater (flawed): the heater temperature at twice its need ("the heater is slow");
- rate-claim (flawed): a block plan whose stated PLC-1 rate is per minute, not per second.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

MODBUS = {"plc1": ["level", "outflow", "pressure", "pump_starts"], "em1": ["active_power", "energy"]}
OPCUA = ["Heater.Temperature", "FillingLine.GoodCount"]
STYLES = ("block", "split", "naive", "slow-heater", "rate-claim")


def read(sheet: dict[str, Any], device: str, tags: list[str], period: float) -> dict[str, Any]:
    """One input-register read covering the tags (from the first one's address to the end of the last)."""
    regs = {t["name"]: t for t in sheet[device]["tables"]["input_registers"] if t["name"] in tags}
    start = min(t["address"] for t in regs.values())
    end = max(t["address"] + t["registers"] for t in regs.values())
    return {
        "device": device,
        "table": "input_registers",
        "address": start,
        "count": end - start,
        "period_s": period,
        "streams": tags,
    }


def plan(p: dict[str, Any], sheet: dict[str, Any], style: str) -> dict[str, Any]:
    need = {k: float(v) for k, v in p["needs_s"].items()}
    reads: list[dict[str, Any]] = []
    if style in ("block", "slow-heater", "rate-claim"):
        for device, tags in MODBUS.items():
            reads.append(read(sheet, device, tags, min(need[f"{device}/{t}"] for t in tags)))
        why = "One block read per Modbus device at the fastest need of its streams: the fewest requests."
    elif style == "split":
        plc1 = sorted(MODBUS["plc1"], key=lambda t: need[f"plc1/{t}"])
        fast, rest = plc1[0], plc1[1:]
        reads.append(read(sheet, "plc1", [fast], need[f"plc1/{fast}"]))
        reads.append(read(sheet, "plc1", rest, min(need[f"plc1/{t}"] for t in rest)))
        reads += [read(sheet, "em1", [t], need[f"em1/{t}"]) for t in MODBUS["em1"]]
        why = "PLC-1's fastest stream alone at its need, the others together at theirs: each stream no fresher than needed."
    else:  # naive
        reads += [read(sheet, d, [t], need[f"{d}/{t}"]) for d, tags in MODBUS.items() for t in tags]
        why = "Each stream read on its own at exactly its need."
    opcua = {t: {"period_s": need[f"plc2/{t}"]} for t in OPCUA}
    if style == "block":
        fastest = min(need[f"plc2/{t}"] for t in OPCUA)
        opcua = {t: {"period_s": fastest} for t in OPCUA}
    if style == "slow-heater":
        opcua["Heater.Temperature"] = {"period_s": 2 * need["plc2/Heater.Temperature"]}
        why += " The heater is slow, so its temperature is read at half the rate asked."
    rate = sum(1.0 / r["period_s"] for r in reads if r["device"] == "plc1")
    if style == "rate-claim":
        rate *= 60  # requests per minute, written where the schema asks per second
    return {"modbus_reads": reads, "opcua": opcua, "plc1_request_rate_rps": round(rate, 3), "rationale": why}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--style", choices=STYLES, default="block")
    args = parser.parse_args()
    p = json.loads(Path(os.environ["AIOTLAB_LAB_PARAMS"]).read_text())
    sheet = json.loads(Path(os.environ["AIOTLAB_DATASHEET"]).read_text())
    path = Path(os.environ.get("AIOTLAB_WORKSPACE", ".")) / p["plan_file"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plan(p, sheet, args.style), indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
