"""The grading engine: run a candidate's solution against their plant, observe, check, report.

Lab-agnostic: what to observe and which checks to run come from the lab definition. Every step is bounded in
time; a check that raises or overruns yields an `error` result with evidence and never affects the others;
many candidates are graded concurrently.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import shlex
import shutil
import signal
import sys
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiotlab.labs.loader import Lab
from aiotlab.simulators import addressing as ad
from aiotlab.simulators.control_client import ControlClient

from . import scoring
from .checks import registry
from .observers import MqttObservation, observe_mqtt
from .probes.sources import release as release_sources
from .results import ERROR, GRADER_OVERLOADED, CheckResult, not_assessable
from .runner import WorkstationRunner

CHECK_TIMEOUT_S = 30.0
PROBE_TIMEOUT_S = 150.0  # an active check probes many things, each bounded; this bounds the whole
SETUP_TIMEOUT_S = 180.0
RECORD_DB_MAX_BYTES = 50 * 1024 * 1024
MAX_EXTRA_TRUTH = 100  # extra truth fetches per grading (a hostile stream of odd timestamps cannot make more)
STOP_GRACE_S = 5.0
MAX_SYNC_S = 2.0  # a 4 KiB fsync in the workspace slower than this: a commit a second could not be kept
MAX_LOOP_LAG_S = 1.0  # a stall longer than this makes the grader's timing of what it saw unreliable
MIN_COVERAGE = 0.95
FLOOD_MSGS_PER_S = 500.0  # the labs' streams make under 20 messages/s; a candidate sending more is flooding


@dataclass
class GradeContext:
    lab: Lab
    candidate: str
    params: dict[str, Any]
    sheet: dict[str, Any]
    plant_info: dict[str, Any]
    control: ControlClient
    workspace: Path
    observation: MqttObservation = field(default_factory=MqttObservation)
    status_start: dict[str, Any] = field(default_factory=dict)
    status_end: dict[str, Any] = field(default_factory=dict)
    _truth: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    _emissions: list[dict[str, Any]] | None = None
    replay: bool = False
    db_override: Path | None = None
    _extra: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    _emitted_by_node: dict[str, list[tuple[float, dict[str, Any]]]] | None = None
    cache: dict[str, Any] = field(default_factory=dict)  # probe results shared between active checks
    probe_results: dict[str, CheckResult] = field(default_factory=dict)  # active checks' verdicts, in order
    started: float = field(default_factory=time.time)
    cleanups: list[Callable[[], Awaitable[None]]] = field(default_factory=list)  # run when probing ends
    # Candidate defects that keep the grader from assessing other checks: cause id -> {en, zh-TW, check}. The
    # check that owns the defect fails; the checks it blocks are "not assessable" naming the cause, stated once.
    blockers: dict[str, dict[str, str]] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)  # the grader's own lag and window coverage
    # exam mode: the candidate's workstation (a WorkstationRunner); a check that runs the candidate's program
    # (e.g. their read tool) runs it there, as the candidate, never on this host
    workstation: Any = None
    # how the solution ran: command, started_at (epoch s), start_error, early_exit (the report's `solution`)
    solution_run: dict[str, Any] = field(default_factory=dict)

    def block(self, cause: str, en: str, zh: str, check: str | None) -> None:
        """Record a candidate defect that blocks the grader (first report of a cause wins)."""
        self.blockers.setdefault(cause, {"en": en, "zh-TW": zh, **({"check": check} if check else {})})

    def blocked(self, spec: dict[str, Any], cause: str, evidence: dict[str, Any] | None = None) -> CheckResult:
        """The verdict of a check that a recorded blocker (or the grader's overload) kept from running."""
        if cause == GRADER_OVERLOADED:
            en, zh = (
                "the grader fell behind during observation (not the candidate's fault)",
                "評分程式觀測期間延遲（非考生之過）",
            )
        else:
            b = self.blockers.get(cause) or {
                "en": f"a probe the check needs was inconclusive ({cause}); its evidence says what came back",
                "zh-TW": f"檢查所需的探測結果無法判定（{cause}）；回應內容見證據",
            }
            en, zh = b["en"], b["zh-TW"]
            owner = b.get("check")
            if owner and owner != spec["id"] and owner not in en:  # where the defect itself is judged
                en, zh = f"{en} (judged by {owner})", f"{zh}（由 {owner} 判定）"
        return not_assessable(spec["id"], spec["points"], cause, en, zh, {"blocked_by": cause, **(evidence or {})})

    def truth_range(self, tag: str, t0: float, t1: float) -> tuple[list[float], list[float]]:
        """Truth for any range: from the window's cache when it covers it, else fetched (bounded) and remembered.

        Needed for timestamps older than the window: an OPC UA value that has not changed keeps the
        SourceTimestamp of its last change, which may be minutes old and is still correct."""
        ts, vs = self.truth(tag) if self.observation.window[1] else ([], [])  # probes-only labs: no window
        if ts and ts[0] <= t0 and t1 <= ts[-1]:
            return ts, vs
        key = f"{tag}@{int(t0 // 1)}:{int(t1 // 1) + 1}"
        if key not in self._extra:
            if self.replay:
                raise KeyError(f"the recording has no truth for {key}")
            if len(self._extra) >= MAX_EXTRA_TRUTH:
                return [], []
            lo, hi = key.split("@")[1].split(":")
            self._extra[key] = self._fetch_truth(tag, float(lo), float(hi))
        return self._extra[key]

    @property
    def db_path(self) -> Path:
        return self.db_override or Path(self.workspace) / self.params["db_path"]

    def truth(self, tag: str) -> tuple[list[float], list[float]]:
        """(times, values) of a plant tag over the window plus margins (fetched once)."""
        if tag not in self._truth:
            if self.replay:
                raise KeyError(f"the recording has no truth for {tag}")
            w0, w1 = self.observation.window
            self._truth[tag] = self._fetch_truth(tag, w0 - 20, w1 + 5)
        return self._truth[tag]

    def _fetch_truth(self, tag: str, start: float, end: float) -> tuple[list[float], list[float]]:
        series = self.control.get(f"/v1/truth?tags={tag}&start={start}&end={end}")
        pairs = [(t, v) for t, v in zip(series["t"], series[tag], strict=True) if v is not None]
        return [p[0] for p in pairs], [float(p[1]) for p in pairs]

    def emissions(self) -> list[dict[str, Any]]:
        """The sensor messages the plant emitted around the window, as recorded (fetched once)."""
        if self._emissions is None:
            w0, w1 = self.observation.window
            self._emissions = self.control.get(f"/v1/emissions?start={w0 - 30}&end={w1 + 5}")
        return self._emissions

    def emitted_values(self, node: str, field_name: str, t0: float, t1: float) -> list[tuple[float, float]]:
        if self._emitted_by_node is None:  # parsed once: checks ask once per candidate reading
            self._emitted_by_node = {}
            for e in self.emissions():
                self._emitted_by_node.setdefault(e["node"], []).append((e["t"], json.loads(e["payload"])))
        return [
            (t, float(body[field_name]))
            for t, body in self._emitted_by_node.get(node, [])
            if t0 <= t <= t1 and field_name in body
        ]


@dataclass
class GradeRun:
    """Everything a report is made of."""

    lab: Lab
    candidate: str
    params: dict[str, Any]
    plant: dict[str, Any]
    results: list[CheckResult]
    window: tuple[float, float]
    started: float
    finished: float
    solution: dict[str, Any]
    evidence_series: dict[str, Any] = field(default_factory=dict)
    blockers: dict[str, dict[str, str]] = field(default_factory=dict)  # causes named once at the report's top
    health: dict[str, Any] = field(default_factory=dict)  # the grader's own lag and coverage of the window


def check_plant_key(plant_id: str) -> None:
    """A container plant was derived from its own key (plant.key, from the exam secret): grading it with
    another secret would compare it with another plant's parameters, so that is refused, plainly."""
    from aiotlab.simulators.params import PlantIdentity

    key_file = ad.plant_dir(plant_id) / "plant.key"
    st = ad.read_state(plant_id) or {}
    if st.get("seed") is not None or not key_file.is_file():
        return
    if PlantIdentity.for_candidate(plant_id).key.hex() != key_file.read_text().strip():
        raise RuntimeError(
            f"the plant {plant_id} was made with another exam secret than this grader's: grade it with "
            "`aiotlab exam grade EXAM.yaml`, or set AIOTLAB_EXAM_SECRET_FILE to the exam's secret"
        )


class PlantDown(RuntimeError):
    """The plant to grade is not running and may not be restarted silently (an exam: the instructor decides)."""


def down_since(candidate: str) -> str:
    """When a plant stopped answering, as far as its files tell: the last write of its ground truth."""
    d = ad.plant_dir(candidate)
    times = [p.stat().st_mtime for p in (d / "truth.db", d / "truth.db-wal") if p.exists()]
    if not times:
        return "an unknown time (no ground truth recorded)"
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(max(times)))


def ensure_plant(candidate: str, restart: bool = True) -> dict[str, Any]:
    """The candidate's plant must run; start it (detached) if it does not, unless `restart` is False: then a
    plant that is down raises PlantDown, saying since when."""
    from aiotlab.simulators.daemonctl import detach

    st = ad.read_state(candidate)
    if ad.is_running(st):
        return st
    if not restart and not (ad.is_container_plant(st) and ad.holds_slot(st)):
        raise PlantDown(f"plant {candidate} down since {down_since(candidate)}: not graded")
    if ad.is_container_plant(st) and ad.holds_slot(st):
        from aiotlab.simulators.containers import ContainerError, wait_ready

        try:  # containers restart on failure: give them the time a start takes
            return wait_ready(candidate, 60.0)
        except ContainerError as exc:
            if not restart:
                raise PlantDown(f"plant {candidate} down since {down_since(candidate)}: {exc}") from None
            raise RuntimeError(f"the plant of {candidate} runs in containers and does not answer: {exc}") from None
    st = detach(candidate, st.get("seed") if st else None)
    if st.get("status") != "running":
        raise RuntimeError(f"the plant of {candidate} did not start: {st.get('error')}")
    return st


# What a solution's environment may inherit from the grader's: never the exam secret, a signing key or a token.
# AIOTLAB_HOME stays in practice mode: it is the practitioner's own plant registry, which `aiotlab plant reload`
# (their device configuration) needs; the control token inside it is theirs on their own machine.
SOLUTION_ENV_ALLOW = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TERM",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "AIOTLAB_HOME",
)


def solution_base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in SOLUTION_ENV_ALLOW}


def format_command(template: str, values: dict[str, Any]) -> list[str]:
    """Substitute only known {placeholders}; leave any other braces alone (a candidate's command is theirs)."""
    out = template
    for k, v in values.items():
        out = out.replace("{" + k + "}", str(v))
    return shlex.split(out)


async def stop_process(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    """SIGTERM the solution's process group, SIGKILL it after STOP_GRACE_S."""
    if proc.returncode is not None:
        return {"exit": proc.returncode, "stopped_by": "exited by itself"}
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
        return {"exit": proc.returncode, "stopped_by": "SIGTERM"}
    except TimeoutError:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await asyncio.wait_for(proc.wait(), 5.0)
        return {"exit": proc.returncode, "stopped_by": f"SIGKILL (ignored SIGTERM for {STOP_GRACE_S:.0f} s)"}


def _is_probe(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn)


async def run_check(fn: Callable[..., Any], ctx: GradeContext, spec: dict[str, Any]) -> CheckResult:
    started = time.time()
    # a check may state its own bound in the lab data (e.g. one that power-cycles every device and probes again)
    limit = float(spec.get("timeout_s") or (PROBE_TIMEOUT_S if _is_probe(fn) else CHECK_TIMEOUT_S))
    try:
        if _is_probe(fn):
            result = await asyncio.wait_for(fn(ctx, spec), limit)
        else:
            result = await asyncio.wait_for(asyncio.to_thread(fn, ctx, spec), limit)
    except TimeoutError:
        result = CheckResult(
            spec["id"],
            ERROR,
            0.0,
            spec["points"],
            {
                "en": f"check did not finish within {limit:.0f} s",
                "zh-TW": f"檢查未在 {limit:.0f} 秒內完成",
            },
        )
    except Exception as exc:  # noqa: BLE001 - a broken check must not spoil the others
        result = CheckResult(
            spec["id"],
            ERROR,
            0.0,
            spec["points"],
            {"en": f"check error: {type(exc).__name__}: {exc}", "zh-TW": f"檢查錯誤：{type(exc).__name__}: {exc}"},
            {"traceback": traceback.format_exc()[-2000:]},
        )
    if result.id != spec["id"]:
        result.id = spec["id"]
    result.started, result.finished = started, time.time()
    return scoring.apply(spec, result)


async def run_probes(lab: Lab, ctx: GradeContext, say: Callable[[str, str], None] = lambda w, x: None) -> None:
    """Active checks, one at a time in the lab's order (probes must not disturb each other), while the candidate's
    system still runs. In a replay their recorded verdicts stand: the live plant they probed is gone."""
    fns = registry()
    for c in lab.checks:
        if _is_probe(fns[c["fn"]]) and c["id"] not in ctx.probe_results:
            say(ctx.candidate, f"probing {c['id']}")
            ctx.probe_results[c["id"]] = await run_check(fns[c["fn"]], ctx, c)


async def run_cleanups(ctx: GradeContext) -> None:
    """What probes started and left for later checks (e.g. the grader's Prometheus): stopped, newest first."""
    while ctx.cleanups:
        cleanup = ctx.cleanups.pop()
        try:
            await asyncio.wait_for(cleanup(), 30.0)
        except Exception:  # noqa: BLE001 - one failing cleanup must not keep the others from running
            traceback.print_exc()


async def run_checks(lab: Lab, ctx: GradeContext) -> list[CheckResult]:
    """Every check's result in the lab's order: active ones from run_probes, passive ones computed now."""
    fns = registry()
    passive = [c for c in lab.checks if not _is_probe(fns[c["fn"]])]
    done = dict(
        zip(
            (c["id"] for c in passive),
            await asyncio.gather(*(run_check(fns[c["fn"]], ctx, c) for c in passive)),
            strict=True,
        )
    )
    missing = CheckResult("?", ERROR, 0.0, 0.0, {"en": "active check was not run", "zh-TW": "主動檢查未執行"})
    return [
        done.get(c["id"])
        or ctx.probe_results.get(c["id"])
        or CheckResult(c["id"], missing.status, 0.0, c["points"], missing.summary)
        for c in lab.checks
    ]


RECORDED_FACTS = ("collector_tried",)


def save_recording(ctx: GradeContext, path: Path) -> None:
    """Everything the checks consumed, so the same verdicts can be recomputed later (`aiotlab grade --replay`)."""
    import base64
    import gzip

    if telemetry_observer(ctx.lab):
        for tag in ("plc1.load_rps", "plc1.scan_time_ms"):
            ctx.truth(tag)
        for s in ctx.lab.data.get("streams", []):
            if s.get("truth"):
                ctx.truth(s["truth"])
    rec = {
        "format": "aiotlab.recording/1",
        "lab": ctx.lab.id,
        "lab_version": ctx.lab.version,
        "candidate": ctx.candidate,
        "params": ctx.params,
        "sheet": ctx.sheet,
        "plant_info": ctx.plant_info,
        "workspace": str(ctx.workspace),
        "status_start": ctx.status_start,
        "status_end": ctx.status_end,
        "observation": {
            "window": ctx.observation.window,
            "dropped": ctx.observation.dropped,
            "oversized": ctx.observation.oversized,
            "error": ctx.observation.error,
            "messages": [
                {
                    "topic": m.topic,
                    "rx": m.rx,
                    "size": m.size,
                    "raw": None if m.raw is None else base64.b64encode(m.raw).decode(),
                    "qos": m.qos,
                    "retain": m.retain,
                }
                for m in ctx.observation.messages
            ],
        },
        "truth": {k: [list(v[0]), list(v[1])] for k, v in ctx._truth.items()},
        "truth_extra": {k: [list(v[0]), list(v[1])] for k, v in ctx._extra.items()},
        "emissions": ctx.emissions() if telemetry_observer(ctx.lab) else [],
        "probe_results": {k: v.as_dict() for k, v in ctx.probe_results.items()},
        "blockers": ctx.blockers,
        "health": ctx.health,
        "solution_run": ctx.solution_run,
        # facts passive checks read from the live plant (the broker log), so that a replay judges as the run did
        "facts": {k: ctx.cache[k] for k in RECORDED_FACTS if k in ctx.cache},
    }
    db = ctx.db_path if "db_path" in ctx.params else None
    if db is not None and db.is_file() and db.stat().st_size <= RECORD_DB_MAX_BYTES:
        shutil.copyfile(db, path.parent / "recorded-telemetry.db")
        rec["db_copy"] = "recorded-telemetry.db"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        json.dump(rec, fh)


def load_recording(lab: Lab, path: Path) -> GradeContext:
    """A context rebuilt from a recording: messages are re-parsed exactly as the observer parsed them."""
    import base64
    import gzip

    from .observers import Message, parse_into

    with gzip.open(path, "rt", encoding="utf-8") as fh:
        rec = json.load(fh)
    if rec.get("format") != "aiotlab.recording/1" or rec.get("lab") != lab.id:
        raise ValueError(f"{path} is not a recording of lab {lab.id}")
    obs = MqttObservation(
        window=tuple(rec["observation"]["window"]),
        dropped=rec["observation"]["dropped"],
        oversized=rec["observation"]["oversized"],
        error=rec["observation"]["error"],
    )
    obs_spec = telemetry_observer(lab)
    max_payload = int(obs_spec["max_payload_bytes"]) if obs_spec else 65536
    for m in rec["observation"]["messages"]:
        raw = None if m["raw"] is None else base64.b64decode(m["raw"])
        msg = Message(m["topic"], m["rx"], raw, m["size"], qos=m.get("qos"), retain=m.get("retain"))
        obs.messages.append(parse_into(msg, max_payload))
    ctx = GradeContext(
        lab,
        rec["candidate"],
        rec["params"],
        rec["sheet"],
        rec["plant_info"],
        None,  # type: ignore[arg-type]
        Path(rec["workspace"]),
        obs,
        rec["status_start"],
        rec["status_end"],
        replay=True,
    )
    ctx._truth = {k: (v[0], v[1]) for k, v in rec["truth"].items()}
    ctx._extra = {k: (v[0], v[1]) for k, v in rec.get("truth_extra", {}).items()}
    ctx._emissions = rec["emissions"]
    ctx.probe_results = {k: CheckResult(**v) for k, v in rec.get("probe_results", {}).items()}
    ctx.blockers = rec.get("blockers", {})
    ctx.cache.update({k: v for k, v in rec.get("facts", {}).items() if k in RECORDED_FACTS})
    ctx.health = rec.get("health", {})
    ctx.solution_run = rec.get("solution_run", {})
    ctx.db_override = path.parent / rec["db_copy"] if rec.get("db_copy") else path.parent / "no-database-was-recorded"
    return ctx


def telemetry_observer(lab: Lab) -> dict[str, Any] | None:
    return next((o for o in lab.data.get("observers", []) if o["kind"] == "mqtt_telemetry"), None)


async def observe_telemetry(ctx: GradeContext, obs_spec: dict[str, Any]) -> None:
    """Subscribe as the lab says: plaintext and anonymous, or over TLS (the candidate's CA) with an issued account."""
    from .checks.common import tls_context

    sheet, params = ctx.sheet, ctx.params
    host, port, tls, user, password = sheet["mqtt"]["host"], sheet["mqtt"]["port"], None, None, None
    if obs_spec.get("tls"):
        port = int(params["mqtt_tls_port"])
        tls = tls_context(ctx)
        user = obs_spec["account"]
        password = str(params["mqtt_accounts"][user])
    if obs_spec.get("tls") and tls is None:
        now = time.time()
        ctx.observation = MqttObservation(
            error="the candidate's CA certificate is missing or invalid", window=(now, now)
        )
        return
    ctx.observation = await observe_mqtt(
        host,
        port,
        obs_spec["topic"],
        float(params["observe_s"]),
        int(obs_spec["max_messages"]),
        int(obs_spec["max_payload_bytes"]),
        f"aiotlab-grader-{ctx.candidate}",
        username=user,
        password=password,
        tls=tls,
    )


SOLUTION_LOG_MAX_BYTES = 4 * 1024 * 1024  # a solution printing without end fills no disk: the rest is counted
SOLUTION_NOT_STARTED = "solution-not-started"  # causes named at the report's top: the command never ran
SOLUTION_UNFINISHED = "solution-unfinished"  # a configuring command still running at its time limit
CONFIGURE_TIMEOUT_S = 240.0  # a configuring command's time to finish (certificates, every device reloaded)
SOLUTION_EXITED = "solution-exited-early"  # ... or ended before observation began
SOLUTION_ENDED_OBSERVED = "solution-ended-while-observed"  # a running solution that ended during observation
# A solution starts with the umask a login shell gives (as a workstation's `docker exec` does), not the CLI's own
# 077: keeping data private is the candidate's job the brief grades, which an inherited 077 would do for them.
SOLUTION_UMASK = 0o022
GRADING_MARK = "AIOTLAB_GRADING_ID"  # in every solution process's environment: how its strays are found


async def spawn(argv: list[str], cwd: Path, env: dict[str, str], log_path: Path) -> asyncio.subprocess.Process:
    """Start a solution process in its own session (so stop_process can end its whole group); its output goes to
    the log through a copier that keeps at most SOLUTION_LOG_MAX_BYTES per grading."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
        start_new_session=True,
        umask=SOLUTION_UMASK,
    )
    proc._aiotlab_log = asyncio.get_running_loop().create_task(copy_capped(proc, log_path))  # type: ignore[attr-defined]
    return proc


async def copy_capped(proc: asyncio.subprocess.Process, log_path: Path) -> int:
    """Copy the solution's output to its log up to the cap (shared by every step of one grading); returns the
    bytes dropped, also written at the end of the log (even when the copy is cut short)."""
    assert proc.stdout is not None
    used = log_path.stat().st_size if log_path.exists() else 0
    dropped = 0
    with log_path.open("ab") as log:
        try:
            while chunk := await proc.stdout.read(65536):
                room = max(0, SOLUTION_LOG_MAX_BYTES - used)
                log.write(chunk[:room])
                used += min(room, len(chunk))
                dropped += max(0, len(chunk) - room)
                proc._aiotlab_dropped = dropped  # type: ignore[attr-defined]
        finally:
            if dropped:
                log.write(
                    f"\n[aiotlab: {dropped} more bytes of output not kept: the log is capped at "
                    f"{SOLUTION_LOG_MAX_BYTES} bytes]\n".encode()
                )
    return dropped


def reap_marked(grading_id: str) -> int:
    """End every process still carrying this grading's mark: a solution's daemons that left its process group
    (double fork, setsid) must not outlive its grading."""
    import psutil

    killed = 0
    me = os.getpid()
    for p in psutil.process_iter(["pid"]):
        if p.info["pid"] == me:
            continue
        try:
            if p.environ().get(GRADING_MARK) == grading_id:
                p.kill()
                killed += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return killed


async def finish_log(proc: asyncio.subprocess.Process) -> int:
    task = getattr(proc, "_aiotlab_log", None)
    if task is None:
        return 0
    try:
        return await asyncio.wait_for(task, 5.0)
    except TimeoutError:  # a stray still holds the pipe: stop copying (wait_for has cancelled the copier)
        return int(getattr(proc, "_aiotlab_dropped", 0))


async def run_step(
    argv: list[str], cwd: Path, env: dict[str, str], log_path: Path, limit: float, ws: WorkstationRunner | None = None
) -> dict[str, Any]:
    """Run a solution's setup step to completion (bounded); its output goes to the solution log."""
    try:
        proc = await spawn(ws.wrap(argv, cwd, env) if ws else argv, cwd, env if not ws else host_env(), log_path)
    except OSError as exc:
        return {"argv": argv, "error": str(exc)}
    try:
        await asyncio.wait_for(proc.wait(), limit)
    except TimeoutError:
        await (ws.stop(proc) if ws else stop_process(proc))
        await finish_log(proc)
        return {"argv": argv, "error": f"did not finish within {limit:.0f} s"}
    await finish_log(proc)
    return {"argv": argv, "exit": proc.returncode}


def host_env() -> dict[str, str]:
    """The environment of the local `docker exec` that starts a solution in a workstation: nothing of the
    grader's but where docker is (the solution's own variables are passed to the workstation one by one)."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


class LagMonitor:
    """The grader's own event-loop lag while it observes: how late a 0.2 s sleep wakes up. A loaded host (or many
    candidates graded at once) shows here; then the timing of what the grader saw is the host's, not the
    candidate's."""

    PERIOD_S = 0.2

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(self.PERIOD_S)
            self.lags.append(max(0.0, loop.time() - t0 - self.PERIOD_S))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


def health_of(
    ctx: GradeContext,
    monitor: LagMonitor,
    observe_s: float,
    plant_stalls: list[dict[str, Any]],
    beside: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Was the grader able to see the window as it happened? Overloaded when its loop stalled longer than
    MAX_LOOP_LAG_S, when the observation covered less than MIN_COVERAGE of the window it asked for, or when the
    plant's own physics loop stalled (the truth the candidate is compared with was then late too)."""
    lags = sorted(monitor.lags)
    max_lag = lags[-1] if lags else 0.0
    w0, w1 = ctx.observation.window
    coverage = (w1 - w0) / observe_s if observe_s and w1 else 1.0
    stalls = max((float(e["detail"].get("late_ms", 0)) / 1000.0 for e in plant_stalls), default=0.0)
    reasons = []
    rate = len(ctx.observation.messages) / observe_s if observe_s else 0.0
    flood = bool(ctx.observation.dropped) or rate > FLOOD_MSGS_PER_S
    if max_lag > MAX_LOOP_LAG_S and not flood:
        reasons.append(f"grader loop stalled {max_lag:.2f} s (limit {MAX_LOOP_LAG_S} s)")
    if observe_s and not ctx.observation.error and coverage < MIN_COVERAGE:
        reasons.append(f"observation covered {coverage:.0%} of {observe_s:.0f} s")
    if stalls > MAX_LOOP_LAG_S:
        reasons.append(f"plant physics loop stalled {stalls:.2f} s")
    if beside and beside.get("ran") and not flood:  # the candidate's own environment (grader/canary.py)
        if float(beside["max_wake_lag_s"]) > MAX_LOOP_LAG_S:
            reasons.append(f"the candidate's environment stalled {beside['max_wake_lag_s']:.2f} s (a canary beside it)")
        if float(beside["max_sync_s"]) > MAX_SYNC_S:
            reasons.append(f"the workspace's disk took {beside['max_sync_s']:.2f} s to sync 4 KiB (a canary beside it)")
    return {
        "overloaded": bool(reasons),
        "reasons": reasons,
        "max_loop_lag_s": round(max_lag, 3),
        "p99_loop_lag_s": round(lags[int(0.99 * (len(lags) - 1))], 3) if lags else 0.0,
        "samples": len(lags),
        "coverage": round(coverage, 3),
        "plant_max_stall_s": round(stalls, 3),
        "candidate_environment": beside,
        # the candidate flooded the grader (over the message cap, or far more than the lab's streams make): its
        # own stalls are then the candidate's doing, not the host's, and are not a reason to grade again
        "candidate_flood": {"messages_per_s": round(rate, 1), "dropped_over_cap": ctx.observation.dropped}
        if flood
        else None,
    }


def not_started_hint(code: int, log_path: Path) -> tuple[str, str]:
    """(en, zh-TW) to add when an exit status says the command never ran: 126/127 come from the exec (not found,
    not executable), as a command run in the workstation reports it; the log's last line says which."""
    if code not in (126, 127):
        return "", ""
    try:
        last = next((ln for ln in reversed(log_path.read_text("utf-8", "replace").splitlines()) if ln.strip()), "")
    except OSError:
        last = ""
    said = f" (it said: {last.strip()[:200]})" if last else ""
    said_zh = f"（訊息：{last.strip()[:200]}）" if last else ""
    return (
        f": the command could not be started{said}; it is run directly, not by a shell: for `cd`, variables, "
        "pipes or `&&`, give `sh -c '...'` or a script",
        f"：指令無法啟動{said_zh}；指令不經 shell 直接執行：需要 `cd`、變數、管線或 `&&` 時，請用 `sh -c '...'` 或腳本",
    )


MAX_ATTEMPTS = 3  # a grading the host spoiled is re-run; after this many, its timing checks stay not assessable


async def grade(
    lab: Lab,
    candidate: str,
    *,
    solution: str | None = None,
    workspace: Path | None = None,
    out_dir: Path,
    progress: Callable[[str, str], None] | None = None,
    plant: str | None = None,
    restart_plant: bool = True,
) -> GradeRun:
    """`plant`: the plant this lab runs on when it is not the candidate's own (an exam with several labs gives each
    lab its own plant, so one lab's hardening never changes another's starting point). `restart_plant` False (an
    exam): a plant that is down is not restarted and graded behind the instructor's back (PlantDown).

    Grade once; when the grader or the host fell behind (checks not assessable for GRADER_OVERLOADED), grade
    again from the start, up to MAX_ATTEMPTS: the host's lag is never the candidate's fault."""
    say = progress or (lambda who, what: None)
    overloads: list[dict[str, Any]] = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        run = await _grade_once(
            lab,
            candidate,
            solution=solution,
            workspace=workspace,
            out_dir=out_dir,
            progress=progress,
            plant=plant,
            restart_plant=restart_plant,
        )
        spoiled = [r.id for r in run.results if r.blocked_by == GRADER_OVERLOADED]
        if not spoiled:
            break
        # why this attempt was graded again: the window's own health, or a check that found the host behind
        overloads.append({**run.health, "checks_not_assessable_for_overload": spoiled})
        if attempt < MAX_ATTEMPTS:
            say(candidate, f"grader overloaded ({'; '.join(run.health.get('reasons', []))}): grading again")
            await asyncio.sleep(2.0)
    run.health = {**run.health, "attempts": attempt, "overloaded_attempts": overloads}
    return run


async def _grade_once(
    lab: Lab,
    candidate: str,
    *,
    solution: str | None = None,
    workspace: Path | None = None,
    out_dir: Path,
    progress: Callable[[str, str], None] | None = None,
    plant: str | None = None,
    restart_plant: bool = True,
) -> GradeRun:
    from aiotlab.simulators.datasheet import build as build_datasheet

    from . import canary
    from .kit import write_kit

    say = progress or (lambda who, what: None)
    started = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    workspace = (workspace or out_dir / "workspace").resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    say(candidate, "plant")
    plant_id = plant or candidate  # plant-level names (kit, datasheet, parameters, CLI) are the plant's
    state = await asyncio.to_thread(ensure_plant, plant_id, restart_plant)
    check_plant_key(plant_id)
    control = ControlClient.for_candidate(plant_id)
    info = await asyncio.to_thread(control.get, "/v1/info")
    params = lab.params_for(plant_id, state.get("seed"))
    sheet = build_datasheet(plant_id)
    ws = WorkstationRunner.for_plant(state)
    sources_prefix = None
    if ws is not None:  # exam mode: the lab's folder in the candidate's home, whatever folder was asked for
        workspace = ws.lab_folder(lab.id)
        sources_prefix = await ws.use_plant_sources(state)
    if ws is None:
        kit = await write_kit(lab, plant_id, workspace, params, sheet)
    else:  # exam mode: never write through a workspace the candidate controls; `exam up` put the kit there
        kit = await write_kit(lab, plant_id, out_dir / "kit", params, sheet)
        await asyncio.to_thread(ws.provide_kit, kit, workspace)
    sheet_path, params_path = kit / "datasheet.json", kit / "lab-params.json"
    ctx = GradeContext(lab, candidate, params, sheet, info, control, workspace, started=started, workstation=ws)
    proc = None
    grading_id = uuid.uuid4().hex
    sol_info: dict[str, Any] = {"command": None, "observed_running_system": solution is None}
    ctx.solution_run = sol_info
    monitor = LagMonitor()
    try:  # from here on, whatever happens (a cancel too), the solution is stopped and its strays ended
        if solution:
            known = lab.solutions.get(solution)
            template = known.command if known else solution
            sol_dir = known.path if known else workspace
            values = {
                **params,
                "python": sys.executable,
                "solution_dir": sol_dir,
                "labs_dir": lab.path.parent,
                "workspace": workspace,
                "candidate": plant_id,
            }
            env = {
                **solution_base_env(),
                GRADING_MARK: grading_id,
                "AIOTLAB_CANDIDATE": plant_id,
                "AIOTLAB_WORKSPACE": str(workspace),
                "AIOTLAB_DATASHEET": str(sheet_path),
                "AIOTLAB_LAB_PARAMS": str(params_path),
                "AIOTLAB_GRADER_CERT": str(kit / "grader-opcua.der"),
            }
            if ws is not None:  # the same variables as the workstation sees its workspace, nothing of this host's
                ws_kit = f"{ws.path(workspace)}/.aiotlab"
                values |= {
                    "workspace": ws.path(workspace),
                    "solution_dir": ws.path(workspace),
                    "python": "python3",
                    **(ws.stage_known(lab, known) if known else {}),
                }
                env = {
                    **ws.base_env(),
                    GRADING_MARK: grading_id,
                    "AIOTLAB_CANDIDATE": plant_id,
                    "AIOTLAB_WORKSPACE": ws.path(workspace),
                    "AIOTLAB_DATASHEET": f"{ws_kit}/datasheet.json",
                    "AIOTLAB_LAB_PARAMS": f"{ws_kit}/lab-params.json",
                    "AIOTLAB_GRADER_CERT": f"{ws_kit}/grader-opcua.der",
                }
                await ws.snapshot()
            if lab.data.get("plant", {}).get("start", "factory") == "factory":
                # The brief describes a factory plant: start there, whatever an earlier lab or attempt left on it.
                say(candidate, "plant to factory configs")
                sol_info["plant_reset"] = await asyncio.to_thread(
                    ControlClient(control.url, control.token, timeout=60.0).post, "/v1/factory-reset", {}
                )
            if known and known.setup:
                say(candidate, "solution setup")
                sol_info["setup"] = await run_step(
                    format_command(known.setup, values), workspace, env, out_dir / "solution.log", SETUP_TIMEOUT_S, ws
                )
            if template:
                argv = format_command(template, values)
                sol_info["command"] = argv
                say(candidate, "starting solution")
                sol_info["started_at"] = time.time()
                try:
                    if ws is None:
                        proc = await spawn(argv, workspace, env, out_dir / "solution.log")
                    else:
                        proc = await spawn(
                            ws.wrap(argv, workspace, env), workspace, host_env(), out_dir / "solution.log"
                        )
                except OSError as exc:
                    sol_info["start_error"] = str(exc)
                    ctx.block(
                        SOLUTION_NOT_STARTED,
                        f"your command could not be started: {exc} (it is run without a shell: for variables, "
                        "pipes or `&&`, give `sh -c '...'` or a script)",
                        f"無法啟動您的指令：{exc}（指令不經 shell 執行：需要變數、管線或 `&&` 時，請用 `sh -c '...'` 或腳本）",
                        None,
                    )
                configures = lab.data.get("solution_kind") == "configures"
                if configures and proc is not None:  # a configuring command: probing starts when it has finished
                    limit = float(params.get("configure_timeout_s", CONFIGURE_TIMEOUT_S))
                    say(candidate, f"waiting for the command to configure the plant (at most {limit:g} s)")
                    try:
                        await asyncio.wait_for(proc.wait(), limit)
                    except TimeoutError:
                        sol_info["still_running_after_s"] = limit
                        sol_info.update(await (ws.stop(proc) if ws else stop_process(proc)))
                        sol_info["stopped_by"] = f"the grader, at the {limit:g} s limit ({sol_info.get('stopped_by')})"
                        ctx.block(
                            SOLUTION_UNFINISHED,
                            f"your command was still running {limit:g} s after it started: a configuring command "
                            "must finish before the plant is probed (it was stopped, and the plant probed as it left it)",
                            f"您的指令啟動 {limit:g} 秒後仍在執行：設定用的指令須在探測工廠前結束（已將其停止，並依其留下的工廠狀態探測）",
                            None,
                        )
                else:
                    await asyncio.sleep(float(params.get("warmup_s", 5)))
                if proc is not None and proc.returncode is not None:
                    sol_info["early_exit"] = proc.returncode
                if proc is not None and proc.returncode == 0 and configures:
                    sol_info["configured"] = True  # a lab's configuring command did its work and ended, as it should
                elif configures and "still_running_after_s" in sol_info:
                    pass  # stopped by the grader at its limit: said above, not as the command's own exit status
                elif configures and proc is not None and proc.returncode is not None:
                    ctx.block(
                        SOLUTION_EXITED,
                        f"your command ended with status {proc.returncode} (see solution.log): the plant was probed as "
                        "it left it",
                        f"您的指令以結束碼 {proc.returncode} 結束（見 solution.log）：依其留下的工廠狀態探測",
                        None,
                    )
                elif proc is not None and proc.returncode is not None:
                    en, zh = not_started_hint(proc.returncode, out_dir / "solution.log")
                    ctx.block(
                        SOLUTION_EXITED,
                        f"your command exited with status {proc.returncode} within the "
                        f"{float(params.get('warmup_s', 5)):g} s warm-up, before observation began{en} (see solution.log)",
                        f"您的指令在 {float(params.get('warmup_s', 5)):g} 秒暖機期間即結束（結束碼 {proc.returncode}），"
                        f"觀測尚未開始{zh}（見 solution.log）",
                        None,
                    )
        ctx.status_start = await asyncio.to_thread(control.get, "/v1/status")
        obs_spec = telemetry_observer(lab)
        beside: dict[str, Any] | None = None
        if obs_spec:
            say(candidate, f"observing {params['observe_s']} s")
            watcher = await canary.start(
                float(params["observe_s"]) + 2.0,
                workspace,
                ws.base_env() if ws is not None else solution_base_env(),
                ws,
            )
            monitor.start()
            await observe_telemetry(ctx, obs_spec)
            await monitor.stop()
            beside = await watcher.result()
            if proc is not None and proc.returncode is not None and "early_exit" not in sol_info and not configures:
                # a collector must run until the grader stops it: said once, at the report's top, so that the checks
                # that found nothing after it ended are read in its light
                after = time.time() - float(sol_info.get("started_at") or time.time())
                sol_info["ended_while_observed"] = proc.returncode
                ctx.block(
                    SOLUTION_ENDED_OBSERVED,
                    f"your command ended by itself with status {proc.returncode} while it was observed (about "
                    f"{after:.0f} s after it started, see solution.log): it must run until the grader stops it",
                    f"您的指令在觀測期間自行結束（結束碼 {proc.returncode}，約啟動後 {after:.0f} 秒，見 solution.log）："
                    "須持續執行至評分程式將其停止",
                    None,
                )
        ctx.status_end = await asyncio.to_thread(control.get, "/v1/status")
        stalls: list[dict[str, Any]] = []
        if obs_spec:
            w0, w1 = ctx.observation.window
            events = await asyncio.to_thread(control.get, f"/v1/events?start={w0 - 5}&end={w1}")
            stalls = [e for e in events if e.get("kind") == "tick_stall"]
        ctx.health = health_of(ctx, monitor, float(params.get("observe_s", 0)) if obs_spec else 0.0, stalls, beside)
        probing_from = time.time()
        try:
            await run_probes(lab, ctx, say)
        finally:
            await run_cleanups(ctx)
        if not obs_spec:  # a probes-only lab: the report's window is the probing period
            ctx.observation.window = (probing_from, time.time())
    finally:
        await monitor.stop()
        if sources_prefix:
            await asyncio.to_thread(release_sources, sources_prefix)
        if proc is not None:
            say(candidate, "stopping solution")
            stopped = await (ws.stop(proc) if ws else stop_process(proc))
            if "still_running_after_s" in sol_info:  # the grader stopped it already, at its limit: keep saying so
                stopped.pop("stopped_by", None)
            sol_info.update(stopped)
        if solution:
            sol_info["strays_ended"] = await (ws.reap() if ws else asyncio.to_thread(reap_marked, grading_id))
            if ws is not None:
                ws.unstage()
        if proc is not None:
            sol_info["log_bytes_dropped"] = await finish_log(proc)
    if proc is None and obs_spec:
        await asyncio.sleep(2.0)  # let a running collector commit what it published
    say(candidate, "checking")
    results = await run_checks(lab, ctx)
    save_recording(ctx, out_dir / "recording.json.gz")
    return GradeRun(
        lab,
        candidate,
        params,
        {
            "params_digest": info.get("params_digest"),
            "plant_id": plant_id,
            "seed": state.get("seed"),
            "identity_digest": sheet["parameter_fingerprint"],
        },
        list(results),
        ctx.observation.window,
        started,
        time.time(),
        sol_info,
        blockers=ctx.blockers,
        health=ctx.health,
    )
