"""Secure-pipeline checks on the candidate's own system: secure channels really used, data at rest and private keys
protected, and every read of stored data audited (who read what, when) before the data leaves the read tool.

Fail closed: protection is judged from positive evidence (permission bits the grader reads, an audit record it
finds, the order it observes), never assumed from what a file is not. When the candidate's pipeline produced
nothing to judge because of a broker defect another check owns (see broker.PIPELINE_CAUSES), these checks are
"not assessable" naming that cause instead of failing for it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fnmatch
import json
import os
import posixpath
import re
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import workspace as wsr
from ..results import CheckResult, failed
from . import check, registry
from .broker import PIPELINE_CAUSES, parse_log, probe
from .common import all_ok, control_get, hosts

NOTHING_PUBLISHED = "nothing-published"  # the collector published nothing the grader saw (owned by daq.coverage)


def pipeline_blocker(ctx: Any) -> str | None:
    """A recorded broker defect that leaves the grader (or the collector) without telemetry, if any."""
    return next((c for c in PIPELINE_CAUSES if c in ctx.blockers), None)


BROKER_LOG_SILENT = "broker-log-silent"  # the broker logs no connection at all, not even the grader's (mq.audit_log)


def collector_tried(ctx: Any) -> bool | None:
    """Did anything from the workstation open a connection to the broker since grading started (its log)? A broker
    defect explains missing telemetry only for a collector that tried; None when the log could not be read."""
    if "collector_tried" not in ctx.cache:
        try:
            ws = re.escape(hosts(ctx)["workstation"])
            lines = parse_log(ctx.control.get("/v1/logs/broker?lines=20000")["lines"])
        except Exception:  # noqa: BLE001 - unknown: keep the broker defect as the explanation
            ctx.cache["collector_tried"] = None
        else:
            since = ctx.started - 5
            # "New connection from" once a TLS handshake succeeded; "Client connection from ... failed" when it did
            # not (a listener demanding a client certificate the collector does not have): both are a collector trying
            tried = rf"(New connection from {ws}:\d+|Client connection from {ws}(:\d+)? failed)"
            ctx.cache["collector_tried"] = any(
                re.search(tried, ln) and _local_log_time_ok(t, since) for t, ln in lines
            ) or not any("New connection from" in ln for _, ln in lines)  # a silent log proves nothing
    return ctx.cache["collector_tried"]


def starved(ctx: Any, spec: dict[str, Any], **evidence: Any) -> CheckResult:
    """The verdict of a check that had no telemetry to judge: blocked by the broker defect that caused it (when the
    collector did try the broker), or by the collector publishing nothing (daq.coverage's failure)."""
    cause = pipeline_blocker(ctx)
    if cause is not None and collector_tried(ctx) is False:
        # nothing from the workstation ever reached the broker: no collector ran, whatever else is wrong
        block_no_collector(ctx, spec)
        return ctx.blocked(spec, NOTHING_PUBLISHED, {"observation_error": ctx.observation.error, **evidence})
    if cause is None:
        cause = NOTHING_PUBLISHED
        if not spec.get("fresh"):
            ctx.block(
                cause,
                "the collector published no reading the grader could observe"
                + (f" ({ctx.observation.error})" if ctx.observation.error else ""),
                "擷取程式未發布任何評分程式可觀測的讀值"
                + (f"（{ctx.observation.error}）" if ctx.observation.error else ""),
                "daq.coverage",
            )
    return ctx.blocked(spec, cause, {"observation_error": ctx.observation.error, **evidence})


@check("pipeline.observed")
def observed(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """A telemetry check (spec.params.judge, e.g. daq.coverage) judged only when there was telemetry to observe
    or nothing explains its absence: with no message observed while a broker defect kept the grader's verified
    subscription (or the collector) from the broker, the check is not assessable naming that defect."""
    if not ctx.observation.messages and pipeline_blocker(ctx):
        if collector_tried(ctx) is not False:
            return starved(ctx, spec, messages=0)
        if spec["params"]["judge"] == "daq.coverage":  # the broker's log shows it: nothing was published
            block_no_collector(ctx, spec)
            return failed(
                spec["id"],
                spec["points"],
                NO_COLLECTOR_EN + " (the broker's log): none of the required streams was published",
                NO_COLLECTOR_ZH + "（MQTT Broker 日誌）：要求的資料流皆未發布",
                {"messages": 0, "observation_error": ctx.observation.error, "source": "the broker's log"},
            )
        return starved(ctx, spec, messages=0)
    return registry()[spec["params"]["judge"]](ctx, spec)


NO_COLLECTOR_EN = "nothing from the workstation connected to the broker since grading started"
NO_COLLECTOR_ZH = "自評分開始，沒有任何來自工作站的連線到達 MQTT Broker"


def block_no_collector(ctx: Any, spec: dict[str, Any]) -> None:
    """No collector ran: the cause the telemetry checks are not assessable for, owned by daq.coverage."""
    if not spec.get("fresh"):
        ctx.block(
            NOTHING_PUBLISHED,
            NO_COLLECTOR_EN + ": no collector published anything",
            NO_COLLECTOR_ZH + "：擷取程式未發布任何資料",
            "daq.coverage",
        )


def _local_log_time_ok(t: float | None, since: float) -> bool:
    return t is None or t >= since


@check("pipeline.secure_channels")
async def secure_channels(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """The collector's MQTT connections are on the TLS port with its account; its OPC UA sessions are
    SignAndEncrypt with its account (both since this grading started)."""
    ws, tls_port = hosts(ctx)["workstation"], int(ctx.params["mqtt_tls_port"])
    user = ctx.params["collector_account"]
    since = ctx.started - 5
    lines = parse_log((await control_get(ctx, "/v1/logs/broker?lines=20000"))["lines"])
    ports: dict[str, int] = {}
    mqtt_sessions = []
    for t, ln in lines:
        m = re.search(rf"New connection from ({re.escape(ws)}:\d+) on port (\d+)", ln)
        if m:
            ports[m.group(1)] = int(m.group(2))
        m = re.search(rf"New client connected from ({re.escape(ws)}:\d+) as (\S+) \(.*u'([^']*)'\)", ln)
        if m and m.group(3) == user and _local_log_time_ok(t, since):
            mqtt_sessions.append({"peer": m.group(1), "client_id": m.group(2), "port": ports.get(m.group(1))})
    audit = (await control_get(ctx, "/v1/logs/plc2-audit?lines=20000"))["lines"]
    ua_sessions = []
    for ln in audit:
        try:
            rec = json.loads(ln)
        except ValueError:
            continue
        if rec.get("event") == "session_activated" and rec.get("user") == user and rec.get("ts", 0) >= since:
            ua_sessions.append({k: rec.get(k) for k in ("ts", "policy", "mode", "peer")})
    on_tls = [s for s in mqtt_sessions if s["port"] == tls_port]
    probes = [
        probe(
            f"the collector's MQTT sessions (user {user}, from {ws}) since grading started are on TLS port {tls_port}",
            mqtt_sessions[-5:] or "no session of this account from the workstation in the broker log",
            bool(mqtt_sessions) and len(on_tls) == len(mqtt_sessions),
            f"{len(mqtt_sessions) - len(on_tls)} of {len(mqtt_sessions)} MQTT sessions of {user} are not on TLS port "
            f"{tls_port}"
            if mqtt_sessions
            else f"the broker log shows no MQTT session of {user} from {ws} since grading started",
            f"{user} 的 {len(mqtt_sessions)} 個 MQTT 連線中有 {len(mqtt_sessions) - len(on_tls)} 個不在 TLS 連接埠 "
            f"{tls_port}"
            if mqtt_sessions
            else f"MQTT Broker 日誌顯示自評分開始沒有 {user} 來自 {ws} 的 MQTT 連線",
        ),
        probe(
            f"the collector's OPC UA sessions (user {user}) since grading started use SignAndEncrypt",
            ua_sessions[-5:] or "no session of this account in PLC-2's audit log",
            bool(ua_sessions) and all(s["mode"] == "SignAndEncrypt" for s in ua_sessions),
            f"not every OPC UA session of {user} uses SignAndEncrypt: its modes are "
            f"{sorted({str(s['mode']) for s in ua_sessions})}"
            if ua_sessions
            else f"PLC-2's audit log shows no session of {user} since grading started",
            f"{user} 的 OPC UA 工作階段並非全部使用 SignAndEncrypt：其模式為 "
            f"{sorted({str(s['mode']) for s in ua_sessions})}"
            if ua_sessions
            else f"PLC-2 的稽核日誌顯示自評分開始沒有 {user} 的工作階段",
        ),
    ]
    if not mqtt_sessions and pipeline_blocker(ctx):  # the collector could not reach the broker: not its defect
        return starved(ctx, spec, probes=probes)
    if not mqtt_sessions and not any("New client connected" in ln for t, ln in lines if _local_log_time_ok(t, since)):
        # the log names no client at all, not even the grader's own: it cannot show the collector's sessions
        if not spec.get("fresh"):
            ctx.block(
                BROKER_LOG_SILENT,
                "the broker's log (log_dest stderr) names no client connection since grading started, not even the "
                "grader's: the collector's sessions cannot be read from it",
                "MQTT Broker 日誌（log_dest stderr）自評分開始未記錄任何用戶端連線，連評分程式自己的連線也沒有：無法從中得知擷取程式的連線",
                "mq.audit_log",
            )
        return ctx.blocked(spec, BROKER_LOG_SILENT, {"probes": probes})
    return all_ok(
        spec,
        probes,
        "The collector uses TLS and OPC UA SignAndEncrypt with its own accounts",
        "擷取程式以自有帳號使用 TLS 與 OPC UA 簽章加密",
    )


def _perm(st: os.stat_result) -> int:
    return stat.S_IMODE(st.st_mode)


def permission_probe(path: Path, name: str, st: os.stat_result, mask: int, what: str) -> dict[str, Any]:
    """Judge an entry's permission bits against `mask` (bits that must be clear). A symbolic link is judged by what
    it points to (its metadata only: nothing is read through it), and the evidence says so."""
    note = link_en = link_zh = ""
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(path)
            st = os.stat(path)
            note = f"a symbolic link to {target}, "
            link_en, link_zh = f" (a symbolic link to {target})", f"（指向 {target} 的符號連結）"
        except OSError as exc:
            return probe(
                f"{name}: {what}",
                f"a symbolic link that does not resolve ({exc.strerror})",
                False,
                f"{name} is a symbolic link that does not resolve ({exc.strerror})",
                f"{name} 是無法解析的符號連結（{exc.strerror}）",
            )
    mode = _perm(st)
    who, who_zh = ("group or others", "群組或其他使用者") if mask & 0o070 else ("others", "其他使用者")
    return probe(
        f"{name}: {what}",
        f"{note}mode {mode:04o}",
        mode & mask == 0,
        f"{name}{link_en} has mode {mode:04o}, which gives {who} access",
        f"{name}{link_zh} 的權限為 {mode:04o}，{who_zh}具有存取權限",
    )


def data_entries(ctx: Any) -> tuple[str, os.stat_result | None, list[tuple[str, os.stat_result]]]:
    """(data directory, its lstat or None, every entry under it other than the audit log), never through a link."""
    ws = Path(ctx.workspace)
    rel = str(Path(str(ctx.params["db_path"])).parent)
    audit_rel = str(Path(str(ctx.params["audit_log"])))
    try:
        top = wsr.lstat(ws, rel)
    except wsr.WorkspaceError:
        return rel, None, []
    if not stat.S_ISDIR(top.st_mode):
        return rel, top, []
    entries = [(f"{rel}/{r}", st) for r, st in wsr.walk(ws / rel)]
    return rel, top, [(n, st) for n, st in entries if n != audit_rel]


@check("storage.protected")
def storage_protected(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Stored telemetry readable by its owner only, judged from the permission bits of every entry under the data
    directory (the database, its journal, any copy or export): positive evidence, whatever the files' format."""
    ws = Path(ctx.workspace)
    rel, top, entries = data_entries(ctx)
    files = [(n, st) for n, st in entries if not stat.S_ISDIR(st.st_mode)]
    if top is not None and not stat.S_ISDIR(top.st_mode):
        what = f"{rel}/ is a directory of stored data"
        return all_ok(
            spec,
            [
                probe(
                    what,
                    "not a directory (a link or a file)",
                    False,
                    f"{rel} is not a directory (a link or a file)",
                    f"{rel} 不是目錄（而是連結或檔案）",
                )
            ],
            "",
            "",
        )
    if not files:
        if not ctx.observation.messages:
            return starved(ctx, spec, data_dir=rel)
        return all_ok(
            spec,
            [
                probe(
                    f"stored telemetry under {rel}/",
                    "no file",
                    False,
                    f"nothing is stored under {rel}/",
                    f"{rel}/ 下沒有儲存任何資料",
                )
            ],
            "",
            "",
        )
    probes = [permission_probe(ws / rel, f"{rel}/", top, 0o007, "gives others no access")]  # type: ignore[arg-type]
    for n, st in entries:
        # folders under data/ are not the brief's (data/ itself and every file are): a 0755 folder inside a 0700
        # data/ exposes nothing, and its files are judged one by one
        if not stat.S_ISDIR(st.st_mode):
            what = "readable by its owner only (no permission for group or others)"
            probes.append(permission_probe(ws / n, n, st, 0o077, what))
    return all_ok(
        spec,
        probes,
        f"Stored telemetry is readable by its owner only ({len(files)} file{'s' if len(files) != 1 else ''} under {rel}/)",
        f"儲存的遙測資料僅擁有者可讀（{rel}/ 下 {len(files)} 個檔案）",
        files=[n for n, _ in files],
    )


def broker_keyfiles(conf: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^\s*keyfile\s+(.+?)\s*$", conf, re.MULTILINE)]


KEY_SNIFF_BYTES = 65536  # a private key file is a few KB; anything larger is not read as one
KEY_SNIFF_FILES = 200


def is_private_key(data: bytes) -> bool:
    """A PEM block of any private key type, or DER that parses as a private key (PKCS#8, PKCS#1, SEC1; an
    encrypted PKCS#8 key asks for a password, which still makes it a key)."""
    if b"PRIVATE KEY-----" in data:
        return True
    from cryptography.hazmat.primitives.serialization import load_der_private_key

    try:
        load_der_private_key(data, password=None)
        return True
    except TypeError:  # encrypted: a password is needed, so it is a key
        return True
    except Exception:  # noqa: BLE001 - not a key (or not DER): anything the parser refuses
        return False


def keys_by_content(ws: Path, folders: set[str]) -> list[tuple[str, os.stat_result]]:
    """Regular files (one level) of the given workspace folders whose content is a private key."""
    out: list[tuple[str, os.stat_result]] = []
    for folder in sorted(folders):
        try:
            if folder and not stat.S_ISDIR(wsr.lstat(ws, folder).st_mode):
                continue
        except wsr.WorkspaceError:
            continue
        for rel, st in list(wsr.walk(ws / folder if folder else ws))[:KEY_SNIFF_FILES]:
            if "/" in rel or not stat.S_ISREG(st.st_mode) or st.st_size > KEY_SNIFF_BYTES:
                continue
            name = f"{folder}/{rel}" if folder else rel
            try:
                data = wsr.read_bytes(ws, name, KEY_SNIFF_BYTES)
            except (wsr.WorkspaceError, OSError):
                continue
            if is_private_key(data):
                out.append((name, st))
    return out


def matching(ws: Path, pattern: str) -> list[tuple[str, os.stat_result]]:
    """Workspace entries matching a pattern such as pki/*.key (one directory level, as the shell's glob)."""
    folder, name = posixpath.split(pattern)
    try:
        if folder and not stat.S_ISDIR(wsr.lstat(ws, folder).st_mode):
            return []
    except wsr.WorkspaceError:
        return []
    out = []
    for rel, st in wsr.walk(ws / folder if folder else ws):
        if "/" not in rel and fnmatch.fnmatchcase(rel, name) and not stat.S_ISDIR(st.st_mode):
            out.append((f"{folder}/{rel}" if folder else rel, st))
    return out


@check("storage.private_keys")
async def private_keys(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Every private key the brief's rule names (each file matching the patterns in params.private_keys, and the
    broker's `keyfile` wherever it is) gives no permission to group or others."""
    ws = Path(ctx.workspace)
    patterns = list(ctx.params["private_keys"])
    found: dict[str, tuple[str, Path, os.stat_result]] = {}  # real path -> (name in the evidence, path, lstat)
    for pat in patterns:
        for name, st in matching(ws, pat):
            found.setdefault(os.path.realpath(ws / name), (name, ws / name, st))
    # a private key kept under another name in the same folders is a private key all the same (round 9: a collector's
    # key as pki/collector-key.der, 0644, passed as "every private key is owner-only")
    for name, st in keys_by_content(ws, {posixpath.split(p)[0] for p in patterns}):
        found.setdefault(os.path.realpath(ws / name), (f"{name} (a private key by its content)", ws / name, st))
    try:
        conf = (await control_get(ctx, "/v1/config/mosquitto.conf")).get("text", "")
    except Exception as exc:  # noqa: BLE001 - evidence; the workspace keys are still judged
        conf, conf_error = "", str(exc)
    else:
        conf_error = None
    unseen = []
    for k in broker_keyfiles(conf):
        path = Path(k) if Path(k).is_absolute() else ws / k
        if ctx.workstation is not None and Path(k).is_absolute():  # exam mode: the candidate's path, in their home
            path = ctx.workstation.host_path(k) or path
        try:
            st = os.lstat(path)
        except OSError:
            unseen.append(k)
            continue
        found.setdefault(os.path.realpath(path), (f"{k} (the broker's keyfile)", path, st))
    if not found:
        return all_ok(
            spec,
            [
                probe(
                    f"private keys matching {', '.join(patterns)} or named by the broker's keyfile",
                    "none found",
                    False,
                    f"no private key found ({', '.join(patterns)}; broker keyfile: {unseen or 'none'})",
                    f"找不到任何私鑰（{', '.join(patterns)}；MQTT Broker keyfile：{unseen or '無'}）",
                )
            ],
            "",
            "",
        )
    names = sorted(name for name, _, _ in found.values())
    probes = [
        permission_probe(path, name, st, 0o077, "no permission for group or others")
        for name, path, st in sorted(found.values(), key=lambda x: x[0])
    ]
    return all_ok(
        spec,
        probes,
        f"Every private key is readable by its owner only: {', '.join(names)}",
        f"所有私鑰僅擁有者可讀：{', '.join(names)}",
        patterns=patterns,
        keys=names,
        broker_keyfiles_not_on_this_host=unseen,
        broker_config_error=conf_error,
    )


def _published(ctx: Any, device: str, tag: str, with_rx: bool = False) -> list[Any]:
    """(ts, value) of every reading of the stream the grader received; with_rx: (ts, value, receipt time)."""
    out: list[Any] = []
    for m in ctx.observation.messages:
        b = m.body
        if isinstance(b, dict) and b.get("device") == device and b.get("tag") == tag:
            out.append((str(b.get("ts")), b.get("value"), m.rx) if with_rx else (str(b.get("ts")), b.get("value")))
    return out


def _parse_ts(ts: str) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else None


def _records(ws: Path, audit_rel: str, reader: str) -> list[dict[str, Any]]:
    """The audit log's records of `reader`, read as every workspace file is (no link followed, size capped)."""
    out = []
    try:
        text = wsr.read_text(ws, audit_rel)
    except wsr.WorkspaceError:
        return out
    for ln in text.splitlines()[-5000:]:
        try:
            rec = json.loads(ln)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("user") == reader:
            out.append(rec)
    return out


def _last_lines(ws: Path, audit_rel: str, n: int) -> list[str]:
    """The audit log's last lines (each cut to 200 characters): what the tool did write, when not the record asked."""
    try:
        return [ln[:200] for ln in wsr.read_text(ws, audit_rel).splitlines()[-n:]]
    except wsr.WorkspaceError:
        return []


def _blocked_writing(sid: int, pipe_ino: int) -> bool:
    """Is a process of the tool's session blocked writing into the grader's (full) output pipe?"""
    link = f"pipe:[{pipe_ino}]"
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[3]) != sid:
                continue
            if "pipe_write" not in (d / "wchan").read_text():
                continue
            if any(os.readlink(fd) == link for fd in (d / "fd").iterdir()):
                return True
        except (OSError, ValueError, IndexError):
            continue
    return False


def tool_env(ctx: Any | None = None) -> dict[str, str]:
    """The environment a candidate's program gets from the grader: the engine's allow-list (never a secret)."""
    from ..engine import solution_base_env

    env = solution_base_env()
    if ctx is not None:
        env.update(AIOTLAB_CANDIDATE=str(ctx.candidate), AIOTLAB_WORKSPACE=str(ctx.workspace))
    return env


def run_held(
    argv: list[str],
    cwd: Path,
    audited: Callable[[], bool],
    limit: float = 15.0,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run the read tool with its output held back: its stdout is a pipe the grader has filled, so not one byte
    of its output can reach the grader until the grader reads. Meanwhile the grader watches the audit log. An
    audit record that appears while the output is held was written before any data was printed; a tool found
    blocked writing its output (for 1 s, into this pipe) with no record yet prints before it audits. Then the
    output is read in full. `limit` bounds each phase (waiting for the order, then reading the output)."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    held = 0
    for chunk in (4096, 1):
        try:
            while True:
                held += os.write(w, b"\0" * chunk)
        except BlockingIOError:
            pass
    os.set_blocking(w, True)
    ino = os.fstat(r).st_ino
    err = tempfile.TemporaryFile()
    t0 = time.time()
    try:
        proc = subprocess.Popen(  # noqa: S603 - the candidate's own tool, in their workspace
            argv,
            cwd=cwd,
            env=env or tool_env(),
            stdout=w,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            umask=0o022,  # as a login shell (and the solution, engine.SOLUTION_UMASK): privacy is the tool's job
        )
    except OSError as exc:
        for fd in (r, w):
            os.close(fd)
        err.close()
        return {
            "t0": t0,
            "t1": t0,
            "out": b"",
            "stderr": str(exc),
            "exit": None,
            "order": "did not start",
            "before_output": False,
        }
    os.close(w)
    order, waited_for = None, None
    blocked_since = None
    deadline = t0 + limit
    while time.time() < deadline:
        if audited():
            order = "audited while the output was held"
            break
        if proc.poll() is not None:
            order = "audited while the output was held" if audited() else "exited without printing"
            break
        if _blocked_writing(proc.pid, ino):
            blocked_since = blocked_since or time.time()
            if time.time() - blocked_since >= 1.0:
                order = "blocked writing its output with no audit record yet"
                break
        else:
            blocked_since = None
        time.sleep(0.05)
    else:
        waited_for = round(time.time() - t0, 1)
        order = f"no audit record within {waited_for} s while its output was held"
    decided = time.time()
    # release the output: drop the grader's filler, keep the tool's bytes
    out = bytearray()
    drop = held
    end = decided + limit
    os.set_blocking(r, False)
    while time.time() < end:
        try:
            chunk = os.read(r, 65536)
        except BlockingIOError:
            if proc.poll() is not None and not _pending(r):
                break
            time.sleep(0.02)
            continue
        if not chunk:
            break
        if drop:
            cut = min(drop, len(chunk))
            chunk, drop = chunk[cut:], drop - cut
        out += chunk
        if len(out) > 32 * 2**20:
            break
    timed_out = proc.poll() is None
    if timed_out:
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass
    proc.wait()
    os.close(r)
    err.seek(0)
    stderr = err.read()[-2000:].decode(errors="replace")
    err.close()
    return {
        "t0": t0,
        "t1": time.time(),
        "out": bytes(out),
        "stderr": stderr + (f" (killed after {limit:.0f} s)" if timed_out else ""),
        "exit": proc.returncode,
        "order": order,
        "before_output": order in ("audited while the output was held", "exited without printing"),
    }


def _pending(fd: int) -> bool:
    import fcntl
    import termios
    from array import array

    buf = array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, buf)
    except OSError:
        return False
    return buf[0] > 0


@check("storage.audit_trail")
async def audit_trail(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """The grader reads stored data through the candidate's read tool as a random user. The tool must return the
    published readings of that stream since --since, append the read to the audit log (who, what, when) before any
    data leaves it (the order is observed: see run_held), and the audit log must not be writable by others."""
    ws = Path(ctx.workspace)
    tool, audit_rel = ws / ctx.params["read_tool"], str(ctx.params["audit_log"])
    device, tag = ctx.params["audit_probe"]["device"], ctx.params["audit_probe"]["tag"]
    reader = f"assessor-{os.urandom(3).hex()}"
    # --since is the instant of a reading the collector published (a third into the window): that reading itself
    # (ts = --since) must be returned, every later one too, and nothing older than it
    # readings received in the window, whatever instant their own ts names (a collector whose ts are off is not judged
    # for that here: round 9's 8-hours-early stamps left this check with no reading and "not assessable" for a
    # defect this lab does not grade; --since is then that reading's own ts, as the tool stores and compares them)
    timed = sorted(
        (
            (t, ts, v)
            for ts, v, rx in _published(ctx, device, tag, with_rx=True)
            if (t := _parse_ts(ts)) is not None and rx >= ctx.observation.window[0]
        ),
        key=lambda x: x[0],
    )
    if not timed:
        since = rfc3339_exact(dt.datetime.fromtimestamp(ctx.observation.window[0], dt.UTC))
        return starved(ctx, spec, stream=f"{device}/{tag}", since=since)
    since_dt, boundary, _ = timed[len(timed) // 3]
    since = rfc3339_exact(since_dt)
    published = [(ts, v) for t, ts, v in timed if t >= since_dt]
    argv = [str(tool), "--user", reader, "--device", device, "--tag", tag, "--since", since]
    env = tool_env(ctx)
    if ctx.workstation is not None:  # exam mode: the candidate's tool runs in their workstation, as them
        wst = ctx.workstation
        env = {**wst.base_env(), "AIOTLAB_CANDIDATE": str(ctx.candidate), "AIOTLAB_WORKSPACE": wst.path(ws)}
        argv = wst.enter([wst.path(tool), *argv[1:]], ws, env)
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    run = await asyncio.to_thread(run_held, argv, ws, lambda: bool(_records(ws, audit_rel, reader)), 15.0, env)
    rows = []
    for ln in run["out"].decode(errors="replace").splitlines()[:100000]:
        try:
            rows.append(json.loads(ln))
        except ValueError:
            continue
    got = {(str(r.get("ts")), r.get("value")) for r in rows if isinstance(r, dict)}
    found = sum(1 for p in published if p in got)
    missing = [p for p in published if p not in got][:5]
    older = [r for r in rows if isinstance(r, dict) and (t := _parse_ts(str(r.get("ts")))) is not None and t < since_dt]
    probes = [
        probe(
            f"read-telemetry --user {reader} --device {device} --tag {tag} --since {since} returns every reading "
            f"of that stream the collector published since then (from the reading stamped {boundary}, whose time "
            "is --since, on)",
            {
                "exit": run["exit"],
                "rows": len(rows),
                "published_since": len(published),
                "returned_of_published": found,
                "boundary_reading": boundary,
                "boundary_returned": any(p[0] == boundary for p in published if p in got),
                "missing_examples": missing,
                "stderr": run["stderr"][-300:],
            },
            found == len(published),
            f"the read tool {ctx.params['read_tool']} could not be run: {run['stderr']} (is it there and executable?)"
            if run["order"] == "did not start"
            else f"the read tool printed {len(rows)} rows holding {found} of the {len(published)} published readings "
            f"(ts and value exactly as published; e.g. missing {missing[0] if missing else '-'}, first row printed "
            f"{json.dumps(rows[0])[:160] if rows else 'none'})",
            f"無法執行讀取工具 {ctx.params['read_tool']}：{run['stderr']}（檔案是否存在且可執行？）"
            if run["order"] == "did not start"
            else f"讀取工具輸出 {len(rows)} 列，只含已發布 {len(published)} 筆讀值中的 {found} 筆（ts 與數值須與發布時完全相同；"
            f"例如缺少 {missing[0] if missing else '-'}，第一列為 {json.dumps(rows[0], ensure_ascii=False)[:160] if rows else '無'}）",
        )
    ]
    if rows:
        probes.append(
            probe(
                f"no reading older than --since {since} is printed",
                {"older_rows": len(older), "examples": older[:3]},
                not older,
                f"the read tool printed {len(older)} reading(s) older than --since {since}, e.g. "
                f"{json.dumps(older[0])[:160] if older else ''}",
                f"讀取工具輸出了 {len(older)} 筆早於 --since {since} 的讀值，例如 "
                f"{json.dumps(older[0], ensure_ascii=False)[:160] if older else ''}",
            )
        )
    records = _records(ws, audit_rel, reader)
    try:
        audit_st: os.stat_result | None = wsr.lstat(ws, audit_rel)
    except wsr.WorkspaceError:
        audit_st = None

    def timely(rec: dict[str, Any]) -> bool:
        t = _parse_ts(str(rec.get("ts")))
        return t is not None and run["t0"] - 5.0 <= t.timestamp() <= run["t1"] + 5.0

    good = [r for r in records if r.get("action") == "read" and r.get("device") == device and r.get("tag") == tag]
    probes.append(
        probe(
            f"the audit log {ctx.params['audit_log']} records that {reader} read {device}/{tag} "
            "(action read, RFC 3339 time with offset, within 5 s of the call)",
            records[:3]
            or (
                f"no record with user {reader}; the log's last lines: {_last_lines(ws, audit_rel, 2)}"
                if audit_st
                else f"{audit_rel} missing or unreadable"
            ),
            any(timely(r) for r in good),
            "no audit record of the grader's read with user, action read, device, tag and an RFC 3339 time"
            if not good
            else f"the audit record's time is not an RFC 3339 time with offset within 5 s: {good[0].get('ts')}",
            f"找不到評分程式這次讀取的稽核紀錄（需含使用者 {reader}、action read、device {device}、tag {tag} 與 "
            "RFC 3339 時間）"
            if not good
            else f"稽核紀錄的時間不是含時區位移、且在呼叫前後 5 秒內的 RFC 3339 時間：{good[0].get('ts')}",
        )
    )
    if records:  # the order of a record that was never written is the missing record's matter (above)
        probes.append(
            probe(
                "the audit record is written before any data leaves the read tool (its output held back until then)",
                run["order"],
                bool(run["before_output"]),
                *_order_words(run["order"]),
            )
        )
    probes.append(
        probe(
            f"the audit log {ctx.params['audit_log']} is not writable by group or others",
            f"{_perm(audit_st):04o}" if audit_st else "missing",
            audit_st is not None and stat.S_ISREG(audit_st.st_mode) and _perm(audit_st) & 0o022 == 0,
            *_audit_mode_words(ctx.params["audit_log"], audit_st),
        )
    )
    return all_ok(
        spec, probes, "Reads of stored data are audited before data is served", "儲存資料之讀取皆先記錄稽核再輸出"
    )


def _order_words(order: str | None) -> tuple[str, str]:
    """(en, zh-TW) of a read tool's order that is not "audited before any output" (run_held's `order`)."""
    after = "its audit record was not written before its output"
    after_zh = "其稽核紀錄未在輸出前寫入"
    if order == "blocked writing its output with no audit record yet":
        return (
            f"the read tool was blocked writing its output with no audit record yet (it prints before it audits): "
            f"{after}",
            f"讀取工具在尚無稽核紀錄時就已寫出輸出而被阻塞（先輸出、後稽核）：{after_zh}",
        )
    m = re.fullmatch(r"no audit record within (\S+) s while its output was held", str(order))
    if m:
        return (
            f"the read tool wrote no audit record within {m.group(1)} s while its output was held: {after}",
            f"讀取工具的輸出被暫留期間，{m.group(1)} 秒內未寫入任何稽核紀錄：{after_zh}",
        )
    if order == "did not start":
        return "the read tool did not start", "讀取工具無法啟動"
    return f"the read tool: {order}; {after}", f"讀取工具：{order}；{after_zh}"


def _audit_mode_words(name: str, st: os.stat_result | None) -> tuple[str, str]:
    """(en, zh-TW) of an audit log that is missing, not a regular file, or writable by group or others."""
    if st is None:
        return f"the audit log {name} does not exist", f"稽核日誌 {name} 不存在"
    if not stat.S_ISREG(st.st_mode):
        return (
            f"the audit log {name} is not a regular file (mode {_perm(st):04o})",
            f"稽核日誌 {name} 不是一般檔案（權限 {_perm(st):04o}）",
        )
    return (
        f"the audit log {name} has mode {_perm(st):04o}: group or others can write it",
        f"稽核日誌 {name} 的權限為 {_perm(st):04o}：群組或其他使用者可寫入",
    )


def rfc3339_exact(t: dt.datetime) -> str:
    """UTC with a Z and as many fractional digits as the instant needs (milliseconds when they suffice), so that
    a reading's own instant is --since exactly (from the parsed time, not a float that would round it)."""
    d = t.astimezone(dt.UTC)
    spec = "milliseconds" if d.microsecond % 1000 == 0 else "microseconds"
    return d.isoformat(timespec=spec).replace("+00:00", "Z")
