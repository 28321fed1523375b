"""DAQ-* checks: the candidate's published readings against the plant's recorded ground truth.

All alignment with truth uses the grader's own receive time of each message (never the candidate's timestamp,
which has its own check), so one mistake fails the check it belongs to and not the others.
"""

from __future__ import annotations

import bisect
import datetime as dt
import re
import sqlite3
import statistics
from collections import defaultdict
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from ..results import CheckResult, failed, verdict
from . import check

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
LOOKBACK_S = 3.0  # a polled value may be up to this old when it is published


def parse_ts(ts: Any) -> float | None:
    if not isinstance(ts, str) or not RFC3339.match(ts):
        return None
    try:
        return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def readings(ctx: Any) -> list[tuple[Any, dict[str, Any]]]:
    """(message, body) for messages whose body is a JSON object."""
    return [(m, m.body) for m in ctx.observation.messages if isinstance(m.body, dict)]


def stream_key(body: dict[str, Any]) -> tuple[str, str] | None:
    d, t = body.get("device"), body.get("tag")
    return (d, t) if isinstance(d, str) and isinstance(t, str) else None


def numeric(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def by_stream(ctx: Any) -> dict[tuple[str, str], list[tuple[Any, dict[str, Any]]]]:
    out: dict[tuple[str, str], list[tuple[Any, dict[str, Any]]]] = defaultdict(list)
    for m, b in readings(ctx):
        key = stream_key(b)
        if key:
            out[key].append((m, b))
    for v in out.values():
        v.sort(key=lambda mb: mb[0].rx)
    return out


def polled(ctx: Any) -> list[dict[str, Any]]:
    return [s for s in ctx.lab.data["streams"] if s["source"] != "mqtt"]


def matches_truth(
    ctx: Any, stream: dict[str, Any], value: float, t0: float, t1: float
) -> tuple[bool, float | None, float | None]:
    """Does value equal a truth sample (or emission) in [t0, t1]? Returns (ok, nearest truth value, its time)."""
    tol = float(stream["tol"])
    if stream["source"] == "mqtt":
        best = None
        for t, v in ctx.emitted_values(stream["device"], stream["tag"], t0, t1):
            if best is None or abs(v - value) < abs(best[1] - value):
                best = (t, v)
        if best is None:
            return False, None, None
        return abs(best[1] - value) <= tol, best[1], best[0]
    ts, vs = ctx.truth_range(stream["truth"], t0, t1)
    i0, i1 = bisect.bisect_left(ts, t0), bisect.bisect_right(ts, t1)
    best_i = None
    for i in range(i0, i1):
        if best_i is None or abs(vs[i] - value) < abs(vs[best_i] - value):
            best_i = i
    if best_i is None:
        return False, None, None
    return abs(vs[best_i] - value) <= tol, vs[best_i], ts[best_i]


def per_reading_verdict(
    spec: dict[str, Any], good: int, n: int, threshold: float, en: str, zh: str, evidence: dict[str, Any]
) -> CheckResult:
    """A check judged reading by reading: no readings at all is a failure, otherwise credit in proportion."""
    if n == 0:
        return failed(spec["id"], spec["points"], "No readings to check", "沒有可檢查的讀值", evidence)
    return verdict(spec["id"], spec["points"], good / n, threshold, en, zh, evidence)


@check("daq.schema")
def schema(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    validator = Draft202012Validator(ctx.lab.schema(), format_checker=FormatChecker())
    msgs = ctx.observation.messages
    if not msgs:
        return failed(
            spec["id"],
            spec["points"],
            "No readings were published",
            "未收到任何發布的讀值",
            {"messages": 0, "observer_error": ctx.observation.error},
        )
    invalid = []
    for m in msgs:
        errors = [m.parse_error] if m.parse_error else [e.message[:200] for e in validator.iter_errors(m.body)][:3]
        if errors:
            invalid.append(
                {
                    "topic": m.topic[:200],
                    "rx": m.rx,
                    "errors": errors,
                    "payload": (m.raw or b"")[:300].decode(errors="replace"),
                }
            )
    n = len(msgs)
    ok = n - len(invalid)
    return verdict(
        spec["id"],
        spec["points"],
        ok / n,
        1.0,
        f"{ok} of {n} readings valid",
        f"{n} 筆讀值中 {ok} 筆有效",
        {
            "messages": n,
            "valid": ok,
            "invalid": len(invalid),
            "examples": invalid[:10],
            "oversized": ctx.observation.oversized,
            "dropped_over_cap": ctx.observation.dropped,
        },
    )


@check("daq.coverage")
def coverage(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    seen = by_stream(ctx)
    expected = [(s["device"], s["tag"]) for s in ctx.lab.data["streams"]]
    missing = [f"{d}/{t}" for d, t in expected if not seen.get((d, t))]
    present = len(expected) - len(missing)
    return verdict(
        spec["id"],
        spec["points"],
        present / len(expected),
        1.0,
        f"{present} of {len(expected)} required streams published",
        f"{len(expected)} 個資料流中 {present} 個有發布",
        {
            "expected": [f"{d}/{t}" for d, t in expected],
            "missing": missing,
            "counts": {f"{d}/{t}": len(v) for (d, t), v in seen.items()},
        },
    )


@check("daq.values")
def values(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    seen = by_stream(ctx)
    min_fraction = float(spec.get("params", {}).get("min_fraction", 0.95))
    per_stream, fractions, series = {}, [], {}
    for s in ctx.lab.data["streams"]:
        recs = seen.get((s["device"], s["tag"]), [])
        matched, worst = 0, []
        points = []
        for m, b in recs:
            v = b.get("value")
            if not numeric(v):
                worst.append({"rx": m.rx, "value": repr(v)[:40], "truth": None, "error": "not a number"})
                continue
            ok, truth_v, truth_t = matches_truth(
                ctx, s, float(v), m.rx - (15.0 if s["source"] == "mqtt" else LOOKBACK_S), m.rx + 0.1
            )
            points.append([round(m.rx, 3), v, truth_v])
            if ok:
                matched += 1
            else:
                worst.append(
                    {
                        "rx": m.rx,
                        "value": v,
                        "truth": truth_v,
                        "error": None if truth_v is None else abs(float(v) - truth_v),
                    }
                )
        frac = matched / len(recs) if recs else 0.0
        fractions.append(frac)
        key = f"{s['device']}/{s['tag']}"
        per_stream[key] = {
            "n": len(recs),
            "matched": matched,
            "fraction": round(frac, 4),
            "tolerance": s["tol"],
            "mismatches": sorted(worst, key=lambda w: -(w["error"] or 0) if isinstance(w["error"], float) else 0)[:5],
        }
        series[key] = points[:400]
    all_ok = all(f >= min_fraction for f in fractions)
    score = statistics.fmean(fractions) if fractions else 0.0
    bad = [k for k, v in per_stream.items() if v["fraction"] < min_fraction]
    res = verdict(
        spec["id"],
        spec["points"],
        1.0 if all_ok else min(score, 0.999),
        1.0,
        "All streams match ground truth" if all_ok else f"Values differ from ground truth: {', '.join(bad)}",
        "所有資料流與真值一致" if all_ok else f"數值與真值不符：{', '.join(bad)}",
        {"min_fraction_per_stream": min_fraction, "streams": per_stream, "series": series},
    )
    return res


@check("daq.period")
def period(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    seen = by_stream(ctx)
    want = float(ctx.params["period_s"])
    rel = float(spec.get("params", {}).get("rel_tol", 0.1))
    per, ok = {}, 0
    for s in polled(ctx):
        rx = [m.rx for m, _ in seen.get((s["device"], s["tag"]), [])]
        gaps = [b - a for a, b in zip(rx, rx[1:], strict=False)]
        med = statistics.median(gaps) if len(gaps) >= 2 else None
        good = med is not None and abs(med - want) <= rel * want
        ok += good
        per[f"{s['device']}/{s['tag']}"] = {
            "n": len(rx),
            "median_interval_s": med,
            "ok": good,
            "intervals": [round(g, 3) for g in gaps[:200]],
        }
    n = len(polled(ctx))
    return verdict(
        spec["id"],
        spec["points"],
        ok / n,
        1.0,
        f"{ok} of {n} polled streams at {want} s ±{rel:.0%}",
        f"{n} 個輪詢資料流中 {ok} 個維持 {want} 秒 ±{rel:.0%}",
        {"period_s": want, "rel_tol": rel, "streams": per},
    )


@check("daq.completeness")
def completeness(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    p = spec.get("params", {})
    seen = by_stream(ctx)
    want = float(ctx.params["period_s"])
    w0, w1 = ctx.observation.window
    per, ok, total = {}, 0, 0
    for s in ctx.lab.data["streams"]:
        key = (s["device"], s["tag"])
        recs = seen.get(key, [])
        total += 1
        if s["source"] != "mqtt":
            rx = [m.rx for m, _ in recs]
            expected = (w1 - w0) / want
            gaps = [b - a for a, b in zip(rx, rx[1:], strict=False)]
            max_gap = max(gaps) if gaps else None
            frac = len(rx) / expected if expected else 0
            good = (
                frac >= float(p.get("polled_min_fraction", 0.95)) - 1.0 / max(expected, 1)
                and max_gap is not None
                and max_gap <= float(p.get("max_gap_periods", 2.5)) * want
            )
            per[f"{s['device']}/{s['tag']}"] = {
                "received": len(rx),
                "expected": round(expected, 1),
                "fraction": round(frac, 3),
                "max_gap_s": max_gap,
                "ok": good,
            }
        else:
            emitted = [(t, v) for t, v in ctx.emitted_values(s["device"], s["tag"], w0, w1 - 2.0)]
            got = [float(b["value"]) for m, b in recs if numeric(b.get("value"))]
            forwarded = sum(1 for _, v in emitted if any(abs(v - g) <= float(s["tol"]) for g in got))
            frac = forwarded / len(emitted) if emitted else 0.0
            good = bool(emitted) and frac >= float(p.get("sensor_min_fraction", 0.995))
            per[f"{s['device']}/{s['tag']}"] = {
                "emitted": len(emitted),
                "forwarded": forwarded,
                "fraction": round(frac, 4),
                "ok": good,
            }
        ok += good
    return verdict(
        spec["id"],
        spec["points"],
        ok / total,
        1.0,
        f"{ok} of {total} streams complete",
        f"{total} 個資料流中 {ok} 個完整",
        {"window": [w0, w1], "streams": per},
    )


@check("daq.timestamps")
def timestamps(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    max_err = float(spec.get("params", {}).get("max_error_s", 0.5))
    seen = by_stream(ctx)
    n = good = 0
    problems: list[dict[str, Any]] = []
    non_monotonic = 0
    scans = ctx.truth("plc1.scan_time_ms")[1]
    image_age = (max(scans) / 1000.0) if scans else 0.0
    for s in ctx.lab.data["streams"]:
        last = None
        for m, b in seen.get((s["device"], s["tag"]), []):
            n += 1
            t = parse_ts(b.get("ts"))
            if t is None:
                problems.append(
                    {
                        "stream": f"{s['device']}/{s['tag']}",
                        "ts": repr(b.get("ts"))[:60],
                        "problem": "not RFC 3339 with offset",
                    }
                )
                continue
            if last is not None and t < last:
                non_monotonic += 1
                problems.append({"stream": f"{s['device']}/{s['tag']}", "ts": b["ts"], "problem": "goes backwards"})
                last = t
                continue
            last = t
            v = b.get("value")
            lookback = 15.0 if s["source"] == "mqtt" else LOOKBACK_S
            value_known = numeric(v) and matches_truth(ctx, s, float(v), m.rx - lookback, m.rx + 0.1)[0]
            if value_known:
                # the plant really had this value (within tolerance) within ±max_err of the stated time; PLC-1 serves
                # its last scan's image, so its own scan time is allowed on top (staleness is production impact's)
                age = image_age if s["device"] == "plc1" else 0.0
                ok = matches_truth(ctx, s, float(v), t - max_err - age, t + max_err)[0]
            else:
                # a wrong value is the values check's business; here only: is the time plausible for its receipt?
                ok = m.rx - lookback - max_err <= t <= m.rx + max_err
            if ok:
                good += 1
            else:
                near = matches_truth(ctx, s, float(v), t - 5.0, t + 5.0) if numeric(v) else (False, None, None)
                problems.append(
                    {
                        "stream": f"{s['device']}/{s['tag']}",
                        "ts": b["ts"],
                        "receive_time": round(m.rx, 3),
                        "problem": f"the plant had no such value within ±{max_err} s of ts"
                        + (f"; nearest match at {near[2] - t:+.3f} s" if near[0] and near[2] is not None else ""),
                    }
                )
    return per_reading_verdict(
        spec,
        good,
        n,
        0.99,
        f"{good} of {n} timestamps accurate within {max_err} s",
        f"{n} 個時間戳記中 {good} 個在 {max_err} 秒內",
        {
            "max_error_s": max_err,
            "checked": n,
            "accurate": good,
            "non_monotonic": non_monotonic,
            "examples": problems[:10],
        },
    )


@check("daq.units")
def units(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    seen = by_stream(ctx)
    n = good = 0
    wrong: dict[str, Any] = {}
    for s in ctx.lab.data["streams"]:
        for _, b in seen.get((s["device"], s["tag"]), []):
            n += 1
            if b.get("unit") == s["unit"]:
                good += 1
            else:
                wrong[f"{s['device']}/{s['tag']}"] = {"expected": s["unit"], "got": repr(b.get("unit"))[:40]}
    return per_reading_verdict(
        spec,
        good,
        n,
        1.0,
        f"{good} of {n} readings carry the documented unit",
        f"{n} 筆讀值中 {good} 筆單位正確",
        {"wrong": wrong},
    )


@check("daq.storage")
def storage(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    p = spec.get("params", {})
    path = ctx.db_path
    ev: dict[str, Any] = {"path": str(path)}
    if not path.is_file():
        return failed(
            spec["id"],
            spec["points"],
            f"No database at {ctx.params['db_path']}",
            f"找不到資料庫 {ctx.params['db_path']}",
            ev,
        )
    size = path.stat().st_size
    ev["bytes"] = size
    if size > int(p.get("max_db_bytes", 200 * 2**20)):
        return failed(spec["id"], spec["points"], "Database larger than the limit", "資料庫超過大小上限", ev)
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        db.execute("PRAGMA query_only=1")
        rows = db.execute("SELECT device, tag, value, ts FROM readings LIMIT 500000").fetchall()
        db.close()
    except sqlite3.Error as exc:
        ev["error"] = str(exc)
        return failed(spec["id"], spec["points"], f"Database unreadable: {exc}", f"無法讀取資料庫：{exc}", ev)

    def key(device: Any, tag: Any, value: Any, ts: Any) -> tuple[Any, ...]:
        return (str(device), str(tag), round(float(value), 9) if numeric(value) else repr(value), str(ts))

    stored = {key(*r) for r in rows}
    published = [key(b.get("device"), b.get("tag"), b.get("value"), b.get("ts")) for _, b in readings(ctx)]
    if not published:
        return failed(spec["id"], spec["points"], "Nothing was published to compare", "沒有已發布的讀值可比對", ev)
    found = sum(1 for k in published if k in stored)
    missing = [k for k in published if k not in stored][:10]
    ev.update(
        {"rows": len(rows), "published": len(published), "stored_of_published": found, "missing_examples": missing}
    )
    return verdict(
        spec["id"],
        spec["points"],
        found / len(published),
        float(p.get("min_fraction", 0.99)),
        f"{found} of {len(published)} published readings stored identically",
        f"{len(published)} 筆已發布讀值中 {found} 筆完全相同地儲存",
        ev,
    )


@check("daq.production_impact")
def production_impact(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    budget = float(ctx.params["request_budget_rps"])
    base = float(ctx.plant_info["params"]["devices"]["plc1"]["base_scan_ms"])
    t_load, load = ctx.truth("plc1.load_rps")
    t_scan, scan = ctx.truth("plc1.scan_time_ms")
    max_load = max(load) if load else None
    max_scan = max(scan) if scan else None
    ws = ctx.sheet["network"]["workstation"]
    before = ctx.status_start["fw1"]["requests_by_source"].get(ws, {}).get("plc1", 0)
    after = ctx.status_end["fw1"]["requests_by_source"].get(ws, {}).get("plc1", 0)
    w0, w1 = ctx.observation.window
    ev = {
        "budget_rps": budget,
        "max_total_load_rps": max_load,
        "base_scan_ms": base,
        "max_scan_ms": max_scan,
        "workstation_requests_to_plc1": after - before,
        "workstation_rps": round((after - before) / max(w1 - w0, 1e-9), 2),
        "load_series": [[round(t, 1), v] for t, v in zip(t_load[::10], load[::10], strict=False)],
    }
    ok = max_load is not None and max_load <= budget and max_scan is not None and max_scan <= base * 1.25
    if ok:
        return CheckResult(
            spec["id"],
            "pass",
            spec["points"],
            spec["points"],
            {
                "en": f"PLC-1 load peaked at {max_load:.1f} req/s (budget {budget:.0f}); scan time unaffected",
                "zh-TW": f"PLC-1 負載峰值 {max_load:.1f} 請求/秒（預算 {budget:.0f}）；掃描時間未受影響",
            },
            ev,
        )
    return failed(
        spec["id"],
        spec["points"],
        f"PLC-1 load peaked at {max_load} req/s (budget {budget:.0f}); scan time up to {max_scan} ms (base {base})",
        f"PLC-1 負載峰值 {max_load} 請求/秒（預算 {budget:.0f}）；掃描時間最高 {max_scan} 毫秒（基準 {base}）",
        ev,
    )
