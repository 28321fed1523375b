"""The candidate's datasheet: everything needed to connect, nothing of the ground truth.

Built once as structured sections (paragraphs and tables) and rendered to Markdown, HTML or JSON, in zh-TW or
English. Of the process, only what a P&ID and the instrument list tell an engineer who designs alarms: the tank's
size, the pump's rated flow, the level controller's band and the alarm limits. The model's internals (valve Cv, PID
gains, heater dynamics) never appear here.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any

import yaml

from . import addressing as ad
from .devices.register_map import TABLE_ORDER, RegisterMap
from .launch import plant_params

REF_BASE = {"coils": 1, "discrete_inputs": 10001, "input_registers": 30001, "holding_registers": 40001}


def labels(lang: str) -> dict[str, Any]:
    text = (resources.files("aiotlab.simulators") / "templates" / "datasheet-i18n.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)[lang]


def build(candidate: str, seed: int | None = None) -> dict[str, Any]:
    """The datasheet as data (also the JSON form): language-neutral facts, descriptions in both languages."""
    st = ad.read_state(candidate)
    if seed is None and st and st.get("seed") is not None:
        seed = int(st["seed"])  # describe the plant as it was started
    identity, spec, params = plant_params(candidate, seed)
    slot = int(st["slot"]) if st and st.get("slot") is not None else 0
    addr = ad.Addresses.for_slot(slot, spec["addressing"])
    h, p = addr.hosts, addr.ports
    block = ad.block(slot)
    exam_mode = bool(st and st.get("workstation") and st.get("addresses"))
    if exam_mode:  # exam mode: the plant network, as the workstation sees it
        h, p = st["addresses"]["hosts"], st["addresses"]["ports"]
        block = h["workstation"].rsplit(".", 1)[0]
    devs = params["devices"]

    def modbus(name: str) -> dict[str, Any]:
        d = devs[name]
        rm = RegisterMap(d["tables"])
        return {
            "title": d["title"],
            "endpoint": f"{h[name]}:{p['modbus']}",
            "host": h[name],
            "port": p["modbus"],
            "unit_id": d["unit_id"],
            "via": "fw1",
            "tables": {
                t: [tag.as_dict() | {"reference": REF_BASE[t] + tag.address} for tag in rm.tags if tag.table == t]
                for t in TABLE_ORDER
                if any(tag.table == t for tag in rm.tags)
            },
        }

    plc2 = devs["plc2"]
    return {
        "datasheet_version": 1,
        # False when the candidate has no plant yet: the addresses are then slot 0's, which may be another
        # candidate's plant. A kit refuses such a datasheet; a brief says so at its top.
        "addresses_assigned": bool(st and st.get("slot") is not None),
        "candidate": candidate,
        "plant": spec["title"],
        "parameter_fingerprint": identity.digest(),
        "network": {"block": block, "workstation": h["workstation"], "hmi": h["hmi"]},
        "plc1": modbus("plc1") | {"comm_budget_rps": devs["plc1"]["comm_budget_rps"]},
        "em1": modbus("em1"),
        "plc2": {
            "title": plc2["title"],
            "endpoint": f"opc.tcp://{h['plc2']}:{p['opcua']}{plc2['path']}",
            "namespace_uri": plc2["namespace"],
            "application_uri": plc2["application_uri"],
            "default_security": {"policies": ["None"], "identity_tokens": ["anonymous", "username"]},
            "default_users": {
                n: {"password": u["password"], "role": u["role"]} for n, u in plc2["default_users"].items()
            },
            "nodes": [
                {
                    "node_id": f"Plant.{o['name']}.{v['name']}",
                    "type": v["type"],
                    "unit": v.get("unit"),
                    "eu_range": v.get("eu_range"),
                    "writable": bool(v.get("writable")),
                    "description": v["desc"],
                }
                for o in plc2["objects"]
                for v in o["variables"]
            ],
            "methods": [f"Plant.{o['name']}.{m}" for o in plc2["objects"] for m in o.get("methods", [])],
        },
        "mqtt": {
            "broker": f"mqtt://{h['broker']}:{p['mqtt']}",
            "host": h["broker"],
            "port": p["mqtt"],
            "tls_port": p["mqtts"],
            "topic_root": devs["sensors"]["topic_root"],
            "period_limits_s": devs["sensors"]["period_limits_s"],
            "nodes": [
                {
                    "id": n["id"],
                    "description": n["desc"],
                    "default_report_period_s": n["report_period_s"],
                    "data_topic": f"{devs['sensors']['topic_root']}/{n['id']}/data",
                    "config_topic": f"{devs['sensors']['topic_root']}/{n['id']}/config",
                    "status_topic": f"{devs['sensors']['topic_root']}/{n['id']}/status",
                    "fields": [
                        {"name": f["name"], "type": "number", "unit": f["unit"], "description": f["desc"]}
                        for f in n["fields"]
                    ],
                }
                for n in devs["sensors"]["nodes"]
            ],
        },
        "process": process_facts(params["process"]["tank"]),
        # exam mode: the candidate's own folder in their workstation; `aiotlab plant reload` there hands a device
        # its config through the config service, which validates it first
        "config_dir": st["workstation"].get("config_dir", "/home/candidate/plant-config")
        if exam_mode
        else str(ad.plant_dir(candidate) / "config"),
        **({"config_service": f"http://{block}.5:8080"} if exam_mode else {}),
    }


def process_facts(tank: dict[str, Any]) -> dict[str, Any]:
    """The tank as its P&ID and instrument list describe it (what an alarm design starts from)."""
    return {
        "tank": {
            "area_m2": tank["area_m2"],
            "height_m": tank["height_m"],
            "pump_rated_flow_m3h": tank["pump_flow_m3h"],
            "level_control": {
                "operating_setpoint_m": list(tank["operating_setpoint_m"]),
                "deadband_m": tank["deadband_m"],
            },
            "alarms_m": {
                "low": tank["alarm_low_m"],
                "high": tank["alarm_high_m"],
                "high_high": tank["alarm_high_high_m"],
            },
            "level_noise_sd_m": tank["noise"]["level_m"],
        }
    }


def sections(ds: dict[str, Any], lang: str) -> tuple[str, list[dict[str, Any]]]:
    """Language-specific sections: each {title, paragraphs, tables: [{caption, columns, rows}]}."""
    L = labels(lang)
    loc = lambda d: d.get(lang) or d.get("en", "") if isinstance(d, dict) else (d or "")  # noqa: E731
    net = ds["network"]
    out: list[dict[str, Any]] = []
    out.append({"title": L["network"], "paragraphs": [L["intro"], L["network_text"].format(**net)], "tables": []})
    rows = []
    for name in ("plc1", "em1"):
        d = ds[name]
        rows.append(
            [
                name.upper().replace("PLC", "PLC-").replace("EM", "EM-"),
                "Modbus TCP",
                d["endpoint"],
                f"{L['unit_id']} {d['unit_id']}, {L['through_fw1']}",
            ]
        )
    rows.append(["PLC-2", "OPC UA", ds["plc2"]["endpoint"], ""])
    rows.append(["Broker", "MQTT", ds["mqtt"]["broker"], ""])
    rows.append(["HMI", "-", net["hmi"], L["source_address"]])
    rows.append(["Workstation", "-", net["workstation"], L["source_address"]])
    out.append(
        {
            "title": L["endpoints"],
            "paragraphs": [],
            "tables": [{"caption": "", "columns": L["cols_endpoints"], "rows": rows}],
        }
    )
    out.append({"title": L["modbus_common"], "paragraphs": L["modbus_text"], "tables": []})
    for name in ("plc1", "em1"):
        d = ds[name]
        paras = [f"{d['endpoint']} · {L['unit_id']} {d['unit_id']} · {L['through_fw1']}"]
        if name == "plc1":
            paras.append(L["plc1_budget"].format(budget=d["comm_budget_rps"]))
        tables = []
        for table, tags in d["tables"].items():
            trows = []
            for t in tags:
                access = L["read_write"] if t["writable"] else L["read_only"]
                if t.get("range"):
                    access += f" ({L['range']} {t['range'][0]}..{t['range'][1]})"
                trows.append(
                    [
                        t["name"],
                        t["address"],
                        t["reference"],
                        t["type"],
                        t["registers"],
                        t.get("scale", "-") if t["type"] not in ("bool", "float32") else "-",
                        t.get("word_order", "-"),
                        t.get("unit") or "-",
                        access,
                        loc(t["description"]),
                    ]
                )
            tables.append({"caption": L[table], "columns": L["cols_registers"], "rows": trows})
        out.append({"title": loc(d["title"]), "paragraphs": paras, "tables": tables})
    u = ds["plc2"]
    users = ", ".join(f"{n} / {x['password']} ({x['role']})" for n, x in u["default_users"].items())
    node_rows = [
        [
            f"ns=<{u['namespace_uri']}>;s={n['node_id']}",
            n["type"],
            n["unit"] or "-",
            f"{n['eu_range'][0]}..{n['eu_range'][1]}" if n["eu_range"] else "-",
            L["read_write"] if n["writable"] else L["read_only"],
            loc(n["description"]),
        ]
        for n in u["nodes"]
    ]
    out.append(
        {
            "title": L["opcua"],
            "paragraphs": [
                s.format(endpoint=u["endpoint"], namespace=u["namespace_uri"], users=users) for s in L["opcua_text"]
            ],
            "tables": [{"caption": "", "columns": L["cols_nodes"], "rows": node_rows}],
        }
    )
    m = ds["mqtt"]
    lo, hi = m["period_limits_s"]
    topic_rows = [[n["id"], n["data_topic"], n["default_report_period_s"], loc(n["description"])] for n in m["nodes"]]
    tables = [{"caption": "", "columns": L["cols_topics"], "rows": topic_rows}]
    pc = L["payload_common"]
    for n in m["nodes"]:
        prow = [
            ["node", "string", "-", pc["node"]],
            ["seq", "integer", "-", pc["seq"]],
            ["ts", "string", "-", pc["ts"]],
        ]
        prow += [[f["name"], "number", f["unit"], loc(f["description"])] for f in n["fields"]]
        prow += [
            ["battery_pct", "number", "%", pc["battery_pct"]],
            ["report_period_s", "number", "s", pc["report_period_s"]],
        ]
        tables.append({"caption": f"{L['payload']}: {n['id']}", "columns": L["cols_payload"], "rows": prow})
    out.append(
        {
            "title": L["mqtt"],
            "paragraphs": [s.format(broker=m["broker"], lo=lo, hi=hi) for s in L["mqtt_text"]],
            "tables": tables,
        }
    )
    t = ds["process"]["tank"]
    lc, al = t["level_control"], t["alarms_m"]
    out.append(
        {
            "title": L["process"],
            "paragraphs": [L["process_text"]],
            "tables": [
                {
                    "caption": "",
                    "columns": L["cols_process"],
                    "rows": [
                        [L["p_area"], t["area_m2"], "m²"],
                        [L["p_height"], t["height_m"], "m"],
                        [L["p_pump"], t["pump_rated_flow_m3h"], "m³/h"],
                        [L["p_setpoints"], f"{lc['operating_setpoint_m'][0]}..{lc['operating_setpoint_m'][1]}", "m"],
                        [L["p_deadband"], lc["deadband_m"], "m"],
                        [L["p_alarm_low"], al["low"], "m"],
                        [L["p_alarm_high"], al["high"], "m"],
                        [L["p_alarm_hh"], al["high_high"], "m"],
                        [L["p_noise"], t["level_noise_sd_m"], "m"],
                    ],
                }
            ],
        }
    )
    out.append(
        {
            "title": L["configs"],
            "paragraphs": [L["configs_text"].format(config_dir=ds["config_dir"], candidate=ds["candidate"])],
            "tables": [],
        }
    )
    title = f"{L['title']} · {L['candidate']} {ds['candidate']} · {L['fingerprint']} {ds['parameter_fingerprint']}"
    return title, out


def to_markdown(title: str, secs: list[dict[str, Any]]) -> str:
    lines = [f"# {title}", ""]
    for s in secs:
        lines += [f"## {s['title']}", ""]
        for p in s["paragraphs"]:
            lines += [p, ""]
        for t in s["tables"]:
            if t["caption"]:
                lines += [f"**{t['caption']}**", ""]
            lines.append("| " + " | ".join(t["columns"]) + " |")
            lines.append("|" + "---|" * len(t["columns"]))
            for r in t["rows"]:
                lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
            lines.append("")
    return "\n".join(lines)


def to_html(title: str, secs: list[dict[str, Any]], lang: str) -> str:
    e = html.escape
    parts = [
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>{e(title)}</title>',
        "<style>body{font-family:system-ui,'Noto Sans TC',sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}th,td{border:1px solid #bbb;padding:.25em .5em;text-align:left}"
        "th{background:#eef}caption{text-align:left;font-weight:600;padding:.3em 0}code{background:#f4f4f4}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    for s in secs:
        parts.append(f"<h2>{e(s['title'])}</h2>")
        parts += [f"<p>{e(p)}</p>" for p in s["paragraphs"]]
        for t in s["tables"]:
            parts.append("<table>" + (f"<caption>{e(t['caption'])}</caption>" if t["caption"] else ""))
            parts.append("<tr>" + "".join(f"<th>{e(c)}</th>" for c in t["columns"]) + "</tr>")
            for r in t["rows"]:
                parts.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>")
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render(candidate: str, seed: int | None = None, lang: str = "zh-TW", fmt: str = "md") -> str:
    ds = build(candidate, seed)
    if fmt == "json":
        return json.dumps(ds, indent=2, ensure_ascii=False) + "\n"
    title, secs = sections(ds, lang)
    return to_html(title, secs, lang) if fmt == "html" else to_markdown(title, secs)
