"""Dashboard and alerting checks (check-catalog DB-01..DB-05): the candidate's exporter, rules and dashboard,
judged with promtool and a real Prometheus against the plant's ground truth.

All are active: they run while the exporter runs, one at a time in the lab's order, and they read the candidate's
files once, at grading time (the evidence keeps each file's SHA-256), so a replay keeps their verdicts rather than
re-reading a changed workspace.

One defect fails one check. The check that owns a defect which keeps the grader from assessing others (the
exporter does not answer, promtool rejects the rule file, the dashboard cannot be read) fails and records a blocker;
the checks it blocks are "not assessable" naming it. A probe that depends on something another check already
failed (the values of a metric that is not exposed, the hidden cases of an alert the rule file lacks, a panel query
that is empty only because its documented metric is missing, an OEE panel that faithfully shows a wrong exporter
gauge) is not assessed again: the check judges what remains and says what it left out. A probe the grader could not
run (promtool or Prometheus missing or failing, the grader's own Prometheus falling behind) is not assessable,
never a pass or a fail of the candidate. dash.plc1_budget needs no other check: PLC-1's own accounting and FW-1's
count measure the load even when the exporter's page cannot be scraped.

Summaries speak each language in its own words (why_zh beside why in a probe's evidence) and print numbers finely
enough to tell apart what they compare (num).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import jinja2
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ..kit import render_kit_file
from ..probes.prometheus import PrometheusServer, Scrape, ToolMissing, promtool, scrape
from ..results import GRADER_OVERLOADED, CheckResult, by_items, failed, passed
from . import check
from .alert_plan import plan_cause, plan_values, tank_facts
from .artefacts import artefact, file_problem
from .common import all_ok, control_get, control_post, grader_host, hosts

GRADER_PROMETHEUS_PORT = 19090  # on the slot's loopback control address: never the candidate's own Prometheus
GRAFANA_VARIABLES = {  # what Grafana substitutes before a query reaches Prometheus
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}
# Candidate defects that keep the grader from assessing other checks (owned by the first check named)
EXPORTER_DOWN = "exporter-down"  # dash.metric_contract
NO_DOCUMENTED_METRICS = "exporter-no-documented-metrics"  # dash.metric_contract
RULES_REJECTED = "rules-rejected"  # dash.rules_valid
DASHBOARD_UNUSABLE = "dashboard-unusable"  # dash.dashboard_model
OEE_PANELS_MISSING = "oee-panels-missing"  # dash.dashboard_model
PROMETHEUS_REFUSED = "exporter-refuses-prometheus"  # the first check that needs the grader's Prometheus
# The grader's own failures: not the candidate's (no check owns them)
GRADER_TOOL = "grader-tool-missing"
GRADER_PROMETHEUS = "grader-prometheus-failed"
GRADER_TIMEOUT = "grader-tool-timeout"
ALERTS_RE = re.compile(r"\bALERTS(?:_FOR_STATE)?\b")


# -- blockers and not-assessable verdicts ----------------------------------------------------------------------------
def blocking(ctx: Any, *causes: str) -> str | None:
    """The first of these causes a check already recorded, if any."""
    return next((c for c in causes if c in ctx.blockers), None)


def grader_cannot(
    ctx: Any, spec: dict[str, Any], cause: str, en: str, zh: str, evidence: dict[str, Any] | None = None
) -> CheckResult:
    """The grader could not run this probe: not assessable, named once at the report's top, owned by no check."""
    ctx.block(cause, en, zh, None)
    return ctx.blocked(spec, cause, evidence)


def tool_missing(ctx: Any, spec: dict[str, Any], exc: ToolMissing) -> CheckResult:
    return grader_cannot(ctx, spec, GRADER_TOOL, f"the grader lacks a tool: {exc}", f"評分環境缺少工具：{exc}")


def overloaded(ctx: Any) -> bool:
    return bool((getattr(ctx, "health", None) or {}).get("overloaded"))


def lag_monitor() -> Any:
    """The engine's own event-loop lag monitor, started for one timing-sensitive phase of a check."""
    from ..engine import LagMonitor

    monitor = LagMonitor()
    monitor.start()
    return monitor


async def fell_behind(ctx: Any, monitor: Any, t0: float, t1: float) -> dict[str, Any]:
    """Did the grader or the plant fall behind during [t0, t1]? The grader's loop lag (how late a 0.2 s sleep woke)
    and the plant's physics stalls; either beyond the engine's limit makes timing there the host's, not yours."""
    from ..engine import MAX_LOOP_LAG_S

    await monitor.stop()
    out: dict[str, Any] = {"max_loop_lag_s": round(max(monitor.lags, default=0.0), 3)}
    try:
        events = await control_get(ctx, f"/v1/events?start={t0}&end={t1}")
        stalls = [float(e["detail"].get("late_ms", 0)) / 1000 for e in events if e.get("kind") == "tick_stall"]
    except Exception as exc:  # noqa: BLE001 - evidence only
        stalls, out["events_error"] = [], str(exc)
    out["plant_max_stall_s"] = round(max(stalls, default=0.0), 3)
    out["fell_behind"] = out["max_loop_lag_s"] > MAX_LOOP_LAG_S or out["plant_max_stall_s"] > MAX_LOOP_LAG_S
    return out


def note_missing(ctx: Any, key: str, cause: str, en: str, zh: str, owner: str) -> None:
    """Record that a documented sample or alert is missing or wrong (owner's finding) for the checks after it."""
    ctx.block(cause, en, zh, owner)
    ctx.cache.setdefault("dash.defects", {})[key] = cause


def defect(ctx: Any, key: str) -> str | None:
    """The cause recorded for a documented sample (describe_metric) or alert ('alert:Name'), if any."""
    return (ctx.cache.get("dash.defects") or {}).get(key)


def all_right(spec: dict[str, Any], probes: list[dict[str, Any]], en: str, zh: str, **extra: Any) -> CheckResult:
    """common.all_ok, with a failing summary in each language: a probe's why_zh is its own zh-TW account (the
    report's readers are zh-TW assessors), kept in the evidence beside why."""
    bad = [p for p in probes if not p.get("ok")]
    if not probes or not bad:
        return all_ok(spec, probes, en, zh, **extra)
    first_en = bad[0].get("why") or bad[0].get("what", "")
    first_zh = bad[0].get("why_zh") or first_en
    return failed(
        spec["id"],
        spec["points"],
        f"{len(bad)} of {len(probes)} probe{'s' if len(probes) != 1 else ''} not as required; first: {first_en}",
        f"{len(probes)} 項探測中 {len(bad)} 項不符要求；第一項：{first_zh}",
        {"probes": probes, **extra},
    )


# -- what the candidate hands in ------------------------------------------------------------------------------------
def exporter_target(ctx: Any) -> str:
    return f"{hosts(ctx)['workstation']}:{ctx.params['exporter_port']}"


def exporter_url(ctx: Any) -> str:
    return f"http://{exporter_target(ctx)}/metrics"


# -- the exporter ---------------------------------------------------------------------------------------------------
def settle_s(ctx: Any) -> float:
    """How long the grader waits for every documented sample to appear after the warm-up: one report period of the
    slowest sensor node plus max_age_s (an exporter started on a slow host has not yet seen every node report)."""
    slowest = max(float(n["default_report_period_s"]) for n in ctx.sheet["mqtt"]["nodes"])
    return slowest + float(ctx.params["max_age_s"])


def missing_samples(ctx: Any, s: Scrape) -> list[str]:
    try:
        samples = samples_of(s.text)
    except ValueError:
        return []  # not a page to wait on: judged as it is
    return [describe_metric(m) for m in ctx.lab.data["metrics"] if find_sample(samples, m) is None]


async def first_scrape(ctx: Any) -> Scrape:
    """The page the contract and the linter judge: scraped until every documented sample is there. A sample still
    missing settle_s(ctx) after the warm-up is missing, except a node's sample while the exporter has shown its
    sibling nodes for less than settle_s(ctx) (it subscribed late, on a slow host: the node's next report is up to a
    period away); never longer than three times settle_s(ctx)."""
    if "dash.scrape" not in ctx.cache:
        t0 = time.monotonic()
        limit = settle_s(ctx)
        siblings_since: float | None = None
        s = await scrape(exporter_url(ctx))
        while s.ok and (missing := missing_samples(ctx, s)):
            now = time.monotonic()
            names = {m.split("{")[0] for m in missing}
            try:
                shown = {k[0] for k in samples_of(s.text)}
            except ValueError:
                shown = set()
            if siblings_since is None and names & shown:
                siblings_since = now
            deadline = t0 + limit if siblings_since is None else max(t0, siblings_since) + limit
            if now >= min(deadline, t0 + 3 * limit):
                break
            await asyncio.sleep(1.0)
            s = await scrape(exporter_url(ctx))
        ctx.cache["dash.scrape"] = s
        ctx.cache["dash.scrape_waited_s"] = round(time.monotonic() - t0, 1)
    return ctx.cache["dash.scrape"]


def scrape_failure(s: Scrape) -> tuple[str, str]:
    """What went wrong with a scrape, in plain words (en, zh-TW), naming the URL; no HTTP library noise (the
    library's own text stays in the evidence, as error_detail)."""
    url, err, kind = s.url, s.error or "", s.error_kind
    number = re.search(r"(\d+(?:\.\d+)?)", err)
    n = number.group(1) if number else "?"
    if s.error is None:
        return f"{url} answered HTTP {s.status}", f"{url} 回應 HTTP {s.status}"
    if kind == "refused":
        return f"connection refused at {url}", f"{url} 拒絕連線"
    if kind == "unreachable":
        why = err.removeprefix("cannot connect").strip(" ()")
        return f"cannot connect to {url} ({why})", f"無法連線至 {url}（{why}）"
    if kind == "timeout":
        return f"no complete response from {url} within {n} s", f"{url} 未於 {n} 秒內完整回應"
    if kind == "too-large":
        return f"the response from {url} is larger than {n} bytes", f"{url} 的回應超過 {n} 位元組"
    if kind == "disconnected":
        return f"{url} closed the connection before a complete response", f"{url} 於完整回應前關閉連線"
    return f"{err} at {url}", f"{url} 發生錯誤：{err}"


def samples_of(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], tuple[str, float]]:
    """{(sample name, sorted labels): (family type, value)}; ValueError if the page does not parse."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[str, float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = (fam.type, float(s.value))
    return out


def families_of(text: str) -> dict[str, str]:
    return {fam.name: fam.type for fam in text_string_to_metric_families(text)}


def spec_key(m: dict[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    return m["name"], tuple(sorted((m.get("labels") or {}).items()))


def find_sample(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[str, float]], m: dict[str, Any]
) -> tuple[str, float] | None:
    """The documented sample: exactly its labels, else the one sample of its name whose labels include the
    documented ones (extra labels are dash.metric_contract's defect; the value is still judged, so a label slip
    never hides a value error)."""
    exact = samples.get(spec_key(m))
    if exact is not None:
        return exact
    want = set((m.get("labels") or {}).items())
    near = [v for (name, labels), v in samples.items() if name == m["name"] and want <= set(labels)]
    return near[0] if len(near) == 1 else None


def describe_metric(m: dict[str, Any]) -> str:
    labels = ",".join(f'{k}="{v}"' for k, v in (m.get("labels") or {}).items())
    return f"{m['name']}{{{labels}}}" if labels else m["name"]


def num(v: float | None, tol: float | None = None) -> str:
    """A number as an assessor compares it: with tol, to a tenth of it, so that two values more than tol apart never
    print alike (1795934274 against 1795934274.6413, not 1.79593e+09 twice); without, to 12 significant digits. No
    float noise either way (45.1, not 45.10000000000001)."""
    if v is None:
        return "none"
    if not math.isfinite(v):
        return str(v)
    if tol is None or tol <= 0 or abs(v) >= 1e15:
        return f"{v:.12g}"
    text = f"{v:.{max(0, 1 - math.floor(math.log10(tol)))}f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text == "-0" else text


def joined(values: list[str], zh: bool = False) -> str:
    if len(values) < 2:
        return "".join(values)
    return "、".join(values) if zh else ", ".join(values[:-1]) + " and " + values[-1]


def clip(text: str, limit: int = 160) -> str:
    """A cause's words are repeated by every check it blocks: the page itself stays in the owning check's evidence."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@check("dash.metric_contract")
async def metric_contract(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """The exporter answers, and each documented metric is there under its name with its type and exactly its
    labels. Owns the blocker 'exporter-down': every later check that needs the exporter is not assessable."""
    s = await first_scrape(ctx)
    if not s.ok:
        en, zh = scrape_failure(s)
        ctx.block(
            EXPORTER_DOWN,
            f"the exporter gave no usable page ({clip(en)})",
            f"匯出器未提供可用頁面（{clip(zh)}）",
            spec["id"],
        )
        return failed(
            spec["id"],
            spec["points"],
            f"The exporter could not be scraped: {en}",
            f"無法抓取匯出器：{zh}",
            {"scrape": s.describe()},
        )
    try:
        families = families_of(s.text)
        samples = samples_of(s.text)
    except ValueError as exc:
        ctx.block(
            EXPORTER_DOWN,
            f"the exporter's page is not Prometheus text format ({clip(str(exc))})",  # said once per blocked check
            f"匯出器頁面不是 Prometheus 文字格式（{clip(str(exc))}）",
            spec["id"],
        )
        return failed(
            spec["id"],
            spec["points"],
            f"The exporter's page is not valid Prometheus text format: {exc}",
            f"匯出器頁面不是有效的 Prometheus 文字格式：{exc}",
            {"scrape": s.describe(), "head": s.text[:2000]},
        )
    probes = []
    wrong_type: set[str] = set()
    for m in ctx.lab.data["metrics"]:
        family = m["name"].removesuffix("_total") if m["type"] == "counter" else m["name"]
        got_type = families.get(family) or families.get(m["name"])
        sample = samples.get(spec_key(m))
        near = find_sample(samples, m)  # with extra labels: exposed, its value judged by dash.exporter_values
        what = describe_metric(m)
        why = why_zh = None
        if got_type is None:
            why, why_zh = f"{m['name']} is not exposed", f"{m['name']} 未公開"
        elif got_type != m["type"]:
            why = f"{m['name']} is exposed as a {got_type}, the brief documents a {m['type']}"
            why_zh = f"{m['name']} 以 {got_type} 公開，題目規定為 {m['type']}"
            wrong_type |= {m["name"], family}
        elif sample is None:
            labelled = sorted(dict(k[1]) for k in samples if k[0] == m["name"])
            why = f"no sample {what} with exactly these labels (samples of {m['name']}: {labelled[:4]})"
            why_zh = f"沒有標籤恰好相符的樣本 {what}（{m['name']} 的樣本：{labelled[:4]}）"
        if near is None:
            note_missing(
                ctx,
                what,
                f"metric-missing:{what}",
                f"{what} is not exposed as documented",
                f"{what} 未依規定公開",
                spec["id"],
            )
        probes.append(
            {
                "what": what,
                "expected_type": m["type"],
                "type": got_type,
                "value": None if sample is None else sample[1],
                "ok": why is None,
                "why": why,
                "why_zh": why_zh,
            }
        )
    ctx.cache["dash.wrong_type"] = wrong_type
    if all(p["value"] is None for p in probes):
        ctx.block(
            NO_DOCUMENTED_METRICS,
            "the exporter exposes none of the documented metrics",
            "匯出器未公開任何規定指標",
            spec["id"],
        )
    return all_right(
        spec,
        probes,
        f"All {len(probes)} documented samples are exposed with their types and labels",
        f"{len(probes)} 個規定樣本皆以正確型別與標籤公開",
        scrape=s.describe(),
        waited_for_samples_s=ctx.cache.get("dash.scrape_waited_s"),
        wait_limit_s=settle_s(ctx),
    )


@check("dash.exporter_lint")
async def exporter_lint(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """promtool's own linter on the page Prometheus would scrape: HELP texts, naming and base units. A finding about
    a documented metric exposed with the wrong type is dash.metric_contract's, not counted again here."""
    if cause := blocking(ctx, EXPORTER_DOWN):
        return ctx.blocked(spec, cause)
    s = await first_scrape(ctx)
    try:
        run = await promtool(["check", "metrics"], stdin=s.text)
    except ToolMissing as exc:
        return tool_missing(ctx, spec, exc)
    if run.rc is None:
        return grader_cannot(
            ctx, spec, GRADER_TIMEOUT, f"promtool did not finish ({run.error})", f"promtool 未完成（{run.error}）"
        )
    problems = [ln.strip() for ln in run.output.splitlines() if ln.strip()]
    owned = ctx.cache.get("dash.wrong_type", set())
    elsewhere = [p for p in problems if p.split()[0] in owned]
    mine = [p for p in problems if p not in elsewhere]
    evidence = {
        "scrape": s.describe(),
        "promtool": run.describe(),
        "problems": mine,
        "judged_by_dash.metric_contract": elsewhere,
    }
    if run.rc == 0 or (problems and not mine):
        note = f"; {len(elsewhere)} finding(s) about wrongly typed documented metrics left to dash.metric_contract"
        return passed(
            spec["id"],
            spec["points"],
            "promtool check metrics reports no problem" + (note if elsewhere else ""),
            "promtool check metrics 未回報問題"
            + (f"；{len(elsewhere)} 項關於規定指標型別的問題由 dash.metric_contract 評量" if elsewhere else ""),
            evidence,
        )
    first = mine[0] if mine else f"exit {run.rc} with no output"
    return failed(
        spec["id"],
        spec["points"],
        f"promtool check metrics reports {len(mine)} problem(s); first: {first}",
        f"promtool check metrics 回報 {len(mine)} 項問題；第一項：{first}",
        evidence,
    )


def oee_truth(ctx: Any, t0: float, t1: float) -> tuple[list[float], dict[str, list[float]]]:
    """Cumulative OEE and its factors at every truth sample in [t0, t1], from PLC-2's own counters and clocks."""
    tags = ["conveyor.run_time_s", "conveyor.planned_time_s", "conveyor.good_count", "conveyor.reject_count"]
    series = {tag: ctx.truth_range(tag, t0, t1) for tag in [*tags, "conveyor.ideal_cycle_s"]}
    ts = series["conveyor.run_time_s"][0]
    out: dict[str, list[float]] = {"availability": [], "performance": [], "quality": [], "oee": []}
    values = {tag: dict(zip(*series[tag], strict=True)) for tag in series}
    times = []
    for t in ts:
        if not t0 <= t <= t1:
            continue
        try:
            run, planned = values["conveyor.run_time_s"][t], values["conveyor.planned_time_s"][t]
            good, reject = values["conveyor.good_count"][t], values["conveyor.reject_count"][t]
            ideal = values["conveyor.ideal_cycle_s"][t]
        except KeyError:
            continue
        total = good + reject
        if planned <= 0 or run <= 0 or total <= 0:
            continue
        a, p, q = run / planned, ideal * total / run, good / total
        times.append(t)
        for k, v in (("availability", a), ("performance", p), ("quality", q), ("oee", a * p * q)):
            out[k].append(v)
    return times, out


def latest_match(
    value: float, times: list[float], values: list[float], t_lo: float, t_hi: float, tol: float
) -> float | None:
    """The time of the newest truth sample in [t_lo, t_hi] that the value equals within tol, or None."""
    hits = [t for t, v in zip(times, values, strict=True) if t_lo <= t <= t_hi and abs(v - value) <= tol]
    return max(hits) if hits else None


def truth_context(times: list[float], values: list[float], at: float, t_lo: float, t_hi: float) -> dict[str, Any]:
    """What the truth was around a probe, labelled: its latest sample at the probe, how many samples the window
    holds, the lowest and highest of them (truth_range_in_window: not a range of accepted values, a value between
    two samples matches neither), and the samples themselves when there are few (a sensor's messages)."""
    window = [v for t, v in zip(times, values, strict=True) if t_lo <= t <= t_hi]
    before = [(t, v) for t, v in zip(times, values, strict=True) if t <= at]
    return {
        "truth_latest_at_probe": None if not before else before[-1][1],
        "truth_samples_in_window": len(window),
        "truth_range_in_window": None if not window else [min(window), max(window)],
        **({"truth_values_in_window": window} if 0 < len(window) <= 6 else {}),
        "window_s": [round(t_lo - at, 2), round(t_hi - at, 2)],
    }


def mismatch(key: str, first: dict[str, Any], tol: float, max_age: float, sensor: bool) -> tuple[str, str]:
    """(en, zh-TW) of a value that matched no truth sample: the value and the truth samples it was held against,
    printed finely enough to show the difference."""
    value = num(first["value"], tol)
    if value == "0" and first["value"]:  # tiny, not zero: -4.64e-27 printed as 0 reads as "exported nothing"
        value += f" ({first['value']:.3g})"
    head_en = f"{key} = {value}, but no truth sample of the {max_age:.0f} s before that scrape is within ±{tol:g} of it"
    head_zh = f"{key} = {value}，但抓取前 {max_age:.0f} 秒內沒有任何真值樣本與之相差在 ±{tol:g} 以內"
    n, lo_hi = first.get("truth_samples_in_window", 0), first.get("truth_range_in_window")
    sent = [num(v, tol) for v in first.get("truth_values_in_window") or []]
    if not n or not lo_hi:
        if sensor:
            return f"{head_en}: the node sent no message then", f"{head_zh}：節點於該期間未送出訊息"
        return f"{head_en}: the plant recorded no sample then", f"{head_zh}：工廠於該期間無任何樣本"
    if sensor and sent:
        en = f"{head_en}: the node's messages that were its latest then carried {joined(sent)}"
        zh = f"{head_zh}：節點當時最新的訊息為 {joined(sent, zh=True)}"
        offsets = {round(float(first["value"]) - float(v)) for v in first.get("truth_values_in_window") or []}
        hours = next((o // 3600 for o in offsets if o and o % 3600 == 0 and abs(o) <= 14 * 3600), None)
        if key.startswith("plant_sensor_last_report_timestamp_seconds") and hours:
            en += f" (exactly {hours:+d} h off: a time-zone slip? `ts` carries its own offset, Z = UTC)"
            zh += f"（恰好相差 {hours:+d} 小時：時區錯誤？`ts` 自帶時差，Z 即 UTC）"
        return en, zh
    who_en, who_zh = ("the node's", "節點") if sensor else ("the plant's", "工廠")
    lo, hi = num(lo_hi[0], tol), num(lo_hi[1], tol)
    if lo == hi and n == 1:
        return f"{head_en}: {who_en} only sample there was {lo}", f"{head_zh}：該期間{who_zh}唯一的樣本為 {lo}"
    if lo == hi:
        return (
            f"{head_en}: all {n} of {who_en} samples there were {lo}",
            f"{head_zh}：該期間{who_zh}的 {n} 個樣本皆為 {lo}",
        )
    if sent:
        return (
            f"{head_en}: {who_en} {n} samples there were {joined(sent)}",
            f"{head_zh}：該期間{who_zh}的 {n} 個樣本為 {joined(sent, zh=True)}",
        )
    latest = num(first.get("truth_latest_at_probe"), tol)
    return (
        f"{head_en}: {who_en} {n} samples there lay between {lo} and {hi}, the latest {latest}",
        f"{head_zh}：該期間{who_zh}的 {n} 個樣本介於 {lo} 與 {hi} 之間，最新為 {latest}",
    )


@check("dash.exporter_values")
async def exporter_values(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Scrape repeatedly; every documented value (the OEE ratio gauges included) must equal the plant's truth, in
    base units, of the last `max_age_s` seconds before each scrape. One item per documented sample: an item is right
    only when it is right in every scrape. Samples that are not exposed are dash.metric_contract's, not judged here."""
    if overloaded(ctx):
        return ctx.blocked(spec, GRADER_OVERLOADED)
    if cause := blocking(ctx, EXPORTER_DOWN, NO_DOCUMENTED_METRICS):
        return ctx.blocked(spec, cause)
    n, gap = int(spec["params"]["scrapes"]), float(spec["params"]["interval_s"])
    scrapes: list[Scrape] = []
    monitor, started = lag_monitor(), time.time()
    for i in range(n):
        scrapes.append(await scrape(exporter_url(ctx)))
        if i + 1 < n:
            await asyncio.sleep(gap)
    health = await fell_behind(ctx, monitor, started - 1, time.time())
    good = [s for s in scrapes if s.ok]
    if len(good) * 2 < n:
        en, zh = scrape_failure(next(s for s in scrapes if not s.ok))
        return failed(
            spec["id"],
            spec["points"],
            f"Only {len(good)} of {n} scrapes answered; first failure: {en}",
            f"{n} 次抓取僅 {len(good)} 次有回應；第一次失敗：{zh}",
            {"scrapes": [s.describe() for s in scrapes]},
        )
    max_age = float(ctx.params["max_age_s"])
    t0, t1 = good[0].t - max_age - 15, good[-1].t + 1
    emissions = await control_get(ctx, f"/v1/emissions?start={t0}&end={t1}")
    by_node: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    confirmed_at: dict[str, list[float]] = {}  # an unconfirmed emission (publish cut before its PUBACK) may never
    for e in emissions:  # have arrived: the message before it may still be the node's latest the exporter saw
        by_node.setdefault(e["node"], []).append((e["t"], json.loads(e["payload"])))
        if e.get("confirmed", True) is not False:
            confirmed_at.setdefault(e["node"], []).append(e["t"])
    for sent in by_node.values():
        sent.sort(key=lambda te: te[0])
    periods = {nd["id"]: float(nd["default_report_period_s"]) for nd in ctx.sheet["mqtt"]["nodes"]}
    oee_times, oee_values = await asyncio.to_thread(oee_truth, ctx, t0, t1)
    judged, skipped = [], {}
    for m in ctx.lab.data["metrics"]:
        cause = defect(ctx, describe_metric(m))
        if cause:
            skipped[describe_metric(m)] = f"not exposed: judged by dash.metric_contract ({cause})"
        else:
            judged.append(m)
    if not judged:
        return ctx.blocked(spec, NO_DOCUMENTED_METRICS, {"not_judged_here": skipped})
    per_metric: dict[str, dict[str, Any]] = {}
    for m in judged:
        key = describe_metric(m)
        row: dict[str, Any] = {"ok": 0, "n": 0, "tol": float(m["tol"]), "oldest_matched_truth_s": 0.0}
        row["truth_is"] = "the node's emitted messages" if "sensor" in m else "the plant's recorded values"
        per_metric[key] = row
        scale = float(m.get("scale", 1))
        truth: tuple[list[float], list[float]] | None = None
        if "truth" in m:
            ts, vs = await asyncio.to_thread(ctx.truth_range, m["truth"], t0, t1)
            truth = (ts, [v * scale for v in vs])
        elif "oee" in m:
            truth = (oee_times, oee_values[m["oee"]])
        for s in good:
            row["n"] += 1
            try:
                got = find_sample(samples_of(s.text), m)
            except ValueError:
                got = None
            if got is None:
                row.setdefault("first_problem", {"scrape_t": s.t, "problem": "missing from this scrape"})
                continue
            value = got[1]
            lo, hi = s.t - max_age, s.t + 0.5
            if truth is not None:
                matched = latest_match(value, truth[0], truth[1], lo, hi, row["tol"])
                context = truth_context(truth[0], truth[1], s.t, lo, hi)
            else:  # a sensor field or report time, against the plant's recorded emissions: a message that was the
                # node's latest at some moment of the max_age_s before the scrape (so one message behind is too old)
                node = m["labels"]["node"]
                sent = by_node.get(node, [])
                older = sorted(t for t in confirmed_at.get(node, []) if t <= s.t - max_age)
                lo = older[-1] if older else s.t - periods.get(node, 10.0) - max_age
                recent = [(t, body) for t, body in sent if lo <= t <= hi]
                if m["sensor"] == "ts":  # the `ts` the node sent (millisecond resolution), not when it sent it
                    cands = [(t, sent_ts) for t, b in recent if (sent_ts := _epoch(b.get("ts"))) is not None]
                else:
                    cands = [(t, float(b[m["sensor"]]) * scale) for t, b in recent if m["sensor"] in b]
                matched = latest_match(value, [c[0] for c in cands], [c[1] for c in cands], lo, hi, row["tol"])
                context = truth_context([c[0] for c in cands], [c[1] for c in cands], s.t, lo, hi)
            if matched is not None:
                row["ok"] += 1
                row["oldest_matched_truth_s"] = max(row["oldest_matched_truth_s"], round(s.t - matched, 2))
            else:
                row.setdefault("first_problem", {"scrape_t": s.t, "value": value, **context})
    items = {k: r["n"] > 0 and r["ok"] == r["n"] for k, r in per_metric.items()}
    evidence = {
        "scrapes": [s.describe() for s in scrapes],
        "grader_health": health,
        "max_age_s": max_age,
        "metrics": per_metric,
        "not_judged_here": skipped,
        "rule": "a value matches when it equals, within tol, a truth sample taken in the window before its scrape "
        "(window_s, relative to the scrape); truth_latest_at_probe is the newest truth at the scrape, shown for "
        "comparison",
    }
    bad = [k for k, ok in items.items() if not ok]
    if bad and health["fell_behind"]:  # the scrapes' own times are then unreliable: the host's, not the candidate's
        return ctx.blocked(spec, GRADER_OVERLOADED, evidence)
    for key in bad:
        note_missing(
            ctx, key, f"metric-wrong:{key}", f"{key} does not equal ground truth", f"{key} 與真值不符", spec["id"]
        )
    left = f"; not judged here (see dash.metric_contract): {', '.join(skipped)}" if skipped else ""
    left_zh = f"；未於此評量（見 dash.metric_contract）：{', '.join(skipped)}" if skipped else ""
    if not bad:
        device = [r["oldest_matched_truth_s"] for k, r in per_metric.items() if "emitted" not in r["truth_is"]]
        oldest = max(device, default=0.0)
        return by_items(
            spec["id"],
            spec["points"],
            items,
            f"All {len(items)} documented values equal ground truth in every one of {len(good)} scrapes (device "
            f"values matched truth at most {oldest:.1f} s older than the scrape, limit {max_age:.0f} s; sensor "
            f"values matched the node's latest message of that time){left}",
            f"{len(items)} 個規定數值於 {len(good)} 次抓取中皆與真值一致（設備數值比對之真值至多早於抓取 {oldest:.1f} 秒，"
            f"上限 {max_age:.0f} 秒；感測數值與節點最新訊息一致）{left_zh}",
            evidence,
        )
    row = per_metric[bad[0]]
    first = row["first_problem"]
    if "value" in first:
        seen, seen_zh = mismatch(bad[0], first, row["tol"], max_age, "emitted" in row["truth_is"])
    else:
        seen, seen_zh = f"{bad[0]} is missing from one scrape", f"{bad[0]} 於其中一次抓取中缺漏"
    return by_items(
        spec["id"],
        spec["points"],
        items,
        f"{len(bad)} of {len(items)} documented values differ from ground truth: {', '.join(bad)}; first: {seen}{left}",
        f"{len(items)} 個規定數值中 {len(bad)} 個與真值不符：{', '.join(bad)}；第一項：{seen_zh}{left_zh}",
        evidence,
    )


@check("dash.plc1_budget")
async def plc1_budget(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """PLC-1's total request load (the plant's own accounting, all clients, the HMI included) never exceeds its
    documented budget from the start of probing to the end of this, the last check; when the checks before it ended
    sooner (a blocked check takes no time) it keeps watching until that window is `min_window_s` long. It needs
    neither the exporter's page nor any other check: PLC-1's accounting and FW-1's count of the workstation's
    requests measure the load. Assessed only when the workstation did read PLC-1 in that window (a does-no-harm
    check scores only when there was work that could do harm); otherwise it is not assessable, naming the exporter's
    own defect when dash.metric_contract found it down."""
    start = ctx.status_start or {}
    t0 = float(start.get("time") or ctx.started)
    minimum = float((spec.get("params") or {}).get("min_window_s", 30))
    end = await control_get(ctx, "/v1/status")
    began, give_up = time.monotonic(), time.monotonic() + minimum + 15.0
    while (short := t0 + minimum - float(end.get("time") or time.time())) > 0 and time.monotonic() < give_up:
        await asyncio.sleep(min(short, 5.0))  # the exporter keeps running meanwhile: its load is still the candidate's
        end = await control_get(ctx, "/v1/status")
    waited = time.monotonic() - began
    t1 = float(end.get("time") or time.time())
    budget = float((end.get("plc1") or {}).get("budget_rps") or ctx.sheet["plc1"]["comm_budget_rps"])
    ws = ctx.sheet["network"]["workstation"]

    def forwarded(st: dict[str, Any]) -> int:
        return int((((st.get("fw1") or {}).get("requests_by_source") or {}).get(ws) or {}).get("plc1", 0))

    requests = forwarded(end) - forwarded(start)
    t_load, load = await asyncio.to_thread(ctx.truth_range, "plc1.load_rps", t0, t1)
    t_scan, scan = await asyncio.to_thread(ctx.truth_range, "plc1.scan_time_ms", t0, t1)
    inside = [(t, v) for t, v in zip(t_load, load, strict=True) if t0 <= t <= t1]
    peak = max(inside, key=lambda p: p[1]) if inside else None
    span = t1 - t0
    evidence = {
        "window_s": round(span, 1),
        "window": [t0, t1],
        "window_is": f"from the start of the grader's probes to the end of this check (at least {minimum:.0f} s: it "
        "waited when the checks before it ended sooner)",
        "waited_for_min_window_s": round(waited, 1),
        "budget_rps": budget,
        "max_total_load_rps": None if peak is None else round(peak[1], 2),
        "max_at_s": None if peak is None else round(peak[0] - t0, 1),
        "load_samples": len(inside),
        "workstation_requests_to_plc1": requests,
        "workstation_rps": round(requests / max(span, 1e-9), 2),
        "max_scan_ms": max(scan) if scan else None,
        "load_series": [[round(t - t0, 1), round(v, 2)] for t, v in inside[::10]],
        "rule": "PLC-1's total load over its 5 s accounting window, every truth sample of the window",
    }
    if peak is None:
        return grader_cannot(
            ctx,
            spec,
            "grader-no-plc1-truth",
            "the plant recorded no PLC-1 load for the grading window",
            "工廠於評分期間未記錄 PLC-1 負載",
            evidence,
        )
    if requests <= 0:  # the brief's one reason for "not assessable" here, whatever else is wrong
        ctx.block(
            "exporter-no-plc1-requests",
            f"your workstation sent PLC-1 no request in the {span:.0f} s judged: there is no load of its own to judge",
            f"評量的 {span:.0f} 秒內工作站未向 PLC-1 發出任何請求：無可評量之負載",
            "",
        )
        return ctx.blocked(spec, "exporter-no-plc1-requests", evidence)
    rate = evidence["workstation_rps"]
    judged_en = f"the {span:.0f} s judged (from the start of probing to its end)"
    judged_zh = f"評量的 {span:.0f} 秒內（自探測開始至結束）"
    if peak[1] <= budget:
        return passed(
            spec["id"],
            spec["points"],
            f"PLC-1's total load peaked at {peak[1]:.1f} req/s (budget {budget:.0f}) in {judged_en}; your "
            f"workstation sent {requests} requests ({rate} req/s)",
            f"{judged_zh}PLC-1 總負載峰值 {peak[1]:.1f} 請求/秒（預算 {budget:.0f}）；工作站共送出 {requests} 個請求"
            f"（{rate} 請求/秒）",
            evidence,
        )
    return failed(
        spec["id"],
        spec["points"],
        f"PLC-1's total load reached {peak[1]:.1f} req/s, over its budget of {budget:.0f}, in {judged_en}; your "
        f"workstation sent {requests} requests ({rate} req/s)",
        f"{judged_zh}PLC-1 總負載達 {peak[1]:.1f} 請求/秒，超過預算 {budget:.0f}；工作站共送出 {requests} 個請求"
        f"（{rate} 請求/秒）",
        evidence,
    )


# -- alert rules ----------------------------------------------------------------------------------------------------
def alert_rules(text: str) -> dict[str, dict[str, Any]]:
    """{alert name: rule} from a Prometheus rule file (ValueError if it is not one)."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
        raise ValueError("not a Prometheus rule file (no 'groups' list)")
    out: dict[str, dict[str, Any]] = {}
    for g in data["groups"]:
        for r in (g or {}).get("rules") or []:
            if isinstance(r, dict) and "alert" in r:
                out[str(r["alert"])] = r
    return out


def normalised(text: str, severities: dict[str, str] | None, strip: bool) -> str:
    """The candidate's rules with what dash.rules_valid judges set aside, so that one defect fails one check: no group
    `interval:`, and each documented alert's `severity` as documented. With `strip` (the hidden tests) annotations
    (free text promtool compares verbatim) and static labels other than severity go too. Expressions and `for:` are
    untouched."""
    data = yaml.safe_load(text)
    for g in data.get("groups") or []:
        if not isinstance(g, dict):
            continue
        g.pop("interval", None)
        for r in g.get("rules") or []:
            if not (isinstance(r, dict) and "alert" in r):
                continue
            labels = dict(r.get("labels") or {})
            if strip:
                r.pop("annotations", None)
                labels = {k: v for k, v in labels.items() if k == "severity"}
            if severities and str(r["alert"]) in severities:
                labels["severity"] = severities[str(r["alert"])]
            if labels:
                r["labels"] = labels
            else:
                r.pop("labels", None)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def for_testing(text: str, severities: dict[str, str] | None = None) -> str:
    return normalised(text, severities, strip=True)


def documented_severities(ctx: Any) -> dict[str, str]:
    return {a["name"]: a["severity"] for a in ctx.lab.data["alerts"]}


async def check_rules(ctx: Any) -> tuple[str | None, dict[str, Any]]:
    """(rules text if `promtool check rules` accepts it, evidence); cached for the later checks."""
    if "dash.rules" not in ctx.cache:
        path, text, evidence = artefact(ctx, "rules_file")
        if text is not None:
            run = await promtool(["check", "rules", str(path)])
            evidence["promtool"] = run.describe()
            if run.rc is None:
                raise TimeoutError(run.error)
            if run.rc != 0:
                text = None
        ctx.cache["dash.rules"] = (text, evidence)
    return ctx.cache["dash.rules"]


@check("dash.rules_valid")
async def rules_valid(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """promtool accepts the rule file; each documented alert exists with its severity and a summary; no group sets
    its own evaluation interval. Owns the blocker 'rules-rejected' (the hidden tests and the live test need rules)."""
    try:
        text, evidence = await check_rules(ctx)
    except ToolMissing as exc:
        return tool_missing(ctx, spec, exc)
    except TimeoutError as exc:
        return grader_cannot(ctx, spec, GRADER_TIMEOUT, f"promtool did not finish ({exc})", f"promtool 未完成（{exc}）")
    if text is None:
        if "error" in evidence:
            why_en, why_zh = file_problem(evidence)
        else:
            rel = ctx.params["rules_file"]
            out = [ln.strip() for ln in evidence["promtool"]["output"].splitlines() if ln.strip()]
            out = [ln for ln in out if ln.rstrip(":") not in ("FAILED", "SUCCESS")]  # promtool's own headings
            # the file as the candidate knows it, not where the grader read it
            said = " / ".join(dict.fromkeys(re.sub(r"\S*/" + re.escape(rel), rel, ln) for ln in out[-2:]))[:300]
            said = said or f"exit {evidence['promtool']['exit']}"
            why_en, why_zh = (
                f"{rel} is rejected by promtool check rules: {said}",
                f"{rel} 遭 promtool check rules 拒絕：{said}",
            )
        ctx.block(RULES_REJECTED, f"the rule file {why_en}", f"規則檔 {why_zh}", spec["id"])
        return failed(spec["id"], spec["points"], f"The rule file {why_en}", f"規則檔 {why_zh}", evidence)
    rules = alert_rules(text)
    probes = []
    for a in ctx.lab.data["alerts"]:
        r = rules.get(a["name"])
        if r is None:
            probes.append(
                {
                    "what": a["name"],
                    "ok": False,
                    "why": f"the rule file defines no alert {a['name']}",
                    "why_zh": f"規則檔未定義警示 {a['name']}",
                }
            )
            note_missing(
                ctx,
                f"alert:{a['name']}",
                f"alert-missing:{a['name']}",
                f"the rule file defines no alert {a['name']}",
                f"規則檔未定義警示 {a['name']}",
                spec["id"],
            )
            continue
        severity = (r.get("labels") or {}).get("severity")
        summary = (r.get("annotations") or {}).get("summary")
        why = why_zh = None
        if severity != a["severity"]:
            why = f"{a['name']}: label severity={severity!r}, the brief documents {a['severity']!r}"
            why_zh = f"{a['name']}：標籤 severity={severity!r}，題目規定為 {a['severity']!r}"
        elif not summary or not str(summary).strip():
            why = f"{a['name']}: no summary annotation (an operator reads it first)"
            why_zh = f"{a['name']}：缺少 summary 註解（值班人員最先閱讀）"
        probes.append(
            {
                "what": a["name"],
                "severity": severity,
                "summary": summary,
                "ok": why is None,
                "why": why,
                "why_zh": why_zh,
            }
        )
    for g in yaml.safe_load(text).get("groups") or []:
        if isinstance(g, dict) and "interval" in g:
            probes.append(
                {
                    "what": f"group {g.get('name')!r} has no interval:",
                    "ok": False,
                    "why": f"group {g.get('name')!r} sets interval: {g['interval']} (rules must run at the "
                    "evaluation interval)",
                    "why_zh": f"群組 {g.get('name')!r} 設定了 interval: {g['interval']}（規則須依評估間隔執行）",
                }
            )
    return all_right(
        spec,
        probes,
        "promtool accepts the rule file; the four alerts are defined with their severity and a summary",
        "promtool 接受規則檔；四個警示皆已定義並具 severity 與 summary",
        **evidence,
    )


def rendered_cases(ctx: Any, suite: str) -> list[dict[str, Any]]:
    """The hidden cases of a suite, rendered with this candidate's thresholds: name, description (first line), the
    alert it tests, its positive control (second line '# control: <case>', for a case that expects silence only)."""
    root = ctx.lab.path / "rule-tests" / suite
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(root)), undefined=jinja2.StrictUndefined)
    # TankLevelHigh's threshold and for: are the candidate's plan's; without a usable plan its cases are not run
    # (rule_tests leaves them to dash.alert_plan), so any stand-in renders them
    planned = plan_values(ctx) or {"level_warning_m": 2.35, "level_for_s": 30}
    values = {"p": {**ctx.params, **planned}, "job": ctx.params["job"], "instance": exporter_target(ctx)}
    out = []
    for f in sorted(root.glob("*.yml.j2")):
        text = env.get_template(f.name).render(**values)
        lines = text.splitlines()
        control = re.match(r"#\s*control:\s*(\S+)", lines[1]) if len(lines) > 1 else None
        alert = re.search(r"alertname:\s*(\w+)", text)
        out.append(
            {
                "case": f.name.removesuffix(".yml.j2"),
                "what": lines[0].lstrip("# ").strip(),
                "alert": alert.group(1) if alert else None,
                "control": control.group(1) if control else None,
                "text": text,
            }
        )
    return out


def unplanned(ctx: Any, case: str, planned: dict[str, float] | None) -> str | None:
    """Why a TankLevelHigh case cannot hold the rules to the plan, if it cannot: no usable plan, or a plan's for:
    too short for the case to mean anything (a for: under 10 s flaps on a 10 s swing: the plan's defect, judged
    by dash.alert_plan)."""
    if planned is None:
        plan_cause(ctx)
        return (
            "TankLevelHigh's threshold and for: come from your alert plan, which is unusable: judged by dash.alert_plan"
        )
    lo_for = float(ctx.params["level_for_range_s"][0])
    if case == "level-flapping" and planned["level_for_s"] < lo_for:
        return f"your plan's for: {planned['level_for_s']} s is under {lo_for:g} s: judged by dash.alert_plan"
    if case == "level-for" and planned["level_for_s"] < 1:
        return "your plan sets no for:: judged by dash.alert_plan"
    return None


def promtool_failure(output: str) -> str:
    """promtool test rules' own account of a failing case, on one line."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    start = next((i for i, ln in enumerate(lines) if ln.startswith("FAILED")), None)
    body = lines[start + 1 :] if start is not None else lines[-4:]
    text = re.sub(r"\s+", " ", " ".join(body))
    return text if len(text) <= 400 else text[:399] + "…"


@check("dash.rule_tests")
async def rule_tests(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Hidden `promtool test rules` cases, one promtool run per case so each verdict is the case's own. Cases of an
    alert the rule file lacks are dash.rules_valid's; a case that expects silence counts as evidence only beside
    its positive control (the same alert firing where it must). An alert with a failing case is recorded as this
    check's defect ('alert-rule-wrong:<name>'), so that a later suite (a failing case of that alert is the earlier
    suite's: a for: too long fails a threshold case and a timing case alike) and dash.live_alert do not judge it a
    second time; its passing cases still count."""
    if cause := blocking(ctx, RULES_REJECTED):
        return ctx.blocked(spec, cause)
    try:
        text, rules_evidence = await check_rules(ctx)
    except ToolMissing as exc:
        return tool_missing(ctx, spec, exc)
    except TimeoutError as exc:
        return grader_cannot(ctx, spec, GRADER_TIMEOUT, f"promtool did not finish ({exc})", f"promtool 未完成（{exc}）")
    if text is None:
        return ctx.blocked(spec, RULES_REJECTED)
    cases = rendered_cases(ctx, str(spec["params"]["suite"]))
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    owners: dict[str, str] = {}  # skipped case -> the check that judges it
    owned_failures: list[dict[str, Any]] = []  # failing cases of an alert an earlier suite already failed
    with tempfile.TemporaryDirectory(prefix="aiotlab-ruletest-") as tmp:
        (Path(tmp) / "rules.yml").write_text(for_testing(text, documented_severities(ctx)), encoding="utf-8")
        planned = plan_values(ctx)
        for c in cases:
            missing = defect(ctx, f"alert:{c['alert']}")
            if missing:
                skipped[c["case"]] = f"no alert {c['alert']}: judged by dash.rules_valid"
                owners[c["case"]] = "dash.rules_valid"
                continue
            if c["alert"] == "TankLevelHigh" and (why := unplanned(ctx, c["case"], planned)):
                skipped[c["case"]] = why
                owners[c["case"]] = "dash.alert_plan"
                continue
            earlier = defect(ctx, f"rules:{c['alert']}")  # this alert's rule already failed an earlier suite
            (Path(tmp) / f"{c['case']}.yml").write_text(c["text"], encoding="utf-8")
            run = await promtool(["test", "rules", f"{c['case']}.yml"], cwd=Path(tmp))
            if run.rc is None:
                return grader_cannot(
                    ctx,
                    spec,
                    GRADER_TIMEOUT,
                    f"promtool did not finish ({run.error})",
                    f"promtool 未完成（{run.error}）",
                )
            row: dict[str, Any] = {"case": c["case"], "what": c["what"], "alert": c["alert"], "ok": run.rc == 0}
            if run.rc != 0:
                row["observed"] = promtool_failure(run.output)
                row["promtool"] = run.describe(limit=2500)
            if c["control"]:
                row["positive_control"] = c["control"]
            if earlier and run.rc != 0:  # e.g. a for: too long fails the threshold case first: one defect, one check
                owner = str(ctx.blockers.get(earlier, {}).get("check") or earlier)
                skipped[c["case"]] = f"fails, but {c['alert']} already fails hidden rule tests judged by {owner}"
                owners[c["case"]] = owner
                owned_failures.append(row)
                continue
            rows.append(row)
    verdicts = {r["case"]: r["ok"] for r in rows}
    for r in rows:
        ctl = r.get("positive_control")
        if r["ok"] and ctl and verdicts.get(ctl) is not True:
            r["note"] = f"passing is no evidence here: its positive control {ctl} did not pass"
    for alert in dict.fromkeys(r["alert"] for r in rows if not r["ok"] and r["alert"]):
        bad = ", ".join(r["case"] for r in rows if r["alert"] == alert and not r["ok"])
        note_missing(  # the alert's rule is wrong: the live test does not judge it again (one defect, one check)
            ctx,
            f"rules:{alert}",
            f"alert-rule-wrong:{alert}",
            f"{alert} fails hidden rule tests ({bad}), judged by {spec['id']}",
            f"{alert} 未通過隱藏規則測試（{bad}），由 {spec['id']} 評量",
            spec["id"],
        )
    if not rows:
        first = next((c for c in cases if c["case"] in skipped), None)
        cause = (
            first and (defect(ctx, f"alert:{first['alert']}") or defect(ctx, f"rules:{first['alert']}"))
        ) or RULES_REJECTED
        return ctx.blocked(spec, cause, {"not_judged_here": skipped, "owned_failures": owned_failures})
    items = {r["case"]: r["ok"] for r in rows}
    failing = [r for r in rows if not r["ok"]]
    evidence = {"cases": rows, "not_judged_here": skipped, "owned_failures": owned_failures, "rules": rules_evidence}
    by_owner: dict[str, list[str]] = {}
    for case, owner in owners.items():
        by_owner.setdefault(owner, []).append(case)
    left = "".join(f"; not judged here (see {o}): {', '.join(cs)}" for o, cs in by_owner.items())
    left_zh = "".join(f"；未於此評量（見 {o}）：{', '.join(cs)}" for o, cs in by_owner.items())
    if not failing:
        return by_items(
            spec["id"],
            spec["points"],
            items,
            f"All {len(rows)} hidden rule tests pass{left}",
            f"{len(rows)} 項隱藏規則測試全數通過{left_zh}",
            evidence,
        )
    first = failing[0]
    others = f"{', '.join(r['case'] for r in failing)}; " if len(failing) > 1 else ""
    return by_items(
        spec["id"],
        spec["points"],
        items,
        f"{len(failing)} of {len(rows)} hidden rule tests fail: {others}"
        f"{first['case']} ({first['what']}): promtool: {first.get('observed')}{left}",
        f"{len(rows)} 項隱藏規則測試中 {len(failing)} 項未通過：{others.replace('; ', '；')}"
        f"{first['case']}（案例：{first['what']}）：promtool：{first.get('observed')}{left_zh}",
        evidence,
    )


# -- the grader's Prometheus ----------------------------------------------------------------------------------------
def prometheus_config(ctx: Any, rule_files: list[str], listen: str) -> str:
    """The kit's prometheus.yml, as the candidate has it, with the grader's copy of the rules and its own address."""
    return render_kit_file(
        ctx.lab,
        "prometheus.yml.j2",
        candidate=ctx.candidate,
        params=ctx.params,
        sheet=ctx.sheet,
        rule_files=rule_files,
        listen=listen,
    )


async def grader_prometheus(ctx: Any) -> PrometheusServer:
    """One Prometheus per grading, with the candidate's rules when promtool accepts them (else none, so that the
    dashboard is still judged); stopped by the engine when the probes are done. The rules run as written, except
    what dash.rules_valid judges (a group interval, the severity label), so that one defect fails one check."""
    if "dash.prometheus" not in ctx.cache:
        try:
            text, _ = await check_rules(ctx)
        except (ToolMissing, TimeoutError):
            text = None
        listen = f"{grader_host(ctx)}:{GRADER_PROMETHEUS_PORT}"
        live = normalised(text, documented_severities(ctx), strip=False) if text else None
        try:
            server = await PrometheusServer.start(
                prometheus_config(ctx, ["rules.yml"] if live else [], listen),
                listen,
                {"rules.yml": live} if live else {},
            )
        except Exception as exc:  # noqa: BLE001 - remembered: every later check reports the same cause
            ctx.cache["dash.prometheus"] = exc
        else:
            ctx.cache["dash.prometheus"] = server
            ctx.cleanups.append(server.stop)
            ctx.cache["dash.rules_loaded"] = bool(live)
    server = ctx.cache["dash.prometheus"]
    if isinstance(server, Exception):
        raise server
    return server


async def prometheus_or_cannot(ctx: Any, spec: dict[str, Any]) -> PrometheusServer | CheckResult:
    """The grader's Prometheus, or this check's not-assessable verdict: the grader's server is the grader's."""
    try:
        return await grader_prometheus(ctx)
    except ToolMissing as exc:
        return tool_missing(ctx, spec, exc)
    except Exception as exc:  # noqa: BLE001 - the cause is evidence, whatever it is
        return grader_cannot(
            ctx,
            spec,
            GRADER_PROMETHEUS,
            f"the grader's Prometheus did not start: {exc}",
            f"評分程式的 Prometheus 無法啟動：{exc}",
        )


async def wait_for_data(server: PrometheusServer, expr: str, limit: float = 20.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if await server.query(expr):
                return True
        except (RuntimeError, OSError, TimeoutError, ValueError):
            pass
        await asyncio.sleep(1.0)
    return False


async def exporter_scraped(ctx: Any, spec: dict[str, Any], server: PrometheusServer) -> CheckResult | None:
    """None once the grader's Prometheus has scraped the exporter successfully at least twice (a rate() needs two
    samples: right after a fresh start, a panel's rate query had no data yet and failed a correct dashboard when
    the live test before it was skipped); else why not, as a verdict: the exporter refusing Prometheus is the
    candidate's (failed), no scrape at all is the grader's (not assessable)."""
    if cause := blocking(ctx, PROMETHEUS_REFUSED):
        return ctx.blocked(spec, cause)
    job = ctx.params["job"]
    if await wait_for_data(server, f'count_over_time(up{{job="{job}"}}[1m]) >= 2 and up{{job="{job}"}} == 1'):
        return None
    try:
        targets = (await server.api("targets")).get("activeTargets") or []
    except (RuntimeError, OSError, TimeoutError, ValueError):
        targets = []
    t = targets[0] if targets else {}
    if t.get("health") == "down" and t.get("lastError"):
        ctx.block(
            PROMETHEUS_REFUSED,
            f"the exporter did not answer Prometheus's scrapes: {t['lastError']}",
            f"匯出器未回應 Prometheus 的抓取：{t['lastError']}",
            spec["id"],
        )
        return failed(
            spec["id"],
            spec["points"],
            f"The grader's Prometheus could not scrape the exporter for 20 s: {t['lastError']}",
            f"評分程式的 Prometheus 於 20 秒內無法抓取匯出器：{t['lastError']}",
            {"targets": targets, "log": server.log_tail()},
        )
    return grader_cannot(
        ctx,
        spec,
        GRADER_PROMETHEUS,
        "the grader's Prometheus made no successful scrape within 20 s",
        "評分程式的 Prometheus 於 20 秒內未成功抓取",
        {"targets": targets, "log": server.log_tail()},
    )


def firing(alerts: list[dict[str, Any]], name: str, **labels: str) -> bool:
    return any(
        a["labels"].get("alertname") == name
        and a.get("state") == "firing"
        and all(a["labels"].get(k) == v for k, v in labels.items())
        for a in alerts
    )


def active(alerts: list[dict[str, Any]], name: str, **labels: str) -> bool:
    return any(
        a["labels"].get("alertname") == name and all(a["labels"].get(k) == v for k, v in labels.items()) for a in alerts
    )


def state_of(alerts: list[dict[str, Any]], name: str) -> str:
    return next((a.get("state", "?") for a in alerts if a["labels"].get("alertname") == name), "inactive")


async def firing_span(server: PrometheusServer, expr: str, t0: float, t1: float) -> tuple[float | None, float | None]:
    """(first moment the series exists, first moment after that it is gone) as the grader's Prometheus recorded
    its own rule evaluations, at 1 s resolution: the live test's times, free of the polling loop's own lag."""
    try:
        series = await server.query_range(expr, t0, t1, 1.0)
    except (RuntimeError, OSError, TimeoutError, ValueError):
        return None, None
    stamps = sorted({float(t) for s in series for t, _ in s["values"]})
    if not stamps:
        return None, None
    first, prev = stamps[0], stamps[0]
    for t in stamps[1:]:
        if t - prev > 1.5:
            return first, prev + 1.0
        prev = t
    return first, (prev + 1.0 if prev + 1.5 < t1 else None)


async def grader_gaps(ctx: Any, server: PrometheusServer, t0: float, t1: float, before: dict[str, float]) -> dict:
    """How well the grader's own Prometheus kept up over [t0, t1]: scrape attempts against the expected count and
    rule-group iterations it missed. Missing attempts and missed evaluations are the grader's; failed scrapes
    (up == 0) are the exporter's."""
    job, step = ctx.params["job"], float(ctx.params["scrape_interval_s"])
    span = max(int(t1 - t0), 1)
    out: dict[str, Any] = {"expected_scrapes": round(span / step)}
    try:
        n = await server.query(f'count_over_time(up{{job="{job}"}}[{span}s])', t1)
        ok = await server.query(f'sum_over_time(up{{job="{job}"}}[{span}s])', t1)
        out["scrapes"] = int(float(n[0]["value"][1])) if n else 0
        out["successful_scrapes"] = int(float(ok[0]["value"][1])) if ok else 0
    except (RuntimeError, OSError, TimeoutError, ValueError) as exc:
        out["error"] = str(exc)
    after = await server.own_metrics()
    name = "prometheus_rule_group_iterations_missed_total"
    out["missed_rule_evaluations"] = after.get(name, 0.0) - before.get(name, 0.0) if after and before else None
    out["grader_fell_behind"] = bool(
        out.get("scrapes", 0) < 0.8 * out["expected_scrapes"] or (out["missed_rule_evaluations"] or 0) > 0
    )
    return out


@check("dash.live_alert")
async def live_alert(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Through the plant's control plane: hold the tank above the warning level and silence a sensor node; on the
    grader's Prometheus (scraping the exporter, evaluating the candidate's rules) TankLevelHigh and SensorSilent must
    fire in time, then resolve when the level falls and the node reports again. Positive controls: the plant's own
    truth shows the level above the threshold and the node silent. Times are read from the grader's Prometheus."""
    p = ctx.params
    if overloaded(ctx):
        return ctx.blocked(spec, GRADER_OVERLOADED)
    if cause := blocking(ctx, EXPORTER_DOWN, RULES_REJECTED):
        return ctx.blocked(spec, cause)
    node = str(p["live_node"])
    level_metric = "plant_tank_level_meters"
    silent_metric = f'plant_sensor_last_report_timestamp_seconds{{node="{node}"}}'
    # an alert the rule file lacks, whose rule fails a hidden rule test (a wrong threshold or for:) or whose metric
    # the exporter gets wrong is that check's finding: not tested again here (both -> not assessable)
    planned = plan_values(ctx)
    level_cause = (
        defect(ctx, "alert:TankLevelHigh")
        or defect(ctx, "rules:TankLevelHigh")
        or defect(ctx, level_metric)
        or (None if planned else plan_cause(ctx))
        or plan_untestable(ctx, planned)
    )
    silent_cause = defect(ctx, "alert:SensorSilent") or defect(ctx, "rules:SensorSilent") or defect(ctx, silent_metric)
    if level_cause and silent_cause:
        return ctx.blocked(spec, level_cause)
    server = await prometheus_or_cannot(ctx, spec)
    if isinstance(server, CheckResult):
        return server
    evidence: dict[str, Any] = {"prometheus": server.url, "rules_loaded": ctx.cache.get("dash.rules_loaded")}
    if not ctx.cache.get("dash.rules_loaded"):
        return ctx.blocked(spec, RULES_REJECTED, evidence)
    if verdict_ := await exporter_scraped(ctx, spec, server):
        return verdict_
    await wait_for_data(server, level_metric, 10.0)
    period = next(float(n["default_report_period_s"]) for n in ctx.sheet["mqtt"]["nodes"] if n["id"] == node)
    slack, resolve_within = float(p["fire_slack_s"]), float(p["resolve_within_s"])
    threshold = float(planned["level_warning_m"]) if planned else float("nan")
    level_for = float(planned["level_for_s"]) if planned else float("nan")
    test_level, test_silent = not level_cause, not silent_cause
    names = [n for n, on in (("TankLevelHigh", test_level), ("SensorSilent", test_silent)) if on]
    probes: list[dict[str, Any]] = []
    baseline = await server.alerts()
    for name in names:
        on = active(baseline, name)
        probes.append(
            {
                "what": f"before the test, {name} is not active (plant normal)",
                "ok": not on,
                "why": f"{name} was already {state_of(baseline, name)} before the grader changed anything",
                "why_zh": f"評分程式尚未改變任何狀況前，{name} 已處於 {state_of(baseline, name)} 狀態",
            }
        )
    quiet_at = time.time()
    own_before = await server.own_metrics()
    t0 = time.time()
    if test_level:
        await control_post(ctx, "/v1/process-events", {"event": "tank_high_level", "duration_s": 600})
    if test_silent:
        await control_post(ctx, "/v1/faults", {"kind": "offline", "target": node, "duration_s": p["live_silence_s"]})
    level_fire_by = t0 + level_for + slack
    silent_fire_by = t0 + float(p["silent_after_s"]) + slack
    node_back = t0 + float(p["live_silence_s"])
    silent_resolve_by = node_back + period + resolve_within
    polled: dict[str, float | None] = dict.fromkeys(
        ("level_fired", "level_cleared", "level_resolved", "silent_fired", "silent_resolved")
    )
    surge_on = test_level
    end_by = max(silent_resolve_by if test_silent else t0, level_fire_by + resolve_within + 5 if test_level else t0)
    monitor = lag_monitor()
    try:
        while time.time() < end_by:
            alerts = await server.alerts()
            now = time.time()
            if polled["level_fired"] is None and firing(alerts, "TankLevelHigh"):
                polled["level_fired"] = now
            if surge_on and (polled["level_fired"] is not None or now > level_fire_by):
                await end_high_level(ctx)  # fired, or never will: either way the condition clears now
                surge_on = False
                polled["level_cleared"] = time.time()
            if polled["level_fired"] and polled["level_resolved"] is None and not active(alerts, "TankLevelHigh"):
                polled["level_resolved"] = now
            if polled["silent_fired"] is None and firing(alerts, "SensorSilent", node=node):
                polled["silent_fired"] = now
            if polled["silent_fired"] and polled["silent_resolved"] is None and now > node_back:
                if not active(alerts, "SensorSilent", node=node):
                    polled["silent_resolved"] = now
            level_done = not test_level or (
                polled["level_resolved"] is not None or (polled["level_fired"] is None and not surge_on)
            )
            silent_done = not test_silent or (
                polled["silent_resolved"] is not None or (polled["silent_fired"] is None and now > silent_fire_by)
            )
            if level_done and silent_done:
                break
            await asyncio.sleep(1.0)
    finally:
        await monitor.stop()  # the timing-sensitive phase is over (also when it broke)
        if surge_on:
            await end_high_level(ctx)
            polled["level_cleared"] = time.time()
    t_end = time.time()
    await asyncio.sleep(2.5)  # the last evaluations are in the TSDB before it is read
    # the grader's Prometheus's own record of when each alert fired and resolved (1 s resolution)
    lvl_on, lvl_off = await firing_span(
        server, 'ALERTS{alertname="TankLevelHigh",alertstate="firing"}', t0, t_end + 2.0
    )
    sil_on, sil_off = await firing_span(
        server, f'ALERTS{{alertname="SensorSilent",alertstate="firing",node="{node}"}}', t0, t_end + 2.0
    )
    times = {
        "level_fired": lvl_on or polled["level_fired"],
        "level_cleared": polled["level_cleared"],
        "level_resolved": lvl_off if lvl_off is not None else polled["level_resolved"],
        "silent_fired": sil_on or polled["silent_fired"],
        "silent_resolved": sil_off if sil_off is not None else polled["silent_resolved"],
    }
    rel = {k: (None if v is None else round(v - t0, 1)) for k, v in times.items()}
    evidence |= {
        "tested": names,
        "not_tested": {n: c for n, c in (("TankLevelHigh", level_cause), ("SensorSilent", silent_cause)) if c},
        "not_tested_judged_by": {
            n: (ctx.blockers.get(c) or {}).get("check")
            for n, c in (("TankLevelHigh", level_cause), ("SensorSilent", silent_cause))
            if c
        },
        "timeline_s": rel,
        "polled_timeline_s": {k: (None if v is None else round(v - t0, 1)) for k, v in polled.items()},
        "timeline_from": "the grader's Prometheus (ALERTS series, 1 s steps); polled_timeline_s is /api/v1/alerts",
        "node_silent_s": p["live_silence_s"],
        "report_period_s": period,
    }
    # positive controls: the plant really did what the test needs (truth, not the candidate's exporter)
    controls: dict[str, Any] = {}
    if test_level:
        ts, vs = await asyncio.to_thread(ctx.truth_range, "tank.level_m", t0, level_fire_by)
        above = [t for t, v in zip(ts, vs, strict=True) if v > threshold]
        controls["level_above_threshold_from_s"] = None if not above else round(above[0] - t0, 1)
        controls["level_max_m"] = max(vs) if vs else None
        try:
            seen = await server.query(f"max_over_time({level_metric}[{max(int(t_end - t0), 1)}s])", t_end)
            controls["exporter_level_max_m"] = float(seen[0]["value"][1]) if seen else None
        except (RuntimeError, OSError, TimeoutError, ValueError):
            pass
    if test_silent:
        emitted = await control_get(ctx, f"/v1/emissions?start={t0}&end={t_end}")
        mine = sorted(e["t"] for e in emitted if e["node"] == node)
        controls["node_reports_while_silenced"] = [round(t - t0, 1) for t in mine if t0 + 1 < t < node_back - 1]
        # its return is its first report the broker acknowledged (an unconfirmed one may never have arrived)
        sure = sorted(e["t"] for e in emitted if e["node"] == node and e.get("confirmed", True) is not False)
        back = [t for t in sure if t >= node_back - 1]
        controls["node_reported_again_at_s"] = round(back[0] - t0, 1) if back else None
    evidence["positive_controls"] = controls
    if test_level and controls.get("level_above_threshold_from_s") is None:
        return grader_cannot(
            ctx,
            spec,
            "grader-plant-event-failed",
            f"the plant's level did not rise above {threshold} m when the grader raised it",
            f"評分程式提升液位後，工廠液位未超過 {threshold} m",
            evidence,
        )
    if test_silent and controls.get("node_reports_while_silenced"):
        return grader_cannot(
            ctx,
            spec,
            "grader-plant-fault-failed",
            f"sensor node {node} kept reporting while the grader had silenced it",
            f"評分程式使感測節點 {node} 靜默期間，該節點仍持續回報",
            evidence,
        )
    if test_level:
        limit = level_for + slack
        fired = rel["level_fired"]
        seen_max = controls.get("exporter_level_max_m")
        probes.append(
            {
                "what": f"TankLevelHigh fires within {level_for:g} + {slack:.0f} s of the level rising above "
                f"{threshold} m",
                "ok": fired is not None and fired <= limit,
                "fired_after_s": fired,
                "why": f"TankLevelHigh never fired in {limit:.0f} s while the plant's level was above {threshold} m "
                f"from {controls['level_above_threshold_from_s']} s (the exporter's level peaked at {num(seen_max)} m "
                "on the grader's Prometheus)"
                if fired is None
                else f"TankLevelHigh fired {fired} s after the level was raised, later than {limit:.0f} s",
                "why_zh": f"工廠液位自 {controls['level_above_threshold_from_s']} 秒起高於 {threshold} m，TankLevelHigh 於 "
                f"{limit:.0f} 秒內始終未觸發（評分程式的 Prometheus 上匯出器液位最高為 {num(seen_max)} m）"
                if fired is None
                else f"TankLevelHigh 於液位提升後 {fired} 秒才觸發，晚於 {limit:.0f} 秒",
            }
        )
        if fired is not None:
            gone = (
                None
                if times["level_resolved"] is None or times["level_cleared"] is None
                else round(times["level_resolved"] - times["level_cleared"], 1)
            )
            probes.append(
                {
                    "what": f"TankLevelHigh resolves within {resolve_within:.0f} s of the level falling",
                    "ok": gone is not None and gone <= resolve_within,
                    "resolved_after_s": gone,
                    "why": f"TankLevelHigh was still active {round(t_end - times['level_cleared'], 1)} s after the "
                    "grader drained the tank"
                    if gone is None
                    else f"TankLevelHigh resolved {gone} s after the level fell, later than {resolve_within:.0f} s",
                    "why_zh": f"評分程式排空儲槽 {round(t_end - times['level_cleared'], 1)} 秒後，TankLevelHigh 仍在作用中"
                    if gone is None
                    else f"TankLevelHigh 於液位下降後 {gone} 秒才恢復，晚於 {resolve_within:.0f} 秒",
                }
            )
    if test_silent:
        limit = float(p["silent_after_s"]) + slack
        fired = rel["silent_fired"]
        probes.append(
            {
                "what": f"SensorSilent{{node={node}}} fires within {p['silent_after_s']} + {slack:.0f} s of the node "
                "going silent",
                "ok": fired is not None and fired <= limit,
                "fired_after_s": fired,
                "why": f"SensorSilent{{node={node}}} never fired although the node sent nothing for "
                f"{p['live_silence_s']} s"
                if fired is None
                else f"SensorSilent{{node={node}}} fired {fired} s after the node fell silent, later than {limit:.0f} s",
                "why_zh": f"節點 {p['live_silence_s']} 秒未送出任何訊息，SensorSilent{{node={node}}} 始終未觸發"
                if fired is None
                else f"SensorSilent{{node={node}}} 於節點靜默後 {fired} 秒才觸發，晚於 {limit:.0f} 秒",
            }
        )
        if fired is not None:
            after_back = None if times["silent_resolved"] is None else round(times["silent_resolved"] - node_back, 1)
            back_at = controls.get("node_reported_again_at_s")  # the plant's own record: a late return is not yours
            resolve_by = max(silent_resolve_by, t0 + back_at + resolve_within if back_at is not None else 0.0)
            probes.append(
                {
                    "what": f"SensorSilent{{node={node}}} resolves within one report period ({period:.0f} s) + "
                    f"{resolve_within:.0f} s of the node reporting again",
                    "ok": after_back is not None and times["silent_resolved"] <= resolve_by,
                    "resolved_after_node_back_s": after_back,
                    "why": f"SensorSilent{{node={node}}} was still active {round(t_end - node_back, 1)} s after the "
                    "node was back"
                    if after_back is None
                    else f"SensorSilent{{node={node}}} resolved {after_back} s after the node was back, later than "
                    f"{period + resolve_within:.0f} s",
                    "why_zh": f"節點恢復 {round(t_end - node_back, 1)} 秒後，SensorSilent{{node={node}}} 仍在作用中"
                    if after_back is None
                    else f"SensorSilent{{node={node}}} 於節點恢復後 {after_back} 秒才恢復，晚於 "
                    f"{period + resolve_within:.0f} 秒",
                }
            )
    for pr in probes:
        if pr["ok"]:
            pr.pop("why", None)
            pr.pop("why_zh", None)
    gaps = await grader_gaps(ctx, server, t0, t_end, own_before)
    gaps |= await fell_behind(ctx, monitor, t0, t_end)
    gaps["grader_fell_behind"] = gaps["grader_fell_behind"] or gaps["fell_behind"]
    evidence["grader_prometheus"] = gaps
    if any(not pr["ok"] for pr in probes) and gaps["grader_fell_behind"]:
        return ctx.blocked(spec, GRADER_OVERLOADED, {"probes": probes, **evidence})
    firing_at = times["level_fired"] or times["silent_fired"]
    if firing_at is not None and all(pr["ok"] for pr in probes[: len(names)]):  # quiet_at was really quiet
        ctx.cache["dash.alert_firing_at"] = firing_at + 0.5
        ctx.cache["dash.alert_quiet_at"] = quiet_at
    if all(pr["ok"] for pr in probes):
        parts_en, parts_zh = [], []
        if test_level:
            parts_en.append(
                f"TankLevelHigh fired {rel['level_fired']} s after the level rose (limit "
                f"{level_for + slack:.0f} s) and resolved "
                f"{round(times['level_resolved'] - times['level_cleared'], 1)} s after it fell"
            )
            parts_zh.append(
                f"TankLevelHigh 於液位上升後 {rel['level_fired']} 秒觸發（上限 {level_for + slack:.0f} 秒）、液位下降後 "
                f"{round(times['level_resolved'] - times['level_cleared'], 1)} 秒恢復"
            )
        if test_silent:
            parts_en.append(
                f"SensorSilent{{node={node}}} fired {rel['silent_fired']} s after the node was silenced (its age counts "
                "from its last report, which came before) and resolved "
                f"{round(times['silent_resolved'] - node_back, 1)} s after it was back"
            )
            parts_zh.append(
                f"SensorSilent{{node={node}}} 於節點被靜默後 {rel['silent_fired']} 秒觸發（年齡自其最後一次回報起算，早於靜默）、恢復回報後 "
                f"{round(times['silent_resolved'] - node_back, 1)} 秒恢復"
            )
        left = [n for n in ("TankLevelHigh", "SensorSilent") if n not in names]

        def cause_words(n: str, lang: str) -> str:  # the cause in words, not its id
            cause = evidence["not_tested"][n]
            return str((ctx.blockers.get(cause) or {}).get(lang) or cause)

        def judged_by(n: str, lang: str) -> str:  # said once: the cause's words may name the check already
            owner = evidence["not_tested_judged_by"][n]
            if owner in cause_words(n, lang):
                return ""
            return f", judged by {owner}" if lang == "en" else f"，由 {owner} 評量"

        tail_en = "".join(f"; {n} not tested here ({cause_words(n, 'en')}{judged_by(n, 'en')})" for n in left)
        tail_zh = "".join(f"；{n} 未於此測試（{cause_words(n, 'zh-TW')}{judged_by(n, 'zh-TW')}）" for n in left)
        return passed(
            spec["id"],
            spec["points"],
            "; ".join(parts_en) + tail_en,
            "；".join(parts_zh) + tail_zh,
            {"probes": probes, **evidence},
        )
    return all_right(spec, probes, "", "", **evidence)


def plan_untestable(ctx: Any, planned: dict[str, float] | None) -> str | None:
    """A plan the live test cannot hold the rules to: a threshold at or above where the grader holds the level
    (midway between H and HH), or a for: beyond the on-call rule. Either is the plan's defect (dash.alert_plan)."""
    if planned is None:
        return None
    tank = tank_facts(ctx)
    held = (tank["high_m"] + tank["high_high_m"]) / 2
    hi_for = float(ctx.params["level_for_range_s"][1])
    if planned["level_warning_m"] < held - 0.02 and planned["level_for_s"] <= hi_for:
        return None
    cause = "alert-plan-not-live-testable"
    ctx.block(
        cause,
        f"your plan's threshold {planned['level_warning_m']} m or for: {planned['level_for_s']} s is outside what "
        f"the live test holds (a level of {held:.2f} m for up to {hi_for:g} s + slack)",
        f"您規劃的門檻 {planned['level_warning_m']} m 或 for: {planned['level_for_s']} 秒超出即時測試所維持的條件"
        f"（液位 {held:.2f} m，至多 {hi_for:g} 秒加寬限）",
        "dash.alert_plan",
    )
    return cause


async def end_high_level(ctx: Any) -> None:
    """End the surge and drain the tank below the warning level (the condition clears)."""
    await control_post(ctx, "/v1/process-events", {"event": "tank_high_level", "duration_s": 0})
    await control_post(ctx, "/v1/process-events", {"event": "tank_low_level", "duration_s": 1})


# -- the dashboard --------------------------------------------------------------------------------------------------
def all_panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' collapsed panels included."""
    out = []
    for p in model.get("panels") or []:
        if not isinstance(p, dict):
            continue
        out.append(p)
        out += [q for q in p.get("panels") or [] if isinstance(q, dict)]
    return out


def find_panel(panels: list[dict[str, Any]], title: str) -> dict[str, Any] | None:
    return next((p for p in panels if str(p.get("title", "")).strip().casefold() == title.casefold()), None)


def exprs(panel: dict[str, Any]) -> list[str]:
    return [
        str(t.get("expr", "")).strip()
        for t in panel.get("targets") or []
        if isinstance(t, dict) and not t.get("hide") and str(t.get("expr", "")).strip()
    ]


def datasource_ok(ds: Any, uid: str, variables: dict[str, str] | None = None) -> bool:
    """Absent (the provisioned default), or naming the provisioned data source by uid, directly or through a data
    source variable of the dashboard whose current value is that uid (Grafana resolves `${ds}` the same way)."""
    if ds is None:
        return True

    def resolved(v: Any) -> Any:
        m = re.fullmatch(r"\$\{?(\w+)\}?", v) if isinstance(v, str) else None
        return (variables or {}).get(m.group(1), v) if m else v

    if isinstance(ds, str):
        return resolved(ds) == uid
    return isinstance(ds, dict) and resolved(ds.get("uid")) == uid and ds.get("type", "prometheus") == "prometheus"


def datasource_variables(model: dict[str, Any]) -> dict[str, str]:
    """The dashboard's data source variables and their current values (name -> uid or name as saved)."""
    out = {}
    for v in ((model.get("templating") or {}).get("list") or []) if isinstance(model, dict) else []:
        if isinstance(v, dict) and v.get("type") == "datasource" and isinstance(v.get("name"), str):
            cur = v.get("current") or {}
            value = cur.get("value") if isinstance(cur, dict) else None
            if isinstance(value, list):
                value = value[0] if value else None
            if isinstance(value, str):
                out[v["name"]] = value
    return out


def load_dashboard(ctx: Any) -> tuple[dict[str, Any] | None, dict[str, Any], tuple[str, str] | None]:
    """(model or None, evidence, why not as (en, zh-TW) naming the file)."""
    _, text, evidence = artefact(ctx, "dashboard_file")
    rel = ctx.params["dashboard_file"]
    if text is None:
        return None, evidence, file_problem(evidence)
    try:
        model = json.loads(text)
    except (ValueError, RecursionError) as exc:
        said = f"{type(exc).__name__}: {str(exc)[:200]}"
        return None, evidence, (f"{rel} is not usable JSON: {said}", f"{rel} 不是可用的 JSON：{said}")
    if isinstance(model, dict) and isinstance(model.get("dashboard"), dict):
        model = model["dashboard"]  # the HTTP API's envelope {"dashboard": {...}}
    if not isinstance(model, dict) or not isinstance(model.get("panels"), list):
        return (
            None,
            evidence,
            (
                f"{rel} is not a Grafana dashboard JSON model (no 'panels' list)",
                f"{rel} 不是 Grafana 儀表板 JSON 模型（沒有 'panels' 清單）",
            ),
        )
    return model, evidence, None


@check("dash.dashboard_model")
async def dashboard_model(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """The required panels by title: a query, the provisioned data source (or none), the unit, the threshold step.
    Owns the blockers 'dashboard-unusable' and 'oee-panels-missing' (dash.panel_queries and dash.oee need them)."""
    model, evidence, why = load_dashboard(ctx)
    if model is None:
        en, zh = why or ("", "")
        ctx.block(DASHBOARD_UNUSABLE, f"the dashboard {en}", f"儀表板 {zh}", spec["id"])
        return failed(spec["id"], spec["points"], f"The dashboard {en}", f"儀表板 {zh}", evidence)
    panels = all_panels(model)
    uid = str(ctx.params["datasource_uid"])
    ds_vars = datasource_variables(model)  # ${ds} whose current value is the provisioned uid
    probes = []
    no_oee = []
    unjudged: list[str] = []  # panels whose threshold step is the alert plan's, when the plan is unusable
    for req in ctx.lab.data["panels"]:
        panel = find_panel(panels, req["title"])
        if panel is None:
            probes.append(
                {
                    "what": req["title"],
                    "ok": False,
                    "why": f"no panel titled {req['title']!r}",
                    "why_zh": f"沒有標題為 {req['title']!r} 的面板",
                }
            )
            if req.get("oee"):
                no_oee.append(req["title"])
            continue
        defaults = (panel.get("fieldConfig") or {}).get("defaults") or {}
        problems, problems_zh = [], []
        if not exprs(panel):
            problems.append("no query (targets[].expr)")
            problems_zh.append("沒有查詢（targets[].expr）")
            if req.get("oee"):
                no_oee.append(req["title"])
        bad_ds = [
            ds
            for ds in [
                panel.get("datasource"),
                *(t.get("datasource") for t in panel.get("targets") or [] if isinstance(t, dict)),
            ]
            if not datasource_ok(ds, uid, ds_vars)
        ]
        if bad_ds:
            problems.append(f"data source {bad_ds[0]!r} is not the provisioned uid {uid!r}")
            problems_zh.append(f"資料來源 {bad_ds[0]!r} 不是佈建的 uid {uid!r}")
        if req.get("unit") and defaults.get("unit") != req["unit"]:
            problems.append(f"unit {defaults.get('unit')!r}, required {req['unit']!r}")
            problems_zh.append(f"單位為 {defaults.get('unit')!r}，規定為 {req['unit']!r}")
        want: float | None = None
        if req.get("threshold") == "plan":
            planned = plan_values(ctx)
            want = planned["level_warning_m"] if planned else None
            if planned is None:  # the plan's defect, judged by dash.alert_plan: this step is not judged here
                plan_cause(ctx)
                unjudged.append(req["title"])
        elif req.get("threshold"):
            want = float(ctx.params[req["threshold"]])
        if want is not None:
            steps = ((defaults.get("thresholds") or {}).get("steps")) or []
            values = [s.get("value") for s in steps if isinstance(s, dict)]
            if not any(isinstance(v, int | float) and math.isclose(v, want, abs_tol=1e-9) for v in values):
                problems.append(f"no threshold step at {want} (steps: {values})")
                problems_zh.append(f"沒有 {want} 的門檻步階（步階：{values}）")
        probes.append(
            {
                "what": req["title"],
                "type": panel.get("type"),
                "unit": defaults.get("unit"),
                "ok": not problems,
                "why": f"{req['title']!r}: " + "; ".join(problems) if problems else None,
                "why_zh": f"{req['title']!r}：" + "；".join(problems_zh) if problems else None,
            }
        )
    if no_oee:
        ctx.block(
            OEE_PANELS_MISSING,
            f"the dashboard has no query for {', '.join(no_oee)}",
            f"儀表板缺少 {', '.join(no_oee)} 的查詢",
            spec["id"],
        )
    return all_right(
        spec,
        probes,
        f"All {len(probes)} required panels are present with a query, the data source, units and thresholds"
        + (f"; not judged here (see dash.alert_plan): the threshold step of {', '.join(unjudged)}" if unjudged else ""),
        f"{len(probes)} 個必要面板皆具查詢、資料來源、單位與門檻"
        + (f"；未於此評量（見 dash.alert_plan）：{'、'.join(unjudged)} 的門檻步階" if unjudged else ""),
        **evidence,
        **(
            {"not_judged_here": {t: "threshold step: the alert plan is unusable" for t in unjudged}} if unjudged else {}
        ),
    )


def grafana_substitute(expr: str, model: dict[str, Any]) -> str:
    """What Grafana would send: built-in interval variables and the dashboard's own variables' current values."""
    values = dict(GRAFANA_VARIABLES)
    for var in (model.get("templating") or {}).get("list") or []:
        if isinstance(var, dict) and var.get("name"):
            cur = (var.get("current") or {}).get("value")
            if isinstance(cur, list):
                cur = "|".join(str(c) for c in cur)
            values[str(var["name"])] = ".*" if cur in (None, "$__all") else str(cur)
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", values[name]).replace("[[" + name + "]]", values[name])
        expr = re.sub(r"\$" + re.escape(name) + r"\b", lambda _m, v=values[name]: v, expr)
    return expr


MATCHER_RE = re.compile(r'([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def alerts_selector_matches(expr: str, alerts: list[dict[str, str]]) -> tuple[bool, str, str]:
    """Semantic check of an ALERTS query when no alert fired during grading: every ALERTS selector in it must
    select at least one documented alert while it fires (its label set: alertname, alertstate="firing", severity,
    job, instance, node). (ok, why in English, why in zh-TW)."""
    selectors = re.findall(r"\bALERTS(?:_FOR_STATE)?\s*(\{[^}]*\})?", expr)
    for sel in selectors:
        matchers = MATCHER_RE.findall(sel or "")

        def ok(labels: dict[str, str], matchers: list[tuple[str, str, str]] = matchers) -> bool:
            for name, op, val in matchers:
                got = labels.get(name, "")
                try:
                    hit = re.fullmatch(val, got) is not None if op in ("=~", "!~") else got == val
                except re.error:
                    return False
                if hit != (op in ("=", "=~")):
                    return False
            return True

        if not any(ok(a) for a in alerts):
            return (
                False,
                f"ALERTS{sel or ''} selects none of the documented alerts while they fire",
                f"ALERTS{sel or ''} 選不到任何觸發中的規定警示",
            )
    return True, "", ""


SEMANTIC = (
    "semantic: no alert of yours fired during grading, so the query's ALERTS selectors were matched against the "
    "documented alerts' labels"
)
EVALUATED = "evaluated while an alert fired and while none did"


def result_key(result: list[dict[str, Any]]) -> list[tuple[tuple[tuple[str, str], ...], str]]:
    return sorted((tuple(sorted(r["metric"].items())), str(r["value"][1])) for r in result)


async def alerts_probe(ctx: Any, server: PrometheusServer, panel: str, expr: str) -> dict[str, Any]:
    """Positive evidence for a query of Prometheus's ALERTS series: at a moment one of the candidate's alerts was
    firing (in the live test) it returns data, and something else than at a moment none was (a query that returns
    the same either way does not show the alarms). The grader's own ALERTS{alertstate="firing"} at that moment is
    the positive control. Without a firing moment the query's selectors are checked against the documented alerts."""
    row: dict[str, Any] = {"panel": panel, "what": expr}
    firing_at, quiet_at = ctx.cache.get("dash.alert_firing_at"), ctx.cache.get("dash.alert_quiet_at")
    control = []
    if firing_at is not None:
        try:
            control = await server.query('ALERTS{alertstate="firing"}', firing_at)
        except (RuntimeError, OSError, TimeoutError, ValueError):
            control = []
    if firing_at is None or quiet_at is None or not control:
        documented = [
            {
                "__name__": "ALERTS",
                "alertname": a["name"],
                "alertstate": "firing",
                "severity": a["severity"],
                "job": str(ctx.params["job"]),
                "instance": exporter_target(ctx),
                **({"node": str(ctx.params["live_node"])} if a["name"] == "SensorSilent" else {}),
            }
            for a in ctx.lab.data["alerts"]
        ]
        ok, why, why_zh = alerts_selector_matches(expr, documented)
        row["method"] = SEMANTIC
        try:
            await server.query(expr)
        except (RuntimeError, OSError, TimeoutError, ValueError) as exc:
            ok, why, why_zh = False, f"{expr}: {exc}", f"{expr}：{exc}"
        return row | {
            "ok": ok,
            "why": f"{panel!r}: {why}" if why else None,
            "why_zh": f"{panel!r}：{why_zh}" if why else None,
        }
    row["method"] = EVALUATED
    row["at"] = firing_at
    row["control_firing"] = sorted({r["metric"].get("alertname", "?") for r in control})
    try:
        at_fire = await server.query(expr, firing_at)
        at_quiet = await server.query(expr, quiet_at)
    except (RuntimeError, OSError, TimeoutError, ValueError) as exc:
        return row | {"ok": False, "why": f"{panel!r}: {expr}: {exc}", "why_zh": f"{panel!r}：{expr}：{exc}"}
    row["series"], row["series_when_quiet"] = len(at_fire), len(at_quiet)
    fired = ", ".join(row["control_firing"])
    why = why_zh = None
    if not at_fire:
        why = f"{panel!r}: {expr} returns nothing while {fired} fired"
        why_zh = f"{panel!r}：{fired} 觸發時，{expr} 未回傳任何資料"
    elif result_key(at_fire) == result_key(at_quiet):
        why = f"{panel!r}: {expr} returns the same while {fired} fired as when no alert did"
        why_zh = f"{panel!r}：{expr} 在 {fired} 觸發時與無警示時回傳相同結果"
    return row | {"ok": why is None, "why": why, "why_zh": why_zh}


@check("dash.panel_queries")
async def panel_queries(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Each query of each panel, as Grafana would send it, on the grader's Prometheus: it must run and return data
    (queries of ALERTS: see alerts_probe). Required panels must query the documented metric. A query that returns
    nothing only because a documented metric it names is missing from the exporter is dash.metric_contract's."""
    if cause := blocking(ctx, DASHBOARD_UNUSABLE, EXPORTER_DOWN):
        return ctx.blocked(spec, cause)
    model, evidence, _ = load_dashboard(ctx)
    if model is None:
        return ctx.blocked(spec, DASHBOARD_UNUSABLE, evidence)
    server = await prometheus_or_cannot(ctx, spec)
    if isinstance(server, CheckResult):
        return server
    if verdict_ := await exporter_scraped(ctx, spec, server):
        return verdict_
    absent = {
        m["name"] for m in ctx.lab.data["metrics"] if (defect(ctx, describe_metric(m)) or "").startswith("metric-miss")
    }
    panels = all_panels(model)
    probes: list[dict[str, Any]] = []
    skipped: list[str] = []
    skipped_zh: list[str] = []
    causes: list[str] = []
    for panel in panels:
        title = str(panel.get("title"))
        for raw in exprs(panel):
            expr = grafana_substitute(raw, model)
            if ALERTS_RE.search(expr):
                probes.append(await alerts_probe(ctx, server, title, expr))
                continue
            row: dict[str, Any] = {"panel": title, "what": expr}
            try:
                result = await server.query(expr)
            except (RuntimeError, OSError, TimeoutError, ValueError) as exc:
                probes.append(
                    row | {"ok": False, "why": f"{title!r}: {expr}: {exc}", "why_zh": f"{title!r}：{expr}：{exc}"}
                )
                continue
            row["series"] = len(result)
            names = {n for n in absent if re.search(r"\b" + re.escape(n) + r"\b", expr)}
            if not result and names:
                skipped.append(f"{title!r} ({', '.join(sorted(names))} not exposed)")
                skipped_zh.append(f"{title!r}（{', '.join(sorted(names))} 未公開）")
                causes += [
                    c for m in ctx.lab.data["metrics"] if m["name"] in names and (c := defect(ctx, describe_metric(m)))
                ]
                continue
            probes.append(
                row
                | {
                    "ok": bool(result),
                    "why": None if result else f"{title!r}: {expr} returns no data",
                    "why_zh": None if result else f"{title!r}：{expr} 未回傳資料",
                }
            )
    for req in ctx.lab.data["panels"]:
        panel = find_panel(panels, req["title"])
        if panel is not None and req.get("metric"):
            uses = any(re.search(r"\b" + re.escape(req["metric"]) + r"\b", e) for e in exprs(panel))
            probes.append(
                {
                    "panel": req["title"],
                    "what": f"{req['title']!r} queries {req['metric']}",
                    "ok": uses,
                    "why": None if uses else f"{req['title']!r} does not query {req['metric']}",
                    "why_zh": None if uses else f"{req['title']!r} 未查詢 {req['metric']}",
                }
            )
    evidence["not_judged_here"] = skipped
    if not probes:
        if causes:
            return ctx.blocked(spec, causes[0], evidence)
        return failed(spec["id"], spec["points"], "The dashboard has no query", "儀表板沒有任何查詢", evidence)
    left = f"; not judged here (see dash.metric_contract): {', '.join(skipped)}" if skipped else ""
    left_zh = f"；未於此評量（見 dash.metric_contract）：{', '.join(skipped_zh)}" if skipped else ""
    methods = {p["method"] for p in probes if p.get("method")}
    how = how_zh = ""
    if EVALUATED in methods:
        how = "; the ALERTS queries returned your firing alerts during the live test and something else before it"
        how_zh = "；ALERTS 查詢於即時測試中您的警示觸發時回傳之，且與測試前無警示時不同"
    if SEMANTIC in methods:
        how += (
            "; no alert of yours fired during grading, so the ALERTS queries were judged by their selectors, "
            "which select the documented alerts by their labels"
        )
        how_zh += "；評分期間您的警示皆未觸發，故 ALERTS 查詢改以其選擇器判定：依標籤可選到規定警示"
    return all_right(
        spec,
        probes,
        f"Every panel query runs and returns data{how}{left}",
        f"每個面板查詢皆可執行並回傳資料{how_zh}{left_zh}",
        **evidence,
    )


@check("dash.oee")
async def oee(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """The OEE panels' figures as Prometheus computes them now, against OEE from PLC-2's counters (truth). A panel
    that shows exactly the exporter's ratio gauge, which dash.exporter_values found wrong, is that check's defect."""
    if overloaded(ctx):
        return ctx.blocked(spec, GRADER_OVERLOADED)
    if cause := blocking(ctx, DASHBOARD_UNUSABLE, OEE_PANELS_MISSING, EXPORTER_DOWN):
        return ctx.blocked(spec, cause)
    model, evidence, _ = load_dashboard(ctx)
    if model is None:
        return ctx.blocked(spec, DASHBOARD_UNUSABLE, evidence)
    server = await prometheus_or_cannot(ctx, spec)
    if isinstance(server, CheckResult):
        return server
    if verdict_ := await exporter_scraped(ctx, spec, server):
        return verdict_
    await wait_for_data(server, "plant_line_oee_ratio", 10.0)
    tol = float(spec["params"]["tol"])
    lag = float(ctx.params["max_age_s"]) + float(ctx.params["scrape_interval_s"]) + 2.0
    probes: list[dict[str, Any]] = []
    skipped: list[str] = []
    skipped_zh: list[str] = []
    causes: list[str] = []
    for req in [r for r in ctx.lab.data["panels"] if r.get("oee")]:
        panel = find_panel(all_panels(model), req["title"])
        expr = grafana_substitute(exprs(panel)[0], model) if panel and exprs(panel) else ""
        gauge = f"plant_line_{req['oee']}_ratio"
        gauge_defect = defect(ctx, gauge) or ""
        row: dict[str, Any] = {"what": req["title"], "query": expr, "tol": tol}
        at = time.time()
        try:
            result = await server.query(expr, at)
        except (RuntimeError, OSError, TimeoutError, ValueError) as exc:
            probes.append(
                row | {"ok": False, "why": f"{req['title']}: {expr}: {exc}", "why_zh": f"{req['title']}：{expr}：{exc}"}
            )
            continue
        if not result and gauge_defect.startswith("metric-missing") and re.search(rf"\b{gauge}\b", expr):
            skipped.append(f"{req['title']} ({gauge} not exposed)")
            skipped_zh.append(f"{req['title']}（{gauge} 未公開）")
            causes.append(gauge_defect)
            continue
        if len(result) != 1:
            probes.append(
                row
                | {
                    "ok": False,
                    "why": f"{req['title']}: {expr} returns {len(result)} series, not one",
                    "why_zh": f"{req['title']}：{expr} 回傳 {len(result)} 個序列，而非一個",
                }
            )
            continue
        value = float(result[0]["value"][1])
        times, truth = await asyncio.to_thread(oee_truth, ctx, at - lag - 5, at + 1)
        matched = latest_match(value, times, truth[req["oee"]], at - lag, at + 0.5, tol)
        row |= {"value": value, **truth_context(times, truth[req["oee"]], at, at - lag, at + 0.5)}
        if matched is not None:
            row |= {"ok": True, "matched_truth_age_s": round(at - matched, 2)}
        elif gauge_defect.startswith("metric-wrong"):
            try:
                shown = await server.query(gauge, at)
            except (RuntimeError, OSError, TimeoutError, ValueError):
                shown = []
            same = len(shown) == 1 and math.isclose(float(shown[0]["value"][1]), value, rel_tol=1e-9, abs_tol=1e-12)
            row |= {
                "ok": same,
                "exporter_gauge": None if len(shown) != 1 else float(shown[0]["value"][1]),
                "note": f"shows the exporter's {gauge} as it is; that gauge is wrong, which is dash.exporter_values's "
                "finding"
                if same
                else None,
            }
        else:
            row["ok"] = False
        if not row["ok"]:
            lo_hi = row["truth_range_in_window"]
            latest = num(row["truth_latest_at_probe"], tol)
            if lo_hi:
                lo, hi, n = num(lo_hi[0], tol), num(lo_hi[1], tol), row["truth_samples_in_window"]
                seen_en = (
                    f"the {n} truth samples of the {lag:.0f} s before lay between {lo} and {hi}, the latest {latest}"
                )
                seen_zh = f"查詢前 {lag:.0f} 秒內的 {n} 個真值樣本介於 {lo} 與 {hi} 之間，最新為 {latest}"
            else:
                seen_en, seen_zh = f"no truth sample in the {lag:.0f} s before", f"查詢前 {lag:.0f} 秒內無真值樣本"
            row["why"] = f"{req['title']} shows {num(value, tol)}, not within ±{tol} of any truth sample: {seen_en}"
            row["why_zh"] = f"{req['title']} 顯示 {num(value, tol)}，與任何真值樣本相差皆超過 ±{tol}：{seen_zh}"
        probes.append(row)
    evidence["not_judged_here"] = skipped
    if not probes:
        return ctx.blocked(spec, causes[0], evidence)
    agree = ", ".join(f"{p['what']} {p['value']:.4f}" for p in probes if "matched_truth_age_s" in p)
    faithful = [p for p in probes if p.get("note")]
    en = (
        f"The OEE panels agree with ground truth within ±{tol} ({agree}; matched against truth of the last {lag:.0f} s)"
    )
    zh = f"OEE 各面板與真值相差不超過 ±{tol}（{agree}；比對最近 {lag:.0f} 秒內的真值）"
    if faithful:
        figure = {r["title"]: r["oee"] for r in ctx.lab.data["panels"] if r.get("oee")}
        names = ", ".join(p["what"] for p in faithful)
        gauges = ", ".join(f"plant_line_{figure[p['what']]}_ratio" for p in faithful)
        shows = "shows" if len(faithful) == 1 else "show"
        en = (
            (f"{en}; " if agree else "")
            + f"{names} {shows} your exporter's {gauges} unchanged: a gauge found wrong by dash.exporter_values, so "
            "the panel counts as right here"
        )
        zh = (
            f"{zh}；" if agree else ""
        ) + f"{names} 原樣顯示匯出器的 {gauges}：該 gauge 有誤，已由 dash.exporter_values 判定，故此面板於此視為正確"
    return all_right(
        spec,
        probes,
        en + (f"; not judged here (see dash.metric_contract): {', '.join(skipped)}" if skipped else ""),
        zh + (f"；未於此評量（見 dash.metric_contract）：{', '.join(skipped_zh)}" if skipped else ""),
        **evidence,
        truth_rule="a panel matches when it equals, within tol, OEE computed from a truth sample in the window before "
        "the query (the scrape and the exporter's own age); truth_latest_at_probe is shown for comparison",
    )


def _epoch(ts: Any) -> float | None:
    """An RFC 3339 `ts` as Unix seconds (None when it is not one)."""
    import datetime as dt

    try:
        t = dt.datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.timestamp() if t.tzinfo else None
