"""MQ-* checks: the broker probed over the network from the grader's own source addresses.

ACLs are judged only by delivery (Mosquitto acknowledges denied SUBSCRIBE and PUBLISH); TLS 1.0/1.1 probes use a
client that can still speak them; listeners are found by scanning every port of the broker's address and judged by
what answers there (plaintext MQTT, TLS of any version, MQTT over TLS).

Fail closed: a refusal counts only beside a positive control in the same run (anonymous refused where the issued
account is accepted, a wrong password refused for an account whose issued password works, a denied delivery beside
an allowed one); a probe whose session could not be opened is not judged, and a check with unjudged probes is not
assessable, never passed. One defect fails one check: a broker that the grader's verifying clients cannot reach
(missing CA, no TLS on the lab's port, a certificate not valid for the broker's address) fails mq.tls_versions,
which records the cause; every check that needs a verified connection is then "not assessable" naming it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import ssl
import time
from typing import Any

from ..probes import mqtt as mq
from ..probes import tls_hello
from ..probes.net import open_ports
from ..results import PASS, CheckResult
from . import check
from .common import all_ok, attacker, ca_file, control_get, hosts, mqtt_account, tls_context

SCAN_PORTS = range(1, 65536)
RESTART_WAIT_S = 25.0  # a re-run after device restarts (hardening.persists) waits this long for the broker to answer
CONNECT_TIMEOUT_S = 10.0  # a loaded host answers late; a late answer is still an answer
OLD_TLS = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1)
MODERN_TLS = (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2)

# Causes that keep the grader from assessing other checks, and the check that owns (fails on) each.
CA_FILE = "mqtt-ca-file"  # no usable CA certificate in the workspace            (mq.tls_versions)
TLS_PORT = "broker-tls-port"  # no TLS handshake on the lab's TLS port            (mq.tls_versions)
BROKER_CERT = "broker-cert"  # certificate does not verify for the broker address  (mq.tls_versions)
ACCOUNT_REFUSED = "mqtt-account-refused"  # an issued account the grader or collector uses is refused (mq.accounts)
ACL_TELEMETRY = "mqtt-acl-telemetry"  # the collector's telemetry cannot reach the grader (mq.acl)
ISSUED_ACCOUNT_REFUSED = "mqtt-issued-account-refused"  # a node's or the collector's account refused (mq.accounts)
PROBE_FAILED = "mqtt-probe-failed"  # the grader's own probe sessions failed for no candidate defect found
TRUST_CAUSES = (CA_FILE, TLS_PORT, BROKER_CERT)
# What leaves the grader without any telemetry to observe (the observation subscribes as `grader` over verified TLS).
PIPELINE_CAUSES = (*TRUST_CAUSES, ACCOUNT_REFUSED, ACL_TELEMETRY)


def probe(what: str, observed: Any, ok: bool, why: str | None = None, why_zh: str | None = None) -> dict[str, Any]:
    """One probe's evidence: what was tried and what was observed, in words that hold whatever the verdict; `why`
    (what was observed that is not as required; `why_zh` in the assessors' language) only on a failing probe."""
    out: dict[str, Any] = {"what": what, "observed": observed, "ok": bool(ok)}
    if not ok:
        out["why"] = why or f"{what}: {observed}"
        if why_zh:
            out["why_zh"] = why_zh
    return out


def block(ctx: Any, spec: dict[str, Any], cause: str, en: str, zh: str, owner: str) -> None:
    """Record a blocking cause, except when a check is re-run after restarts (hardening.persists): a regression
    there is that check's verdict, not a cause for checks that already ran."""
    if not spec.get("fresh"):
        ctx.block(cause, en, zh, owner)


def cannot_judge(ctx: Any, spec: dict[str, Any], unjudged: list[dict[str, Any]], **evidence: Any) -> CheckResult:
    """Some probes could not run (their sessions failed): not assessable, naming a recorded candidate defect that
    explains it if there is one, never a pass."""
    cause = next((c for c in (ACCOUNT_REFUSED, *TRUST_CAUSES, ACL_TELEMETRY) if c in ctx.blockers), None)
    refused = [u for u in unjudged if re.search(r"not authori[sz]ed|code:\s*(135|5)\b", str(u.get("observed")), re.I)]
    accounts = ctx.probe_results.get("mq.accounts")
    if cause is None and refused and accounts is not None and accounts.status != PASS:
        # an issued account refused with its issued password: mq.accounts' defect, not the grader's failure
        cause = ISSUED_ACCOUNT_REFUSED
        block(
            ctx,
            spec,
            cause,
            f"the broker refuses an issued account with its issued password ({refused[0].get('what')}: "
            f"{refused[0].get('observed')}), so the probes that need it could not run",
            f"MQTT Broker 以核發密碼拒絕核發帳號（{refused[0].get('what')}：{refused[0].get('observed')}），"
            "需要該帳號的探測無法進行",
            "mq.accounts",
        )
    if cause is None:
        cause = PROBE_FAILED
        first = unjudged[0].get("observed") if unjudged else "?"
        block(
            ctx,
            spec,
            cause,
            f"the grader's MQTT probe sessions failed ({first}); re-grade",
            f"評分程式的 MQTT 探測連線失敗（{first}）；請重新評分",
            spec["id"],
        )
    return ctx.blocked(spec, cause, {"unjudged": unjudged, **evidence})


async def mqtt_listeners(ctx: Any, fresh: bool = False) -> list[dict[str, Any]]:
    """Every open port of the broker's address: whether it answers MQTT in plaintext, which TLS versions it
    completes a handshake with, and whether it answers MQTT over TLS (a broker listener, as opposed to some other
    TLS service on the host). Scanned once per grading run, and once more after device restarts (`fresh`: the
    re-run of hardening.persists, which then waits up to RESTART_WAIT_S for the broker to answer again)."""
    cache = ctx.cache
    key = "mqtt_listeners_after_restart" if fresh else "mqtt_listeners"  # one scan per state of the broker
    if key in cache:
        return cache[key]
    host, src = hosts(ctx)["broker"], attacker(ctx, 0)
    grader = mqtt_account(ctx, "grader")

    async def one(port: int) -> dict[str, Any]:
        plain, any_version = await asyncio.gather(
            mq.raw_connect(
                host, port, src, username=grader.username, password=grader.password, timeout=CONNECT_TIMEOUT_S
            ),
            mq.tls_handshake(host, port, src, None, timeout=CONNECT_TIMEOUT_S),
        )
        versions: dict[str, str | None] = {}
        tls_connect = None
        if any_version:
            for v in (*MODERN_TLS, *OLD_TLS):
                versions[v.name] = await mq.tls_handshake(host, port, src, v, timeout=CONNECT_TIMEOUT_S)
            best = next((v for v in (*MODERN_TLS, *OLD_TLS) if versions[v.name]), None)
            tls_connect = await mq.raw_connect(
                host,
                port,
                src,
                tls=mq.insecure_tls(best),
                username=grader.username,
                password=grader.password,
                timeout=CONNECT_TIMEOUT_S,
            )
        return {
            "port": port,
            "plaintext_mqtt": plain.connack is not None,
            "plaintext": plain.describe(),
            "tls": bool(any_version),
            "tls_versions": {k: v is not None for k, v in versions.items()},
            "tls_best": next((k for k, v in versions.items() if v), None),
            "tls_mqtt": tls_connect is not None and tls_connect.connack is not None,
            "tls_connect": tls_connect.describe() if tls_connect else None,
        }

    deadline = time.monotonic() + (RESTART_WAIT_S if fresh else 0.0)
    while True:
        ports = await open_ports(host, SCAN_PORTS, source=src)
        out = list(await asyncio.gather(*(one(p) for p in ports)))
        if any(x["plaintext_mqtt"] or x["tls_mqtt"] for x in out) or time.monotonic() >= deadline:
            break
        await asyncio.sleep(1.0)  # re-run after a restart: the broker may still be starting
    cache[key] = out
    return out


def listener_tls(x: dict[str, Any]) -> ssl.SSLContext:
    """A context that speaks this listener's best TLS version without verifying (reachability probes only)."""
    return mq.insecure_tls(getattr(ssl.TLSVersion, x["tls_best"]) if x.get("tls_best") else None)


async def broker_trust(ctx: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """Can the grader's verifying clients reach the lab's TLS port (the candidate's CA, the broker's address as the
    name)? Probed once per run; a failure is recorded as a blocking cause owned by mq.tls_versions."""
    if "broker_trust" not in ctx.cache:
        host, port, src = hosts(ctx)["broker"], int(ctx.params["mqtt_tls_port"]), attacker(ctx, 1)
        where, ca = f"{host}:{port}", str(ctx.params.get("ca_file", "pki/ca.crt"))
        tls = tls_context(ctx)
        if tls is None:
            exists = ca_file(ctx).is_file()
            out = {
                "ok": False,
                "stage": "ca",
                "observed": f"{ca} {'is not a readable PEM CA certificate' if exists else 'does not exist'}",
                "cause": CA_FILE,
                "en": f"the CA certificate {ca} in the workspace is missing or not a PEM certificate, so the grader "
                "cannot verify the broker",
                "zh-TW": f"工作目錄中的 CA 憑證 {ca} 不存在或不是 PEM 憑證，評分程式無法驗證 MQTT Broker",
            }
        else:
            for _ in range(2):  # once more when nothing answered (a loaded host, a broker still starting)
                out = await mq.verify_tls(host, port, src, tls, timeout=CONNECT_TIMEOUT_S)
                if out["stage"] not in ("tcp", "tls"):
                    break
                await asyncio.sleep(1.0)
            if out["stage"] == "verify":
                out.update(
                    cause=BROKER_CERT,
                    en=f"the broker certificate on {where} does not verify against {ca} for the address {host} "
                    f"({out['observed']}), so the grader's verifying TLS clients cannot connect",
                    **{
                        "zh-TW": f"{where} 的 MQTT Broker 憑證無法以 {ca} 針對位址 {host} 驗證（{out['observed']}），"
                        "評分程式的驗證式 TLS 用戶端無法連線"
                    },
                )
            elif not out["ok"]:
                out.update(
                    cause=TLS_PORT,
                    en=f"no TLS listener answers on {where} ({out['observed']}), so the grader's TLS clients cannot "
                    "connect",
                    **{"zh-TW": f"{where} 沒有 TLS listener 回應（{out['observed']}），評分程式的 TLS 用戶端無法連線"},
                )
            else:
                out["cause"] = None
        out["target"], out["ca_file"] = where, ca
        ctx.cache["broker_trust"] = out
    out = ctx.cache["broker_trust"]
    if out["cause"]:
        block(ctx, spec, out["cause"], out["en"], out["zh-TW"], "mq.tls_versions")
    return out


async def verified_target(
    ctx: Any, spec: dict[str, Any], attacker_index: int
) -> tuple[str, int, ssl.SSLContext, str] | CheckResult:
    """(broker host, TLS port, a context verifying with the candidate's CA, the attacker source to probe from), or
    this check's "not assessable" verdict when the grader's verifying clients cannot reach the broker."""
    trust = await broker_trust(ctx, spec)
    tls = tls_context(ctx)
    if trust["cause"] or tls is None:
        return ctx.blocked(spec, trust["cause"] or CA_FILE, {"verified_tls": trust})
    return hosts(ctx)["broker"], int(ctx.params["mqtt_tls_port"]), tls, attacker(ctx, attacker_index)


async def no_listener_verdict(ctx: Any, spec: dict[str, Any], listeners: list[dict[str, Any]]) -> CheckResult:
    """No port of the broker answered MQTT at all: nothing here can be judged; the cause is the TLS port's."""
    trust = await broker_trust(ctx, spec)
    cause = trust["cause"]
    if cause is None:
        cause = TLS_PORT
        block(
            ctx,
            spec,
            cause,
            f"no port of {hosts(ctx)['broker']} answers an MQTT CONNECT, in plaintext or over TLS",
            f"{hosts(ctx)['broker']} 沒有任何連接埠回應 MQTT CONNECT（明文或 TLS）",
            "mq.tls_versions",
        )
    return ctx.blocked(spec, cause, {"listeners": listeners, "verified_tls": trust})


@check("mq.plaintext_closed")
async def plaintext_closed(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    listeners = await mqtt_listeners(ctx, spec.get("fresh", False))
    probes = [
        probe(
            f"port {x['port']}: MQTT CONNECT in plaintext",
            x["plaintext"],
            not x["plaintext_mqtt"],
            f"port {x['port']} answered a plaintext MQTT CONNECT ({x['plaintext']})",
            f"連接埠 {x['port']} 以明文回應 MQTT CONNECT（{x['plaintext']}）",
        )
        for x in listeners
    ]
    # the control: the broker is up. An MQTT CONNECT over TLS answered shows it best; a completed TLS handshake
    # (a listener that then asks for a client certificate the grader has not got) shows it too
    controls = [x for x in listeners if x["tls_mqtt"]] or [x for x in listeners if x["tls"]]
    scanned = f"{hosts(ctx)['broker']}:1-65535"
    if not any(x["plaintext_mqtt"] for x in listeners) and not controls:
        return await no_listener_verdict(ctx, spec, listeners)
    probes += [
        probe(
            f"control: port {x['port']} answers an MQTT CONNECT over TLS"
            if x["tls_mqtt"]
            else f"control: port {x['port']} completes a TLS handshake (the broker is up)",
            x["tls_connect"] if x["tls_mqtt"] else f"TLS {x['tls_best']}; MQTT: {x['tls_connect']}",
            True,
        )
        for x in controls
    ]
    return all_ok(
        spec,
        probes,
        "No port of the broker answers MQTT in plaintext",
        "MQTT Broker 沒有任何連接埠以明文回應 MQTT",
        scanned=scanned,
        open_ports=[x["port"] for x in listeners],
    )


@check("mq.anonymous_refused")
async def anonymous_refused(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Anonymous CONNECT on every MQTT listener; a refusal counts only where the issued `grader` account is accepted
    on the same listener in the same run (the control: the listener does accept a client that may connect)."""
    host, src = hosts(ctx)["broker"], attacker(ctx, 1)
    grader = mqtt_account(ctx, "grader")
    listeners = await mqtt_listeners(ctx, spec.get("fresh", False))
    probes, unjudged = [], []
    for x in listeners:
        for tls in ([None] if x["plaintext_mqtt"] else []) + ([listener_tls(x)] if x["tls_mqtt"] else []):
            anon = await mq.raw_connect(host, x["port"], src, tls=tls, timeout=CONNECT_TIMEOUT_S)
            if anon.accepted:
                probes.append(
                    probe(
                        f"anonymous CONNECT on {'TLS' if tls else 'plaintext'} port {x['port']}",
                        anon.describe(),
                        False,
                        f"anonymous CONNECT accepted ({anon.describe()})",
                        f"匿名 CONNECT 被接受（{anon.describe()}）",
                    )
                )
                continue
            for _ in range(2):  # the control once more if the broker did not answer at all (a loaded host)
                control = await mq.raw_connect(
                    host,
                    x["port"],
                    src,
                    tls=tls,
                    username=grader.username,
                    password=grader.password,
                    timeout=CONNECT_TIMEOUT_S,
                )
                if control.connack is not None:
                    break
                await asyncio.sleep(1.0)
            observed = f"anonymous: {anon.describe()}; control, issued account grader: {control.describe()}"
            what = f"anonymous CONNECT on {'TLS' if tls else 'plaintext'} port {x['port']}, beside the issued account"
            if control.accepted:
                probes.append(probe(what, observed, True))
            else:
                unjudged.append({"what": what, "observed": observed, "refused": control.connack is not None})
    if not probes and not unjudged:
        return await no_listener_verdict(ctx, spec, listeners)
    if any(not p["ok"] for p in probes) or not unjudged:
        return all_ok(
            spec, probes, "Anonymous clients are refused on every MQTT port", "所有 MQTT 連接埠皆拒絕匿名用戶端"
        )
    refused = [u for u in unjudged if u["refused"]]
    if not refused:  # no answer to the control: nothing the candidate did is shown
        return cannot_judge(ctx, spec, unjudged, probes=probes)
    block(
        ctx,
        spec,
        ACCOUNT_REFUSED,
        f"the broker refuses the issued account grader with its issued password ({refused[0]['observed']})",
        f"MQTT Broker 拒絕核發帳號 grader 與其核發密碼（{refused[0]['observed']}）",
        "mq.accounts",
    )
    return ctx.blocked(spec, ACCOUNT_REFUSED, {"probes": probes, "unjudged": unjudged})


@check("mq.tls_versions")
async def tls_versions(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """On every broker TLS listener the scan finds: TLS 1.0 and 1.1 refused beside a TLS 1.2+ handshake that
    succeeds (the control), and the certificate verified against the candidate's CA for the broker's address. The
    lab's TLS port must be one of them: the grader's own clients use it (a failure there blocks their checks)."""
    host, src, port = hosts(ctx)["broker"], attacker(ctx, 1), int(ctx.params["mqtt_tls_port"])
    listeners = await mqtt_listeners(ctx, spec.get("fresh", False))
    trust = await broker_trust(ctx, spec)
    broker_tls = [x for x in listeners if x["tls_mqtt"]]
    probes = []
    verifying = tls_context(ctx)
    for x in broker_tls:
        p = x["port"]
        for v in OLD_TLS:
            accepted = x["tls_versions"].get(v.name)
            probes.append(
                probe(
                    f"port {p}: TLS handshake pinned to {v.name}",
                    f"{v.name} handshake completed" if accepted else f"{v.name} handshake refused",
                    not accepted,
                    f"port {p} completed a {v.name} handshake, which must be refused",
                    f"連接埠 {p} 完成了 {v.name} 交握（應拒絕）",
                )
            )
        modern = [v.name for v in MODERN_TLS if x["tls_versions"].get(v.name)]
        probes.append(
            probe(
                f"port {p}: control handshake with TLS 1.2 or 1.3",
                f"completed with {', '.join(modern)}" if modern else "no TLS 1.2/1.3 handshake completed",
                bool(modern),
                f"port {p} completed no TLS 1.2 or 1.3 handshake",
                f"連接埠 {p} 無法完成 TLS 1.2 或 1.3 交握",
            )
        )
        if p == port:
            cert = trust
        elif verifying is None:
            cert = {"ok": False, "observed": trust["observed"]}
        else:
            cert = await mq.verify_tls(host, p, src, verifying, timeout=CONNECT_TIMEOUT_S)
        probes.append(
            probe(
                f"port {p}: certificate verified against {trust['ca_file']} for the address {host}",
                cert["observed"],
                cert["ok"],
                f"port {p}: certificate verification against {trust['ca_file']} for the address {host} failed "
                f"({cert['observed']})",
                f"連接埠 {p}：以 {trust['ca_file']} 針對位址 {host} 驗證憑證失敗（{cert['observed']}）",
            )
        )
    # a TLS listener of the broker's that answers the grader no MQTT (one that demands a client certificate): its
    # versions are read from the ServerHello, since a pinned full handshake fails there whatever the version
    others, hosted = await brokers_other_tls(ctx, host, src, listeners)
    inconclusive = []
    for p in others:
        if p == port:
            continue  # the brief's TLS port must serve MQTT: judged below
        for v in OLD_TLS:
            for _ in range(3):  # a timeout under load is no answer either way: asked again
                got = await tls_hello.picks(host, p, src, v.name, timeout=CONNECT_TIMEOUT_S)
                if got["accepted"] is not None:
                    break
            what = f"port {p} (TLS, no MQTT for the grader without a client certificate): ClientHello offering only {v.name}"
            if got["accepted"] is None:
                inconclusive.append({"what": what, "observed": got["observed"]})
                continue
            probes.append(
                probe(
                    what,
                    got["observed"],
                    not got["accepted"],
                    f"port {p} accepts {v.name} ({got['observed']})",
                    f"連接埠 {p} 接受 {v.name}（{got['observed']}）",
                )
            )
    if port not in {x["port"] for x in broker_tls}:
        # the lab's TLS port must serve MQTT over TLS to the issued accounts: a handshake alone (a port that then
        # demands a client certificate, or speaks something else) is not the listener the brief asks for
        seen = next((x for x in listeners if x["port"] == port), None)
        if seen is None:
            why = f"nothing answers on port {port}, the brief's TLS listener"
            why_zh = f"連接埠 {port}（題目指定的 TLS listener）沒有任何服務回應"
        elif seen["tls"]:
            why = f"port {port} completes TLS but answers no MQTT CONNECT over it ({seen['tls_connect']})"
            why_zh = f"連接埠 {port} 可完成 TLS 交握，但不回應其上的 MQTT CONNECT（{seen['tls_connect']}）"
        else:
            why = f"port {port} does not speak TLS ({seen['plaintext']})"
            why_zh = f"連接埠 {port} 不使用 TLS（{seen['plaintext']}）"
        if not trust["ok"]:
            why += f"; besides, the certificate could not be verified: {trust['observed']}"
            why_zh += f"；此外憑證無法驗證：{trust['observed']}"
        probes.append(
            probe(
                f"port {port}: MQTT over TLS, the certificate verified against {trust['ca_file']} for {host}",
                {"listener": seen, "certificate": trust["observed"]},
                False,
                why,
                why_zh,
            )
        )
    if inconclusive and all(x["ok"] for x in probes):  # nothing wrong seen, but not everything could be asked
        return ctx.blocked(spec, "probe-inconclusive", {"probes": probes, "inconclusive": inconclusive})
    return all_ok(
        spec,
        probes,
        "TLS 1.2+ only on every TLS listener, with a certificate valid for the broker address",
        "所有 TLS listener 僅允許 TLS 1.2 以上，且憑證對 MQTT Broker 位址有效",
        tls_port=port,
        broker_tls_listeners=[x["port"] for x in broker_tls],
        other_tls_ports_not_mqtt=[x["port"] for x in listeners if x["tls"] and not x["tls_mqtt"]],
        other_tls_ports_probed=others,
        other_tls_ports_host_wide=hosted,
    )


async def brokers_other_tls(
    ctx: Any, host: str, src: str, listeners: list[dict[str, Any]]
) -> tuple[list[int], list[int]]:
    """(TLS ports on the broker's address that answer no MQTT and are the broker's own, TLS ports left out as the
    host's). On a loopback address (the process backend) a service of the host bound to every address answers
    there too: a port that also answers on a neighbouring address nobody binds is the host's, not the broker's. In
    a container every port of the broker's address is the broker's."""
    ports = [x["port"] for x in listeners if x["tls"] and not x["tls_mqtt"]]
    if not ports or not ipaddress.ip_address(host).is_loopback:
        return ports, []
    neighbour = host.rsplit(".", 1)[0] + ".249"
    hosted = await open_ports(neighbour, ports, source=src)
    return [p for p in ports if p not in hosted], hosted


async def password_file(ctx: Any) -> dict[str, Any]:
    try:
        return await control_get(ctx, f"/v1/config/{ctx.params['mqtt_password_file']}")
    except Exception as exc:  # noqa: BLE001 - reported as evidence
        return {"error": str(exc)}


@check("mq.accounts")
async def accounts(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Every issued account connects with its password (the control); a wrong password for it and an account that
    was not issued are refused; the password file holds only hashes of the issued accounts, owner-only."""
    target = await verified_target(ctx, spec, 2)
    if isinstance(target, CheckResult):
        return target
    host, port, tls, src = target
    issued = list(ctx.params["mqtt_accounts"])
    probes, refused, unjudged = [], [], []

    async def connect(user: str, password: str) -> mq.ConnectResult:
        for _ in range(2):  # once more if the broker did not answer at all (a loaded host)
            r = await mq.raw_connect(
                host, port, src, tls=tls, username=user, password=password, timeout=CONNECT_TIMEOUT_S
            )
            if r.connack is not None:
                break
            await asyncio.sleep(1.0)
        return r

    for name in issued:
        acct = mqtt_account(ctx, name)
        good = await connect(name, acct.password)
        if good.connack is None:
            unjudged.append({"what": f"{name} with its issued password", "observed": good.describe()})
            continue
        probes.append(
            probe(
                f"{name} with its issued password",
                good.describe(),
                good.accepted,
                f"issued account {name} refused with its issued password ({good.describe()})",
                f"核發帳號 {name} 以其核發密碼連線被拒絕（{good.describe()}）",
            )
        )
        if not good.accepted:
            refused.append(name)
            continue
        bad = await connect(name, acct.password + "x")
        if bad.connack is None:
            unjudged.append({"what": f"{name} with a wrong password", "observed": bad.describe()})
            continue
        probes.append(
            probe(
                f"{name} with a wrong password",
                bad.describe(),
                not bad.accepted,
                f"a wrong password was accepted for {name} ({bad.describe()})",
                f"帳號 {name} 以錯誤密碼連線卻被接受（{bad.describe()}）",
            )
        )
    if any(p["ok"] for p in probes):  # the control: some issued account is accepted on this port
        stranger = f"aiotlab-{ctx.candidate[-6:]}-{int(time.time()) % 100000}"
        r = await connect(stranger, "not-issued")
        probes.append(
            probe(
                f"an account that was not issued ({stranger})",
                r.describe(),
                not r.accepted,
                f"an account that was not issued ({stranger}) was accepted ({r.describe()})",
                f"未核發的帳號 {stranger} 被接受（{r.describe()}）",
            )
        )
    pw = await password_file(ctx)
    lines = [ln for ln in str(pw.get("text", "")).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    names = [ln.split(":", 1)[0] for ln in lines]
    hashed = bool(lines) and all(re.match(r"^[^:]+:\$[67]\$", ln) for ln in lines)
    name = ctx.params["mqtt_password_file"]
    unread_en = f"password file {name} could not be read: {pw.get('error')}"
    unread_zh = f"無法讀取密碼檔 {name}：{pw.get('error')}"
    probes.append(
        probe(
            f"password file {name}: every entry a mosquitto_passwd hash",
            pw.get("error") or f"{len(lines)} entries, {'all' if hashed else 'not all'} hashed ($6$/$7$)",
            hashed,
            unread_en
            if pw.get("error")
            else f"password file {name} has entries that are not mosquitto_passwd hashes ($6$/$7$)"
            if lines
            else f"password file {name} has no entries",
            unread_zh
            if pw.get("error")
            else f"密碼檔 {name} 含有非 mosquitto_passwd 雜湊（$6$/$7$）的項目"
            if lines
            else f"密碼檔 {name} 沒有任何項目",
        )
    )
    others = sorted(set(names) - set(issued))
    probes.append(
        probe(
            f"password file {name}: only the issued accounts",
            {"accounts": names},
            "error" not in pw and not others,
            unread_en if "error" in pw else f"password file {name} has accounts that were not issued: {others}",
            unread_zh if "error" in pw else f"密碼檔 {name} 含有未核發的帳號：{others}",
        )
    )
    mode = int(pw["mode"], 8) if "mode" in pw else None
    probes.append(
        probe(
            f"password file {name}: no permission for group or others",
            f"{mode:04o}" if mode is not None else pw.get("error"),
            mode is not None and mode & 0o077 == 0,
            f"password file {name} has mode {mode:04o}: group or others have permission"
            if mode is not None
            else f"the mode of password file {name} could not be read"
            + (f": {pw['error']}" if pw.get("error") else ""),
            f"密碼檔 {name} 的權限為 {mode:04o}：群組或其他使用者具有權限"
            if mode is not None
            else f"無法讀取密碼檔 {name} 的權限" + (f"：{pw['error']}" if pw.get("error") else ""),
        )
    )
    pipeline = [n for n in refused if n in ("grader", ctx.params.get("collector_account", "collector"))]
    if pipeline:
        block(
            ctx,
            spec,
            ACCOUNT_REFUSED,
            f"the broker refuses the issued account(s) {', '.join(pipeline)} with the issued password",
            f"MQTT Broker 以核發密碼仍拒絕核發帳號 {', '.join(pipeline)}",
            spec["id"],
        )
    if unjudged and all(p["ok"] for p in probes):
        return cannot_judge(ctx, spec, unjudged, probes=probes)
    return all_ok(
        spec,
        probes,
        "Every issued account works, wrong passwords and other accounts fail, passwords are stored hashed",
        "所有核發帳號可用、錯誤密碼與其他帳號被拒、密碼以雜湊儲存",
        unjudged=unjudged,
    )


def acl_table(ctx: Any) -> dict[str, dict[str, list[str]]]:
    """The brief's ACL table (lab data `mqtt_acl`), one row per issued account: the topic filters it may publish
    to and subscribe to."""
    root = ctx.sheet["mqtt"]["topic_root"]
    table = ctx.params["mqtt_acl"]
    nodes = [n["id"] for n in ctx.sheet["mqtt"]["nodes"]]

    def fill(filters: list[str], node: str = "") -> list[str]:
        return [f.replace("{root}", root).replace("{node}", node) for f in filters]

    rows = {n: {k: fill(v, n) for k, v in table["nodes"].items()} for n in nodes}
    for name, row in table.items():
        if name != "nodes":
            rows[name] = {k: fill(v) for k, v in row.items()}
    return rows


def acl_topics(ctx: Any, rows: dict[str, dict[str, list[str]]]) -> list[str]:
    """One topic of each kind the table tells apart: in every node's subtree and its config topic, in a subtree
    named after each other account (where a `%u` pattern would let it publish), and on the collector's output."""
    root = ctx.sheet["mqtt"]["topic_root"]
    nodes = [n["id"] for n in ctx.sheet["mqtt"]["nodes"]]
    topics = [t for n in nodes for t in (f"{root}/{n}/aiotlab-acl", f"{root}/{n}/config", f"{root}/{n}/data")]
    topics += [f"{root}/{a}/aiotlab-acl" for a in rows if a not in nodes]
    topics += [f.replace("#", "aiotlab-acl").replace("+", "x") for row in rows.values() for f in row["publish"]]
    return list(dict.fromkeys(topics))


@check("mq.acl")
async def acl(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """The whole ACL table judged by delivery: every issued account publishes once on every kind of topic the
    table tells apart, and every account listens on those topics by name and on `#`. Each message must reach
    exactly the listeners the table allows; the deliveries the table requires are the run's positive controls."""
    target = await verified_target(ctx, spec, 2)
    if isinstance(target, CheckResult):
        return target
    host, port, tls, src = target
    rows = acl_table(ctx)
    topics = acl_topics(ctx, rows)
    # a node's data topic is what the collector stores: it is probed only as a forgery (accounts the table does not
    # let publish there), never with a message the collector would take for the node's own data
    data = {f"{ctx.sheet['mqtt']['topic_root']}/{n['id']}/data" for n in ctx.sheet["mqtt"]["nodes"]}
    publishes = [
        (a, t)
        for a in rows
        for t in topics
        if t not in data or not any(mq.topic_matches(f, t) for f in rows[a]["publish"])
    ]
    seen = await mq.acl_matrix(host, port, tls, src, {a: mqtt_account(ctx, a) for a in rows}, publishes)
    errors = seen["errors"]

    def allowed(filters: list[str], topic: str) -> bool:
        return any(mq.topic_matches(f, topic) for f in filters)

    probes, unjudged = [], []
    collector = ctx.params.get("collector_account", "collector")
    listeners = [(a, m) for a in rows for m in ("named", "wildcard")]
    for i, (pub, topic) in enumerate(publishes):
        may_publish = allowed(rows[pub]["publish"], topic)
        want = {f"{a}|{m}" for a, m in listeners if may_publish and allowed(rows[a]["subscribe"], topic)}
        judged = [f"{a}|{m}" for a, m in listeners if f"{a}|{m}" not in errors]
        got = {k for k in judged if i in seen["received"].get(k, [])}
        want &= set(judged)
        what = (
            f"{pub} publishes {topic}: "
            + (f"must reach {_listeners(want)}" if want else "must reach nobody")
            + f" ({pub} {'may' if may_publish else 'may not'} publish it)"
        )
        if f"{pub}|publish" in errors:
            unjudged.append({"what": what, "observed": f"publishing session failed: {errors[f'{pub}|publish']}"})
            continue
        observed = f"reached {_listeners(got)}" if got else "reached nobody within 3 s"
        why = why_zh = None
        if got - want:
            extra = got - want
            if not may_publish:
                why = f"{pub} could publish {topic}, beyond its row: it reached {_listeners(extra)}"
                why_zh = f"{pub} 能發布 {topic}，超出其列：送達 {_listeners(extra, 'zh-TW')}"
            else:
                why = f"{_listeners(extra)} received {topic}, beyond their row"
                why_zh = f"{_listeners(extra, 'zh-TW')} 收到 {topic}，超出其列"
        elif want - got:
            why = f"{pub} -> {topic} did not reach {_listeners(want - got)}, which the table allows"
            why_zh = f"{pub} 發布的 {topic} 未送達表中允許的 {_listeners(want - got, 'zh-TW')}"
        probes.append(probe(what, observed, got == want, why, why_zh))
        if pub == collector and topic.startswith("telemetry/") and "grader|named" in want - got:
            block(
                ctx,
                spec,
                ACL_TELEMETRY,
                f"the ACL keeps the collector's {topic} from reaching the grader's subscription to telemetry/#",
                f"ACL 使擷取程式的 {topic} 無法送達評分程式對 telemetry/# 的訂閱",
                spec["id"],
            )
    for key, err in errors.items():
        if not key.endswith("|publish"):
            unjudged.append({"what": f"{key.replace('|', ' listening ')}", "observed": f"session failed: {err}"})
    if any(not p["ok"] for p in probes) or not unjudged:
        return all_ok(spec, probes, "Access control holds, judged by actual delivery", "存取控制成立（以實際投遞判定）")
    return cannot_judge(ctx, spec, unjudged, probes=probes)


def _listeners(keys: set[str], lang: str = "en") -> str:
    """'collector (by name, by #), grader (by name)' from {'collector|named', ...}."""
    zh = lang == "zh-TW"
    by: dict[str, list[str]] = {}
    for k in sorted(keys):
        account, mode = k.split("|")
        named = ("以主題名稱" if zh else "by name") if mode == "named" else ("以 #" if zh else "by #")
        by.setdefault(account, []).append(named)
    sep = "、" if zh else ", "
    return sep.join(f"{a}（{sep.join(m)}）" if zh else f"{a} ({', '.join(m)})" for a, m in by.items()) or (
        "無人" if zh else "nobody"
    )


@check("mq.sys_hidden")
async def sys_hidden(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Every issued account subscribes to $SYS/# and must receive nothing, beside a control in the same run: a
    message the grader may read (the collector's telemetry topic) does arrive."""
    target = await verified_target(ctx, spec, 3)
    if isinstance(target, CheckResult):
        return target
    host, port, tls, src = target
    collector = ctx.params.get("collector_account", "collector")
    control, *results = await asyncio.gather(
        mq.delivered(
            host,
            port,
            tls,
            src,
            mqtt_account(ctx, collector),
            "telemetry/aiotlab-sys-control",
            mqtt_account(ctx, "grader"),
            "telemetry/#",
        ),
        *(
            mq.receives_any(host, port, tls, src, mqtt_account(ctx, n), "$SYS/#", 2.5)
            for n in ctx.params["mqtt_accounts"]
        ),
    )
    control_probe = {
        "what": "control: the collector's message on telemetry/aiotlab-sys-control reaches grader",
        "observed": "delivered" if control.get("delivered") else f"not delivered {control.get('error') or ''}".strip(),
    }
    probes, unjudged = [], []
    for r in results:
        what = f"{r['account']} subscribes to $SYS/#"
        if "error" in r:
            unjudged.append({"what": what, "observed": f"session failed: {r['error']}"})
        elif r["received_topics"]:
            n = len(r["received_topics"])
            shown = r["received_topics"][:5] + ([f"... and {n - 5} more"] if n > 5 else [])
            probes.append(
                probe(
                    what,
                    shown,
                    False,
                    f"{r['account']} received {n} $SYS topics (e.g. {', '.join(r['received_topics'][:3])})",
                    f"{r['account']} 收到 {n} 個 $SYS 主題（例如 {', '.join(r['received_topics'][:3])}）",
                )
            )
        else:
            probes.append(probe(what, "received nothing within 2.5 s", True))
    if any(not p["ok"] for p in probes):
        return all_ok(spec, probes, "", "")
    if unjudged or not control.get("delivered"):
        return cannot_judge(ctx, spec, unjudged + ([] if control.get("delivered") else [control_probe]), probes=probes)
    return all_ok(spec, [*probes, {**control_probe, "ok": True}], "No account can read $SYS", "沒有帳號能讀取 $SYS")


AUDIT_ATTEMPT_ZH = {
    "anonymous": "匿名連線",
    "wrong password": "錯誤密碼連線",
    "account that was not issued": "未核發帳號連線",
}
LOG_TS = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}|\d{9,11}): (.*)$")


def _log_time(stamp: str) -> float:
    if stamp.isdigit():
        return float(stamp)
    return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))


def parse_log(lines: list[str]) -> list[tuple[float | None, str]]:
    """(time, text) per broker log line; time None for a line without a timestamp the brief's format allows."""
    out: list[tuple[float | None, str]] = []
    for ln in lines:
        m = LOG_TS.match(ln)
        out.append((_log_time(m.group(1)), m.group(2)) if m else (None, ln))
    return out


@check("mq.audit_log")
async def audit_log(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Refused connections are recorded in the broker log with their source and time (within +-2 s).

    Judged on the attempts the broker did refuse (anonymous, a wrong password, an account that was not issued):
    whether it should have refused them is other checks' matter, so a broker that accepts anonymous clients fails
    mq.anonymous_refused, not this check."""
    host, src = hosts(ctx)["broker"], attacker(ctx, 0)
    port = int(ctx.params["mqtt_tls_port"])
    listeners = await mqtt_listeners(ctx)
    target = next((x for x in listeners if x["port"] == port and x["tls_mqtt"]), None) or next(
        (x for x in listeners if x["tls_mqtt"] or x["plaintext_mqtt"]), None
    )
    if target is None:
        return await no_listener_verdict(ctx, spec, listeners)
    port = target["port"]
    tls = listener_tls(target) if target["tls_mqtt"] else None
    grader = mqtt_account(ctx, "grader")
    attempts = []  # (what, result, when it ended): the broker logs within the attempt, give or take 2 s
    for what, user in (("anonymous", None), ("wrong password", grader.username), ("account that was not issued", "x")):
        r = await mq.raw_connect(
            host, port, src, tls=tls, username=user, password=None if user is None else "x", timeout=CONNECT_TIMEOUT_S
        )
        attempts.append((what, r, time.time()))
    await asyncio.sleep(1.0)
    parsed = parse_log((await control_get(ctx, "/v1/logs/broker?lines=4000"))["lines"])
    probes, not_refused = [], []
    for what, r, ended in attempts:
        key = f"{src}:{r.local_port}"
        if r.accepted or r.connack is None or r.local_port is None:  # accepted, or no answer: not a refusal
            not_refused.append({"attempt": what, "observed": r.describe()})
            continue
        hits = [(t, text) for t, text in parsed if key in text]
        timely = [h for h in hits if h[0] is not None and r.at - 2.5 <= h[0] <= ended + 2.5]  # 1 s resolution
        # the log lines of this attempt: a source port is reused, so an earlier connection (another probe) may name
        # the same address and port; read the refusal after the line of this attempt's time, else the last one
        at_idx = [
            i for i, (t, text) in enumerate(parsed) if key in text and t is not None and r.at - 2.5 <= t <= ended + 2.5
        ]
        any_idx = [i for i, (_, text) in enumerate(parsed) if key in text]
        idx = at_idx[0] if at_idx else (any_idx[-1] if any_idx else None)
        refusal = (
            next(
                (
                    text
                    for _, text in parsed[idx : idx + 6]
                    if "not authorised" in text
                    or f"CONNACK to {src} (0, 5)" in text
                    or f"CONNACK to {src} (0, 4)" in text
                ),
                None,
            )
            if idx is not None
            else None
        )
        denied = refusal is not None
        shown = parsed[idx][1] if idx is not None else ""
        refused_en = f"the refused {what} connection from {key}"
        refused_zh = f"來自 {key} 被拒的{AUDIT_ATTEMPT_ZH[what]}"
        why = why_zh = None
        if timely and denied:
            observed = f"logged: {[shown, refusal]}"
        elif hits:
            observed = f"logged without {'a time within 2 s' if not timely else 'the refusal'}: {shown}"
            if not timely:
                why = f"{refused_en} is logged without a time within 2 s of the attempt: {shown}"
                why_zh = f"{refused_zh}雖有日誌紀錄，但沒有距嘗試 2 秒內的時間：{shown}"
            else:
                why = f"{refused_en} is logged, but no line records that it was refused: {shown}"
                why_zh = f"{refused_zh}雖有日誌紀錄，但沒有任何一行記錄其被拒絕：{shown}"
        else:
            observed = "no log line names this source and port"
            why = f"{refused_en} is not logged: no log line names this source and port"
            why_zh = f"{refused_zh}未記錄於日誌：沒有任何日誌行記載此來源位址與連接埠"
        probes.append(
            probe(
                f"refused {what} connection from {key} ({r.describe()}) logged with its time and refusal",
                observed,
                bool(timely) and denied,
                why,
                why_zh,
            )
        )
    if not probes and not all(r.accepted for _, r, _ in attempts):  # some attempt got no answer at all
        return cannot_judge(ctx, spec, not_refused)
    if not probes:
        block(
            ctx,
            spec,
            "mqtt-refuses-nothing",
            "the broker refused none of the grader's connections (anonymous, wrong password, unknown account)",
            "MQTT Broker 未拒絕評分程式的任何連線（匿名、錯誤密碼、未核發帳號）",
            "mq.anonymous_refused",
        )
        return ctx.blocked(spec, "mqtt-refuses-nothing", {"not_refused": not_refused})
    return all_ok(
        spec,
        probes,
        "Refused connections are logged with source and time",
        "被拒連線皆以來源與時間記錄於日誌",
        not_refused_not_judged_here=not_refused,
    )
