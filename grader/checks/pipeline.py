"""Secure-pipeline checks on the candidate's own system: secure channels really used, data at rest protected,
and every read of stored data audited (who read what, when)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from ..results import CheckResult
from . import check
from .common import all_ok, control_get, hosts

SQLITE_MAGIC = b"SQLite format 3\x00"


@check("pipeline.secure_channels")
async def secure_channels(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """The collector's MQTT connection is on the TLS port with its account; its OPC UA session is SignAndEncrypt."""
    ws, tls_port = hosts(ctx)["workstation"], int(ctx.params["mqtt_tls_port"])
    user = ctx.params["collector_account"]
    lines = (await control_get(ctx, "/v1/logs/broker?lines=20000"))["lines"]
    ports: dict[str, int] = {}
    mqtt_sessions = []
    for ln in lines:
        m = re.search(rf"New connection from ({re.escape(ws)}:\d+) on port (\d+)", ln)
        if m:
            ports[m.group(1)] = int(m.group(2))
        m = re.search(rf"New client connected from ({re.escape(ws)}:\d+) as (\S+) \(.*u'([^']*)'\)", ln)
        if m and m.group(3) == user:
            mqtt_sessions.append({"peer": m.group(1), "client_id": m.group(2), "port": ports.get(m.group(1))})
    probes = [
        {
            "what": f"collector's MQTT sessions (user {user}, from {ws}) are on TLS port {tls_port}",
            "observed": mqtt_sessions[-5:] or "no session of this account in the broker log",
            "ok": bool(mqtt_sessions) and all(s["port"] == tls_port for s in mqtt_sessions),
            "why": "collector not connected with its account over TLS",
        }
    ]
    audit = (await control_get(ctx, "/v1/logs/plc2-audit?lines=20000"))["lines"]
    ua_sessions = []
    for ln in audit:
        try:
            rec = json.loads(ln)
        except ValueError:
            continue
        if rec.get("event") == "session_activated" and rec.get("user") == user and rec.get("ts", 0) >= ctx.started - 5:
            ua_sessions.append({k: rec.get(k) for k in ("ts", "policy", "mode", "peer")})
    probes.append(
        {
            "what": f"collector's OPC UA sessions (user {user}) use SignAndEncrypt",
            "observed": ua_sessions[-5:] or "no session of this account since grading started",
            "ok": bool(ua_sessions) and all(s["mode"] == "SignAndEncrypt" for s in ua_sessions),
            "why": "collector has no SignAndEncrypt OPC UA session with its account",
        }
    )
    return all_ok(
        spec,
        probes,
        "The collector uses TLS and OPC UA SignAndEncrypt with its own accounts",
        "擷取程式以自有帳號使用 TLS 與 OPC UA 簽章加密",
    )


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@check("storage.protected")
def storage_protected(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    db = Path(ctx.workspace) / ctx.params["db_path"]
    probes = []
    if not db.is_file():
        probes.append({"what": f"database {db}", "observed": "missing", "ok": False, "why": f"{db} does not exist"})
        return all_ok(spec, probes, "", "")
    with db.open("rb") as fh:
        encrypted = fh.read(16) != SQLITE_MAGIC
    mode, dmode = _mode(db), _mode(db.parent)
    private = mode & 0o077 == 0 and dmode & 0o007 == 0
    probes.append(
        {
            "what": "stored data readable by its owner only (file 0600, directory without access for others)"
            " or encrypted",
            "observed": {"file_mode": oct(mode), "dir_mode": oct(dmode), "encrypted": encrypted},
            "ok": private or encrypted,
            "why": f"database mode {oct(mode)} in a {oct(dmode)} directory, not encrypted",
        }
    )
    for name in ctx.params.get("private_files", []):
        p = Path(ctx.workspace) / name
        if p.exists():
            probes.append(
                {
                    "what": f"{name} not accessible to others",
                    "observed": oct(_mode(p)),
                    "ok": _mode(p) & 0o007 == 0,
                    "why": f"{name} has mode {oct(_mode(p))}",
                }
            )
    return all_ok(spec, probes, "Data at rest is protected", "靜態資料受保護")


def _published(ctx: Any, device: str, tag: str) -> list[tuple[str, float]]:
    out = []
    for m in ctx.observation.messages:
        b = m.body
        if isinstance(b, dict) and b.get("device") == device and b.get("tag") == tag:
            out.append((str(b.get("ts")), b.get("value")))
    return out


@check("storage.audit_trail")
async def audit_trail(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """The grader reads stored data through the candidate's access tool; the read must be audited and correct."""
    tool = Path(ctx.workspace) / ctx.params["read_tool"]
    audit = Path(ctx.workspace) / ctx.params["audit_log"]
    device, tag = ctx.params["audit_probe"]["device"], ctx.params["audit_probe"]["tag"]
    reader = f"assessor-{os.urandom(3).hex()}"
    since = dt.datetime.fromtimestamp(ctx.observation.window[0], dt.UTC).isoformat().replace("+00:00", "Z")
    probes: list[dict[str, Any]] = []
    argv = [str(tool), "--user", reader, "--device", device, "--tag", tag, "--since", since]
    t0 = time.time()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=ctx.workspace,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            out, err = b"", b"timed out after 20 s"
    except OSError as exc:
        out, err, proc = b"", str(exc).encode(), None
    rows = []
    for ln in out.decode(errors="replace").splitlines()[:100000]:
        try:
            rows.append(json.loads(ln))
        except ValueError:
            continue
    published = _published(ctx, device, tag)
    got = {(str(r.get("ts")), r.get("value")) for r in rows if isinstance(r, dict)}
    found = sum(1 for p in published if p in got)
    probes.append(
        {
            "what": f"{' '.join(argv[-8:])} returns the published {device}/{tag} readings",
            "observed": {
                "exit": proc.returncode if proc else None,
                "rows": len(rows),
                "published_in_window": len(published),
                "found": found,
                "stderr": err.decode(errors="replace")[-300:],
            },
            "ok": bool(published) and found >= 0.95 * len(published),
            "why": f"read tool returned {found} of {len(published)} published readings",
        }
    )
    records = []
    try:
        for ln in audit.read_text(encoding="utf-8", errors="replace").splitlines()[-5000:]:
            try:
                rec = json.loads(ln)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("user") == reader:
                records.append(rec)
    except OSError as exc:
        records = []
        probes.append({"what": f"audit log {audit}", "observed": str(exc), "ok": False, "why": "audit log missing"})

    def timely(rec: dict[str, Any]) -> bool:
        try:
            ts = dt.datetime.fromisoformat(str(rec.get("ts")).replace("Z", "+00:00"))
        except ValueError:
            return False
        return ts.tzinfo is not None and abs(ts.timestamp() - t0) <= 5.0

    good = [
        r
        for r in records
        if r.get("action") == "read" and r.get("device") == device and r.get("tag") == tag and timely(r)
    ]
    probes.append(
        {
            "what": f"audit log records that {reader} read {device}/{tag}, with an RFC 3339 time",
            "observed": records[:3] or "no record of this reader",
            "ok": bool(good),
            "why": "the grader's read is not in the audit log (user, action, device, tag, ts)",
        }
    )
    if audit.exists():
        probes.append(
            {
                "what": "audit log not writable by others",
                "observed": oct(_mode(audit)),
                "ok": _mode(audit) & 0o022 == 0,
                "why": f"audit log mode {oct(_mode(audit))}",
            }
        )
    return all_ok(spec, probes, "Reads of stored data are audited", "儲存資料之讀取皆有稽核紀錄")
