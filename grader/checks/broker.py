"""MQ-* checks: the broker probed over the network from the grader's own source addresses.

ACLs are judged only by delivery (Mosquitto acknowledges denied SUBSCRIBE and PUBLISH); TLS 1.0/1.1 probes use a
client that can still speak them; a plaintext listener is found by scanning every port of the broker's address.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from typing import Any

from ..probes import mqtt as mq
from ..probes.net import open_ports
from ..results import CheckResult
from . import check
from .common import all_ok, attacker, ca_missing, control_get, hosts, mqtt_account, tls_context

SCAN_PORTS = range(1, 65536)


async def mqtt_listeners(ctx: Any, fresh: bool = False) -> list[dict[str, Any]]:
    """Every open port of the broker's address, and whether it speaks MQTT in plaintext and/or over TLS."""
    cache = ctx.cache
    if not fresh and "mqtt_listeners" in cache:
        return cache["mqtt_listeners"]
    host, src = hosts(ctx)["broker"], attacker(ctx, 0)
    grader = mqtt_account(ctx, "grader")
    out = []
    for port in await open_ports(host, SCAN_PORTS, source=src):
        plain = await mq.raw_connect(host, port, src, username=grader.username, password=grader.password, timeout=5)
        tls_version = await mq.tls_handshake(host, port, src, ssl.TLSVersion.TLSv1_2, timeout=5) or (
            await mq.tls_handshake(host, port, src, ssl.TLSVersion.TLSv1_3, timeout=5)
        )
        tls_mqtt = None
        if tls_version:
            tls_mqtt = await mq.raw_connect(
                host, port, src, tls=mq.insecure_tls(), username=grader.username, password=grader.password, timeout=5
            )
        out.append(
            {
                "port": port,
                "plaintext_mqtt": plain.connack is not None,
                "plaintext": plain.describe(),
                "tls": tls_version,
                "tls_mqtt": tls_mqtt is not None and tls_mqtt.connack is not None,
            }
        )
    cache["mqtt_listeners"] = out
    return out


@check("mq.plaintext_closed")
async def plaintext_closed(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    listeners = await mqtt_listeners(ctx, spec.get("fresh", False))
    probes = [
        {
            "what": f"port {x['port']}: CONNECT in plaintext",
            "observed": x["plaintext"],
            "ok": not x["plaintext_mqtt"],
            "why": f"port {x['port']} answers MQTT in plaintext",
        }
        for x in listeners
    ]
    if not any(x["tls_mqtt"] for x in listeners):
        probes.append({"what": "an MQTT-over-TLS listener exists", "ok": False, "why": "no port speaks MQTT over TLS"})
    return all_ok(
        spec,
        probes,
        "No port of the broker answers MQTT in plaintext",
        "代理伺服器沒有任何連接埠以明文回應 MQTT",
        scanned=f"{hosts(ctx)['broker']}:1-65535",
    )


@check("mq.anonymous_refused")
async def anonymous_refused(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    host, src = hosts(ctx)["broker"], attacker(ctx, 1)
    probes = []
    for x in await mqtt_listeners(ctx, spec.get("fresh", False)):
        for tls in ([None] if x["plaintext_mqtt"] else []) + ([mq.insecure_tls()] if x["tls_mqtt"] else []):
            r = await mq.raw_connect(host, x["port"], src, tls=tls)
            probes.append(
                {"what": f"anonymous CONNECT, {r.describe()}", "ok": not r.accepted, "why": f"{r.describe()}"}
            )
    if not probes:
        probes.append({"what": "find an MQTT listener", "ok": False, "why": "no port of the broker speaks MQTT"})
    return all_ok(spec, probes, "Anonymous clients are refused on every MQTT port", "所有 MQTT 連接埠皆拒絕匿名用戶端")


@check("mq.tls_versions")
async def tls_versions(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    host, src, port = hosts(ctx)["broker"], attacker(ctx, 1), int(ctx.params["mqtt_tls_port"])
    probes = []
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        got = await mq.tls_handshake(host, port, src, version)
        probes.append(
            {
                "what": f"{version.name} handshake",
                "observed": got or "refused",
                "ok": got is None,
                "why": f"{version.name} accepted on port {port}",
            }
        )
    ctx_tls = tls_context(ctx)
    if ctx_tls is None:
        probes.append({"what": "load the candidate's CA", "ok": False, "why": "CA certificate missing or invalid"})
    else:
        grader = mqtt_account(ctx, "grader")
        r = await mq.raw_connect(host, port, src, tls=ctx_tls, username=grader.username, password=grader.password)
        probes.append(
            {
                "what": f"TLS 1.2+ with the broker certificate verified against the candidate's CA for {host}",
                "observed": r.describe() + (f", {r.tls_version}" if r.tls_version else ""),
                "ok": r.accepted,
                "why": r.describe(),
            }
        )
    return all_ok(
        spec,
        probes,
        "TLS 1.2+ only, with a certificate valid for the broker address",
        "僅允許 TLS 1.2 以上，且憑證對代理伺服器位址有效",
        port=port,
    )


async def password_file(ctx: Any) -> dict[str, Any]:
    try:
        return await control_get(ctx, f"/v1/config/{ctx.params['mqtt_password_file']}")
    except Exception as exc:  # noqa: BLE001 - reported as evidence
        return {"error": str(exc)}


def tls_broker(
    ctx: Any, spec: dict[str, Any], attacker_index: int
) -> tuple[str, int, ssl.SSLContext, str] | CheckResult:
    """(broker host, TLS port, a context verifying with the candidate's CA, the attacker source to probe from), or
    this check's verdict when the CA is missing or unusable."""
    tls = tls_context(ctx)
    if tls is None:
        return ca_missing(spec)
    return hosts(ctx)["broker"], int(ctx.params["mqtt_tls_port"]), tls, attacker(ctx, attacker_index)


@check("mq.accounts")
async def accounts(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    target = tls_broker(ctx, spec, 2)
    if isinstance(target, CheckResult):
        return target
    host, port, tls, src = target
    probes = []
    for name in ctx.params["mqtt_accounts"]:
        acct = mqtt_account(ctx, name)
        good = await mq.raw_connect(host, port, src, tls=tls, username=name, password=acct.password)
        probes.append(
            {
                "what": f"{name} with its issued password",
                "observed": good.describe(),
                "ok": good.accepted,
                "why": f"issued account {name} refused: {good.describe()}",
            }
        )
        bad = await mq.raw_connect(host, port, src, tls=tls, username=name, password=acct.password + "x")
        probes.append(
            {
                "what": f"{name} with a wrong password",
                "observed": bad.describe(),
                "ok": not bad.accepted,
                "why": f"wrong password accepted for {name}",
            }
        )
    pw = await password_file(ctx)
    lines = [ln for ln in str(pw.get("text", "")).splitlines() if ln.strip() and not ln.startswith("#")]
    hashed = bool(lines) and all(re.match(r"^[^:]+:\$[67]\$", ln) for ln in lines)
    probes.append(
        {
            "what": f"password file {ctx.params['mqtt_password_file']} holds only hashes",
            "observed": pw.get("error") or f"{len(lines)} entries",
            "ok": hashed,
            "why": "password file missing or holds plaintext passwords",
        }
    )
    mode = int(pw.get("mode", "0o777"), 8) if "mode" in pw else 0o777
    probes.append(
        {
            "what": "password file not readable by others",
            "observed": oct(mode),
            "ok": mode & 0o007 == 0,
            "why": f"password file mode {oct(mode)}",
        }
    )
    return all_ok(
        spec,
        probes,
        "Every issued account works, wrong passwords fail, passwords are stored hashed",
        "所有核發帳號可用、錯誤密碼被拒、密碼以雜湊儲存",
    )


def acl_cases(ctx: Any) -> list[dict[str, Any]]:
    root = ctx.sheet["mqtt"]["topic_root"]
    out = []
    for case in ctx.params["acl_probes"]:
        out.append({k: (v.replace("{root}", root) if isinstance(v, str) else v) for k, v in case.items()})
    return out


@check("mq.acl")
async def acl(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    target = tls_broker(ctx, spec, 2)
    if isinstance(target, CheckResult):
        return target
    host, port, tls, src = target
    cases = acl_cases(ctx)
    results = await asyncio.gather(
        *(
            mq.delivered(
                host, port, tls, src, mqtt_account(ctx, c["pub"]), c["topic"], mqtt_account(ctx, c["sub"]), c["filter"]
            )
            for c in cases
        )
    )
    probes = []
    for c, r in zip(cases, results, strict=True):
        verb = "must reach" if c["deliver"] else "must not reach"
        probes.append(
            {
                "what": f"{c['pub']} -> {c['topic']} {verb} {c['sub']} subscribed to {c['filter']}",
                "observed": ("delivered" if r["delivered"] else "not delivered")
                + (f" ({r['error']})" if r.get("error") else ""),
                "ok": r["delivered"] == c["deliver"],
                "why": f"{c['pub']} -> {c['topic']} {'not ' if not r['delivered'] else ''}delivered to {c['sub']} on {c['filter']}",
            }
        )
    return all_ok(spec, probes, "Access control holds, judged by actual delivery", "存取控制成立（以實際投遞判定）")


@check("mq.sys_hidden")
async def sys_hidden(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    target = tls_broker(ctx, spec, 3)
    if isinstance(target, CheckResult):
        return target
    host, port, tls, src = target
    results = await asyncio.gather(
        *(
            mq.receives_any(host, port, tls, src, mqtt_account(ctx, n), "$SYS/#", 2.5)
            for n in ctx.params["mqtt_accounts"]
        )
    )
    probes = [
        {
            "what": f"{r['account']} subscribes $SYS/#",
            "observed": r["received_topics"][:5] or r.get("error") or "nothing",
            "ok": not r["received_topics"] and "error" not in r,
            "why": f"{r['account']} received {len(r['received_topics'])} $SYS topics"
            if r["received_topics"]
            else f"{r['account']}: {r.get('error')}",
        }
        for r in results
    ]
    return all_ok(spec, probes, "No account can read $SYS", "沒有帳號能讀取 $SYS")


LOG_TS = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}|\d{9,11}): (.*)$")


def _log_time(stamp: str) -> float:
    if stamp.isdigit():
        return float(stamp)
    return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))


@check("mq.audit_log")
async def audit_log(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Refused connections are recorded in the broker log with their source and time (within +-2 s)."""
    host, port, src = hosts(ctx)["broker"], int(ctx.params["mqtt_tls_port"]), attacker(ctx, 0)
    tls = mq.insecure_tls()
    grader = mqtt_account(ctx, "grader")
    attempts = [
        ("anonymous", await mq.raw_connect(host, port, src, tls=tls)),
        ("wrong password", await mq.raw_connect(host, port, src, tls=tls, username=grader.username, password="wrong")),
    ]
    await asyncio.sleep(1.0)
    lines = (await control_get(ctx, "/v1/logs/broker?lines=4000"))["lines"]
    parsed = []
    for ln in lines:
        m = LOG_TS.match(ln)
        if m:
            parsed.append((_log_time(m.group(1)), m.group(2)))
    probes = []
    for what, r in attempts:
        key = f"{src}:{r.local_port}"
        hits = [(t, text) for t, text in parsed if key in text]
        timely = [h for h in hits if abs(h[0] - r.at) <= 2.5]
        idx = next((i for i, (_, text) in enumerate(parsed) if key in text), None)
        denied = idx is not None and any(
            "not authorised" in text or f"CONNACK to {src} (0, 5)" in text or f"CONNACK to {src} (0, 4)" in text
            for _, text in parsed[idx : idx + 6]
        )
        probes.append(
            {
                "what": f"{what} connection from {key} logged with its time and refusal",
                "observed": [text for _, text in hits[:2]] or "no log line names this source and port",
                "ok": bool(timely) and denied and not r.accepted,
                "why": f"{what} attempt from {key} not logged as refused within 2 s",
            }
        )
    return all_ok(
        spec, probes, "Refused connections are logged with source and time", "被拒連線皆以來源與時間記錄於日誌"
    )
