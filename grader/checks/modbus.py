"""MB-* checks: FW-1 probed from attacker, collector and HMI source addresses, confirmed by ground truth.

Writes are confirmed through the plant, not the attacker's reply: every write that reaches PLC-1 is a `write`
event in the plant's record. During the probes only the HMI may cause one, so events beyond the HMI's own
successful writes are writes that got through. Probes write the value a register already holds, so a firewall
that lets them through still leaves the process as it was.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..probes import modbus as mp
from ..results import CheckResult
from . import check
from .common import all_ok, attacker, control_get, hosts


def entry(ctx: Any, device: str, name: str) -> dict[str, Any]:
    for rows in ctx.sheet[device]["tables"].values():
        for r in rows:
            if r["name"] == name:
                return r
    raise KeyError(f"{device} has no register {name}")


def first(ctx: Any, device: str, table: str) -> dict[str, Any]:
    return ctx.sheet[device]["tables"][table][0]


FC_TABLE = {1: "coils", 2: "discrete_inputs", 3: "holding_registers", 4: "input_registers"}


async def probe(ctx: Any, device: str, source: str, pdu: bytes) -> mp.ProbeReply:
    d = ctx.sheet[device]
    return await mp.request(d["host"], int(d["port"]), int(d["unit_id"]), source, pdu)


async def read(ctx: Any, device: str, source: str, fc: int) -> dict[str, Any]:
    reg = first(ctx, device, FC_TABLE[fc]) if FC_TABLE[fc] in ctx.sheet[device]["tables"] else None
    if reg is None:
        return {}
    r = await probe(ctx, device, source, mp.read_pdu(fc, int(reg["address"]), 1))
    return {
        "what": f"FC{fc} read of {device} {reg['name']} from {source}",
        "observed": f"{r.outcome} {r.detail}",
        "reply_ok": r.ok,
    }


def who(ctx: Any, source: str) -> str:
    h = hosts(ctx)
    return {h["hmi"]: "HMI", h["workstation"]: "collector workstation"}.get(source, "attacker")


@check("mb.source_allowlist")
async def source_allowlist(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Attacker reads are refused. A read from the collector's address is the control (the device answers at all);
    whether the HMI and the collector get everything they need is mb.no_overblocking's question, not this one's."""
    h = hosts(ctx)
    probes = []
    for device in ("plc1", "em1"):
        control = await read(ctx, device, h["workstation"], 4)
        probes.append(
            {
                **control,
                "what": "control: " + control["what"],
                "ok": control["reply_ok"],
                "why": f"{device} does not answer the collector either: nothing can be concluded",
            }
        )
        for i, fc in enumerate((4, 3)):
            r = await read(ctx, device, attacker(ctx, i), fc)
            if r:
                probes.append({**r, "ok": not r["reply_ok"], "why": f"attacker read {device} with FC{fc}"})
    return all_ok(
        spec, probes, "Only the HMI and the collector reach PLC-1 and EM-1", "僅 HMI 與擷取主機可存取 PLC-1 與 EM-1"
    )


async def current_words(ctx: Any) -> dict[str, dict[str, int]]:
    return await control_get(ctx, "/v1/registers/plc1")


async def hmi_stats(ctx: Any) -> dict[str, int]:
    return dict((await control_get(ctx, "/v1/status"))["hmi"] or {})


async def writes_between(ctx: Any, t0: float, t1: float) -> list[dict[str, Any]]:
    events = await control_get(ctx, f"/v1/events?start={t0}&end={t1}")
    return [e for e in events if e["kind"] == "write" and e["detail"].get("via") in ("plc1", "em1")]


@check("mb.writes_blocked")
async def writes_blocked(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Every write function code from an attacker and from the collector, and HMI writes outside its range."""
    h = hosts(ctx)
    words = await current_words(ctx)
    coil = entry(ctx, "plc1", ctx.params["write_probe_coil"])
    reg = entry(ctx, "plc1", ctx.params["write_probe_register"])
    coil_now = int(words["coils"][str(coil["address"])])
    reg_now = int(words["holding_registers"][str(reg["address"])])
    plan = [(attacker(ctx, 0), fc) for fc in (5, 6, 15, 16, 22, 23)]
    plan += [(h["workstation"], fc) for fc in (5, 6, 16)]
    plan += [(h["hmi"], 5), (h["hmi"], 15)]  # the HMI writes setpoints only: coils are outside its range
    plan += [(h["hmi"], fc) for fc in (6, 16)]  # ... and so is this register
    stats0 = await hmi_stats(ctx)
    t0 = time.time()
    probes = []
    for src, fc in plan:
        target = coil if fc in (5, 15) else reg
        pdu = mp.write_pdu(fc, int(target["address"]), coil_now if fc in (5, 15) else reg_now)
        r = await probe(ctx, "plc1", src, pdu)
        probes.append(
            {
                "what": f"FC{fc} write to plc1 {target['name']} from {who(ctx, src)} {src}",
                "observed": f"{r.outcome} {r.detail}",
                "ok": not r.ok,
                "why": f"FC{fc} write from {who(ctx, src)} {src} was answered as successful",
            }
        )
    await asyncio.sleep(1.0)
    t1 = time.time()
    stats1 = await hmi_stats(ctx)
    landed = await writes_between(ctx, t0 - 0.2, t1)
    hmi_writes = int(stats1.get("writes_ok", 0)) - int(stats0.get("writes_ok", 0))
    extra = len(landed) - hmi_writes
    probes.append(
        {
            "what": "ground truth: writes that reached PLC-1 during the probes, beyond the HMI's own",
            "observed": {"write_events": landed[:20], "hmi_writes_ok": hmi_writes},
            "ok": extra <= 0,
            "why": f"{extra} probe writes reached PLC-1 (plant record)",
        }
    )
    return all_ok(
        spec,
        probes,
        "No write gets through except the HMI's setpoint writes",
        "除 HMI 設定值寫入外，沒有任何寫入能通過",
    )


@check("mb.no_overblocking")
async def no_overblocking(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Legitimate traffic still flows: HMI and collector reads, the HMI's in-range setpoint writes, the real HMI."""
    h = hosts(ctx)
    probes = []
    stats0 = await hmi_stats(ctx)
    for device, fcs in (("plc1", (1, 2, 3, 4)), ("em1", (4,))):
        for fc in fcs:
            r = await read(ctx, device, h["hmi"], fc)
            if r:
                probes.append({**r, "ok": r["reply_ok"], "why": f"HMI FC{fc} read of {device} blocked"})
        r = await read(ctx, device, h["workstation"], fcs[-1])
        probes.append({**r, "ok": r["reply_ok"], "why": f"collector read of {device} blocked"})
    sp = entry(ctx, "plc1", ctx.params["hmi_setpoint"])
    words = await current_words(ctx)
    now = int(words["holding_registers"][str(sp["address"])])
    for fc in (6, 16):
        t0 = time.time()
        r = await probe(ctx, "plc1", h["hmi"], mp.write_pdu(fc, int(sp["address"]), now))
        await asyncio.sleep(0.5)
        landed = await writes_between(ctx, t0 - 0.1, time.time())
        probes.append(
            {
                "what": f"HMI FC{fc} write of {sp['name']} (in range) from {h['hmi']}",
                "observed": f"{r.outcome} {r.detail}; {len(landed)} write event(s)",
                "ok": r.ok and bool(landed),
                "why": f"the HMI's in-range FC{fc} setpoint write was blocked",
            }
        )
    await asyncio.sleep(float(ctx.params.get("hmi_watch_s", 4.0)))
    stats1 = await hmi_stats(ctx)
    delta = {k: int(stats1.get(k, 0)) - int(stats0.get(k, 0)) for k in ("reads_ok", "reads_failed", "writes_failed")}
    probes.append(
        {
            "what": "the plant's HMI keeps polling and writing without errors",
            "observed": delta,
            "ok": delta["reads_ok"] > 0 and delta["reads_failed"] == 0 and delta["writes_failed"] == 0,
            "why": f"the plant's HMI sees failures: {delta}",
        }
    )
    return all_ok(spec, probes, "HMI and collector traffic is not blocked", "HMI 與擷取主機的合法流量未被阻擋")
