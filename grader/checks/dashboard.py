"""Dashboard and alerting checks (check-catalog DB-01..DB-05): the candidate's exporter, rules and dashboard,
judged with promtool and a real Prometheus against the plant's ground truth.

All are active: they run while the exporter runs, and they read the candidate's files once, at grading time (the
evidence keeps each file's SHA-256), so a replay keeps their verdicts rather than re-reading a changed workspace.
"""

from __future__ import annotations

import asyncio
import hashlib
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
from ..results import ERROR, PASS, CheckResult, failed, verdict
from . import check
from .common import all_ok, control_get, control_post, hosts

GRADER_PROMETHEUS_PORT = 19090  # on the plant's control address: never the candidate's own Prometheus (9090)
GRAFANA_VARIABLES = {  # what Grafana substitutes before a query reaches Prometheus
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}


# -- what the candidate hands in ------------------------------------------------------------------------------------
def exporter_target(ctx: Any) -> str:
    return f"{hosts(ctx)['workstation']}:{ctx.params['exporter_port']}"


def exporter_url(ctx: Any) -> str:
    return f"http://{exporter_target(ctx)}/metrics"


def artefact(ctx: Any, key: str) -> tuple[Path, str | None, dict[str, Any]]:
    """(path, text or None, evidence) of a candidate file named by a lab parameter, read once per grading."""
    path = Path(ctx.workspace) / str(ctx.params[key])
    cache_key = f"dash.file.{key}"
    if cache_key not in ctx.cache:
        try:
            data = path.read_bytes()[:2_000_000]
            ctx.cache[cache_key] = (data.decode("utf-8", "replace"), hashlib.sha256(data).hexdigest())
        except OSError as exc:
            ctx.cache[cache_key] = (None, f"{type(exc).__name__}: {exc.strerror or exc}")
    text, digest = ctx.cache[cache_key]
    evidence = {"file": str(path), "sha256": digest} if text is not None else {"file": str(path), "error": digest}
    return path, text, evidence


def missing_file(spec: dict[str, Any], evidence: dict[str, Any]) -> CheckResult:
    return failed(
        spec["id"],
        spec["points"],
        f"{evidence['file']} cannot be read: {evidence.get('error')}",
        f"無法讀取 {evidence['file']}：{evidence.get('error')}",
        evidence,
    )


def tool_missing(spec: dict[str, Any], exc: ToolMissing) -> CheckResult:
    return CheckResult(spec["id"], ERROR, 0.0, spec["points"], {"en": str(exc), "zh-TW": f"評分環境缺少工具：{exc}"})


# -- the exporter ---------------------------------------------------------------------------------------------------
async def first_scrape(ctx: Any) -> Scrape:
    if "dash.scrape" not in ctx.cache:
        ctx.cache["dash.scrape"] = await scrape(exporter_url(ctx))
    return ctx.cache["dash.scrape"]


def scrape_failed(spec: dict[str, Any], s: Scrape) -> CheckResult:
    why = s.error or f"HTTP {s.status}"
    return failed(
        spec["id"],
        spec["points"],
        f"The exporter at {s.url} could not be scraped: {why}",
        f"無法抓取匯出器 {s.url}：{why}",
        {"scrape": s.describe()},
    )


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


def describe_metric(m: dict[str, Any]) -> str:
    labels = ",".join(f'{k}="{v}"' for k, v in (m.get("labels") or {}).items())
    return f"{m['name']}{{{labels}}}" if labels else m["name"]


@check("dash.exporter_lint")
async def exporter_lint(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """promtool's own linter on the page Prometheus would scrape: names, HELP, counters' _total, base units."""
    s = await first_scrape(ctx)
    if not s.ok:
        return scrape_failed(spec, s)
    try:
        run = await promtool(["check", "metrics"], stdin=s.text)
    except ToolMissing as exc:
        return tool_missing(spec, exc)
    evidence = {"scrape": s.describe(), "promtool": run.describe()}
    if run.rc == 0:
        return CheckResult(
            spec["id"],
            PASS,
            spec["points"],
            spec["points"],
            {"en": "promtool check metrics: no problems", "zh-TW": "promtool check metrics：無問題"},
            evidence,
        )
    problems = [ln for ln in run.output.splitlines() if ln.strip()]
    first = problems[0] if problems else run.error or f"exit {run.rc}"
    return failed(
        spec["id"],
        spec["points"],
        f"promtool check metrics reports {len(problems)} problem(s); first: {first}",
        f"promtool check metrics 回報 {len(problems)} 項問題；第一項：{first}",
        evidence,
    )


@check("dash.metric_contract")
async def metric_contract(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Each documented metric: the family exists under its name with its type, and the labelled sample is there."""
    s = await first_scrape(ctx)
    if not s.ok:
        return scrape_failed(spec, s)
    try:
        families = families_of(s.text)
        samples = samples_of(s.text)
    except ValueError as exc:
        return failed(
            spec["id"],
            spec["points"],
            f"The exporter's page is not valid Prometheus text format: {exc}",
            f"匯出器頁面不是有效的 Prometheus 文字格式：{exc}",
            {"scrape": s.describe(), "head": s.text[:2000]},
        )
    probes = []
    for m in ctx.lab.data["metrics"]:
        family = m["name"].removesuffix("_total") if m["type"] == "counter" else m["name"]
        got_type = families.get(family) or families.get(m["name"])
        sample = samples.get(spec_key(m))
        ok = got_type == m["type"] and sample is not None
        why = None
        if got_type is None:
            why = f"{m['name']} is not exposed"
        elif got_type != m["type"]:
            why = f"{m['name']} is exposed as a {got_type}, the brief documents a {m['type']}"
        elif sample is None:
            why = f"no sample {describe_metric(m)} (labels must be exactly these)"
        probes.append({"what": describe_metric(m), "expected_type": m["type"], "type": got_type, "ok": ok, "why": why})
    return all_ok(spec, probes, "Every documented metric is exposed as documented", "所有規定指標皆依規定公開")


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


def matches_within(value: float, times: list[float], values: list[float], t_lo: float, t_hi: float, tol: float) -> bool:
    return any(t_lo <= t <= t_hi and abs(v - value) <= tol for t, v in zip(times, values, strict=True))


@check("dash.exporter_values")
async def exporter_values(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Scrape repeatedly; every documented value must equal the plant's truth (in base units) of the last
    `max_age_s` seconds. OEE figures are judged as the dashboard shows them (dash.oee), not here."""
    n, gap = int(spec["params"]["scrapes"]), float(spec["params"]["interval_s"])
    scrapes: list[Scrape] = []
    for i in range(n):
        scrapes.append(await scrape(exporter_url(ctx)))
        if i + 1 < n:
            await asyncio.sleep(gap)
    good = [s for s in scrapes if s.ok]
    if not good:
        return scrape_failed(spec, scrapes[-1])
    max_age = float(ctx.params["max_age_s"])
    t0, t1 = good[0].t - max_age - 15, good[-1].t + 1
    emissions = await control_get(ctx, f"/v1/emissions?start={t0}&end={t1}")
    by_node: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for e in emissions:
        by_node.setdefault(e["node"], []).append((e["t"], json.loads(e["payload"])))
    periods = {nd["id"]: float(nd["default_report_period_s"]) for nd in ctx.sheet["mqtt"]["nodes"]}
    judged = [m for m in ctx.lab.data["metrics"] if "oee" not in m]
    per_metric: dict[str, dict[str, Any]] = {describe_metric(m): {"ok": 0, "n": 0} for m in judged}
    for s in good:
        try:
            samples = samples_of(s.text)
        except ValueError:
            samples = {}
        for m in judged:
            row = per_metric[describe_metric(m)]
            row["n"] += 1
            got = samples.get(spec_key(m))
            scale, tol = float(m.get("scale", 1)), float(m["tol"])
            if got is None:
                row.setdefault("first_problem", {"t": s.t, "problem": "missing"})
                continue
            value = got[1]
            if "truth" in m:
                ts, vs = await asyncio.to_thread(ctx.truth_range, m["truth"], t0, t1)
                ok = matches_within(value, ts, [v * scale for v in vs], s.t - max_age, s.t + 0.5, tol)
                expected = next((v * scale for t, v in zip(ts, vs, strict=True) if t >= s.t - 0.05), None)
            else:
                node = m["labels"]["node"]
                window = periods.get(node, 10.0) + max_age
                recent = [(t, body) for t, body in by_node.get(node, []) if s.t - window <= t <= s.t + 0.5]
                if m["sensor"] == "ts":
                    ok = any(abs(t - value) <= tol for t, _ in recent)
                    expected = recent[-1][0] if recent else None
                else:
                    cands = [float(b[m["sensor"]]) * scale for _, b in recent if m["sensor"] in b]
                    ok = any(abs(c - value) <= tol for c in cands)
                    expected = cands[-1] if cands else None
            if ok:
                row["ok"] += 1
            else:
                row.setdefault("first_problem", {"t": s.t, "value": value, "expected_about": expected, "tol": tol})
    total = sum(r["n"] for r in per_metric.values())
    ok_count = sum(r["ok"] for r in per_metric.values())
    fraction = ok_count / total if total else 0.0
    bad = [k for k, r in per_metric.items() if r["ok"] < r["n"]]
    evidence = {
        "scrapes": [s.describe() for s in scrapes],
        "max_age_s": max_age,
        "metrics": per_metric,
        "fraction": round(fraction, 4),
    }
    return verdict(
        spec["id"],
        spec["points"],
        fraction,
        float(spec["params"]["min_fraction"]),
        f"{ok_count}/{total} exported values match ground truth" + (f"; wrong: {', '.join(bad)}" if bad else ""),
        f"{ok_count}/{total} 個匯出數值與真值一致" + (f"；不符：{', '.join(bad)}" if bad else ""),
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


def for_testing(text: str) -> str:
    """The candidate's rules with what the hidden tests do not judge taken out: annotations (free text that
    promtool compares verbatim) and static labels other than severity. Expressions and for: are untouched."""
    data = yaml.safe_load(text)
    for g in data.get("groups") or []:
        for r in (g or {}).get("rules") or []:
            if isinstance(r, dict) and "alert" in r:
                r.pop("annotations", None)
                labels = {k: v for k, v in (r.get("labels") or {}).items() if k == "severity"}
                if labels:
                    r["labels"] = labels
                else:
                    r.pop("labels", None)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


async def check_rules(ctx: Any) -> tuple[str | None, dict[str, Any]]:
    """(rules text if `promtool check rules` accepts it, evidence); cached for the live checks."""
    if "dash.rules" not in ctx.cache:
        path, text, evidence = artefact(ctx, "rules_file")
        if text is not None:
            run = await promtool(["check", "rules", str(path)])
            evidence["promtool"] = run.describe()
            if run.rc != 0:
                text = None
        ctx.cache["dash.rules"] = (text, evidence)
    return ctx.cache["dash.rules"]


async def accepted_rules(ctx: Any, spec: dict[str, Any], en: str, zh: str) -> tuple[str, dict[str, Any]] | CheckResult:
    """(rules text, evidence) when promtool accepts the file, else this check's failing verdict."""
    try:
        text, evidence = await check_rules(ctx)
    except ToolMissing as exc:
        return tool_missing(spec, exc)
    if "error" in evidence:
        return missing_file(spec, evidence)
    if text is None:
        return failed(spec["id"], spec["points"], en, zh, evidence)
    return text, evidence


@check("dash.rules_valid")
async def rules_valid(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    got = await accepted_rules(
        ctx, spec, "promtool check rules rejects the rule file", "promtool check rules 拒絕此規則檔"
    )
    if isinstance(got, CheckResult):
        return got
    text, evidence = got
    rules = alert_rules(text)
    probes = []
    for a in ctx.lab.data["alerts"]:
        r = rules.get(a["name"])
        if r is None:
            probes.append({"what": a["name"], "ok": False, "why": f"no alert named {a['name']}"})
            continue
        severity = (r.get("labels") or {}).get("severity")
        summary = (r.get("annotations") or {}).get("summary")
        why = None
        if severity != a["severity"]:
            why = f"{a['name']}: label severity={severity!r}, the brief documents {a['severity']!r}"
        elif not summary or not str(summary).strip():
            why = f"{a['name']}: no summary annotation (an operator reads it first)"
        probes.append({"what": a["name"], "severity": severity, "summary": summary, "ok": why is None, "why": why})
    return all_ok(
        spec,
        probes,
        "The rule file is valid and defines the documented alerts",
        "規則檔有效且定義了規定的告警",
        **evidence,
    )


def rendered_cases(ctx: Any, suite: str) -> list[tuple[str, str, str]]:
    """[(case, description, promtool test file)] of a hidden suite, with this candidate's thresholds."""
    root = ctx.lab.path / "rule-tests" / suite
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(root)), undefined=jinja2.StrictUndefined)
    values = {"p": ctx.params, "job": ctx.params["job"], "instance": exporter_target(ctx)}
    out = []
    for f in sorted(root.glob("*.yml.j2")):
        text = env.get_template(f.name).render(**values)
        description = text.splitlines()[0].lstrip("# ").strip()
        out.append((f.name.removesuffix(".yml.j2"), description, text))
    return out


@check("dash.rule_tests")
async def rule_tests(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Hidden `promtool test rules` cases, one promtool run per case so each verdict is the case's own."""
    got = await accepted_rules(
        ctx,
        spec,
        "The rules cannot be tested: promtool check rules rejects the file",
        "無法測試規則：promtool check rules 拒絕此檔",
    )
    if isinstance(got, CheckResult):
        return got
    text, evidence = got
    cases = rendered_cases(ctx, str(spec["params"]["suite"]))
    results = []
    with tempfile.TemporaryDirectory(prefix="aiotlab-ruletest-") as tmp:
        (Path(tmp) / "rules.yml").write_text(for_testing(text), encoding="utf-8")
        for name, description, test in cases:
            (Path(tmp) / f"{name}.yml").write_text(test, encoding="utf-8")
            run = await promtool(["test", "rules", f"{name}.yml"], cwd=Path(tmp))
            row: dict[str, Any] = {"case": name, "what": description, "ok": run.rc == 0}
            if run.rc != 0:
                row["promtool"] = run.describe(limit=2500)
            results.append(row)
    passed = sum(r["ok"] for r in results)
    failed_names = [r["case"] for r in results if not r["ok"]]
    return verdict(
        spec["id"],
        spec["points"],
        passed / len(results) if results else 0.0,
        1.0,
        f"{passed}/{len(results)} hidden rule tests pass"
        + (f"; failing: {', '.join(failed_names)}" if failed_names else ""),
        f"{passed}/{len(results)} 項隱藏規則測試通過"
        + (f"；未通過：{', '.join(failed_names)}" if failed_names else ""),
        {"cases": results, "rules": evidence},
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
    dashboard is still judged); stopped by the engine when the probes are done."""
    if "dash.prometheus" not in ctx.cache:
        text, _ = await check_rules(ctx)
        listen = f"{hosts(ctx)['control']}:{GRADER_PROMETHEUS_PORT}"
        try:
            server = await PrometheusServer.start(
                prometheus_config(ctx, ["rules.yml"] if text else [], listen),
                listen,
                {"rules.yml": text} if text else {},
            )
        except Exception as exc:  # noqa: BLE001 - remembered: every later check reports the same cause
            ctx.cache["dash.prometheus"] = exc
        else:
            ctx.cache["dash.prometheus"] = server
            ctx.cleanups.append(server.stop)
            ctx.cache["dash.rules_loaded"] = bool(text)
    server = ctx.cache["dash.prometheus"]
    if isinstance(server, Exception):
        raise server
    return server


async def prometheus_or_verdict(ctx: Any, spec: dict[str, Any]) -> PrometheusServer | CheckResult:
    """The grader's Prometheus, or this check's verdict saying why there is none."""
    try:
        return await grader_prometheus(ctx)
    except ToolMissing as exc:
        return tool_missing(spec, exc)
    except Exception as exc:  # noqa: BLE001 - the cause is evidence, whatever it is
        return failed(spec["id"], spec["points"], f"Prometheus did not start: {exc}", f"Prometheus 無法啟動：{exc}")


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


@check("dash.live_alert")
async def live_alert(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Through the plant's control plane: hold the tank above the warning level and silence a sensor node; on
    the grader's Prometheus (scraping the exporter, evaluating the candidate's rules) TankLevelHigh and
    SensorSilent must fire in time, then resolve when the level falls and the node reports again."""
    p = ctx.params
    server = await prometheus_or_verdict(ctx, spec)
    if isinstance(server, CheckResult):
        return server
    evidence: dict[str, Any] = {"prometheus": server.url, "rules_loaded": ctx.cache.get("dash.rules_loaded")}
    if not ctx.cache.get("dash.rules_loaded"):
        return failed(
            spec["id"],
            spec["points"],
            "No alert can fire: promtool rejects the rule file (or it is missing)",
            "告警無法觸發：規則檔遭 promtool 拒絕或不存在",
            evidence,
        )
    if not await wait_for_data(server, "plant_tank_level_meters"):
        return failed(
            spec["id"],
            spec["points"],
            "Prometheus got no plant_tank_level_meters from the exporter within 20 s",
            "Prometheus 於 20 秒內未自匯出器取得 plant_tank_level_meters",
            {**evidence, "targets": await server.api("targets"), "log": server.log_tail()},
        )
    node = str(p["live_node"])
    period = next(float(n["default_report_period_s"]) for n in ctx.sheet["mqtt"]["nodes"] if n["id"] == node)
    slack, resolve_within = float(p["fire_slack_s"]), float(p["resolve_within_s"])
    probes: list[dict[str, Any]] = []
    baseline = await server.alerts()
    for name in ("TankLevelHigh", "SensorSilent"):
        on = active(baseline, name)
        probes.append({"what": f"before the test, {name} is not active (plant normal)", "ok": not on})
    t0 = time.time()
    await control_post(ctx, "/v1/process-events", {"event": "tank_high_level", "duration_s": 600})
    await control_post(ctx, "/v1/faults", {"kind": "offline", "target": node, "duration_s": p["live_silence_s"]})
    level_fire_by = t0 + float(p["level_for_s"]) + slack
    silent_fire_by = t0 + float(p["silent_after_s"]) + slack
    node_back = t0 + float(p["live_silence_s"])
    silent_resolve_by = node_back + period + resolve_within
    times: dict[str, float | None] = {"level_fired": None, "level_cleared": None, "level_resolved": None}
    times |= {"silent_fired": None, "silent_resolved": None}
    surge_on = True
    try:
        while time.time() < max(silent_resolve_by, level_fire_by + resolve_within + 5):
            alerts = await server.alerts()
            now = time.time()
            if times["level_fired"] is None and firing(alerts, "TankLevelHigh"):
                times["level_fired"] = now
                ctx.cache["dash.alert_firing_at"] = now
            if surge_on and (times["level_fired"] is not None or now > level_fire_by):
                await end_high_level(ctx)  # fired, or never will: either way the condition clears now
                surge_on = False
                if times["level_fired"] is not None:
                    times["level_cleared"] = time.time()
            if times["level_cleared"] and times["level_resolved"] is None and not active(alerts, "TankLevelHigh"):
                times["level_resolved"] = now
            if times["silent_fired"] is None and firing(alerts, "SensorSilent", node=node):
                times["silent_fired"] = now
            if times["silent_fired"] and times["silent_resolved"] is None and now > node_back:
                if not active(alerts, "SensorSilent", node=node):
                    times["silent_resolved"] = now
            level_done = times["level_resolved"] is not None or (times["level_fired"] is None and not surge_on)
            silent_done = times["silent_resolved"] is not None or (
                times["silent_fired"] is None and now > silent_fire_by
            )
            if level_done and silent_done:
                break
            await asyncio.sleep(1.0)
    finally:
        if surge_on:
            await end_high_level(ctx)
    rel = {k: (None if v is None else round(v - t0, 1)) for k, v in times.items()}
    probes += [
        {
            "what": f"TankLevelHigh fires within {p['level_for_s']} + {slack:.0f} s of the level rising above "
            f"{p['level_warning_m']} m",
            "ok": times["level_fired"] is not None and times["level_fired"] <= level_fire_by,
            "fired_after_s": rel["level_fired"],
        },
        {
            "what": f"TankLevelHigh resolves within {resolve_within:.0f} s of the level falling",
            "ok": times["level_resolved"] is not None
            and times["level_cleared"] is not None
            and times["level_resolved"] - times["level_cleared"] <= resolve_within,
            "resolved_after_s": None
            if not (times["level_resolved"] and times["level_cleared"])
            else round(times["level_resolved"] - times["level_cleared"], 1),
        },
        {
            "what": f"SensorSilent{{node={node}}} fires within {p['silent_after_s']} + {slack:.0f} s of the node "
            "going silent",
            "ok": times["silent_fired"] is not None and times["silent_fired"] <= silent_fire_by,
            "fired_after_s": rel["silent_fired"],
        },
        {
            "what": f"SensorSilent{{node={node}}} resolves within one report period ({period:.0f} s) + "
            f"{resolve_within:.0f} s of the node reporting again",
            "ok": times["silent_resolved"] is not None and times["silent_resolved"] <= silent_resolve_by,
            "resolved_after_node_back_s": None
            if times["silent_resolved"] is None
            else round(times["silent_resolved"] - node_back, 1),
        },
    ]
    for pr in probes:
        if not pr["ok"]:
            pr.setdefault("why", pr["what"])
    evidence |= {"timeline_s": rel, "node_silent_s": p["live_silence_s"], "report_period_s": period}
    return all_ok(
        spec, probes, "Alerts fired and resolved on the plant's conditions", "告警隨工廠狀況觸發並恢復", **evidence
    )


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


def datasource_ok(ds: Any, uid: str) -> bool:
    """Absent (the provisioned default), or naming the provisioned data source by uid."""
    if ds is None:
        return True
    if isinstance(ds, str):
        return ds == uid
    return isinstance(ds, dict) and ds.get("uid") == uid and ds.get("type", "prometheus") == "prometheus"


def load_dashboard(ctx: Any) -> tuple[dict[str, Any] | None, dict[str, Any], str | None]:
    _, text, evidence = artefact(ctx, "dashboard_file")
    if text is None:
        return None, evidence, f"cannot be read: {evidence.get('error')}"
    try:
        model = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return None, evidence, f"is not usable JSON: {type(exc).__name__}: {str(exc)[:200]}"
    if isinstance(model, dict) and isinstance(model.get("dashboard"), dict):
        model = model["dashboard"]  # the HTTP API's envelope {"dashboard": {...}}
    if not isinstance(model, dict) or not isinstance(model.get("panels"), list):
        return None, evidence, "is not a Grafana dashboard JSON model (no 'panels' list)"
    return model, evidence, None


def dashboard_unusable(spec: dict[str, Any], evidence: dict[str, Any], why: str) -> CheckResult:
    return failed(spec["id"], spec["points"], f"The dashboard {why}", f"儀表板{why}", evidence)


@check("dash.dashboard_model")
async def dashboard_model(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    model, evidence, why = load_dashboard(ctx)
    if model is None:
        return dashboard_unusable(spec, evidence, why or "")
    panels = all_panels(model)
    uid = str(ctx.params["datasource_uid"])
    probes = []
    for req in ctx.lab.data["panels"]:
        panel = find_panel(panels, req["title"])
        if panel is None:
            probes.append({"what": req["title"], "ok": False, "why": f"no panel titled {req['title']!r}"})
            continue
        defaults = (panel.get("fieldConfig") or {}).get("defaults") or {}
        problems = []
        if not exprs(panel):
            problems.append("no query (targets[].expr)")
        bad_ds = [
            ds
            for ds in [
                panel.get("datasource"),
                *(t.get("datasource") for t in panel.get("targets") or [] if isinstance(t, dict)),
            ]
            if not datasource_ok(ds, uid)
        ]
        if bad_ds:
            problems.append(f"data source {bad_ds[0]!r} is not the provisioned uid {uid!r}")
        if req.get("unit") and defaults.get("unit") != req["unit"]:
            problems.append(f"unit {defaults.get('unit')!r}, required {req['unit']!r}")
        if req.get("threshold"):
            want = float(ctx.params[req["threshold"]])
            steps = ((defaults.get("thresholds") or {}).get("steps")) or []
            values = [s.get("value") for s in steps if isinstance(s, dict)]
            if not any(isinstance(v, int | float) and math.isclose(v, want, abs_tol=1e-9) for v in values):
                problems.append(f"no threshold step at {want} (steps: {values})")
        probes.append(
            {"what": req["title"], "type": panel.get("type"), "ok": not problems, "why": "; ".join(problems) or None}
        )
    return all_ok(
        spec, probes, "All required panels present, with units and thresholds", "所需面板齊全且具單位與門檻", **evidence
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


@check("dash.panel_queries")
async def panel_queries(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Each query of each panel, as Grafana would send it, on the grader's Prometheus: it must run and return
    data (ALERTS is evaluated at a moment the live test had an alert firing). Required panels must query the
    documented metric."""
    model, evidence, why = load_dashboard(ctx)
    if model is None:
        return dashboard_unusable(spec, evidence, why or "")
    server = await prometheus_or_verdict(ctx, spec)
    if isinstance(server, CheckResult):
        return server
    await wait_for_data(server, "plant_tank_level_meters")
    at = ctx.cache.get("dash.alert_firing_at")
    panels = all_panels(model)
    probes = []
    for panel in panels:
        for raw in exprs(panel):
            expr = grafana_substitute(raw, model)
            uses_alerts = re.search(r"\bALERTS(_FOR_STATE)?\b", expr) is not None
            when = at if uses_alerts and at else None
            row: dict[str, Any] = {"panel": panel.get("title"), "what": expr, "at": when}
            try:
                result = await server.query(expr, when)
                row["series"] = len(result)
                row["ok"] = bool(result)
                if not result:
                    row["why"] = f"{panel.get('title')!r}: {expr} returns no data"
                    if uses_alerts and not at:
                        row["ok"] = True  # no alert ever fired here: the query ran, there was nothing to list
                        row["note"] = "no alert fired during grading; the query ran without error"
            except (RuntimeError, OSError, TimeoutError, ValueError) as exc:
                row["ok"], row["why"] = False, f"{panel.get('title')!r}: {expr}: {exc}"
            probes.append(row)
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
                }
            )
    return all_ok(spec, probes, "Every panel query runs and returns data", "每個面板查詢皆可執行並回傳資料", **evidence)


@check("dash.oee")
async def oee(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """The OEE panels' figures as Prometheus computes them now, against OEE from PLC-2's counters (truth)."""
    model, evidence, why = load_dashboard(ctx)
    if model is None:
        return dashboard_unusable(spec, evidence, why or "")
    server = await prometheus_or_verdict(ctx, spec)
    if isinstance(server, CheckResult):
        return server
    await wait_for_data(server, "plant_tank_level_meters")
    tol = float(spec["params"]["tol"])
    lag = float(ctx.params["max_age_s"]) + float(ctx.params["scrape_interval_s"]) + 2.0
    probes = []
    for req in [r for r in ctx.lab.data["panels"] if r.get("oee")]:
        panel = find_panel(all_panels(model), req["title"])
        queries = exprs(panel) if panel else []
        if not queries:
            probes.append({"what": req["title"], "ok": False, "why": f"no panel {req['title']!r} with a query"})
            continue
        expr = grafana_substitute(queries[0], model)
        at = time.time()
        try:
            result = await server.query(expr, at)
        except (RuntimeError, OSError, TimeoutError, ValueError) as exc:
            probes.append({"what": req["title"], "query": expr, "ok": False, "why": f"{expr}: {exc}"})
            continue
        if len(result) != 1:
            probes.append(
                {
                    "what": req["title"],
                    "query": expr,
                    "ok": False,
                    "why": f"{expr} returns {len(result)} series, not one",
                }
            )
            continue
        value = float(result[0]["value"][1])
        times, truth = await asyncio.to_thread(oee_truth, ctx, at - lag - 5, at + 1)
        ok = matches_within(value, times, truth[req["oee"]], at - lag, at + 0.5, tol)
        expected = truth[req["oee"]][-1] if truth[req["oee"]] else None
        probes.append(
            {
                "what": req["title"],
                "query": expr,
                "value": value,
                "truth_latest": None if expected is None else round(expected, 5),
                "tol": tol,
                "ok": ok,
                "why": None if ok else f"{req['title']} shows {value:.4f}, ground truth {expected}",
            }
        )
    return all_ok(spec, probes, "OEE figures agree with ground truth", "OEE 數據與真值一致", **evidence)
