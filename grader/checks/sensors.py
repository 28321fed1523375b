"""The sensor gateway after broker hardening: its nodes still publish, over the TLS listener, each with its own
issued account (what sensors.yaml must say).

Two observations, both required: how each node last connected (the broker log's connection lines: listener port
and user name), and its data arriving at the grader's own TLS subscription (verified with the candidate's CA) in
this run. When the broker log has no connection line for a node (logging turned off), the arrival alone is proof
only on a broker that has no plaintext MQTT port and refuses anonymous clients (both checks passed in this run);
otherwise it is not assessable.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from typing import Any

import aiomqtt

from aiotlab.simulators.broker import START_MARK

from ..probes import mqtt as mq
from ..results import PASS, CheckResult
from . import check
from .common import control_get, hosts, mqtt_account, tls_context
from .probing import LoopLag, block, judge, overloaded_or, probe

MAX_WAIT_S = 125.0  # a node's next message is awaited up to 1.5 of its reporting periods, at most this


def last_connections(lines: list[str], source: str) -> dict[str, dict[str, Any]]:
    """Each client id's last connection from `source` in a Mosquitto log: listener port and user name (None when it
    connected without one)."""
    ports: dict[str, int] = {}
    out: dict[str, dict[str, Any]] = {}
    for ln in lines:
        m = re.search(rf"New connection from ({re.escape(source)}:\d+) on port (\d+)", ln)
        if m:
            ports[m.group(1)] = int(m.group(2))
            continue
        m = re.search(rf"New client connected from ({re.escape(source)}:\d+) as (\S+) \(([^)]*)\)", ln)
        if m:
            user = re.search(r"u'([^']*)'", m.group(3))
            out[m.group(2)] = {
                "peer": m.group(1),
                "port": ports.get(m.group(1)),
                "user": user.group(1) if user else None,
                "line": ln.strip()[:200],
            }
    return out


async def receive_data(ctx: Any, nodes: list[str], wait: float) -> dict[str, Any]:
    """Subscribe over verified TLS as the collector to every node's data topic; which nodes publish within `wait`."""
    tls = tls_context(ctx)
    out: dict[str, Any] = {"received": {}, "error": None}
    if tls is None:
        out["error"] = "the candidate's CA certificate is missing or unusable"
        return out
    root = ctx.sheet["mqtt"]["topic_root"]
    host, port = hosts(ctx)["broker"], int(ctx.params["mqtt_tls_port"])
    account = mqtt_account(ctx, "collector")
    try:
        async with asyncio.timeout(wait + 20):
            async with mq.session(
                host, port, tls, account, hosts(ctx)["workstation"], f"aiotlab-feed-{os.urandom(4).hex()}"
            ) as c:
                await c.subscribe(f"{root}/+/data", qos=0)
                started = time.monotonic()
                try:
                    async with asyncio.timeout(wait):
                        async for m in c.messages:
                            node = str(m.topic).split("/")[-2]
                            if node in nodes and node not in out["received"]:
                                try:
                                    seq = json.loads(bytes(m.payload or b"")).get("seq")
                                except ValueError:
                                    seq = None
                                out["received"][node] = {"after_s": round(time.monotonic() - started, 2), "seq": seq}
                            if set(out["received"]) >= set(nodes):
                                break
                except TimeoutError:
                    pass
    except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


@check("sensors.secured_feed")
async def secured_feed(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    tls_port = int(ctx.params["mqtt_tls_port"])
    nodes = [n["id"] for n in ctx.sheet["mqtt"]["nodes"]]
    t0 = time.time()
    status = (await control_get(ctx, "/v1/status")).get("sensors") or {}
    periods = [float(s.get("report_period_s") or 10.0) for s in status.values()] or [10.0]
    wait = min(MAX_WAIT_S, 1.5 * max(periods) + 3)
    lines = (await control_get(ctx, "/v1/logs/broker?lines=20000"))["lines"]
    marks = [i for i, ln in enumerate(lines) if START_MARK in ln]
    lines = lines[marks[-1] :] if marks else lines  # the running broker's lines only, not an earlier process's
    conns = last_connections(lines, hosts(ctx)["sensors"])
    async with LoopLag() as lag:
        feed = await receive_data(ctx, nodes, wait)
    status_after = (await control_get(ctx, "/v1/status")).get("sensors") or {}
    broker_closed = all(
        (r := ctx.probe_results.get(c)) is not None and r.status == PASS
        for c in ("mq.plaintext_closed", "mq.anonymous_refused")
    )
    acl_confines = (r := ctx.probe_results.get("mq.acl")) is not None and r.status == PASS
    probes = []
    for node in nodes:
        c = conns.get(node)
        what = f"{node}: its last connection to the broker (broker log)"
        expected = f"port {tls_port} (TLS) with user name {node}"
        if c is not None:
            ok = c["port"] == tls_port and c["user"] == node
            how = f"port {c['port']}, " + (f"user {c['user']}" if c["user"] else "no user name")
            how_zh = f"連接埠 {c['port']}、" + (f"使用者 {c['user']}" if c["user"] else "無使用者名稱")
            probes.append(
                probe(
                    what,
                    c,
                    ok,
                    expected=expected,
                    why=f"{node} last connected on {how} (expected port {tls_port} (TLS), user {node})",
                    why_zh=f"{node} 最近一次連線使用{how_zh}（應為連接埠 {tls_port}（TLS）、使用者 {node}）",
                )
            )
        elif broker_closed and acl_confines and node in feed["received"]:
            probes.append(
                probe(
                    what,
                    "no connection line in the broker log; the broker has no plaintext MQTT port and refuses "
                    "anonymous clients (mq.plaintext_closed, mq.anonymous_refused passed), and only the node's own "
                    "account may publish its data (mq.acl passed, forgeries probed), so the node's data arriving "
                    "over TLS shows it uses TLS with its own account",
                    True,
                    expected=expected,
                )
            )
        elif broker_closed and node in feed["received"]:
            # TLS and some account, but whose? Without the log lines and an ACL that confines each node to its own
            # topics, another node's account cannot be told apart: not a pass
            probes.append(
                probe(
                    what,
                    "no connection line in the broker log, and the ACL does not confine each node's data to its own "
                    "account (mq.acl did not pass): the account the node uses cannot be seen",
                    None,
                    expected=expected,
                    cause="sensor-account-unseen",
                    unsure=f"the broker log has no connection line for {node} (connection_messages off?) and the ACL "
                    "does not confine node data to the node's own account: which account it uses cannot be seen",
                    unsure_zh=f"MQTT Broker 日誌沒有 {node} 的連線紀錄（connection_messages 已關閉？），且 ACL 未將節點資料"
                    "限定於其自有帳號：無法得知其使用的帳號",
                )
            )
        elif broker_closed and feed["error"] and not feed["received"]:
            # the grader could not subscribe (its cause is named below): how the node connects stays unknown
            probes.append(
                probe(
                    what,
                    "no connection line for this node since the broker started, and the grader could not subscribe "
                    "to see its data",
                    None,
                    expected=expected,
                    cause="mqtt-grader-tls-refused",
                    unsure=f"the broker log does not show how {node} connects since the broker started, and the "
                    f"grader's own TLS subscription failed ({feed['error']})",
                    unsure_zh=f"MQTT Broker 啟動後的日誌未顯示 {node} 的連線方式，且評分程式自己的 TLS 訂閱失敗（{feed['error']}）",
                )
            )
        else:
            open_broker = not broker_closed
            probes.append(
                probe(
                    what,
                    "no connection line for this node in the broker log",
                    None,
                    expected=expected,
                    cause="sensors-link-unknown",
                    unsure=f"the broker log does not show how {node} connects"
                    + (", and the broker still accepts plaintext or anonymous clients" if open_broker else "")
                    + f"; no data message from it arrived within {wait:g} s",
                    unsure_zh=f"MQTT Broker 日誌未顯示 {node} 的連線方式"
                    + ("，且 MQTT Broker 仍接受明文或匿名用戶端" if open_broker else "")
                    + f"；{wait:.0f} 秒內未收到其資料訊息",
                )
            )
    if feed["error"] and not feed["received"]:
        en = f"the grader cannot subscribe over TLS as the collector ({feed['error']})"
        zh = f"評分程式無法以擷取帳號透過 TLS 訂閱（{feed['error']}）"
        owner = "mq.tls_versions" if "CA" in feed["error"] or "SSL" in feed["error"] else "mq.accounts"
        block(ctx, spec, "mqtt-grader-tls-refused", en, zh, owner)
        probes.append(
            probe(
                "the grader subscribes over TLS",
                feed["error"],
                None,
                cause="mqtt-grader-tls-refused",
                unsure=en,
                unsure_zh=zh,
            )
        )
    else:
        for node in nodes:
            got = feed["received"].get(node)
            period = float((status.get(node) or {}).get("report_period_s") or 0.0)
            if got is None and period > wait - 3:  # it need not have reported while the grader waited
                # the candidate's own setting, said so at the report's top (not "inconclusive, re-grade": a re-grade
                # waits no longer)
                ctx.block(
                    "sensor-period-beyond-wait",
                    f"{node} reports every {period:g} s (your sensors.yaml), longer than the grader can wait "
                    f"({wait:.0f} s): its secured feed cannot be judged; a re-grade changes nothing until the period "
                    "is one the brief allows",
                    f"{node} 每 {period:g} 秒回報一次（您的 sensors.yaml），超過評分程式能等待的時間（{wait:.0f} 秒）："
                    "無法判定其安全資料流；在週期改為題目允許的值之前，重新評分也不會改變結果",
                    None,
                )
                probes.append(
                    probe(
                        f"{node}: a data message reaches the grader's TLS subscription (collector account)",
                        {"received": None, "report_period_s": period, "waited_s": round(wait, 1)},
                        None,
                        cause="sensor-period-beyond-wait",
                        unsure=f"{node} reports every {period:g} s, longer than the grader waits ({wait:.0f} s): "
                        "its data could not be awaited",
                        unsure_zh=f"{node} 每 {period:g} 秒回報一次，超過評分程式的等待時間（{wait:.0f} 秒）：無法等到其資料",
                    )
                )
                continue
            probes.append(
                probe(
                    f"{node}: a data message reaches the grader's TLS subscription (collector account)",
                    got or {"received": None, "plant_status": status_after.get(node)},
                    got is not None,
                    expected=f"within {wait:g} s",
                    why=f"no data message from {node} over the TLS listener within {wait:g} s "
                    f"(plant reports {status_after.get(node)})",
                    why_zh=f"{wait:.0f} 秒內未經 TLS listener 收到 {node} 的資料訊息（工廠回報 {status_after.get(node)}）",
                )
            )
    result = judge(
        ctx,
        spec,
        probes,
        "The sensor nodes publish over TLS with their own accounts",
        "感測節點以各自帳號透過 TLS 發布",
        wait_s=wait,
    )
    return await overloaded_or(ctx, spec, result, t0 - wait, time.time(), lag)
