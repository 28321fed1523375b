"""The data-acquisition lab graded end to end over real sockets: reference full marks, each flawed solution fails
exactly what it declares (one defect fails one check; the checks it keeps from running say so), hostile solutions
are failed with evidence within time bounds, reports verify. The batch grades the reference, a tripped-line
reference and every flawed solution of the lab at once, one plant each, as a cohort would be graded."""

from __future__ import annotations

import asyncio
import base64
import csv
import gzip
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiotlab.grader import report
from aiotlab.grader.checks.daq import parse_ts
from aiotlab.grader.engine import ensure_plant, grade
from aiotlab.labs.loader import load_lab
from aiotlab.simulators.control_client import ControlClient

from conftest import cli

pytestmark = pytest.mark.timeout(900)  # a batch of 18 plants on a loaded 2-core host, with re-grades if it falls behind
SECRET = "test-exam-secret"  # conftest sets AIOTLAB_EXAM_SECRET to this
LAB = load_lab("data-acquisition")
FLAWED = sorted(
    n for n in LAB.solutions if n.startswith("flawed-")
)  # every flawed solution of the lab, one defect each
HOSTILE = ["hostile-garbage", "hostile-flood"]
LINE_TRIPPED = "reference-line-tripped"
AFTER_BURST = "reference-after-burst"  # PLC-1 over budget in a setup step that ended: not the solution's load
SPLIT = "reference-split"  # another sound acquisition plan: the two references decide differently
BATCH_AT_ONCE = 16  # at most this many plants graded at once: a cohort's load on this 2-core host


def grade_batch(solutions: list[str], out: Path) -> dict[str, dict[str, Any]]:
    """Grade each solution as its own candidate (own plant), all at once, as a cohort would be."""
    lab = load_lab("data-acquisition")

    gate = asyncio.Semaphore(BATCH_AT_ONCE)

    async def one(sol: str) -> tuple[str, dict[str, Any]]:
        async with gate:
            return await one_now(sol)

    async def one_now(sol: str) -> tuple[str, dict[str, Any]]:
        cand = os.environ.get("AIOTLAB_CAND_PREFIX", "g-") + sol
        t0 = time.monotonic()
        if sol == LINE_TRIPPED:  # the line trips well before the window: GoodCount freezes with an old SourceTimestamp
            await asyncio.to_thread(ensure_plant, cand)
            ctl = ControlClient.for_candidate(cand)
            await asyncio.to_thread(ctl.post, "/v1/process-events", {"event": "conveyor_fault", "duration_s": 1})
            await asyncio.sleep(15)
        run = await grade(lab, cand, solution="reference" if sol == LINE_TRIPPED else sol, out_dir=out / cand)
        doc = report.write_all(run, out / cand)
        return sol, {"doc": doc, "dir": out / cand, "wall_s": time.monotonic() - t0}

    async def all_() -> dict[str, dict[str, Any]]:
        return dict(await asyncio.gather(*(one(s) for s in solutions)))

    results = asyncio.run(all_())
    for sol in solutions:
        cli("plant", "down", "-c", os.environ.get("AIOTLAB_CAND_PREFIX", "g-") + sol, check=False)
    return results


@pytest.fixture(scope="module")
def batch(aiot_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return grade_batch(["reference", SPLIT, LINE_TRIPPED, AFTER_BURST, *FLAWED], tmp_path_factory.mktemp("graded"))


@pytest.fixture(scope="module")
def hostile(aiot_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return grade_batch(HOSTILE, tmp_path_factory.mktemp("hostile"))


def failed_checks(doc: dict[str, Any]) -> set[str]:
    return {c["id"] for c in doc["checks"] if c["status"] != "pass"}


def explain(doc: dict[str, Any]) -> str:
    return "\n".join(f"{c['id']}: {c['status']} - {c['summary']['en']}" for c in doc["checks"])


@pytest.mark.parametrize("run", ["reference", SPLIT, LINE_TRIPPED, AFTER_BURST])
def test_reference_scores_full_marks(batch: dict[str, dict[str, Any]], run: str) -> None:
    doc = batch[run]["doc"]
    assert doc["score"]["points"] == doc["score"]["max_points"] == 100, explain(doc)
    assert all(i["achieved"] for i in doc["indicators"])
    assert len(doc["plant"]["params_digest"]) == 64 and doc["plant"]["identity_digest"]
    assert {i["id"] for i in doc["indicators"]} == set(load_lab("data-acquisition").data["indicators"])
    if run == LINE_TRIPPED:  # the scenario really happened: GoodCount stood still with a timestamp from before
        with gzip.open(batch[run]["dir"] / "recording.json.gz", "rt") as fh:
            rec = json.load(fh)
        w0 = rec["observation"]["window"][0]
        stamps = {
            json.loads(base64.b64decode(m["raw"]))["ts"]
            for m in rec["observation"]["messages"]
            if m["topic"].endswith("/plc2/FillingLine.GoodCount")
        }
        assert len(stamps) == 1 and parse_ts(stamps.pop()) < w0, stamps
    if run == AFTER_BURST:  # the burst really went over budget, before the solution started
        impact = next(c for c in doc["checks"] if c["id"] == "daq.production_impact")
        ev = json.loads((batch[run]["dir"] / "evidence" / "daq.production_impact.json").read_text())
        before = [v for t, v in ev["load_series"] if t < ev["judged_from"]]
        assert before and max(before) > ev["budget_rps"], (ev["load_series"], impact["summary"])


@pytest.mark.parametrize("solution", FLAWED)
def test_flawed_solution_fails_exactly_its_targets(batch: dict[str, dict[str, Any]], solution: str) -> None:
    meta = yaml.safe_load((LAB.solutions[solution].path / "solution.yaml").read_text())
    blocked = set(meta.get("expect_not_assessable", []))  # declared apart: not failed, not assessable
    expected = set(LAB.solutions[solution].expect_fail) | blocked
    doc = batch[solution]["doc"]
    assert failed_checks(doc) == expected, explain(doc)
    assert blocked <= {c["id"] for c in doc["checks"] if c["status"] == "not_assessable"}, explain(doc)
    assert doc["score"]["points"] < doc["score"]["max_points"]
    # one defect fails one check; a check it keeps from running is not assessable, naming that check's cause
    failing = [c["id"] for c in doc["checks"] if c["status"] in ("fail", "partial")]
    assert len(failing) == 1, explain(doc)
    owners = {n["cause"]: n["failed_check"] for n in doc["not_assessable"]}
    for c in doc["checks"]:
        if c["status"] == "not_assessable":
            assert owners[c["blocked_by"]] == failing[0], explain(doc)
    assessed = {i["id"] for i in doc["indicators"] if not i["achieved"]}
    should_miss = {ind for c in LAB.checks if c["id"] in expected for ind in c["indicators"]}
    assert assessed == should_miss


@pytest.mark.parametrize("solution", HOSTILE)
def test_hostile_solutions_are_failed_with_evidence_in_time(hostile: dict[str, dict[str, Any]], solution: str) -> None:
    expected = set(LAB.solutions[solution].expect_fail)
    r = hostile[solution]
    doc = r["doc"]
    assert failed_checks(doc) == expected, explain(doc)
    assert all(c["status"] != "error" for c in doc["checks"]), explain(doc)  # failed by judgement, not by crashing
    attempts = int(doc.get("grader_health", {}).get("attempts", 1))  # the engine grades again when it fell behind
    assert r["wall_s"] < attempts * (8 + 30 + 60)  # per attempt: warm-up + window + bounded probes, stop and checks
    for c in doc["checks"]:
        assert (r["dir"] / c["evidence_file"]["path"]).is_file()


def test_hostile_details(hostile: dict[str, dict[str, Any]]) -> None:
    garbage = hostile["hostile-garbage"]["doc"]
    schema_ev = json.loads((hostile["hostile-garbage"]["dir"] / "evidence" / "daq.schema.json").read_text())
    assert schema_ev["oversized"] > 0 and schema_ev["invalid"] == schema_ev["messages"]
    storage = next(c for c in garbage["checks"] if c["id"] == "daq.storage")
    assert "unreadable" in storage["summary"]["en"]
    flood = hostile["hostile-flood"]["doc"]
    assert flood["solution"]["stopped_by"].startswith("SIGKILL")
    ev = json.loads((hostile["hostile-flood"]["dir"] / "evidence" / "daq.schema.json").read_text())
    assert ev["messages"] > 3_000  # it really was a flood (100/s even on a loaded host), kept within the caps


def test_report_signature_and_tamper_detection(batch: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """A real graded report verifies with the local public key; an edit is refused (tests/test_signing.py has the
    full tamper matrix)."""
    src = batch["flawed-scale"]["dir"]
    work = tmp_path / src.name  # the same candidate folder name: the report's location binding holds
    shutil.copytree(src, work)
    ok, findings = report.verify_file(work / "report.json")
    assert ok, findings
    assert cli("report", "verify", str(work / "report.json")).returncode == 0
    doc = json.loads((work / "report.json").read_text())
    doc["score"]["points"] = doc["score"]["max_points"]  # the edit a cheat would make
    (work / "report.json").write_text(json.dumps(doc))
    ok, findings = report.verify_file(work / "report.json")
    assert not ok and "modified" in " ".join(findings)
    assert cli("report", "verify", str(work / "report.json"), check=False).returncode == 1
    shutil.copy(src / "report.json", work / "report.json")
    ev = work / "evidence" / "daq.values.json"
    ev.write_text(ev.read_text().replace('"matched"', '"matched" ', 1))
    ok, findings = report.verify_file(work / "report.json")
    assert not ok and any("evidence file modified" in f for f in findings)


def test_html_gradescope_and_cohort(batch: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    r = batch["flawed-word-order"]
    html = (r["dir"] / "report.html").read_text()
    for ind in r["doc"]["indicators"]:
        assert ind["id"] in html and ind["text"]["zh-TW"] in html and ind["text"]["en"] in html
    assert "<svg" in html and 'lang="zh-TW"' in html
    gs = json.loads((r["dir"] / "results.json").read_text())
    assert gs["score"] == r["doc"]["score"]["points"]
    values = next(t for t in gs["tests"] if t["name"].startswith("daq.values"))
    assert values["status"] == "failed" and "INM3513-009v1/P6.2.1" in values["tags"]
    path = report.cohort([b["doc"] for b in batch.values()], tmp_path)
    rows = list(csv.DictReader(path.open(encoding="utf-8-sig")))
    assert len(rows) == len(batch) and {row["candidate"] for row in rows} == {"g-" + s for s in batch}
    ref = next(row for row in rows if row["candidate"] == "g-reference")
    assert float(ref["points"]) == 100 and ref["SET2519-001v3/P2.1.1"] == "achieved"


@pytest.mark.parametrize("solution", ["reference", "flawed-scale", "flawed-over-polling"])
def test_verdicts_are_reproducible_from_the_recording(
    batch: dict[str, dict[str, Any]], solution: str, tmp_path: Path
) -> None:
    rec = batch[solution]["dir"] / "recording.json.gz"
    assert rec.is_file()
    proc = cli("grade", "data-acquisition", "--replay", str(rec), "--out", str(tmp_path), check=False)
    assert proc.returncode == 0 and "replay identical" in proc.stdout, proc.stdout + proc.stderr
    replayed = json.loads((tmp_path / "report.json").read_text())
    original = batch[solution]["doc"]
    assert [(c["id"], c["status"], c["points"]) for c in replayed["checks"]] == [
        (c["id"], c["status"], c["points"]) for c in original["checks"]
    ]


def test_hostile_recording_replays_identically(hostile: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    rec = hostile["hostile-garbage"]["dir"] / "recording.json.gz"
    proc = cli("grade", "data-acquisition", "--replay", str(rec), "--out", str(tmp_path), check=False)
    assert proc.returncode == 0 and "replay identical" in proc.stdout, proc.stdout + proc.stderr


def test_missing_and_silent_solutions_are_graded_not_crashed(aiot_home: Path, tmp_path: Path) -> None:
    lab = load_lab("data-acquisition")

    async def go() -> dict[str, Any]:
        async def one(cand: str, cmd: str) -> tuple[str, dict[str, Any]]:
            run = await grade(lab, cand, solution=cmd, out_dir=tmp_path / cand)
            return cand, report.write_all(run, tmp_path / cand)

        return dict(
            await asyncio.gather(one("g-missing", "/nonexistent/collector --fast"), one("g-silent", "sleep 600"))
        )

    docs = asyncio.run(go())
    for cand in docs:
        cli("plant", "down", "-c", cand, check=False)
    for doc in docs.values():
        assert failed_checks(doc) == {c["id"] for c in lab.checks}, explain(doc)  # nothing scores for nothing done
        assert all(c["status"] != "error" for c in doc["checks"])
        # the one defect (no readings) fails coverage; every other check is not assessable for that cause, but the
        # plan, an artefact of its own (none was written), is judged whether or not anything ran
        assert [c["id"] for c in doc["checks"] if c["status"] == "fail"] == ["daq.coverage", "daq.plan"], explain(doc)
        others = {c.get("blocked_by") for c in doc["checks"] if c["id"] not in ("daq.coverage", "daq.plan")}
        assert others == {"no-readings"}, explain(doc)
        assert doc["score"]["points"] == 0
    assert "No such file" in docs["g-missing"]["solution"]["start_error"]
    assert docs["g-silent"]["solution"]["stopped_by"] == "SIGTERM"
    coverage = next(c for c in docs["g-silent"]["checks"] if c["id"] == "daq.coverage")
    assert coverage["summary"]["en"].startswith("No readings of any required stream were published")


# -- the checks' rules on a synthetic run (no plant): one defect fails one check ----------------------------------
W0 = 1_800_000_000.0  # window start (epoch s)
W1 = W0 + 30.0
TICK = 0.1


def _truth_fn() -> dict[str, Any]:
    import math
    import random

    rng = random.Random(7)
    noise = {round(W0 - 20 + i * TICK, 1): rng.gauss(0.0, 0.05) for i in range(600)}
    return {
        "tank.level_m": lambda t: 1.5 + 0.2 * math.sin(t / 7),
        "tank.outflow_m3h": lambda t: 4.0 + 0.05 * math.sin(t / 3),
        "tank.pressure_bar": lambda t: 1.9 + 0.02 * math.sin(t / 4),
        "tank.pump_starts": lambda t: 3.0,
        "energy.power_kw": lambda t: 12.0 + 0.3 * math.sin(t / 5),
        "energy.energy_kwh": lambda t: 100.0 + (t - W0) * 0.003,
        "heater.temp_c": lambda t: 60.0 + noise.get(round(t, 1), 0.0),
        "conveyor.good_count": lambda t: float(math.floor((t - (W0 - 20.0)) / 2.0)),
        "plc1.load_rps": lambda t: 3.0,
        "plc1.scan_time_ms": lambda t: 20.0,
    }


def _iso(t: float, ms: bool = True) -> str:
    import datetime as dt

    spec = "milliseconds" if ms else "seconds"
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec=spec).replace("+00:00", "Z")


STALL_AT, STALL_S = W0 + 15.1, 3.3  # flaw "stall": everything sampled in this span reaches the grader at its end


def synthetic(**flaw: Any) -> Any:
    """A graded run of a correct collector (period 1 s) in a replay context, with at most one flaw applied.
    `sensor={(node, seq): (record, times)}` changes one sensor message: its truth record ('confirmed', 'unconfirmed':
    the node's publish was cut before the PUBACK, 'unrecorded': no record) and how often the collector forwards it."""
    from aiotlab.grader.engine import GradeContext
    from aiotlab.grader.observers import Message, MqttObservation, parse_into

    fns = _truth_fn()
    ticks = [round(W0 - 20 + i * TICK, 1) for i in range(int(55 / TICK))]
    truth = {tag: (ticks, [fn(t) for t in ticks]) for tag, fn in fns.items()}
    period = 1.0
    params = {**LAB.params_for("unit"), "period_s": period}
    emissions = []
    for node, field_name, every, phase, base in (
        ("vib-01", "vrms_mm_s", 2.0, 0.37, 1.2),
        ("env-01", "temp_c", 5.0, 1.1, 24.5),
    ):
        t, seq = W0 - 30 + phase, 0
        while t < W1 + 5:
            seq += 1
            body = {"node": node, "seq": seq, "ts": _iso(t), field_name: round(base + 0.01 * (seq % 7), 3)}
            emissions.append(
                {"node": node, "seq": seq, "t": t, "topic": f"plant/sensors/{node}/data", "payload": json.dumps(body)}
            )
            if flaw.get("sensor", {}).get((node, seq), ("",))[0] == "unconfirmed":
                emissions[-1]["confirmed"] = False
            t += every
    obs = MqttObservation(window=(W0, W1), protocol=5)
    start = W0 + float(flaw.get("late_start", 0.0))

    def value_at(tag: str, t: float) -> tuple[float, float]:
        i = max(0, int((t - ticks[0]) / TICK))
        while i + 1 < len(ticks) and ticks[i + 1] <= t:
            i += 1
        return truth[tag][1][i], ticks[i]

    def publish(device: str, tag: str, value: Any, ts: str, source: str, rx: float, raw: bytes | None = None) -> None:
        unit = next(s["unit"] for s in LAB.data["streams"] if (s["device"], s["tag"]) == (device, tag))
        if flaw.get("rounding") and isinstance(value, float):
            value = round(value, 2)
        body = {
            "device": device,
            "tag": tag,
            "value": value,
            "unit": unit,
            "quality": "good",
            "ts": ts,
            "source": source,
        }
        raw = raw or json.dumps(body).encode()
        obs.messages.append(
            parse_into(Message(f"telemetry/{device}/{tag}", rx, raw, len(raw), qos=1, retain=False), 65536)
        )

    for k in range(30):
        r = W0 + 0.25 + k * period + (0.6 if flaw.get("late_last") and k == 29 else 0.0)
        if r < start or (flaw.get("skip_every_4th") and k % 4 == 3):
            continue
        for s in LAB.data["streams"]:
            if s["source"] == "mqtt":
                continue
            v, tick = value_at(s["truth"], r)
            ts = _iso(r, ms=not flaw.get("no_ms"))
            if s["source"] == "opcua" and not flaw.get("opcua_read_time"):
                i = ticks.index(tick)
                while i > 0 and truth[s["truth"]][1][i - 1] == v:
                    i -= 1
                ts = _iso(ticks[i] + 0.005, ms=not flaw.get("no_ms"))  # PLC-2 stamps the value when it changed
            if flaw.get("scale1000") and s["tag"] == "level":
                v *= 1000
            raw = None
            if flaw.get("nan") and s["tag"] == "Heater.Temperature" and k % 10 == 0:
                raw = json.dumps(
                    {
                        "device": "plc2",
                        "tag": s["tag"],
                        "value": float("nan"),
                        "unit": "degC",
                        "quality": "bad",
                        "ts": ts,
                        "source": "opcua",
                    }
                ).encode()
            if flaw.get("stale4"):  # a cache that serves each value 4 s late, published on time
                v, _ = value_at(s["truth"], r - 4.0)
            rx = STALL_AT + STALL_S if flaw.get("stall") and STALL_AT <= r <= STALL_AT + STALL_S else r + 0.02
            publish(s["device"], s["tag"], v, ts, s["source"], rx, raw)
    for e in emissions:
        if not (start <= e["t"] <= W1 - 0.1):
            continue
        body = json.loads(e["payload"])
        field_name = "vrms_mm_s" if e["node"] == "vib-01" else "temp_c"
        ts = body["ts"] if not flaw.get("no_ms") else _iso(e["t"], ms=False)
        times = flaw.get("sensor", {}).get((e["node"], e["seq"]), ("", 2 if flaw.get("duplicate_sensors") else 1))[1]
        rx = STALL_AT + STALL_S if flaw.get("stall") and STALL_AT <= e["t"] <= STALL_AT + STALL_S else e["t"] + 0.03
        for _ in range(times):
            publish(e["node"], field_name, body[field_name], ts, "mqtt", rx)
    unrecorded = {k for k, (record, _times) in flaw.get("sensor", {}).items() if record == "unrecorded"}
    emissions = [e for e in emissions if (e["node"], e["seq"]) not in unrecorded]
    obs.messages.sort(key=lambda m: m.rx)
    ws = "127.0.0.40"
    requests = 0 if flaw.get("idle_plc1") else 30
    ctx = GradeContext(
        LAB,
        "unit",
        params,
        {"network": {"workstation": ws}, "mqtt": {"host": "127.0.0.1", "port": 1}},
        {"params": {"devices": {"plc1": {"base_scan_ms": 20.0}}}},
        None,  # type: ignore[arg-type]
        Path("/nonexistent"),
        obs,
        {"fw1": {"requests_by_source": {ws: {"plc1": 100}}}},
        {"fw1": {"requests_by_source": {ws: {"plc1": 100 + requests}}}},
        replay=True,
    )
    ctx._truth = truth
    ctx._emissions = emissions
    ctx.health = {"overloaded": bool(flaw.get("overloaded")), "max_loop_lag_s": 0.02}
    # the collector's acquisition plan: every polled stream at the period it keeps, one block per Modbus device
    reads = [
        {"device": d, "table": "input_registers", "address": 0, "count": 12, "period_s": period, "streams": tags}
        for d in ("plc1", "em1")
        for tags in [[s["tag"] for s in LAB.data["streams"] if s["device"] == d]]
    ]
    plan = {
        "modbus_reads": reads,
        "opcua": {s["tag"]: {"period_s": period} for s in LAB.data["streams"] if s["device"] == "plc2"},
    }
    ctx.cache["daq.plan"] = (plan, {"plan": plan}, None)
    return ctx


def judge(ctx: Any, check_id: str) -> Any:
    from aiotlab.grader import scoring
    from aiotlab.grader.checks import registry

    spec = next(c for c in LAB.checks if c["id"] == check_id)
    return scoring.apply(spec, registry()[spec["fn"]](ctx, spec))


PASSIVE = ["daq.schema", "daq.coverage", "daq.values", "daq.period", "daq.completeness", "daq.timestamps", "daq.units"]


def verdicts(ctx: Any) -> dict[str, Any]:
    return {c: judge(ctx, c) for c in [*PASSIVE, "daq.production_impact"]}


def not_passed(res: dict[str, Any]) -> dict[str, str]:
    return {k: f"{r.status}: {r.summary['en']}" for k, r in res.items() if r.status != "pass"}


def test_rules_correct_collector_passes_every_passive_check() -> None:
    res = verdicts(synthetic())
    assert not not_passed(res), not_passed(res)


def test_rules_strict_json_nan_and_infinity_are_not_readings() -> None:
    from aiotlab.grader.observers import Message, parse_into, stream_of

    for token in ("NaN", "Infinity", "-Infinity"):
        raw = b'{"device": "plc2", "tag": "Heater.Temperature", "value": ' + token.encode() + b"}"
        m = parse_into(Message("telemetry/x/y", 0.0, raw, len(raw)), 65536)
        assert m.body is None and "not a JSON number" in (m.parse_error or ""), token
        assert stream_of(m) == ("plc2", "Heater.Temperature")  # counted for its stream, judged by the schema alone
    m = parse_into(Message("telemetry/plc1/level", 0.0, b"\xff garbage", 10), 65536)
    assert m.body is None and stream_of(m) == ("plc1", "level")


def test_rules_nan_readings_fail_the_schema_only() -> None:
    res = verdicts(synthetic(nan=True))
    assert set(not_passed(res)) == {"daq.schema"}, not_passed(res)


def test_rules_a_unit_error_on_one_stream_loses_that_streams_whole_share() -> None:
    res = verdicts(synthetic(scale1000=True))
    assert set(not_passed(res)) == {"daq.values"}, not_passed(res)
    values = res["daq.values"]
    assert values.items and [k for k, ok in values.items.items() if not ok] == ["plc1/level"]
    assert values.points == 13.5  # 1 of 10 streams' share of 15 points, not ~1 % of the samples


def test_rules_rounding_fails_values_only() -> None:
    res = verdicts(synthetic(rounding=True))
    assert set(not_passed(res)) == {"daq.values"}, not_passed(res)


def test_rules_a_path_stall_makes_readings_late_not_wrong() -> None:
    """Under load the whole path (collector, broker, host) held everything back 3.3 s: the readings that arrive at
    its end hold the values the plant had then, as the forwarded sensor messages of the same moment show. Values
    judges decoding; a stale cache that publishes old values on time (its sensor messages on time) still fails."""
    assert judge(synthetic(stall=True), "daq.values").status == "pass"
    stale = judge(synthetic(stale4=True), "daq.values")
    assert stale.status in ("fail", "partial"), stale.summary


def test_rules_the_last_slots_sample_may_come_late() -> None:
    """A loaded host delays the window's last poll by more than half a period: the sample is there, not missing (a
    reference collector failed completeness so in the container tier)."""
    r = judge(synthetic(late_last=True), "daq.completeness")
    level = r.evidence["streams"]["plc1/level"]
    assert r.status == "pass" and level["received"] == level["expected"] == 30, level


def test_rules_completeness_counts_from_the_collectors_first_reading() -> None:
    assert judge(synthetic(late_start=8.0), "daq.completeness").status == "pass"  # a slow start is not a gap
    late = judge(synthetic(late_start=20.0), "daq.completeness")
    assert late.status == "fail" and "first reading arrived" in late.summary["en"]


def test_rules_missed_and_duplicated_samples_fail_completeness_only() -> None:
    for flaw in ("skip_every_4th", "duplicate_sensors"):
        res = verdicts(synthetic(**{flaw: True}))
        assert set(not_passed(res)) == {"daq.completeness"}, (flaw, not_passed(res))
        assert res["daq.completeness"].points == 0.0  # below the floor: a systematic loss is not nearly free


def test_rules_unconfirmed_sensor_messages_never_fail_a_collector() -> None:
    """A sensor message whose publish was cut before the broker's PUBACK (a broker restart, a node restarted by a
    factory reset) is in the truth as unconfirmed: not forwarding it is no loss, forwarding it (once, or twice by the
    broker's redelivery) is right. Controls: the same message confirmed and not forwarded is missing; forwarded but
    not recorded at all (the old behaviour) it looked like a message that never existed and failed the collector."""
    marked = [("env-01", 9), ("vib-01", 20)]  # both inside the window

    def run(record: str, times: int) -> dict[str, Any]:
        return verdicts(synthetic(sensor={k: (record, times) for k in marked}))

    for times in (0, 1, 2):
        res = run("unconfirmed", times)
        assert not not_passed(res), (times, not_passed(res))
        for stream in ("env-01/temp_c", "vib-01/vrms_mm_s"):
            ev = res["daq.completeness"].evidence["streams"][stream]
            assert ev["unconfirmed"]["emitted"] == 1 and ev["unconfirmed"]["forwarded"] == min(times, 1), ev
            assert ev["missing"] == 0 and ev["duplicated"] == 0, ev
        summary = res["daq.completeness"].evidence["streams"]["env-01/temp_c"]["summary"]
        assert ("not counted" in summary) == (times == 0), summary
    missing = run("confirmed", 0)
    assert set(not_passed(missing)) == {"daq.completeness"}, not_passed(missing)
    assert missing["daq.completeness"].evidence["streams"]["env-01/temp_c"]["missing"] == 1
    duplicated = run("confirmed", 2)
    assert set(not_passed(duplicated)) == {"daq.completeness"}, not_passed(duplicated)
    unrecorded = run("unrecorded", 1)  # control: a forwarded message missing from the truth is judged wrong
    assert "daq.timestamps" in not_passed(unrecorded), not_passed(unrecorded)


def test_rules_opcua_read_time_fails_timestamps_on_its_stream() -> None:
    res = verdicts(synthetic(opcua_read_time=True))
    assert set(not_passed(res)) == {"daq.timestamps"}, not_passed(res)
    ts = res["daq.timestamps"]
    assert [k for k, ok in ts.items.items() if not ok] == ["plc2/FillingLine.GoodCount"]
    assert "SourceTimestamp" in ts.summary["en"] and "last changed" in ts.summary["en"]


def test_rules_timestamps_in_the_wrong_format_are_the_schemas() -> None:
    res = verdicts(synthetic(no_ms=True))
    assert set(not_passed(res)) == {"daq.schema", "daq.timestamps"}, not_passed(res)
    assert res["daq.timestamps"].status == "not_assessable" and res["daq.timestamps"].blocked_by == "ts-format"


def test_rules_grader_overload_makes_timing_checks_not_assessable() -> None:
    from aiotlab.grader.results import GRADER_OVERLOADED

    res = verdicts(synthetic(overloaded=True))
    blocked = {k for k, r in res.items() if r.blocked_by == GRADER_OVERLOADED}
    assert blocked == {"daq.period", "daq.completeness", "daq.timestamps"}
    assert all(res[k].points == 0 for k in blocked)


def test_rules_doing_nothing_earns_nothing() -> None:
    # readings published, but no request from the workstation address: said as observed
    unbound = judge(synthetic(idle_plc1=True), "daq.production_impact")
    assert unbound.status == "fail" and "no request came from the workstation address" in unbound.summary["en"]
    quiet = synthetic(idle_plc1=True)  # no PLC-1 reading and no request: no work whose impact could be judged
    quiet.observation.messages[:] = [m for m in quiet.observation.messages if not m.topic.split("/")[1:2] == ["plc1"]]
    idle = judge(quiet, "daq.production_impact")
    assert idle.status == "fail" and "No acquisition from PLC-1" in idle.summary["en"]
    ctx = synthetic()
    ctx.observation.messages.clear()
    res = verdicts(ctx)
    assert res["daq.coverage"].status == "fail"
    assert {r.blocked_by for k, r in res.items() if k != "daq.coverage"} == {"no-readings"}
    assert sum(r.points for r in res.values()) == 0


def test_rules_schema_states_the_timestamp_format_the_checks_use() -> None:
    from aiotlab.grader.checks.daq import TS_FORMAT

    assert LAB.schema()["properties"]["ts"]["pattern"] == TS_FORMAT.pattern
    assert LAB.schema()["properties"]["quality"]["enum"] == ["good", "uncertain"]


def test_rules_a_flood_is_judged_within_the_check_time_limit() -> None:
    """~1,300 false readings/s on three streams (40,000 in the window): every check stays far below the engine's
    30 s limit per check (sensor readings are matched to emissions once per stream, not once per reading)."""
    import random
    import time as _time

    from aiotlab.grader.observers import Message, parse_into

    ctx = synthetic()
    rng = random.Random(3)
    streams = [
        ("plc1", "level", "m", "modbus"),
        ("em1", "energy", "kWh", "modbus"),
        ("vib-01", "vrms_mm_s", "mm/s", "mqtt"),
    ]
    for i in range(40_000):
        d, tag, unit, src = rng.choice(streams)
        rx = W0 + 30 * i / 40_000
        body = {"device": d, "tag": tag, "value": rng.uniform(-1e6, 1e6), "unit": unit, "quality": "good"}
        raw = json.dumps({**body, "ts": _iso(rx - 0.001), "source": src}).encode()
        ctx.observation.messages.append(parse_into(Message(f"telemetry/{d}/{tag}", rx, raw, len(raw), qos=0), 65536))
    ctx.observation.messages.sort(key=lambda m: m.rx)
    t0 = _time.perf_counter()
    res = verdicts(ctx)
    assert _time.perf_counter() - t0 < 25, "judging a flood must stay well inside the engine's per-check limit"
    assert {"daq.values", "daq.period", "daq.completeness", "daq.timestamps"} <= set(not_passed(res))
