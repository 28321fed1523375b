"""MB-* checks: FW-1 probed from attacker, collector and HMI source addresses, confirmed by ground truth.

Attacker sources are drawn per grading run (common.attackers), never the addresses a brief printed. Fail closed
(see probing.py): a refused attacker request counts only beside a positive control in the same check (a read from
an allowed source is answered through FW-1 before and after), and only when the plant's own record agrees: FW-1's
count of requests it forwarded per source (reads) and the plant's record of writes that reached PLC-1 (writes).
During the probes only the HMI may cause a write, so write events beyond the HMI's own successful writes are
writes that got through. Probes write the value a register already holds, so a firewall that lets them through
still leaves the process as it was.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..probes import modbus as mp
from ..results import CheckResult
from . import check
from .common import attacker, attackers, control_get, hosts, neighbours
from .probing import LoopLag, block, judge, overloaded_or, owner_of, probe

FC_TABLE = {1: "coils", 2: "discrete_inputs", 3: "holding_registers", 4: "input_registers"}
HMI_STATS_WAIT_S = 5.0  # for the plant HMI's counters read after a given time (they reach the core once a second)
GATEWAY_EXCEPTIONS = ("exception 0A", "exception 0B")  # FW-1 could not reach the device: the request was let through
CAUSES = {
    "modbus-allowed-readers-refused": (
        "mb.no_overblocking",
        "neither the collector nor the HMI gets an answer from PLC-1/EM-1 through FW-1, so a refused attacker "
        "request proves nothing",
        "擷取工作站與 HMI 皆無法經 FW-1 取得 PLC-1/EM-1 的回應，因此攻擊者請求被拒不能證明任何事",
    ),
    "fw1-blocks-nothing": (
        "mb.source_allowlist",
        "FW-1 blocks nothing (an attacker's read and write both got through): there is no blocking that could "
        "over-block legitimate traffic",
        "FW-1 未阻擋任何流量（攻擊者的讀取與寫入皆通過）：沒有可能誤擋合法流量的阻擋",
    ),
}


def entry(ctx: Any, device: str, name: str) -> dict[str, Any]:
    for rows in ctx.sheet[device]["tables"].values():
        for r in rows:
            if r["name"] == name:
                return r
    raise KeyError(f"{device} has no register {name}")


def truth_tag(ctx: Any, device: str, name: str) -> str:
    """The plant tag a register holds (what the plant's write events name: `tank.level_setpoint_m`, not the
    register's name `level_setpoint`), from the parameters the plant runs."""
    for table in ctx.plant_info["params"]["devices"][device]["tables"].values():
        for t in (table or {}).get("tags", []):
            if t["name"] == name:
                return str(t["source"])
    raise KeyError(f"{device} has no register {name}")


async def send(ctx: Any, device: str, source: str, pdu: bytes) -> mp.ProbeReply:
    d = ctx.sheet[device]
    return await mp.request(d["host"], int(d["port"]), int(d["unit_id"]), source, pdu)


async def send_expecting_answer(ctx: Any, device: str, source: str, pdu: bytes, tries: int = 3) -> mp.ProbeReply:
    """A request that must be answered (a positive probe), tried again while it only timed out or lost its
    connection: on a loaded host that is not FW-1 refusing. An exception reply is final at once."""
    r = await send(ctx, device, source, pdu)
    for i in range(tries - 1):
        if r.outcome != "refused":
            break
        await asyncio.sleep(1.0 + i)
        r = await send(ctx, device, source, pdu)
    return r


def read_fcs(ctx: Any, device: str) -> list[int]:
    """The read function codes a device has a table for."""
    return [fc for fc, table in FC_TABLE.items() if ctx.sheet[device]["tables"].get(table)]


async def read(ctx: Any, device: str, source: str, fc: int, positive: bool = False) -> tuple[str, mp.ProbeReply]:
    reg = ctx.sheet[device]["tables"][FC_TABLE[fc]][0]
    pdu = mp.read_pdu(fc, int(reg["address"]), 1)
    r = await (send_expecting_answer if positive else send)(ctx, device, source, pdu)
    return f"FC{fc} read of {device} {reg['name']} from {who(ctx, source)} {source}", r


def who(ctx: Any, source: str) -> str:
    h = hosts(ctx)
    return {h["hmi"]: "HMI", h["workstation"]: "collector"}.get(source, "attacker")


def who_zh(ctx: Any, source: str) -> str:
    return {"HMI": "HMI", "collector": "擷取主機", "attacker": "攻擊者位址"}[who(ctx, source)]


def cause_probe(ctx: Any, spec: dict[str, Any], cause: str, what: str, observed: Any) -> dict[str, Any]:
    preferred, en, zh = CAUSES[cause]
    owner = owner_of(ctx, preferred, (preferred,), spec["id"])
    block(ctx, spec, cause, en, zh, owner)
    if owner == spec["id"]:
        return probe(what, observed, False, why=f"{en}: {observed}", why_zh=f"{zh}：{observed}")
    return probe(what, observed, None, cause=cause, unsure=en, unsure_zh=zh)


async def control(ctx: Any, spec: dict[str, Any], device: str, when: str) -> dict[str, Any]:
    """Positive control: a read from an allowed source (the collector, else the HMI) is answered through FW-1."""
    h = hosts(ctx)
    fc = read_fcs(ctx, device)[-1]
    seen = []
    for source in (h["workstation"], h["hmi"]):
        what, r = await read(ctx, device, source, fc, positive=True)
        seen.append(f"{what}: {r.said}")
        if r.ok:
            return probe(f"control ({when}): {what} is answered", r.said, True, expected="answered")
    return cause_probe(
        ctx, spec, "modbus-allowed-readers-refused", f"control ({when}): an allowed source reads {device}", seen
    )


def refusal(r: mp.ProbeReply) -> bool | None:
    """True when FW-1 (or the device) refused, False when answered, None when FW-1 let it through to a device that
    did not answer (a gateway exception)."""
    if r.ok:
        return False
    if r.outcome == "exception" and r.detail in GATEWAY_EXCEPTIONS:
        return None
    return True


async def forwarded(ctx: Any) -> dict[str, dict[str, int]]:
    """FW-1's own count of requests it forwarded, per source and target (ground truth for reads)."""
    return dict((await control_get(ctx, "/v1/status")).get("fw1", {}).get("requests_by_source") or {})


def forwarded_delta(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], source: str) -> int:
    b, a = before.get(source, {}), after.get(source, {})
    n = 0
    for target, count in a.items():
        d = int(count) - int(b.get(target, 0))
        n += d if d >= 0 else int(count)  # FW-1 restarted in between: its counters started again from zero
    return n


@check("mb.source_allowlist")
async def source_allowlist(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Reads from this run's attacker addresses are refused and FW-1 forwards none of them, beside reads from an
    allowed source answered before and after. Whether the HMI and the collector get everything they need is
    mb.no_overblocking's question, not this one's."""
    probes = [await control(ctx, spec, d, "before") for d in ("plc1", "em1")]
    fw_before = await forwarded(ctx)
    plan: list[tuple[str, str, int]] = []
    for i, src in enumerate(attackers(ctx)):
        fcs = read_fcs(ctx, "plc1")
        plan += [(src, "plc1", fc) for fc in (fcs if i == 0 else [fcs[-i % len(fcs)]])]
        plan.append((src, "em1", read_fcs(ctx, "em1")[-1]))
    for src, device, fc in plan:
        what, r = await read(ctx, device, src, fc)
        ok = refusal(r)
        probes.append(
            probe(
                what,
                r.said,
                ok,
                expected="refused (exception or connection closed)",
                why=f"attacker {src} read {device} with FC{fc}: answered {r.detail}",
                why_zh=f"攻擊者位址 {src} 以 FC{fc} 讀取 {device}：獲得回應（{r.detail}）",
                cause="probe-inconclusive",
                unsure=f"{what}: FW-1 answered with a gateway exception ({r.detail}): the device did not answer",
                unsure_zh=f"{what}：FW-1 回應閘道例外（{r.detail}）：裝置未回應",
            )
        )
    # next to the allowed sources, every CIDR widening and range end: one read of each device from each, at once
    # (a firewall that drops makes each wait for its timeout)
    beside = neighbours(ctx, [hosts(ctx)["hmi"], hosts(ctx)["workstation"]])
    near = [(src, d, read_fcs(ctx, d)[-1]) for src in beside for d in ("plc1", "em1")]
    replies = await asyncio.gather(*(read(ctx, d, src, fc) for src, d, fc in near))
    for (src, device, fc), (what, r) in zip(near, replies, strict=True):
        probes.append(
            probe(
                f"{what} (next to an allowed source)",
                r.said,
                refusal(r),
                expected="refused (exception or connection closed)",
                why=f"attacker {src}, next to an allowed source, read {device} with FC{fc}: answered {r.detail} (an "
                "allow-list wider than the allowed hosts)",
                why_zh=f"攻擊者位址 {src}（緊鄰允許來源）以 FC{fc} 讀取 {device}：獲得回應（{r.detail}）（允許清單寬於允許的主機）",
                cause="probe-inconclusive",
                unsure=f"{what}: FW-1 answered with a gateway exception ({r.detail}): the device did not answer",
                unsure_zh=f"{what}：FW-1 回應閘道例外（{r.detail}）：裝置未回應",
            )
        )
    fw_after = await forwarded(ctx)
    leaked = {src: forwarded_delta(fw_before, fw_after, src) for src in [*attackers(ctx), *beside]}
    leaked = {src: n for src, n in leaked.items() if n} or leaked  # the evidence names the ones that leaked
    probes.append(
        probe(
            "ground truth: requests FW-1 forwarded from this run's attacker addresses",
            leaked,
            not any(leaked.values()),
            expected="none",
            why=f"FW-1 forwarded attacker requests to the field devices: {leaked}",
            why_zh=f"FW-1 將攻擊者的請求轉送至現場設備：{leaked}",
        )
    )
    probes += [await control(ctx, spec, d, "after") for d in ("plc1", "em1")]
    return judge(
        ctx,
        spec,
        probes,
        "Only the HMI and the collector reach PLC-1 and EM-1",
        "僅 HMI 與擷取主機可存取 PLC-1 與 EM-1",
        attackers=attackers(ctx),
        next_to_allowed=beside,
    )


async def current_words(ctx: Any) -> dict[str, dict[str, int]]:
    return await control_get(ctx, "/v1/registers/plc1")


async def hmi_stats(ctx: Any, since: float | None = None) -> dict[str, Any]:
    """The plant HMI's counters; with `since`, counters read at or after that time (a split plant's reach the core
    once a second: a stale reading missed the HMI's write that landed during the probes, and the write was taken
    for a probe's). Waits at most HMI_STATS_WAIT_S; a plant whose counters carry no time gets one bus period."""
    deadline = time.time() + HMI_STATS_WAIT_S
    while True:
        stats = dict((await control_get(ctx, "/v1/status"))["hmi"] or {})
        if since is None or float(stats.get("at", since)) >= since or time.time() > deadline:
            if since is not None and "at" not in stats:
                await asyncio.sleep(1.2)
                stats = dict((await control_get(ctx, "/v1/status"))["hmi"] or {})
            return stats
        await asyncio.sleep(0.2)


async def writes_between(ctx: Any, t0: float, t1: float) -> list[dict[str, Any]]:
    events = await control_get(ctx, f"/v1/events?start={t0}&end={t1}")
    return [e for e in events if e["kind"] == "write" and e["detail"].get("via") in ("plc1", "em1")]


def write_plan(ctx: Any) -> list[tuple[str, int, str]]:
    """(source, function code, register name): every write function code from attackers and the collector, the
    HMI's coil writes, its writes to another register, and its setpoint writes with codes other than 6 and 16."""
    h = hosts(ctx)
    coil, reg, sp = ctx.params["write_probe_coil"], ctx.params["write_probe_register"], ctx.params["hmi_setpoint"]
    plan = [(attacker(ctx, i), fc, coil if fc in (5, 15) else reg) for i, fc in enumerate((5, 6, 15, 16, 22, 23))]
    plan += [(attacker(ctx, 1), fc, sp) for fc in (6, 16)]  # the HMI's register, from anyone else
    plan += [(h["workstation"], fc, coil if fc in (5, 15) else reg) for fc in (5, 6, 15, 16, 22, 23)]
    plan += [(h["workstation"], 6, sp)]
    plan += [(h["hmi"], 5, coil), (h["hmi"], 15, coil), (h["hmi"], 6, reg), (h["hmi"], 16, reg)]
    plan += [(h["hmi"], 22, sp), (h["hmi"], 23, sp)]  # the setpoint, but not with FC 6 or 16
    return plan


def hmi_writes_that_may_land(stats0: dict[str, int], stats1: dict[str, int]) -> int:
    """The plant HMI's writes that can have reached PLC-1 between two readings of its counters: those it started
    meanwhile and those still in flight at the first reading (a write lands before its reply, which can take up to
    the HMI's timeout after FW-1 restarts)."""
    done0 = int(stats0.get("writes_ok", 0)) + int(stats0.get("writes_failed", 0))
    if "writes_started" not in stats1:
        return int(stats1.get("writes_ok", 0)) + int(stats1.get("writes_failed", 0)) - done0
    return int(stats1["writes_started"]) - done0


@check("mb.writes_blocked")
async def writes_blocked(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """No write gets through except the HMI's FC 6/16 setpoint writes, judged by reply and by the plant's record."""
    probes = [await control(ctx, spec, "plc1", "before")]
    words = await current_words(ctx)
    stats0 = await hmi_stats(ctx, time.time())
    t0 = time.time()
    for src, fc, name in write_plan(ctx):
        target = entry(ctx, "plc1", name)
        table = "coils" if fc in (5, 15) else "holding_registers"
        now = int(words[table][str(target["address"])])
        r = await send(ctx, "plc1", src, mp.write_pdu(fc, int(target["address"]), now))
        what = f"FC{fc} write to plc1 {name} from {who(ctx, src)} {src}"
        probes.append(
            probe(
                what,
                r.said,
                refusal(r),
                expected="refused",
                why=f"FC{fc} write to {name} from {who(ctx, src)} {src} was answered as successful ({r.detail})",
                why_zh=f"{who_zh(ctx, src)} {src} 以 FC{fc} 寫入 {name}：回應為成功（{r.detail}）",
                cause="probe-inconclusive",
                unsure=f"{what}: FW-1 answered with a gateway exception ({r.detail}): the device did not answer",
                unsure_zh=f"{what}：FW-1 回應閘道例外（{r.detail}）：裝置未回應",
            )
        )
    await asyncio.sleep(1.0)
    t1 = time.time()
    stats1 = await hmi_stats(ctx, t1)
    landed = await writes_between(ctx, t0 - 0.2, t1)
    # The plant's HMI writes only its setpoint. Each of its attempts counts as one of its own writes, a failed one
    # too: after FW-1 restarts, a write can reach PLC-1 while its reply is lost (the HMI then counts a failure).
    sp = truth_tag(ctx, "plc1", ctx.params["hmi_setpoint"])
    hmi_attempts = hmi_writes_that_may_land(stats0, stats1)
    on_sp = [e for e in landed if e["detail"].get("tag") == sp]
    elsewhere = [e for e in landed if e["detail"].get("tag") != sp]
    extra = len(elsewhere) + max(0, len(on_sp) - max(0, hmi_attempts))
    probes.append(
        probe(
            "ground truth: writes that reached PLC-1 during the probes, beyond the plant HMI's own",
            {"write_events": landed[:20], "hmi_write_attempts": hmi_attempts},
            extra <= 0,
            expected="none",
            why=f"{extra} probe write(s) reached PLC-1 (plant record: "
            + ", ".join(f"{e['detail'].get('tag')}={e['detail'].get('value')}" for e in (elsewhere or on_sp)[:3])
            + f"; the plant HMI's own write attempts meanwhile: {max(0, hmi_attempts)})",
            why_zh=f"{extra} 筆探測寫入抵達 PLC-1（工廠紀錄："
            + "、".join(f"{e['detail'].get('tag')}={e['detail'].get('value')}" for e in (elsewhere or on_sp)[:3])
            + f"；同期工廠 HMI 自身的寫入嘗試：{max(0, hmi_attempts)} 次）",
        )
    )
    probes.append(await control(ctx, spec, "plc1", "after"))
    return judge(
        ctx,
        spec,
        probes,
        "No write gets through except the HMI's FC 6/16 setpoint writes",
        "除 HMI 以 FC 6/16 寫入設定值外，沒有任何寫入能通過",
    )


async def legitimate_probes(ctx: Any) -> list[dict[str, Any]]:
    """Everything the HMI and the collector need: every read function code on both devices, and the HMI's
    in-range setpoint writes with FC 6 and FC 16 (confirmed in the plant's record)."""
    h = hosts(ctx)
    probes = []
    for source in (h["hmi"], h["workstation"]):
        for device in ("plc1", "em1"):
            for fc in read_fcs(ctx, device):
                what, r = await read(ctx, device, source, fc, positive=True)
                probes.append(
                    probe(
                        what,
                        r.said,
                        r.ok,
                        expected="answered",
                        why=f"{who(ctx, source)} FC{fc} read of {device} refused ({r.said})".strip(),
                        why_zh=f"{who_zh(ctx, source)} 以 FC{fc} 讀取 {device} 遭拒（{r.said}）",
                    )
                )
    sp = entry(ctx, "plc1", ctx.params["hmi_setpoint"])
    for fc in (6, 16):
        now = int((await current_words(ctx))["holding_registers"][str(sp["address"])])
        t0 = time.time()
        r = await send_expecting_answer(ctx, "plc1", h["hmi"], mp.write_pdu(fc, int(sp["address"]), now))
        await asyncio.sleep(0.5)
        landed = await writes_between(ctx, t0 - 0.1, time.time())
        observed = f"{r.said}; {len(landed)} write event(s) in the plant's record"
        probes.append(
            probe(
                f"HMI FC{fc} write of {sp['name']} (its own value) from {h['hmi']}",
                observed,
                r.ok and bool(landed),
                expected="answered and recorded by the plant",
                why=f"the HMI's FC{fc} setpoint write did not land: {observed}",
                why_zh=f"HMI 以 FC{fc} 寫入設定值未生效：{observed}",
            )
        )
    return probes


@check("mb.no_overblocking")
async def no_overblocking(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Legitimate traffic still flows: HMI and collector reads, the HMI's FC 6 and FC 16 setpoint writes, and the
    plant's own HMI polling without errors. Scores only where FW-1 blocks something: on a FW-1 that blocks nothing
    there is nothing that could over-block, and this check is not assessable (no points)."""
    t0 = time.time()
    async with LoopLag() as lag:
        stats0 = await hmi_stats(ctx)
        probes = await legitimate_probes(ctx)
        await asyncio.sleep(float(ctx.params.get("hmi_watch_s", 4.0)))
        stats1 = await hmi_stats(ctx)
    delta = {k: int(stats1.get(k, 0)) - int(stats0.get(k, 0)) for k in ("reads_ok", "reads_failed", "writes_failed")}
    probes.append(
        probe(
            f"the plant's own HMI over {float(ctx.params.get('hmi_watch_s', 4.0)):g} s: its polls answered, and no "
            "write of its own failed (it writes its setpoint about once a minute, so most watches see none)",
            delta,
            delta["reads_ok"] > 0 and delta["reads_failed"] == 0 and delta["writes_failed"] == 0,
            expected="reads_ok > 0, no failures",
            why=f"the plant's HMI sees failures: {delta}",
            why_zh=f"工廠 HMI 出現失敗：{delta}",
        )
    )
    if all(p["ok"] for p in probes):  # nothing over-blocked: does FW-1 block anything at all?
        reg = entry(ctx, "plc1", ctx.params["write_probe_register"])
        now = int((await current_words(ctx))["holding_registers"][str(reg["address"])])
        src = attacker(ctx, 2)
        _, r_read = await read(ctx, "plc1", src, read_fcs(ctx, "plc1")[-1])
        r_write = await send(ctx, "plc1", src, mp.write_pdu(6, int(reg["address"]), now))
        seen = {"attacker read": r_read.said, "attacker FC6 write": r_write.outcome}
        if r_read.ok and r_write.ok:
            probes.append(cause_probe(ctx, spec, "fw1-blocks-nothing", f"FW-1 blocks anything from {src}", seen))
        else:
            probes.append(probe(f"FW-1 blocks something (attacker {src})", seen, True, expected="something refused"))
    result = judge(ctx, spec, probes, "HMI and collector traffic is not blocked", "HMI 與擷取主機的合法流量未被阻擋")
    return await overloaded_or(ctx, spec, result, t0 - 1.0, time.time(), lag)
