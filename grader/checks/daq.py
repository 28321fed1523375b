"""DAQ-* checks: the candidate's published readings against the plant's recorded ground truth.

One defect fails one check. Each check judges its own subject and nothing else:
- which stream a message is of comes from its body's device/tag (also when its value is not valid JSON), else from its
  topic, so counting checks (coverage, period, completeness) count messages whatever their values;
- values are aligned with truth by the grader's receive time (never the candidate's timestamp), sensor readings by the
  sensor message they forward;
- timestamps are judged against when the value was measured, and a wrong value's timestamp only for plausibility;
- a reading whose format is wrong (not strict JSON, a timestamp not in the required format) is the schema check's,
  and is not judged again by the others.
A stream that was not published at all is the coverage check's defect alone; the other per-stream checks judge the
streams published, when at least half are. With no readings at all, the checks other than coverage are not
assessable ("no-readings"). Where the candidate decides each stream's period (an acquisition plan: acq_plan.py), the
timing checks hold the running collector to the plan, and are not assessable without a usable one. When the grader
fell behind during the window (ctx.health), the timing checks are not assessable and the engine grades again.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import re
import sqlite3
import statistics
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from ..observers import Message, stream_of, subscribe_options, topic_stream
from ..results import FAIL, GRADER_OVERLOADED, PASS, CheckResult, by_items, failed, not_assessable, passed
from . import acq_plan, check

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
# The required format (the lab's schema states the same pattern): RFC 3339, a UTC offset, milliseconds.
TS_FORMAT = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3,6}(Z|[+-][0-9]{2}:[0-9]{2})$")
LOOKBACK_S = 3.0  # a polled value may be up to this old when it is received
PATH_NEAR_S = 2.5  # sensor messages received this close to a reading tell how late the path ran (path_delay)
PATH_NORMAL_S = 0.5  # a forwarded sensor message's normal age at receipt; beyond it, the path ran late
SENSOR_LOOKBACK_S = 15.0  # a forwarded sensor reading may be this old (a sensor reports every 2-10 s)
PUBLISH_LATENCY_S = 0.5  # read -> publish -> grader, allowed on top of the timestamp tolerance
LATE_LAST_SLOT = 0.45  # of a period: how late the last judged slot's sample may come (see _polled_completeness)
SENSOR_MARGIN_S = 2.0  # a sensor message emitted this close to the window's end may still be in flight
NO_NUMERIC = "no-numeric-readings"  # readings came, none with a number in `value` (owned by daq.schema)
NO_READINGS = "no-readings"
NOT_JSON = "readings-not-json"  # messages came on the stream topics, none a JSON object (owned by daq.schema)
TS_FORMAT_CAUSE = "ts-format"
NO_DATABASE = "no-database"

_prep_lock = threading.Lock()


# -- shared helpers ------------------------------------------------------------------------------------------------
def parse_ts(ts: Any) -> float | None:
    """Epoch seconds of any RFC 3339 timestamp with an offset (used to identify messages, not to judge format)."""
    if not isinstance(ts, str) or not RFC3339.match(ts):
        return None
    try:
        return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def well_formed_ts(ts: Any) -> float | None:
    """Epoch seconds of a timestamp in the required format (with milliseconds), else None."""
    return parse_ts(ts) if isinstance(ts, str) and TS_FORMAT.match(ts) else None


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def numeric(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def key_of(s: dict[str, Any]) -> tuple[str, str]:
    return s["device"], s["tag"]


def name_of(s: dict[str, Any]) -> str:
    return f"{s['device']}/{s['tag']}"


def polled(ctx: Any) -> list[dict[str, Any]]:
    return [s for s in ctx.lab.data["streams"] if s["source"] != "mqtt"]


def period_of(ctx: Any, s: dict[str, Any]) -> float | None:
    """The period the collector must keep for a polled stream: its acquisition plan's, where the candidate decides
    (None when the plan leaves the stream out or is unusable), else the lab's period_s."""
    if not acq_plan.uses_plan(ctx):
        return float(ctx.params["period_s"])
    return (acq_plan.stream_periods(ctx) or {}).get(name_of(s))


def fastest_period(ctx: Any) -> float:
    """The shortest polling period the collector keeps (for probes that must span a few of its polls)."""
    if not acq_plan.uses_plan(ctx):
        return float(ctx.params["period_s"])
    return min((acq_plan.stream_periods(ctx) or {}).values(), default=1.0)


def lag(ctx: Any) -> float:
    """The grader's own worst loop lag in the window (allowed on top of timing tolerances)."""
    try:
        return max(0.0, float(ctx.health.get("max_loop_lag_s") or 0.0))
    except (TypeError, ValueError, AttributeError):
        return 0.0


def overloaded(ctx: Any) -> bool:
    return bool(getattr(ctx, "health", {}).get("overloaded"))


def prep(ctx: Any) -> dict[str, Any]:
    """What several checks need, computed once per grading run (passive checks run concurrently)."""
    with _prep_lock:
        if "daq" not in ctx.cache:
            streams: dict[tuple[str, str], list[Message]] = defaultdict(list)
            for m in ctx.observation.messages:
                k = stream_of(m)
                if k:
                    streams[k].append(m)
            for v in streams.values():
                v.sort(key=lambda m: m.rx)
            lab_keys = {key_of(s) for s in ctx.lab.data["streams"]}
            ours = [m for k, v in streams.items() if k in lab_keys for m in v]
            ctx.cache["daq"] = {
                "streams": dict(streams),
                "first_rx": min((m.rx for m in ours), default=None),
                "any": bool(ours),
            }
        return ctx.cache["daq"]


def messages_of(ctx: Any, s: dict[str, Any]) -> list[Message]:
    """Every message of the stream (valid or not), in order of receipt."""
    return prep(ctx)["streams"].get(key_of(s), [])


def readings_of(ctx: Any, s: dict[str, Any]) -> list[tuple[Message, dict[str, Any]]]:
    """The stream's messages that are JSON objects (strict JSON)."""
    return [(m, m.body) for m in messages_of(ctx, s) if isinstance(m.body, dict)]


def no_readings(ctx: Any, spec: dict[str, Any]) -> CheckResult | None:
    """With no message of any required stream, nothing can be judged: not assessable, the coverage check's cause."""
    if prep(ctx)["any"]:
        return None
    ctx.block(
        NO_READINGS,
        "no readings of any required stream were published" + _observer_note(ctx, "en"),
        "沒有任何要求資料流的讀值被發布" + _observer_note(ctx, "zh-TW"),
        "daq.coverage",
    )
    return ctx.blocked(spec, NO_READINGS, {"observer_error": ctx.observation.error})


def too_few_published(ctx: Any, spec: dict[str, Any], streams: list[dict[str, Any]]) -> CheckResult | None:
    """A per-stream check judges the streams published (an unpublished one is daq.coverage's defect alone), but only
    when at least half of its streams were: a collector of one stream in ten is not judged complete, on time or
    right on the strength of that one (it would score nearly everything for acquiring nearly nothing)."""
    published = [s for s in streams if messages_of(ctx, s)]
    if not published or 2 * len(published) >= len(streams):
        return None
    ctx.block(
        "too-few-streams",
        f"only {len(published)} of the {len(streams)} required streams were published: too few to judge a collector by",
        f"{len(streams)} 個要求的資料流中僅發布 {len(published)} 個：不足以評判擷取程式",
        "daq.coverage",
    )
    return ctx.blocked(spec, "too-few-streams", {"published": [name_of(s) for s in published]})


def nothing_published(ctx: Any, spec: dict[str, Any], ev: dict[str, Any], en: str, zh: str) -> CheckResult:
    """None of the streams a check judges was published: daq.coverage's defect, this check not assessable."""
    ctx.block("streams-not-published", en, zh, "daq.coverage")
    return ctx.blocked(spec, "streams-not-published", ev)


def no_json(ctx: Any, spec: dict[str, Any]) -> CheckResult | None:
    """Messages came on the required streams' topics but none is a JSON object: a check that reads a reading's
    fields cannot judge anything; it is not assessable, naming the format defect that daq.schema fails (once)."""
    blocked = no_readings(ctx, spec)
    if blocked:
        return blocked
    ours = [m for k, v in prep(ctx)["streams"].items() if k in {key_of(s) for s in ctx.lab.data["streams"]} for m in v]
    if any(isinstance(m.body, dict) for m in ours):
        return None
    example = next((m.parse_error for m in ours if m.parse_error), None) or "not a JSON object"
    ctx.block(
        NOT_JSON,
        f"no message on the streams' topics is a JSON object ({len(ours)} messages; e.g. {example[:120]})",
        f"各資料流主題上沒有任何訊息是 JSON 物件（共 {len(ours)} 則；例如 {example[:120]}）",
        "daq.schema",
    )
    return ctx.blocked(spec, NOT_JSON, {"messages": len(ours), "example_error": example[:200]})


def _observer_note(ctx: Any, lang: str) -> str:
    """Why there may be no readings at all: the candidate's command did not run, or the grader could not listen."""
    notes = [b[lang] for cause, b in ctx.blockers.items() if cause.startswith("solution-")]
    err = ctx.observation.error
    if err:
        notes.append(f"the grader's subscriber: {err}" if lang == "en" else f"評分程式訂閱端：{err}")
    if not notes:
        return ""
    return f" ({'; '.join(notes)})" if lang == "en" else f"（{'；'.join(notes)}）"


def emissions_of(ctx: Any, node: str, field_name: str) -> list[dict[str, Any]]:
    """The sensor messages the node emitted around the window: t (emission time), ts (its own ts), value, seq, and
    confirmed (false when the node's publish was interrupted before the broker's PUBACK: delivered or not, nobody
    knows; see simulators/truth.py). Recordings made before the flag existed count every emission as confirmed."""
    cache = ctx.cache.setdefault("daq_emissions", {})
    k = (node, field_name)
    if k not in cache:
        import json

        out = []
        for e in ctx.emissions():
            if e["node"] != node:
                continue
            try:
                body = json.loads(e["payload"])
            except ValueError:
                continue
            v = body.get(field_name)
            out.append(
                {
                    "t": float(e["t"]),
                    "ts": body.get("ts"),
                    "ts_t": parse_ts(body.get("ts")),
                    "value": float(v) if numeric(v) else None,
                    "seq": e.get("seq", body.get("seq")),
                    "confirmed": e.get("confirmed", True) is not False,
                }
            )
        out.sort(key=lambda e: e["t"])
        cache[k] = out
    return cache[k]


def assigned_of(ctx: Any, s: dict[str, Any]) -> dict[int, tuple[int | None, str]]:
    """sensor_assignment by message identity (built once per stream)."""
    cache = ctx.cache.setdefault("daq_assigned", {})
    k = key_of(s)
    if k not in cache:
        cache[k] = {id(m): (idx, how) for m, idx, how in sensor_assignment(ctx, s)}
    return cache[k]


def emission_times(ctx: Any, s: dict[str, Any]) -> list[float]:
    cache = ctx.cache.setdefault("daq_emission_times", {})
    if key_of(s) not in cache:
        cache[key_of(s)] = [e["t"] for e in emissions_of(ctx, s["device"], s["tag"])]
    return cache[key_of(s)]


def sensor_assignment(ctx: Any, s: dict[str, Any]) -> list[tuple[Message, int | None, str]]:
    """Which emitted sensor message each forwarded message is: by its ts (the message's own), else by its value (the
    latest emission with that value before receipt), else none. (message, emission index, how)."""
    cache = ctx.cache.setdefault("daq_assign", {})
    k = key_of(s)
    if k in cache:
        return cache[k]
    ems = emissions_of(ctx, s["device"], s["tag"])
    by_ts = {round(e["ts_t"] * 1000): i for i, e in enumerate(ems) if e["ts_t"] is not None}
    times = [e["t"] for e in ems]
    tol = float(s["tol"])
    out: list[tuple[Message, int | None, str]] = []
    for m in messages_of(ctx, s):
        b = m.loose if isinstance(m.loose, dict) else {}
        t = parse_ts(b.get("ts"))
        if t is not None and round(t * 1000) in by_ts and ems[by_ts[round(t * 1000)]]["t"] <= m.rx + 1.0:
            out.append((m, by_ts[round(t * 1000)], "ts"))
            continue
        v = b.get("value")
        idx = None
        if numeric(v):
            hi = bisect.bisect_right(times, m.rx + 0.1)
            lo = bisect.bisect_left(times, m.rx - SENSOR_LOOKBACK_S - lag(ctx))
            for i in range(hi - 1, lo - 1, -1):
                if ems[i]["value"] is not None and abs(ems[i]["value"] - float(v)) <= tol:
                    idx = i
                    break
        out.append((m, idx, "value" if idx is not None else "none"))
    cache[k] = out
    return out


def truth_match(
    ctx: Any, stream: dict[str, Any], value: float, t0: float, t1: float
) -> tuple[bool, float | None, float | None]:
    """Did the plant's truth equal `value` (within tolerance) at some sample in [t0, t1]? (ok, truth value, its time):
    the latest matching sample, else the nearest in value (for the evidence)."""
    tol = float(stream["tol"])
    ts, vs = ctx.truth_range(stream["truth"], t0, t1)
    i0, i1 = bisect.bisect_left(ts, t0), bisect.bisect_right(ts, t1)
    nearest = None
    for i in range(i1 - 1, i0 - 1, -1):
        if abs(vs[i] - value) <= tol:
            return True, vs[i], ts[i]
        if nearest is None or abs(vs[i] - value) < abs(vs[nearest] - value):
            nearest = i
    if nearest is None:
        return False, None, None
    return False, vs[nearest], ts[nearest]


def matches_truth(
    ctx: Any, stream: dict[str, Any], value: float, t0: float, t1: float
) -> tuple[bool, float | None, float | None]:
    """Does value equal a truth sample (or a sensor emission) in [t0, t1]? (ok, matched or nearest value, its time)."""
    if stream["source"] != "mqtt":
        return truth_match(ctx, stream, value, t0, t1)
    tol = float(stream["tol"])
    near = [
        (e["t"], e["value"])
        for e in emissions_of(ctx, stream["device"], stream["tag"])
        if t0 <= e["t"] <= t1 and e["value"] is not None
    ]
    hits = [x for x in near if abs(x[1] - value) <= tol]
    if hits:
        return True, hits[-1][1], hits[-1][0]
    if not near:
        return False, None, None
    t, v = min(near, key=lambda x: abs(x[1] - value))
    return False, v, t


def path_delay(ctx: Any, rx: float) -> float:
    """How late the path from the plant to the grader ran around `rx`, as the forwarded sensor messages show it
    (each one's receipt minus when the node emitted it, within PATH_NEAR_S of `rx`), beyond the normal
    PATH_NORMAL_S; 0 without such evidence. A reading received while the path (the collector, the broker, the
    network, the host) held everything back may be that much older: late, not mis-decoded (round 9: a reading
    3.1 s old after a 3.5 s stall under load was judged wrong). A collector that publishes stale values on time
    forwards its sensor messages on time, and gets no such allowance."""
    if "daq_path" not in ctx.cache:
        delays: list[tuple[float, float]] = []
        for s in ctx.lab.data["streams"]:
            if s["source"] != "mqtt":
                continue
            ems = emissions_of(ctx, s["device"], s["tag"])
            for m, idx, _how in sensor_assignment(ctx, s):
                if idx is not None:
                    delays.append((m.rx, m.rx - ems[idx]["t"]))
        delays.sort()
        ctx.cache["daq_path"] = delays
    delays = ctx.cache["daq_path"]
    lo = bisect.bisect_left(delays, (rx - PATH_NEAR_S, float("-inf")))
    hi = bisect.bisect_right(delays, (rx + PATH_NEAR_S, float("inf")))
    worst = max((d for _, d in delays[lo:hi]), default=0.0)
    return max(0.0, worst - PATH_NORMAL_S)


def value_known(ctx: Any, s: dict[str, Any], m: Message, v: float) -> tuple[bool, float | None, float | None]:
    """The values check's own judgement of one polled reading: truth had the value shortly before its receipt
    ("shortly" widened by how late the path ran then, as the forwarded sensor messages show it)."""
    return truth_match(ctx, s, v, m.rx - LOOKBACK_S - lag(ctx) - path_delay(ctx, m.rx), m.rx + 0.1)


def _items_result(
    spec: dict[str, Any], items: dict[str, bool], en: str, zh: str, evidence: dict[str, Any]
) -> CheckResult:
    return by_items(spec["id"], spec["points"], items, en, zh, {**evidence, "items": items})


def _names(keys: list[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n})" if len(keys) > n else "")


# -- passive checks ---------------------------------------------------------------------------------------------------
UNCERTAIN_NEVER = (
    "quality is 'uncertain', but the source did not mark the value uncertain (PLC-2 reported every value Good; "
    "Modbus and the sensor messages carry no quality)"
)


def unjustified_quality(body: Any) -> str | None:
    """R6: `uncertain` only when the source marked the value so. No source of this plant ever does (PLC-2 serves
    every value with StatusCode Good; Modbus registers and sensor messages have no quality), so an `uncertain`
    reading is a claim the source never made. Should a plant's PLC-2 ever mark values Uncertain, this must read its
    status from the truth instead."""
    if isinstance(body, dict) and body.get("quality") == "uncertain":
        return UNCERTAIN_NEVER
    return None


@check("daq.schema")
def schema(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Every message on the telemetry topics is a strict-JSON reading valid against the published schema."""
    blocked = no_readings(ctx, spec)
    if blocked:
        return blocked
    validator = Draft202012Validator(ctx.lab.schema(), format_checker=FormatChecker())
    msgs = ctx.observation.messages
    invalid = []
    for m in msgs:
        if not m.parse_error and validator.is_valid(m.body):
            why = unjustified_quality(m.body)
            if why is None:
                continue
            errors = [why]
        else:
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
    n, bad = len(msgs), len(invalid)
    ev = {
        "messages": n,
        "valid": n - bad,
        "invalid": bad,
        "examples": invalid[:10],
        "oversized": ctx.observation.oversized,
        "dropped_over_cap": ctx.observation.dropped,
    }
    if not bad:
        return passed(spec["id"], spec["points"], f"All {n} readings are valid", f"{n} 筆讀值全部有效", ev)
    first = invalid[0]["errors"][0]
    return failed(
        spec["id"],
        spec["points"],
        f"{bad} of {n} readings are invalid, e.g. on {invalid[0]['topic']}: {first}",
        f"{n} 筆讀值中 {bad} 筆無效，例如 {invalid[0]['topic']}：{first}",
        ev,
    )


@check("daq.coverage")
def coverage(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Every required stream is published, on its own topic <root>/<device>/<tag>."""
    root = str(ctx.params.get("topic_root", "telemetry"))
    items: dict[str, bool] = {}
    per: dict[str, Any] = {}
    for s in ctx.lab.data["streams"]:
        msgs = messages_of(ctx, s)
        want = f"{root}/{s['device']}/{s['tag']}"
        wrong = sorted({m.topic[:200] for m in msgs if m.topic != want})
        items[name_of(s)] = bool(msgs) and not wrong
        per[name_of(s)] = {"messages": len(msgs), "topic": want, "wrong_topics": wrong[:5]}
    missing = [k for k, v in per.items() if not v["messages"]]
    misplaced = [k for k, v in per.items() if v["wrong_topics"]]
    ev = {"streams": per, "missing": missing, "wrong_topic": misplaced, "observer_error": ctx.observation.error}
    if not prep(ctx)["any"]:
        no_readings(ctx, spec)  # names the cause the other checks are not assessable for
        return failed(
            spec["id"],
            spec["points"],
            "No readings of any required stream were published" + _observer_note(ctx, "en"),
            "沒有任何要求資料流的讀值被發布" + _observer_note(ctx, "zh-TW"),
            {**ev, "items": dict.fromkeys(items, False)},
        )
    n, ok = len(items), sum(items.values())
    if ok == n:
        en, zh = f"All {n} required streams published on their topics", f"{n} 個要求的資料流皆於其主題發布"
    else:
        parts_en, parts_zh = [], []
        if missing:
            parts_en.append(f"none received during the observation: {_names(missing)}")
            parts_zh.append(f"觀測期間未收到：{_names(missing)}")
        if misplaced:
            used = "; ".join(f"{k} on {per[k]['wrong_topics'][0]}, not {per[k]['topic']}" for k in misplaced[:3])
            parts_en.append(f"on a wrong topic: {used}")
            used_zh = "；".join(
                f"{k} 發布於 {per[k]['wrong_topics'][0]}，應為 {per[k]['topic']}" for k in misplaced[:3]
            )
            parts_zh.append(f"主題錯誤：{used_zh}")
        en = f"{ok} of {n} streams published on their topics; " + "; ".join(parts_en)
        zh = f"{n} 個資料流中 {ok} 個於其主題發布；" + "；".join(parts_zh)
    return _items_result(spec, items, en, zh, ev)


@check("daq.values")
def values(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Each stream's values equal the plant's truth (polled: a truth sample shortly before receipt; sensors: the
    sensor message forwarded). Per stream: every numeric reading must match; a non-number is the schema's."""
    blocked = no_json(ctx, spec) or too_few_published(ctx, spec, ctx.lab.data["streams"])
    if blocked:
        return blocked
    min_fraction = float(spec.get("params", {}).get("min_fraction", 1.0))
    items: dict[str, bool] = {}
    per: dict[str, Any] = {}
    series: dict[str, Any] = {}
    for s in ctx.lab.data["streams"]:
        k = name_of(s)
        recs = [(m, b) for m, b in readings_of(ctx, s) if numeric(b.get("value"))]
        judged = _values_of_stream(ctx, s, recs)
        matched = sum(1 for j in judged if j["ok"])
        frac = matched / len(judged) if judged else 0.0
        if judged:  # a stream never published is daq.coverage's defect, a non-number daq.schema's: not judged here
            items[k] = frac >= min_fraction
        lookbacks = [j for j in judged if j["ok"] and j["truth_t"] is not None and j["age_s"] > 0.5]
        bad = [j for j in judged if not j["ok"]]
        per[k] = {
            "n": len(judged),
            "matched": matched,
            "tolerance": s["tol"],
            "compared_with": "the sensor message forwarded" if s["source"] == "mqtt" else "truth before receipt",
            "mismatches": sorted(bad, key=lambda j: -(j["error"] or 0.0))[:5],
            "matched_to_earlier_truth": {
                "count": len(lookbacks),
                "max_age_s": round(max((j["age_s"] for j in lookbacks), default=0.0), 3),
                "examples": sorted(lookbacks, key=lambda j: -j["age_s"])[:3],
            },
            "not_published": not messages_of(ctx, s),
        }
        series[k] = [[round(j["rx"], 3), j["value"], j["truth_value"], j["truth_t"]] for j in judged[:400]]
    wrong = [k for k, v in items.items() if not v]
    unjudged = [k for k, v in per.items() if not v["n"]]
    ev = {"min_fraction_per_stream": min_fraction, "streams": per, "series": series, "not_judged": unjudged}
    n_readings = sum(v["n"] for v in per.values())
    if not items:
        ctx.block(
            NO_NUMERIC,
            "no reading of any stream carried a numeric value",
            "沒有任何資料流的讀值帶有數值",
            "daq.schema",
        )
        return ctx.blocked(spec, NO_NUMERIC, ev)
    see = " / ".join(c for c in ("daq.coverage", "daq.schema") if c in {x["id"] for x in ctx.lab.checks})
    note_en = f" ({len(unjudged)} not judged here: no numeric readings, see {see})" if unjudged else ""
    note_zh = f"（{len(unjudged)} 個資料流沒有數值讀值，此處不判定，見 {see}）" if unjudged else ""
    if not wrong:
        return _items_result(
            spec,
            items,
            f"All {n_readings} readings of the {len(items)} streams judged equal ground truth within tolerance{note_en}",
            f"判定的 {len(items)} 個資料流共 {n_readings} 筆讀值皆在容許誤差內與真值一致{note_zh}",
            ev,
        )
    details, details_zh = [], []
    for k in wrong[:3]:
        p = per[k]
        w = p["mismatches"][0]
        details.append(
            f"{k}: {p['n'] - p['matched']} of {p['n']} off, e.g. {w['value']} where truth was {w['truth_value']}"
            + (f" at {iso(w['truth_t'])}" if w["truth_t"] else "")
        )
        details_zh.append(
            f"{k}：{p['n']} 筆中 {p['n'] - p['matched']} 筆不符，例如 {w['value']}，真值為 {w['truth_value']}"
            + (f"（{iso(w['truth_t'])}）" if w["truth_t"] else "")
        )
    en = (
        f"Values differ from ground truth in {len(wrong)} of {len(items)} streams judged: "
        + "; ".join(details)
        + note_en
    )
    zh = f"判定的 {len(items)} 個資料流中 {len(wrong)} 個與真值不符：" + "；".join(details_zh) + note_zh
    return _items_result(spec, items, en, zh, ev)


def _values_of_stream(ctx: Any, s: dict[str, Any], recs: list[tuple[Message, dict[str, Any]]]) -> list[dict[str, Any]]:
    out = []
    if s["source"] == "mqtt":
        assigned = assigned_of(ctx, s)
        ems = emissions_of(ctx, s["device"], s["tag"])
    for m, b in recs:
        v = float(b["value"])
        if s["source"] == "mqtt":
            idx, how = assigned.get(id(m), (None, "none"))
            if how == "ts" and idx is not None and ems[idx]["value"] is not None:
                tv, tt = ems[idx]["value"], ems[idx]["t"]
                ok = abs(tv - v) <= float(s["tol"])
            else:
                ok, tv, tt = matches_truth(ctx, s, v, m.rx - SENSOR_LOOKBACK_S - lag(ctx), m.rx + 0.1)
        else:
            ok, tv, tt = value_known(ctx, s, m, v)
        out.append(
            {
                "rx": m.rx,
                "value": v,
                "ok": ok,
                "truth_value": tv,
                "truth_t": tt,
                "truth_at": iso(tt),
                "age_s": round(m.rx - tt, 3) if tt is not None else None,
                "error": abs(v - tv) if tv is not None else None,
            }
        )
    return out


@check("daq.period")
def period(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Each polled stream's median interval between messages is the candidate's period within the tolerance."""
    if overloaded(ctx):
        return ctx.blocked(spec, GRADER_OVERLOADED, {"health": ctx.health})
    blocked = no_readings(ctx, spec) or too_few_published(ctx, spec, polled(ctx))
    if blocked:
        return blocked
    cause = acq_plan.plan_cause(ctx) if acq_plan.uses_plan(ctx) else None
    if cause:
        return ctx.blocked(spec, cause)
    planned = acq_plan.uses_plan(ctx)
    rel = float(spec.get("params", {}).get("rel_tol", 0.1))
    items: dict[str, bool] = {}
    per: dict[str, Any] = {}
    unpublished, unplanned = [], []
    for s in polled(ctx):
        rx = [m.rx for m in messages_of(ctx, s)]
        want = period_of(ctx, s)
        if not rx:  # never published: daq.coverage's defect alone (the brief), not judged here
            unpublished.append(name_of(s))
            continue
        if want is None:  # published, but the plan gives it no period: daq.plan's defect
            unplanned.append(name_of(s))
            continue
        gaps = [b - a for a, b in zip(rx, rx[1:], strict=False)]
        med = statistics.median(gaps) if len(gaps) >= 2 else None
        items[name_of(s)] = med is not None and abs(med - want) <= rel * want
        per[name_of(s)] = {
            "n": len(rx),
            "period_s": want,
            "median_interval_s": None if med is None else round(med, 3),
            "intervals": [round(g, 3) for g in gaps[:200]],
        }
    ev = {"rel_tol": rel, "streams": per, "not_judged_here": unpublished, "not_in_plan": unplanned}
    if not planned:
        ev["period_s"] = float(ctx.params["period_s"])
    if not items:  # no polled stream published (or planned): judged by daq.coverage (daq.plan), nothing here
        if unplanned and not unpublished:
            ctx.block(
                "streams-not-planned",
                "no published Modbus or OPC UA stream has a period in your acquisition plan",
                "已發布的 Modbus 或 OPC UA 資料流在擷取計畫中皆沒有週期",
                "daq.plan",
            )
            return ctx.blocked(spec, "streams-not-planned", ev)
        return nothing_published(
            ctx, spec, ev, "no Modbus or OPC UA stream was published", "沒有任何 Modbus 或 OPC UA 資料流被發布"
        )
    note_en = f"; not judged here (never published, see daq.coverage): {', '.join(unpublished)}" if unpublished else ""
    note_zh = f"；未於此評量（從未發布，見 daq.coverage）：{', '.join(unpublished)}" if unpublished else ""
    if unplanned:
        note_en += f"; not judged here (no period in your plan, see daq.plan): {', '.join(unplanned)}"
        note_zh += f"；未於此評量（計畫中沒有週期，見 daq.plan）：{', '.join(unplanned)}"
    at_en = "their planned periods" if planned else f"{ev['period_s']} s"
    at_zh = "計畫週期" if planned else f"{ev['period_s']} 秒"
    off = [k for k, v in items.items() if not v]
    if not off:
        meds = [per[k]["median_interval_s"] for k in items]
        return _items_result(
            spec,
            items,
            f"All {len(items)} polled streams at {at_en} ±{rel:.0%} (medians {min(meds)}–{max(meds)} s){note_en}",
            f"{len(items)} 個輪詢資料流皆維持{at_zh} ±{rel:.0%}（中位數 {min(meds)}–{max(meds)} 秒）{note_zh}",
            ev,
        )

    def said(k: str, zh: bool = False) -> str:
        med, n, want = per[k]["median_interval_s"], per[k]["n"], per[k]["period_s"]
        if med is None:
            return f"{k}：僅 {n} 則訊息，無法計算間隔" if zh else f"{k}: only {n} message(s), no interval to measure"
        if zh:
            return f"{k}：{n} 則訊息的間隔中位數 {med} 秒（應為 {want:g} 秒）"
        return f"{k}: median {med} s over {n} messages (should be {want:g} s)"

    shown = "; ".join(said(k) for k in off[:3])
    shown_zh = "；".join(said(k, True) for k in off[:3])
    return _items_result(
        spec,
        items,
        f"{len(items) - len(off)} of {len(items)} polled streams at {at_en} ±{rel:.0%}; off: {shown}{note_en}",
        f"{len(items)} 個輪詢資料流中 {len(items) - len(off)} 個維持{at_zh} ±{rel:.0%}；不符：{shown_zh}{note_zh}",
        ev,
    )


@check("daq.completeness")
def completeness(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """No missing samples: polled streams counted from the collector's first publication in the window (its real
    start, not the host's), sensor messages each forwarded once. Messages count whatever their values."""
    if overloaded(ctx):
        return ctx.blocked(spec, GRADER_OVERLOADED, {"health": ctx.health})
    blocked = no_json(ctx, spec) or too_few_published(ctx, spec, ctx.lab.data["streams"])
    if blocked:
        return blocked
    cause = acq_plan.plan_cause(ctx) if acq_plan.uses_plan(ctx) else None
    if cause:
        return ctx.blocked(spec, cause)
    p = spec.get("params", {})
    w0, w1 = ctx.observation.window
    first = prep(ctx)["first_rx"]
    allow = lag(ctx)
    ev: dict[str, Any] = {
        "window": [w0, w1],
        "first_publication": first,
        "first_publication_after_window_start_s": round(first - w0, 3),
        "grader_lag_allowance_s": allow,
    }
    observe_s = float(ctx.params.get("observe_s", w1 - w0))
    if w1 - first < observe_s / 2:
        return failed(
            spec["id"],
            spec["points"],
            f"The collector's first reading arrived {first - w0:.1f} s into the {w1 - w0:.0f} s window: less than "
            "half of the window shows it working",
            f"擷取程式的第一筆讀值在 {w1 - w0:.0f} 秒觀測窗開始後 {first - w0:.1f} 秒才到達：不足半個觀測窗",
            ev,
        )
    per: dict[str, Any] = {}
    fractions: list[float] = []
    all_ok = True
    unpublished, unplanned = [], []
    for s in ctx.lab.data["streams"]:
        if not messages_of(ctx, s):  # never published: daq.coverage's defect alone (the brief), not judged here
            unpublished.append(name_of(s))
            continue
        want = period_of(ctx, s) if s["source"] != "mqtt" else None
        if s["source"] != "mqtt" and want is None:  # no period in the plan: daq.plan's defect, not judged here
            unplanned.append(name_of(s))
            continue
        if want is not None:
            frac, ok, detail = _polled_completeness(ctx, s, want, first, w1, allow, p)
        else:
            frac, ok, detail = _sensor_completeness(ctx, s, first, w1, allow, p)
        per[name_of(s)] = {**detail, "fraction": round(frac, 4), "ok": ok}
        fractions.append(frac)
        all_ok = all_ok and ok
    ev["not_judged_here"] = unpublished
    ev["not_in_plan"] = unplanned
    if not fractions:
        return nothing_published(ctx, spec, ev, "no required stream was published", "沒有任何要求的資料流被發布")
    overall = sum(fractions) / len(fractions)
    ev["streams"] = per
    ev["fraction"] = round(overall, 4)
    bad = [k for k, v in per.items() if not v["ok"]]
    note_en = f"; not judged here (never published, see daq.coverage): {', '.join(unpublished)}" if unpublished else ""
    note_zh = f"；未於此評量（從未發布，見 daq.coverage）：{', '.join(unpublished)}" if unpublished else ""
    if unplanned:
        note_en += f"; not judged here (no period in your plan, see daq.plan): {', '.join(unplanned)}"
        note_zh += f"；未於此評量（計畫中沒有週期，見 daq.plan）：{', '.join(unplanned)}"
    if all_ok:
        en = f"All {len(per)} streams complete ({overall:.1%} of expected samples and sensor messages, once each)"
        zh = f"{len(per)} 個資料流皆完整（預期樣本與感測訊息之 {overall:.1%}，各一次）"
    else:
        shown = "; ".join(f"{k}: {per[k]['summary']}" for k in bad[:3])
        en = f"{len(per) - len(bad)} of {len(per)} streams complete ({overall:.1%} overall); {shown}"
        shown_zh = "；".join(f"{k}：{per[k]['summary_zh']}" for k in bad[:3])
        zh = f"{len(per)} 個資料流中 {len(per) - len(bad)} 個完整（整體 {overall:.1%}）；{shown_zh}"
    en, zh = en + note_en, zh + note_zh
    return CheckResult(
        spec["id"],
        PASS if all_ok else FAIL,
        spec["points"] if all_ok else 0.0,
        spec["points"],
        {"en": en, "zh-TW": zh},
        ev,
        fraction=overall,
    )


def _polled_completeness(
    ctx: Any, s: dict[str, Any], want: float, first: float, w1: float, allow: float, p: dict[str, Any]
) -> tuple[float, bool, dict[str, Any]]:
    rx = [m.rx for m in messages_of(ctx, s) if first <= m.rx <= w1]
    if not rx:
        expected0 = int((w1 - first - want / 2) // want) + 1
        return 0.0, False, {"received": 0, "expected": expected0, "summary": "not published", "summary_zh": "未發布"}
    edges = [rx[0] - first, w1 - rx[-1]]  # a stream that starts late or stops early has a gap at the edge
    gaps = [b - a for a, b in zip(rx, rx[1:], strict=False)] + edges
    max_gap = max(gaps)
    # The polling slots of this stream from its first sample on, t_k = rx0 + k * period, counted while the half
    # period around a slot lies inside the window (a sample may land up to half a period either side of its slot);
    # received: the samples within those slots. Slots, not intervals: 30 polls in 29.1 s are 30 samples, so a
    # stream missing 2 of 30 (6.7 %) is not "complete" (it once passed as 28 of 29.2).
    # The slots follow the stream's own period when it is near the required one (within 12 %: all that daq.period's
    # ±10 % accepts, with room for jitter; a collector polling every 1.05 s for 1 s is on time there, and its samples
    # are not "missing" here: one defect, one check); otherwise the required period (the plan's, or period_s).
    diffs = sorted(b - a for a, b in zip(rx, rx[1:], strict=False))
    median = diffs[len(diffs) // 2] if diffs else want
    slot = median if abs(median - want) <= float(p.get("slot_tolerance", 0.12)) * want else want
    expected = int((w1 - rx[0] - slot / 2) // slot) + 1
    # A sample counts up to the last judged slot's end, and the last slot's sample also when it came late (up to
    # LATE_LAST_SLOT of a period more: a loaded host delayed one poll of a reference collector by 1.4 s at a 2 s
    # period, right at the window's end, and 14 of 15 failed it). Less than half a period, so a collector that
    # skipped a poll never makes it up with its next, on-time sample.
    received = min(expected, sum(1 for t in rx if t < rx[0] + (expected - 0.5 + LATE_LAST_SLOT) * slot))
    frac = min(1.0, received / expected) if expected > 0 else 1.0
    min_frac = float(p.get("polled_min_fraction", 0.95))
    gap_limit = float(p.get("max_gap_periods", 2.5)) * want + allow
    ok = frac >= min_frac - 1e-9 and max_gap <= gap_limit
    summary = f"{received} of {expected} polling slots sampled, longest gap {max_gap:.1f} s"
    summary_zh = f"{expected} 個輪詢時槽中取樣 {received} 個，最長空缺 {max_gap:.1f} 秒"
    return (
        frac,
        ok,
        {
            "received": received,
            "expected": expected,
            "slot_s": round(slot, 3),
            "max_gap_s": round(max_gap, 3),
            "gap_limit_s": round(gap_limit, 3),
            "summary": summary,
            "summary_zh": summary_zh,
        },
    )


def _sensor_completeness(
    ctx: Any, s: dict[str, Any], first: float, w1: float, allow: float, p: dict[str, Any]
) -> tuple[float, bool, dict[str, Any]]:
    ems = emissions_of(ctx, s["device"], s["tag"])
    in_window = [i for i, e in enumerate(ems) if first <= e["t"] <= w1 - SENSOR_MARGIN_S - allow]
    counts: dict[int, int] = defaultdict(int)
    for _, idx, _how in sensor_assignment(ctx, s):
        if idx is not None:
            counts[idx] += 1
    # An unconfirmed emission (the node's publish was cut before the broker's PUBACK: a broker or node restart) may
    # never have reached the broker: not forwarding it is no loss, forwarding it is right, and forwarding it more
    # than once may be the broker's QoS 1 redelivery across that same interruption. It counts only when forwarded.
    unsure = [i for i in in_window if not ems[i]["confirmed"]]
    judged = [i for i in in_window if ems[i]["confirmed"] or counts[i] > 0]
    once = [i for i in judged if counts[i] == 1 or (counts[i] > 1 and not ems[i]["confirmed"])]
    missing = [i for i in judged if counts[i] == 0]
    dup = [i for i in judged if counts[i] > 1 and ems[i]["confirmed"]]
    unconfirmed = {
        "emitted": len(unsure),
        "forwarded": sum(1 for i in unsure if counts[i] > 0),
        "examples": [{"seq": ems[i]["seq"], "ts": ems[i]["ts"], "forwarded": counts[i]} for i in unsure[:5]],
        "rule": "published by the node but never acknowledged by the broker: counted only when forwarded",
    }
    if not judged:
        return (
            1.0,
            True,
            {
                "emitted": 0,
                "unconfirmed": unconfirmed,
                "summary": "no sensor message emitted in the window",
                "summary_zh": "觀測窗內沒有感測訊息",
            },
        )
    frac = len(once) / len(judged)
    ok = not dup and frac >= float(p.get("sensor_min_fraction", 0.995))
    parts = [f"{len(once)} of {len(judged)} forwarded once"]
    parts_zh = [f"{len(judged)} 則中 {len(once)} 則恰轉送一次"]
    if missing:
        parts.append(f"{len(missing)} missing")
        parts_zh.append(f"遺漏 {len(missing)} 則")
    if dup:
        parts.append(f"{len(dup)} forwarded more than once")
        parts_zh.append(f"{len(dup)} 則轉送超過一次")
    if unsure and unconfirmed["forwarded"] < len(unsure):
        n_unsure = len(unsure) - unconfirmed["forwarded"]
        parts.append(f"{n_unsure} unacknowledged by the broker and not forwarded: not counted")
        parts_zh.append(f"{n_unsure} 則 Broker 未確認且未轉送：不計")
    return (
        frac,
        ok,
        {
            "emitted": len(judged),
            "forwarded_once": len(once),
            "missing": len(missing),
            "duplicated": len(dup),
            "missing_examples": [{"seq": ems[i]["seq"], "ts": ems[i]["ts"]} for i in missing[:5]],
            "duplicate_examples": [{"seq": ems[i]["seq"], "ts": ems[i]["ts"], "times": counts[i]} for i in dup[:5]],
            "unconfirmed": unconfirmed,
            "summary": ", ".join(parts),
            "summary_zh": "，".join(parts_zh),
        },
    )


@check("daq.timestamps")
def timestamps(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Each reading's ts is when its value was measured (within max_error_s), never in the future, never going back.
    Modbus: the read (the plant had the value then, or the reading was published right after it); OPC UA: the
    value's SourceTimestamp (truth changed to that value then); MQTT: the forwarded message's own ts. Readings whose
    ts is not in the required format are the schema check's and are not judged here."""
    if overloaded(ctx):
        return ctx.blocked(spec, GRADER_OVERLOADED, {"health": ctx.health})
    blocked = no_json(ctx, spec) or too_few_published(ctx, spec, ctx.lab.data["streams"])
    if blocked:
        return blocked
    max_err = float(spec.get("params", {}).get("max_error_s", 0.5))
    scans = ctx.truth("plc1.scan_time_ms")[1]
    image_age = (max(scans) / 1000.0) if scans else 0.0
    items: dict[str, bool] = {}
    per: dict[str, Any] = {}
    unjudged = 0
    found: dict[str, tuple[list[Any], list[dict[str, Any]]]] = {}
    # A Modbus reading whose value did not change tells nothing about its ts on its own; one read of a device gives
    # all its tags one ts, so a ts the plant disproves for one tag (its value was not the plant's then) is as wrong
    # for every tag published with that same ts from that device (a systematic offset shows on slow streams too).
    disproved: dict[tuple[str, str], str] = {}
    for s in ctx.lab.data["streams"]:
        recs = readings_of(ctx, s)
        judged = [(m, b, well_formed_ts(b.get("ts"))) for m, b in recs]
        excluded = sum(1 for _, _, t in judged if t is None)
        unjudged += excluded
        judged = [(m, b, t) for m, b, t in judged if t is not None]
        k = name_of(s)
        if not recs:  # never published: daq.coverage's defect, not judged here
            per[k] = {"n": 0, "judged": 0, "not_published": True}
            continue
        if not judged:
            per[k] = {"n": len(recs), "judged": 0, "not_in_required_format": excluded}
            continue  # every ts of this stream is malformed: the schema check's, not judged here
        problems = []
        last = None
        for m, b, t in judged:
            why = _ts_problem(ctx, s, m, b, t, max_err, image_age)
            if why is None and last is not None and t < last - 1e-6:
                why = {"problem": f"goes backwards from {iso(last)}"}
            last = t if last is None else max(last, t)
            if why:
                problems.append({"ts": b.get("ts"), "rx": round(m.rx, 3), "received_at": iso(m.rx), **why})
                if s["source"] == "modbus" and "plant did not have" in str(why.get("problem", "")):
                    disproved.setdefault((str(s["device"]), str(b.get("ts"))), str(s["tag"]))
        found[k] = (judged, problems)
        per[k] = {"n": len(recs), "excluded": excluded}
    for s in ctx.lab.data["streams"]:
        k = name_of(s)
        if k not in found:
            continue
        judged, problems = found[k]
        seen = {p["ts"] for p in problems}
        if s["source"] == "modbus":
            for m, b, _t in judged:
                other = disproved.get((str(s["device"]), str(b.get("ts"))))
                if other and other != s["tag"] and b.get("ts") not in seen:
                    problems.append(
                        {
                            "ts": b.get("ts"),
                            "rx": round(m.rx, 3),
                            "received_at": iso(m.rx),
                            "problem": f"the same ts as the {s['device']}/{other} reading published with it, which "
                            "the plant shows is not the time of the read",
                        }
                    )
        excluded = per[k]["excluded"]
        recs_n = per[k]["n"]
        items[k] = not problems
        per[k] = {
            "n": recs_n,
            "judged": len(judged),
            "accurate": len(judged) - len(problems),
            "not_in_required_format": excluded,
            "problems": problems[:5],
            "not_published": False,
        }
    ev = {"max_error_s": max_err, "grader_lag_allowance_s": lag(ctx), "streams": per, "not_judged": unjudged}
    if not items:
        ctx.block(
            TS_FORMAT_CAUSE,
            "no timestamp is RFC 3339 with a UTC offset and milliseconds",
            "沒有任何時間戳記為含 UTC 時差與毫秒之 RFC 3339",
            "daq.schema",
        )
        return ctx.blocked(spec, TS_FORMAT_CAUSE, ev)
    wrong = [k for k, v in items.items() if not v]
    n_judged = sum(v.get("judged", 0) for v in per.values())
    note_en = f" ({unjudged} readings not in the required format were left to daq.schema)" if unjudged else ""
    note_zh = f"（{unjudged} 筆格式不符之讀值由 daq.schema 判定）" if unjudged else ""
    if not wrong:
        return _items_result(
            spec,
            items,
            f"All {n_judged} timestamps of {len(items)} streams are within {max_err} s of the measurement" + note_en,
            f"{len(items)} 個資料流共 {n_judged} 個時間戳記皆在量測時間 {max_err} 秒內" + note_zh,
            ev,
        )
    shown = []
    for k in wrong[:3]:
        p = per[k]
        if p.get("not_published"):
            shown.append(f"{k}: not published")
        else:
            shown.append(
                f"{k}: {p['judged'] - p['accurate']} of {p['judged']} wrong, e.g. ts {p['problems'][0]['ts']}: "
                f"{p['problems'][0]['problem']}"
            )
    return _items_result(
        spec,
        items,
        f"Timestamps are wrong in {len(wrong)} of {len(items)} streams: " + "; ".join(shown) + note_en,
        f"{len(items)} 個資料流中 {len(wrong)} 個時間戳記有誤：" + "；".join(shown) + note_zh,
        ev,
    )


def _hours(diff_s: float) -> str:
    """A whole number of hours off says what the mistake probably is: a clock read in one zone, labelled another."""
    h = round(diff_s / 3600)
    if h and abs(diff_s - 3600 * h) < 2.0:
        return f" (= {h} h: local time labelled with the wrong UTC offset?)"
    return ""


def _ts_problem(
    ctx: Any, s: dict[str, Any], m: Message, b: dict[str, Any], t: float, max_err: float, image_age: float
) -> dict[str, Any] | None:
    """None when the timestamp is right, else what is wrong with it (in words, with the times compared)."""
    if t > m.rx + max_err:
        return {"problem": f"in the future: {t - m.rx:.3f} s after the grader received it{_hours(t - m.rx)}"}
    v = b.get("value")
    if s["source"] == "mqtt":
        return _sensor_ts_problem(ctx, s, m, t, max_err)
    known, _tv, _tt = value_known(ctx, s, m, float(v)) if numeric(v) else (False, None, None)
    if s["source"] == "opcua":
        if not known:
            return None  # a wrong value is the values check's; its ts is only checked for plausibility
        ok, change_t = _change_near(ctx, s, float(v), t, max_err)
        if ok or _held_since_before_window(ctx, s, float(v), t, m.rx, max_err):
            return None
        change_t = change_t or _last_change(ctx, s, float(v), m.rx)
        where = f"; it last changed to it at {iso(change_t)} ({t - change_t:+.3f} s from ts)" if change_t else ""
        return {
            "problem": f"not the value's SourceTimestamp: the value did not change to {v} within ±{max_err} s{where}"
        }
    # modbus: the time of the read. Right when the reading was published right after it, or the plant had the value
    # then (PLC-1 serves its last scan's image: its scan time is allowed on top)
    if m.rx - (max_err + PUBLISH_LATENCY_S + lag(ctx)) <= t:
        return None
    if known:
        age = image_age if s["device"] == "plc1" else 0.0
        if truth_match(ctx, s, float(v), t - max_err - age, t + max_err)[0]:
            return None
    return {
        "problem": f"{m.rx - t:.3f} s before the grader received it{_hours(m.rx - t)}"
        + (" and the plant did not have this value then" if known else "")
    }


def _change_near(ctx: Any, s: dict[str, Any], v: float, t: float, max_err: float) -> tuple[bool, float | None]:
    """Did the truth change to v within ±max_err of t? (ok, the latest change to v found before t + max_err)."""
    tol = float(s["tol"])
    ts, vs = ctx.truth_range(s["truth"], t - max_err - 1.0, t + max_err)
    lo, hi = bisect.bisect_left(ts, t - max_err - 1.0), bisect.bisect_right(ts, t + max_err)
    latest = None
    for i in range(max(lo, 1), hi):
        if abs(vs[i] - v) <= tol and abs(vs[i - 1] - v) > tol:
            latest = ts[i]
            if abs(ts[i] - t) <= max_err:
                return True, ts[i]
    return False, latest


def _held_since_before_window(ctx: Any, s: dict[str, Any], v: float, t: float, rx: float, max_err: float) -> bool:
    """A SourceTimestamp from before the window for a value the plant held from then until the reading: what PLC-2
    serves after a restart while the value stands still (it stamps the value when it acquires it). A collector's own
    read times are never before the window."""
    w0 = ctx.observation.window[0]
    if t > w0 - max_err:
        return False
    ts, vs = ctx.truth(s["truth"])
    i0, i1 = bisect.bisect_left(ts, max(t + max_err, ts[0] if ts else t)), bisect.bisect_right(ts, rx)
    tol = float(s["tol"])
    return i1 > i0 and all(abs(vs[i] - v) <= tol for i in range(i0, i1))


def _last_change(ctx: Any, s: dict[str, Any], v: float, rx: float) -> float | None:
    """For the evidence: when the truth last changed to v before rx (within the window's truth)."""
    ts, vs = ctx.truth(s["truth"])
    tol = float(s["tol"])
    for i in range(bisect.bisect_right(ts, rx) - 1, 0, -1):
        if abs(vs[i] - v) <= tol and abs(vs[i - 1] - v) > tol:
            return ts[i]
    return None


def _sensor_ts_problem(ctx: Any, s: dict[str, Any], m: Message, t: float, max_err: float) -> dict[str, Any] | None:
    ems = emissions_of(ctx, s["device"], s["tag"])
    idx, _how = assigned_of(ctx, s).get(id(m), (None, "none"))
    if idx is None:  # neither its ts nor its value is a sensor message's: the latest message before receipt (or,
        # when that one is unconfirmed and may never have arrived, any back to the latest confirmed one)
        i = bisect.bisect_right(emission_times(ctx, s), m.rx + 0.1) - 1
        if i < 0 or ems[i]["t"] < m.rx - SENSOR_LOOKBACK_S - lag(ctx):
            return {"problem": "no sensor message was emitted shortly before it was received"}
        idx = i
        while not ems[idx]["confirmed"] and abs(t - ems[idx]["t"]) > max_err and idx > 0:
            idx -= 1
    e = ems[idx]
    if abs(t - e["t"]) <= max_err:
        return None
    return {"problem": f"the sensor message (seq {e['seq']}) has ts {e['ts']}: {t - e['t']:+.3f} s off"}


@check("daq.units")
def units(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    blocked = no_json(ctx, spec)
    if blocked:
        return blocked
    n = good = 0
    wrong: dict[str, Any] = {}
    for s in ctx.lab.data["streams"]:
        for _, b in readings_of(ctx, s):
            n += 1
            if b.get("unit") == s["unit"]:
                good += 1
            else:
                wrong[name_of(s)] = {"expected": s["unit"], "got": repr(b.get("unit"))[:40]}
    ev = {"readings": n, "right_unit": good, "wrong": wrong}
    if n and good == n:
        return passed(
            spec["id"], spec["points"], f"All {n} readings carry the documented unit", f"{n} 筆讀值單位皆正確", ev
        )
    if not n:
        return failed(spec["id"], spec["points"], "No reading is a JSON object", "沒有任何讀值為 JSON 物件", ev)
    shown = "; ".join(f"{k}: {v['got']} instead of {v['expected']!r}" for k, v in list(wrong.items())[:3])
    return failed(
        spec["id"],
        spec["points"],
        f"{n - good} of {n} readings carry a wrong unit: {shown}",
        f"{n} 筆讀值中 {n - good} 筆單位錯誤：{shown}",
        ev,
    )


STORED_FIELDS = ("device", "tag", "value", "unit", "quality", "ts", "source")  # the brief's CREATE TABLE


@check("daq.storage")
def storage(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Every published reading is stored identically, every field of it, in the readings table."""
    blocked = no_json(ctx, spec)
    if blocked:
        return blocked
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
        present = {str(r[1]) for r in db.execute("PRAGMA table_info(readings)").fetchall()}
        lacking = [c for c in STORED_FIELDS if c not in present]
        rows = (
            []
            if lacking or not present
            else db.execute(f"SELECT {', '.join(STORED_FIELDS)} FROM readings LIMIT 500000").fetchall()
        )
        db.close()
    except sqlite3.Error as exc:
        ev["error"] = str(exc)
        return failed(spec["id"], spec["points"], f"Database unreadable: {exc}", f"無法讀取資料庫：{exc}", ev)
    ev["compared_fields"] = list(STORED_FIELDS)
    if not present:
        return failed(
            spec["id"], spec["points"], "The database has no table readings", "資料庫沒有 readings 資料表", ev
        )
    if lacking:  # the brief's CREATE TABLE: every field of a reading is stored as published
        ev["columns"] = sorted(present)
        return failed(
            spec["id"],
            spec["points"],
            f"The readings table lacks the column(s) {', '.join(lacking)} of the brief's CREATE TABLE: the readings "
            "are not stored as published",
            f"readings 資料表缺少題目 CREATE TABLE 所列的欄位 {', '.join(lacking)}：讀值未依發布內容儲存",
            ev,
        )

    def key(*fields: Any) -> tuple[Any, ...]:
        return tuple(
            (round(float(v), 9) if numeric(v) else repr(v)) if name == "value" else str(v)
            for name, v in zip(STORED_FIELDS, fields, strict=True)
        )

    stored = {key(*r) for r in rows}
    published = [
        key(*(b.get(f) for f in STORED_FIELDS)) for m in ctx.observation.messages if isinstance((b := m.body), dict)
    ]
    if not published:
        return failed(spec["id"], spec["points"], "No valid reading was published", "沒有有效的已發布讀值", ev)
    found = sum(1 for k in published if k in stored)
    missing = [k for k in published if k not in stored][:10]
    ev.update(
        {"rows": len(rows), "published": len(published), "stored_of_published": found, "missing_examples": missing}
    )
    frac = found / len(published)
    threshold = float(p.get("min_fraction", 0.99))
    en = f"{found} of {len(published)} published readings are stored identically, all 7 fields ({len(rows)} rows)"
    zh = f"{len(published)} 筆已發布讀值中 {found} 筆的 7 個欄位皆完全相同地儲存（共 {len(rows)} 列）"
    ok = frac >= threshold
    return CheckResult(
        spec["id"],
        PASS if ok else FAIL,
        spec["points"] if ok else 0.0,
        spec["points"],
        {"en": en, "zh-TW": zh},
        ev,
        fraction=frac,
    )


def counted_s(ctx: Any, fallback: float) -> float:
    """Seconds between the two readings of FW-1's counters (the statuses' own plant times), else `fallback`."""
    t0, t1 = ctx.status_start.get("time"), ctx.status_end.get("time")
    return (
        float(t1) - float(t0) if isinstance(t0, int | float) and isinstance(t1, int | float) and t1 > t0 else fallback
    )


def _planned_requests(ctx: Any, seconds: float) -> tuple[float, list[dict[str, Any]]] | None:
    """(requests the plan's PLC-1 reads make in `seconds`, per read) at the periods the collector really kept (each
    read's streams' median interval; the planned period when none can be measured): a collector that polls faster
    than planned is daq.period's defect, not counted again here. None without a usable plan (daq.plan's)."""
    if not acq_plan.uses_plan(ctx):
        return None
    plan, _, _ = acq_plan.load_plan(ctx)
    if plan is None:
        return None
    streams = {name_of(s): s for s in ctx.lab.data["streams"]}
    expected, reads = 0.0, []
    for r in acq_plan.plc1_reads(plan):
        medians = []
        for tag in r["streams"]:
            s = streams.get(f"plc1/{tag}")
            rx = [m.rx for m in messages_of(ctx, s)] if s else []
            if len(rx) >= 3:
                medians.append(statistics.median(b - a for a, b in zip(rx, rx[1:], strict=False)))
        period = min(medians) if medians else float(r["period_s"])
        expected += seconds / period
        reads.append(
            {"address": r["address"], "count": r["count"], "planned_s": r["period_s"], "kept_s": round(period, 3)}
        )
    return expected, reads


def requests_from_others(ctx: Any, target: str, allowed: tuple[str | None, ...]) -> dict[str, int]:
    """Requests FW-1 forwarded to `target` during grading from each source not in `allowed` (those with any)."""
    start, end = ctx.status_start["fw1"]["requests_by_source"], ctx.status_end["fw1"]["requests_by_source"]
    counts = {src: c.get(target, 0) - start.get(src, {}).get(target, 0) for src, c in end.items() if src not in allowed}
    return {src: n for src, n in counts.items() if n > 0}


@check("daq.production_impact")
def production_impact(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """PLC-1's total load stayed within its budget and its scan time unaffected, while the collector really acquired
    from it (requests from the workstation address and PLC-1 readings published): no work, no "no harm" points."""
    blocked = no_readings(ctx, spec)
    if blocked:
        return blocked
    budget = float(ctx.params["request_budget_rps"])
    base = float(ctx.plant_info["params"]["devices"]["plc1"]["base_scan_ms"])
    t_load, load = ctx.truth("plc1.load_rps")
    t_scan, scan = ctx.truth("plc1.scan_time_ms")
    # Judged from the first sample whose load window lies wholly after the solution started: the load before it
    # (a setup step, an earlier attempt still draining) is not this solution's.
    load_window = float(ctx.plant_info["params"]["devices"]["plc1"].get("load_window_s", 5.0))
    started = ctx.solution_run.get("started_at")
    since = float(started) + load_window if started else ctx.observation.window[0] - 20
    judged = [(t, v) for t, v in zip(t_load, load, strict=False) if t >= since]
    judged_scan = [(t, v) for t, v in zip(t_scan, scan, strict=False) if t >= since]
    peak = max(judged, key=lambda p: p[1]) if judged else None
    max_load = peak[1] if peak else None
    max_scan = max(v for _, v in judged_scan) if judged_scan else None
    ws = ctx.sheet["network"]["workstation"]
    before = ctx.status_start["fw1"]["requests_by_source"].get(ws, {}).get("plc1", 0)
    after = ctx.status_end["fw1"]["requests_by_source"].get(ws, {}).get("plc1", 0)
    w0, w1 = ctx.observation.window
    # PLC-1's readings published: messages on its streams' topics, whatever their format (a format defect is
    # daq.schema's; the acquisition and its load on PLC-1 are real either way)
    plc1_readings = sum(len(messages_of(ctx, s)) for s in ctx.lab.data["streams"] if s["device"] == "plc1")
    ev = {
        "budget_rps": budget,
        "max_total_load_rps": max_load,
        "base_scan_ms": base,
        "max_scan_ms": max_scan,
        "workstation": ws,
        "workstation_requests_to_plc1": after - before,
        # over the time between the two counter readings (not the window's, which is shorter)
        "workstation_rps": round((after - before) / max(counted_s(ctx, w1 - w0), 1e-9), 2),
        "plc1_readings_published": plc1_readings,
        # every 10th sample (the peak is in `peak` and `max_total_load_rps`)
        "load_series": [[round(t, 1), v] for t, v in zip(t_load[::10], load[::10], strict=False)],
        "judged_from": round(since, 3),
        "peak_at": round(peak[0], 3) if peak else None,
        "excluded_before_start": sum(1 for t in t_load if t < since),
    }
    others = requests_from_others(ctx, "plc1", (ws, ctx.sheet["network"].get("hmi")))
    ev["other_sources_to_plc1"] = others
    # EM-1 too: the brief binds every Modbus connection to the workstation (round 9: an unbound EM-1 client passed)
    to_em1 = requests_from_others(ctx, "em1", (ws, ctx.sheet["network"].get("hmi")))
    ev["other_sources_to_em1"] = to_em1
    hmi = ctx.sheet["network"].get("hmi")
    ev["hmi_requests_to_plc1"] = ctx.status_end["fw1"]["requests_by_source"].get(hmi, {}).get(
        "plc1", 0
    ) - ctx.status_start["fw1"]["requests_by_source"].get(hmi, {}).get("plc1", 0)
    if after - before <= 0 and plc1_readings:
        # The readings came, but not from the workstation address the brief requires (an unbound client): the
        # work happened, its source is wrong. Said as observed, not as "no acquisition".
        seen = ", ".join(f"{src} ({n} requests)" for src, n in others.items()) or "no other source FW-1 recorded"
        return failed(
            spec["id"],
            spec["points"],
            f"{plc1_readings} PLC-1 readings were published but no request came from the workstation address {ws} "
            f"(requests came from: {seen}); bind your Modbus client to {ws}",
            f"發布了 {plc1_readings} 筆 PLC-1 讀值，但沒有任何請求來自工作站位址 {ws}（請求來源：{seen}）；"
            f"請將 Modbus 用戶端綁定到 {ws}",
            ev,
        )
    if after - before <= 0 or not plc1_readings:
        why_en = (
            f"no Modbus request from the workstation address {ws} reached PLC-1"
            if after - before <= 0
            else "no PLC-1 reading was published"
        )
        why_zh = f"工作站位址 {ws} 沒有任何 Modbus 請求到達 PLC-1" if after - before <= 0 else "沒有發布任何 PLC-1 讀值"
        return failed(
            spec["id"],
            spec["points"],
            f"No acquisition from PLC-1 during the window ({why_en}): there was no work whose impact could be judged",
            f"觀測期間未自 PLC-1 擷取（{why_zh}）：沒有可評估影響的擷取工作",
            ev,
        )
    if others or to_em1:
        # Some of the acquisition came from the workstation, some from elsewhere (a connection opened without its
        # source address): the load is no longer attributable, as the brief's binding rule exists to ensure.
        seen = "; ".join(
            f"{dev}: " + ", ".join(f"{src} ({n} requests)" for src, n in sorted(got.items()))
            for dev, got in (("PLC-1", others), ("EM-1", to_em1))
            if got
        )
        n = sum(others.values()) + sum(to_em1.values())
        return failed(
            spec["id"],
            spec["points"],
            f"While acquiring, {n} Modbus requests came from addresses other than your workstation {ws} and the HMI "
            f"({seen}; {after - before} to PLC-1 from {ws}): bind every Modbus connection, reconnections included, "
            "to your workstation address",
            f"擷取期間有 {n} 個 Modbus 請求來自工作站 {ws} 與 HMI 以外的位址（{seen}；{after - before} 個自 {ws} "
            "送往 PLC-1）：每一條 Modbus 連線（含重新連線）都須綁定工作站位址",
            ev,
        )
    sent = after - before
    planned = _planned_requests(ctx, counted_s(ctx, w1 - w0))
    unplanned = planned is None and acq_plan.uses_plan(ctx)
    if unplanned:
        ev["plan_comparison"] = "not made: no usable acquisition plan (daq.plan); PLC-1's load judged alone"
    if planned is not None:
        expected, reads = planned
        allowed = float(spec.get("params", {}).get("plan_request_factor", 1.2)) * expected + 2
        ev["plan_reads"] = reads
        ev["plan_requests_expected"] = round(expected, 1)
        ev["plan_requests_allowed"] = round(allowed, 1)
        if sent > allowed:
            return failed(
                spec["id"],
                spec["points"],
                f"Your workstation sent {sent} requests to PLC-1 while your plan's {len(reads)} PLC-1 read(s), at the "
                f"periods your collector kept, make about {expected:.0f} (at most {allowed:.0f} allowed): the "
                "collector issues more requests than its plan (e.g. one per register instead of a block read)",
                f"您的工作站向 PLC-1 送出 {sent} 個請求，而計畫中的 {len(reads)} 個 PLC-1 讀取以擷取程式實際週期約為 "
                f"{expected:.0f} 個（上限 {allowed:.0f}）：擷取程式送出的請求多於計畫（例如逐一讀取暫存器而非區塊讀取）",
                ev,
            )
    ok = max_load is not None and max_load <= budget and max_scan is not None and max_scan <= base * 1.25
    if ok:
        return passed(
            spec["id"],
            spec["points"],
            f"While acquiring ({after - before} requests from {ws}), PLC-1's load peaked at {max_load:.1f} req/s "
            f"(budget {budget:.0f}) and its scan time at {max_scan:.0f} ms (base {base:.0f})"
            + ("; not compared with a plan (no usable acquisition plan, see daq.plan)" if unplanned else ""),
            f"擷取期間（{ws} 共 {after - before} 個請求）PLC-1 負載峰值 {max_load:.1f} 請求/秒（預算 {budget:.0f}），"
            f"掃描時間最高 {max_scan:.0f} 毫秒（基準 {base:.0f}）"
            + ("；未與計畫比對（沒有可用的擷取計畫，見 daq.plan）" if unplanned else ""),
            ev,
        )
    if max_load is None or max_scan is None:
        return not_assessable(
            spec["id"],
            spec["points"],
            "plc1-load-unrecorded",
            "Not assessable: the plant recorded no PLC-1 load after the solution started (the grader's side)",
            "無法評量：解答啟動後工廠未記錄 PLC-1 負載（評分端問題）",
            ev,
        )
    ref = float(started) if started else w0
    at = peak[0] - ref if peak else 0.0
    when = (
        (f"{at:.0f} s after your command started" if started else f"{at:+.0f} s from the window's start")
        if peak
        else "?"
    )
    when_zh = (f"您的指令啟動後 {at:.0f} 秒" if started else f"觀測開始後 {at:+.0f} 秒") if peak else "?"
    ev["peak"] = {"t": round(peak[0], 3), "rps": max_load} if peak else None
    rate = ev["workstation_rps"]
    return failed(
        spec["id"],
        spec["points"],
        f"PLC-1 load peaked at {max_load:.1f} req/s ({when}; budget {budget:.0f}; your workstation sent {rate} "
        f"req/s on average); scan time up to {max_scan:.1f} ms (base {base:.1f}, limit {base * 1.25:.1f})",
        f"PLC-1 負載峰值 {max_load:.1f} 請求/秒（{when_zh}；預算 {budget:.0f}；您的工作站平均每秒 {rate} 個請求）；"
        f"掃描時間最高 {max_scan:.1f} 毫秒（基準 {base:.1f}，上限 {base * 1.25:.1f}）",
        ev,
    )


# -- active checks: they judge while the collector still runs, and their verdicts are recorded for replays ----------
@check("daq.delivery")
async def delivery(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Every reading was published with QoS 1 and not retained, as observed (MQTT 5: QoS 2 subscription, Retain As
    Published). Active only so that its verdict is recorded: the flags are not part of a recording."""
    blocked = no_readings(ctx, spec)
    if blocked:
        return blocked
    obs = ctx.observation
    lab_keys = {key_of(s) for s in ctx.lab.data["streams"]}
    msgs = [m for m in obs.messages if stream_of(m) in lab_keys]
    qos: dict[str, int] = defaultdict(int)
    retained = 0
    examples = []
    for m in msgs:
        qos[str(m.qos)] += 1
        if m.retain:
            retained += 1
        if (m.qos != 1 or m.retain) and len(examples) < 10:
            examples.append({"topic": m.topic[:200], "received_at": iso(m.rx), "qos": m.qos, "retain": m.retain})
    ev = {"messages": len(msgs), "qos": dict(qos), "retained": retained, "examples": examples, "mqtt": obs.protocol}
    if obs.protocol != 5:
        return not_assessable(
            spec["id"],
            spec["points"],
            "observer-without-mqtt5",
            "the broker did not accept the grader's MQTT 5 subscription, so retain flags could not be observed",
            "MQTT Broker 不接受評分程式的 MQTT 5 訂閱，無法觀察保留旗標",
            ev,
        )
    wrong_qos = len(msgs) - qos.get("1", 0)
    if not wrong_qos and not retained:
        return passed(
            spec["id"],
            spec["points"],
            f"All {len(msgs)} readings were published with QoS 1 and not retained",
            f"{len(msgs)} 筆讀值皆以 QoS 1 且不保留發布",
            ev,
        )
    parts_en, parts_zh = [], []
    if wrong_qos:
        seen = ", ".join(f"QoS {q}: {n}" for q, n in sorted(qos.items()))
        parts_en.append(f"{wrong_qos} not with QoS 1 ({seen})")
        parts_zh.append(f"{wrong_qos} 筆非 QoS 1（{seen}）")
    if retained:
        parts_en.append(f"{retained} published retained")
        parts_zh.append(f"{retained} 筆以保留旗標發布")
    return failed(
        spec["id"],
        spec["points"],
        f"Of {len(msgs)} readings, " + " and ".join(parts_en),
        f"{len(msgs)} 筆讀值中，" + "，".join(parts_zh),
        ev,
    )


@check("daq.commit")
async def commit(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Readings become visible in the database within about a second of their publication: while the collector
    still runs, the grader subscribes again and reads the database (read-only) every 0.1 s; around every reading
    published in the probe the visible content must grow (from just before it to `deadline_s` after it).
    When readings are late in a probe, the grader probes again (up to `probes` in all) and fails the check only
    when every probe saw a late reading: a collector that commits too seldom is late in every probe, while one
    stall of a loaded host (the candidate's process not scheduled for a second) is not the candidate's fault."""
    if overloaded(ctx):
        return ctx.blocked(spec, GRADER_OVERLOADED, {"health": ctx.health})
    blocked = no_readings(ctx, spec)
    if blocked:
        return blocked
    p = spec.get("params", {})
    deadline = float(p.get("deadline_s", 1.5))
    probes: list[dict[str, Any]] = []
    for _ in range(max(1, int(p.get("probes", 2)))):
        probe = await _commit_probe(ctx, p, deadline)
        probes.append(probe)
        if probe["outcome"] != "late":
            break
    last = probes[-1]
    ev: dict[str, Any] = {**last["ev"], "probes": len(probes)}
    if len(probes) > 1:
        ev["earlier_probes"] = [
            {k: pr["ev"].get(k) for k in ("judged", "late", "late_examples", "max_sample_interval_s")}
            for pr in probes[:-1]
        ]
    outcome, probe_s = last["outcome"], last["probe_s"]
    if outcome == "locked":
        errors = ev["database_errors"]
        return failed(
            spec["id"],
            spec["points"],
            f"While the collector ran, {ctx.params['db_path']} could not be read by another reader for the whole "
            f"{probe_s:.1f} s probe ({errors[0]}): readings must be visible to other readers within {deadline} s",
            f"擷取程式執行期間，其他讀取者在整個 {probe_s:.1f} 秒探測內都無法讀取 {ctx.params['db_path']}（{errors[0]}）："
            f"讀值必須在 {deadline} 秒內可供其他讀取者看到",
            ev,
        )
    if outcome == "no-database":
        ctx.block(
            NO_DATABASE,
            f"no readable database with a readings table at {ctx.params['db_path']} while the collector ran",
            f"擷取程式執行期間 {ctx.params['db_path']} 沒有可讀且含 readings 表的資料庫",
            "daq.storage",
        )
        return ctx.blocked(spec, NO_DATABASE, ev)
    if outcome == "overloaded":
        return ctx.blocked(spec, GRADER_OVERLOADED, {**ev, "why": "the grader could not read the database on time"})
    if outcome == "nothing-published":
        # No reading to time a commit by: not assessable (never points). The cause is the command's end when it
        # ended while observed (named at the report's top), else the collector's silence during the probe.
        if "solution-ended-while-observed" in ctx.blockers:
            return ctx.blocked(spec, "solution-ended-while-observed", ev)
        ctx.block(
            "silent-in-commit-probe",
            f"no reading was published during the {probe_s:.1f} s commit probe (your collector had stopped "
            "publishing): commits could not be seen",
            f"提交探測的 {probe_s:.1f} 秒內沒有任何讀值發布（擷取程式已停止發布）：無法觀察提交",
            None,
        )
        return ctx.blocked(spec, "silent-in-commit-probe", ev)
    judged, seen = ev["judged"], ev["published_during_probe"]
    if outcome == "on-time":
        again_en = (
            f"; an earlier probe saw {probes[0]['ev']['late']} late, so the grader probed again"
            if len(probes) > 1
            else ""
        )
        again_zh = f"；先前一次探測有 {probes[0]['ev']['late']} 筆逾時，故再探測一次" if len(probes) > 1 else ""
        return passed(
            spec["id"],
            spec["points"],
            f"All {judged} readings judged were visible in the database within {deadline} s ({seen} "
            f"published during the {probe_s:.1f} s probe; a reading is judged when the database was read from "
            f"before it to {deadline} s after it){again_en}",
            f"判定的 {judged} 筆讀值皆在 {deadline} 秒內出現在資料庫中（{probe_s:.1f} 秒探測期間共發布 {seen} 筆；"
            f"資料庫在讀值發布前至其後 {deadline} 秒皆有讀取者，該讀值才列入判定）{again_zh}",
            ev,
        )
    late = ev["late_examples"]
    each_en = f" (in each of {len(probes)} probes)" if len(probes) > 1 else ""
    each_zh = f"（{len(probes)} 次探測皆然）" if len(probes) > 1 else ""
    return failed(
        spec["id"],
        spec["points"],
        f"{ev['late']} of {judged} readings published during the probe were not visible in the database "
        f"{deadline} s later (rows visible stayed at {late[0]['rows_visible']}){each_en}",
        f"探測期間發布的 {judged} 筆讀值中 {ev['late']} 筆在 {deadline} 秒後仍未出現在資料庫中"
        f"（可見列數停在 {late[0]['rows_visible']}）{each_zh}",
        ev,
    )


async def _commit_probe(ctx: Any, p: dict[str, Any], deadline: float) -> dict[str, Any]:
    """One commit probe: subscribe while reading the database every `sample_every_s`; its outcome is one of
    locked, no-database, overloaded, nothing-published, on-time, late."""
    span = max(float(p.get("min_polls", 1)) * fastest_period(ctx), float(p.get("min_probe_s", 0.0)))
    probe_s = span + deadline + float(p.get("extra_s", 1.0))
    path = ctx.db_path
    sampler = DbSampler(path, float(p.get("sample_every_s", 0.1)))
    sampler.start()
    try:
        seen = await _subscribe_for(ctx, probe_s)
    finally:
        sampler.stop()
    samples = sampler.samples
    ev: dict[str, Any] = {
        "path": str(path),
        "deadline_s": deadline,
        "probe_s": round(probe_s, 2),
        "samples": len(samples),
        "published_during_probe": len(seen),
        "max_sample_interval_s": round(sampler.max_interval(), 3),
    }
    out: dict[str, Any] = {"ev": ev, "probe_s": probe_s}
    states = [s for s in samples if s[1] is not None]
    if not states:
        errors = sorted({s[2] for s in samples if s[2]})
        ev["database_errors"] = errors[:3]
        # the database is there, but the collector holds it so that no other reader sees a row: R12's defect
        locked = path.is_file() and errors and all("locked" in e or "busy" in e for e in errors)
        return {**out, "outcome": "locked" if locked else "no-database"}
    if sampler.max_interval() > float(p.get("max_sample_interval_s", 0.6)):
        return {**out, "outcome": "overloaded"}
    slack = float(p.get("publish_slack_s", 0.3)) + lag(ctx)
    t_start, t_end = samples[0][0], samples[-1][0]
    judged, late = [], []
    for rx, topic in seen:
        if not (t_start + slack + 0.1 <= rx <= t_end - deadline):
            continue
        before = [n for t, n, _ in states if t <= rx - slack]
        after = [n for t, n, _ in states if rx - slack < t <= rx + deadline]
        if not before:
            continue
        judged.append(rx)
        if not after or max(after) <= before[-1]:
            late.append({"topic": topic, "published_at": iso(rx), "rows_visible": before[-1]})
    ev.update({"judged": len(judged), "late": len(late), "late_examples": late[:5]})
    ev["visible_rows"] = [[round(t - t_start, 2), n] for t, n, _ in states[:: max(1, len(states) // 60)]]
    outcome = "nothing-published" if not judged else "late" if late else "on-time"
    return {**out, "outcome": outcome}


async def _subscribe_for(ctx: Any, seconds: float) -> list[tuple[float, str]]:
    """(receive time, topic) of readings published during `seconds`, from a fresh subscription (MQTT 5: live
    messages only, no retained ones); a message is a reading of a stream when it is on that stream's topic."""
    import aiomqtt

    obs_spec = next((o for o in ctx.lab.data.get("observers", []) if o["kind"] == "mqtt_telemetry"), {})
    topic = obs_spec.get("topic", f"{ctx.params.get('topic_root', 'telemetry')}/#")
    lab_keys = {key_of(s) for s in ctx.lab.data["streams"]}
    out: list[tuple[float, str]] = []
    protocol = ctx.observation.protocol or 5
    try:
        async with aiomqtt.Client(
            ctx.sheet["mqtt"]["host"],
            int(ctx.sheet["mqtt"]["port"]),
            identifier=f"aiotlab-grader-commit-{ctx.candidate}",
            timeout=5,
            protocol=aiomqtt.ProtocolVersion.V5 if protocol == 5 else aiomqtt.ProtocolVersion.V311,
            max_queued_incoming_messages=20000,
        ) as client:
            await client.subscribe(topic, **subscribe_options(protocol))
            try:
                async with asyncio.timeout(seconds):
                    async for msg in client.messages:  # by topic alone: cheap even when flooded
                        if topic_stream(str(msg.topic)) in lab_keys and len(out) < 5000:
                            out.append((time.time(), str(msg.topic)[:200]))
            except TimeoutError:
                pass
    except aiomqtt.MqttError:
        pass
    return out


class DbSampler:
    """Reads the candidate's database read-only on a thread of its own: (time, max rowid of readings or None, error)."""

    def __init__(self, path: Path, every: float) -> None:
        self.path, self.every = path, every
        self.samples: list[tuple[float, int | None, str | None]] = []
        self._stop = threading.Event()
        self._count = False
        self._thread = threading.Thread(target=self._run, name="daq-commit-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def max_interval(self) -> float:
        ts = [s[0] for s in self.samples]
        return max((b - a for a, b in zip(ts, ts[1:], strict=False)), default=0.0)

    def _rows(self, db: sqlite3.Connection) -> int:
        """How far the visible content has grown: max(rowid), or count(*) for a table without rowids."""
        if not self._count:
            try:
                return int(db.execute("SELECT max(rowid) FROM readings").fetchone()[0] or 0)
            except sqlite3.OperationalError as exc:
                if "rowid" not in str(exc):
                    raise
                self._count = True
        return int(db.execute("SELECT count(*) FROM readings").fetchone()[0])

    def _run(self) -> None:
        db = None
        while not self._stop.is_set():
            n, err = None, None
            try:
                if db is None:
                    if not self.path.is_file():
                        raise sqlite3.OperationalError("no database file")
                    db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=0.5, check_same_thread=False)
                    db.execute("PRAGMA query_only=1")
                n = self._rows(db)
            except sqlite3.Error as exc:
                err = str(exc)[:120]
                if db is not None:
                    db.close()
                    db = None
            self.samples.append((time.time(), n, err))
            self._stop.wait(self.every)
        if db is not None:
            db.close()
