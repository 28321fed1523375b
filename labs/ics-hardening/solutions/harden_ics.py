"""The ics-hardening reference solution and its flawed variants, written from the brief alone.

The broker part is the shared toolkit's, run as a program (labs/common/harden.py in its secure-pipeline mode: CA
and broker certificate, hashed MQTT passwords, ACL, TLS-only mosquitto.conf, sensors.yaml; section 4 of this lab's
brief is that lab's broker), so this lab follows the broker checks as they evolve. PLC-2, FW-1 and the risk
register are this lab's and live here, so that each flawed solution is this program plus exactly one mistake
(`--flaw NAME`).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

SHARED_TOOLKIT = Path(__file__).resolve().parents[2] / "common" / "harden.py"

FLAWS = {
    # risk register
    "register-invalid": "the register's entries use a status outside the schema's vocabulary",
    "blind-register": "every asset against every exposure type, one boilerplate mitigation",
    "phantom-asset": "the reference register plus an entry for an asset the plant does not have",
    # PLC-2
    "none-endpoint": "SecurityPolicy None still listed beside the strong policies",
    "none-channel": "compatibility mode left on: sessions over an unlisted None channel still work",
    "anonymous-ua": "the anonymous identity token still accepted",
    "factory-accounts": "the factory accounts operator and engineer kept",
    "extra-ua-account": "an engineer account of one's own (maint) beside the issued ones",
    "operator-writes": "the operator role keeps the factory's write permission",
    "no-trust-list": "no trust list: any client certificate is accepted",
    # FW-1
    "broad-allowlist": "the whole plant network may read PLC-1 and EM-1",
    "collector-prefix": "the collector's read rule written as its /29 (.40-.47), not its one address",
    "old-attackers": "FW-1 denies only the attacker addresses an old brief printed (.66-.69), lets the rest read",
    "hmi-writes-anywhere": "the HMI may write coils and every holding register (FC 5, 6, 15, 16, no ranges)",
    "hmi-blocked": "the allow-list forgets the HMI",
    "not-persisted": "FW-1 rules applied to the running config only, never saved",
    # broker and sensors
    "plaintext-listener": "the factory plaintext listener left open beside the TLS one",
    "acl-hash": "the sensor accounts may read '#'",
    "acl-forge-data": "each sensor account may also publish every node's data topic",
    "sys-readable": "the collector account may read $SYS/#",
    "sensors-plaintext": "sensors.yaml left as shipped: the nodes still try plaintext without accounts",
}
BROKER_FLAWS = ("plaintext-listener", "acl-hash", "acl-forge-data")


def aiotlab(*args: str) -> None:
    exe = Path(sys.executable).with_name("aiotlab")
    cmd = [str(exe) if exe.exists() else "aiotlab", *args, "--candidate", os.environ["AIOTLAB_CANDIDATE"]]
    subprocess.run(cmd, check=True, timeout=120)


def shared_broker(flaw: str | None) -> None:
    """The broker and the sensor gateway hardened by the shared toolkit (it also locks PLC-2 down its own way and
    writes a read tool for the other lab: PLC-2's config is replaced below, the tool is unused here)."""
    cmd = [sys.executable, str(SHARED_TOOLKIT), "--lab", "secure-pipeline"]
    subprocess.run(cmd + (["--flaw", flaw] if flaw in BROKER_FLAWS else []), check=True, timeout=300)


def password_hash(password: str, iterations: int = 100_000) -> str:
    """PLC-2's `password_hash` as the brief documents it: pbkdf2_sha256$<iterations>$<salt>$<hash>, salt and hash in
    standard Base64 with padding, PBKDF2-HMAC-SHA256 over the UTF-8 password, 32-byte hash."""
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"pbkdf2_sha256${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def plc2_file(cfg: Path, ws: Path, sheet: dict[str, Any], params: dict[str, Any], flaw: str | None) -> None:
    trust = cfg / "plc2-trust"
    shutil.rmtree(trust, ignore_errors=True)
    trust.mkdir()
    shutil.copyfile(os.environ["AIOTLAB_GRADER_CERT"], trust / "aiotlab-grader.der")
    shutil.copyfile(ws / "pki" / "collector-ua.der", trust / "collector.der")
    roles = {r: list(p) for r, p in params["ua_role_permissions"].items()}
    if flaw == "operator-writes":
        roles["operator"] = ["read", "write", "call"]
    users: dict[str, Any] = {
        name: {"password_hash": password_hash(str(pw)), "role": params["ua_roles"][name]}
        for name, pw in params["ua_accounts"].items()
    }
    if flaw == "extra-ua-account":  # a round-7 outsider's case: login probes cannot find an account they cannot name
        users["maint"] = {"password_hash": password_hash("maint-2026-secret"), "role": "engineer"}
    if flaw == "factory-accounts":
        users.update(
            {n: {"password": str(u["password"]), "role": u["role"]} for n, u in sheet["plc2"]["default_users"].items()}
        )
    policies = ["Basic256Sha256_SignAndEncrypt", "Aes256Sha256RsaPss_SignAndEncrypt"]
    doc: dict[str, Any] = {
        "security_policies": (["None"] if flaw == "none-endpoint" else []) + policies,
        "reject_unlisted_channels": flaw != "none-channel",
        "identity_tokens": ["anonymous", "username"] if flaw == "anonymous-ua" else ["username"],
        "anonymous_role": "viewer",
        "users": users,
        "roles": roles,
        "max_sessions": 16,
    }
    if flaw != "no-trust-list":
        doc["trust_list"] = "plc2-trust"  # relative to the folder of plc2.yaml (the config directory)
    (cfg / "plc2.yaml").write_text(
        "# Hardened PLC-2 (OPC UA)\n" + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8"
    )
    (cfg / "plc2.yaml").chmod(0o600)


def fw1_text(sheet: dict[str, Any], params: dict[str, Any], flaw: str | None) -> str:
    net = sheet["network"]
    sp = next(r for r in sheet["plc1"]["tables"]["holding_registers"] if r["name"] == params["hmi_setpoint"])
    rules: list[dict[str, Any]] = []
    if flaw == "old-attackers":  # first match wins, for the connection too: these sources are refused outright
        rules.append(
            {
                "name": "known-attackers",
                "sources": [f"{net['block']}.{n}/32" for n in (66, 67, 68, 69)],
                "action": "deny",
            }
        )
    if flaw != "hmi-blocked":
        rules.append(
            {"name": "hmi-read", "sources": [f"{net['hmi']}/32"], "targets": ["plc1", "em1"], "read_only": True}
        )
        if flaw == "hmi-writes-anywhere":
            rules.append(
                {
                    "name": "hmi-write",
                    "sources": [f"{net['hmi']}/32"],
                    "targets": ["plc1"],
                    "function_codes": [5, 6, 15, 16],
                }
            )
        else:
            rules.append(
                {
                    "name": "hmi-setpoint",
                    "sources": [f"{net['hmi']}/32"],
                    "targets": ["plc1"],
                    "function_codes": [6, 16],
                    "ranges": [{"table": "holding_registers", "start": sp["address"], "end": sp["address"]}],
                }
            )
    rules.append(
        {
            "name": "collector-read",
            "sources": [
                f"{net['block']}.0/24"
                if flaw == "broad-allowlist"
                else f"{net['workstation']}/29"
                if flaw == "collector-prefix"
                else f"{net['workstation']}/32"
            ],
            "targets": ["plc1", "em1"],
            "read_only": True,
        }
    )
    if flaw == "old-attackers":
        rules.append(
            {"name": "plant-read", "sources": [f"{net['block']}.0/24"], "targets": ["plc1", "em1"], "read_only": True}
        )
    for r in rules:
        r.setdefault("action", "allow")
    doc = {"default_action": "deny", "deny_response": "exception", "log_allowed": False, "rules": rules}
    return "# FW-1: allow-list (ics-hardening)\n" + yaml.safe_dump(doc, sort_keys=False)


RISKS = [  # (asset, exposure, threat, SRs, mitigation naming the control)
    (
        "plc1",
        "unauthenticated-protocol",
        "Anyone on the network reads and writes PLC-1 (Modbus has no authentication)",
        ["SR 1.1", "SR 2.1", "SR 5.1"],
        "FW-1 allow-list: reads from HMI and collector only, writes from the HMI to the setpoint only",
    ),
    (
        "em1",
        "unauthenticated-protocol",
        "Anyone reads EM-1 and can try writes (Modbus has no authentication)",
        ["SR 5.1", "SR 2.1"],
        "FW-1 allow-list: reads from HMI and collector only, no writes",
    ),
    (
        "fw1",
        "no-segmentation",
        "Factory FW-1 allows every source and function code",
        ["SR 5.1", "SR 5.2"],
        "default_action: deny with an explicit allow-list",
    ),
    (
        "plc2",
        "no-transport-security",
        "OPC UA SecurityPolicy None: traffic readable and modifiable",
        ["SR 3.1", "SR 4.1"],
        "security_policies: Basic256Sha256 and Aes256Sha256RsaPss with SignAndEncrypt only",
    ),
    (
        "plc2",
        "anonymous-access",
        "Anonymous sessions with write rights",
        ["SR 1.1", "SR 2.1"],
        "identity_tokens: [username]; anonymous disabled",
    ),
    (
        "plc2",
        "default-credentials",
        "Vendor default operator and engineer passwords are printed in every datasheet",
        ["SR 1.5", "SR 1.1"],
        "Factory accounts removed; issued accounts with individual hashed passwords",
    ),
    (
        "plc2",
        "unlisted-channel-session",
        "Compatibility mode accepts sessions over an unlisted None channel",
        ["SR 3.1", "SR 4.1", "SR 1.1"],
        "reject_unlisted_channels: true",
    ),
    (
        "plc2",
        "untrusted-client-certificates",
        "Any client certificate is accepted",
        ["SR 1.2", "SR 1.8"],
        "trust_list with the grader's and the collector's certificates only",
    ),
    (
        "plc2",
        "excessive-privileges",
        "The operator role may write process values",
        ["SR 2.1"],
        "Writes for the engineer role only; operator keeps call",
    ),
    (
        "broker",
        "anonymous-access",
        "Anonymous MQTT clients may publish and subscribe",
        ["SR 1.1", "SR 2.1"],
        "allow_anonymous false, one account per client in a hashed password_file",
    ),
    (
        "broker",
        "no-transport-security",
        "Plaintext MQTT listener: credentials and data readable on the network",
        ["SR 4.1", "SR 3.1"],
        "One TLS listener (tls_version tlsv1.2), plaintext listener removed",
    ),
    (
        "broker",
        "excessive-privileges",
        "No ACL: any client may read and write every topic",
        ["SR 2.1"],
        "Per-account ACL file, least privilege",
    ),
    (
        "broker",
        "information-disclosure",
        "$SYS topics reveal broker internals to every client",
        ["SR 4.1", "SR 7.7"],
        "ACL gives no account $SYS",
    ),
    (
        "sensors",
        "no-transport-security",
        "Sensor nodes publish in plaintext without credentials",
        ["SR 3.1", "SR 4.1", "SR 1.2"],
        "sensors.yaml: TLS to port 8883 with the plant CA (ca_file) and one account per node",
    ),
]
BLIND_ASSETS = ("plc1", "em1", "plc2", "fw1", "broker", "sensors", "hmi", "workstation")
BOILERPLATE = "Apply the vendor's security best practices and monitor the device."


def risk_register(ws: Path, candidate: str, params: dict[str, Any], schema: dict[str, Any], flaw: str | None) -> None:
    rows = [(a, e, t, s, m) for a, e, t, s, m in RISKS]
    if flaw == "blind-register":
        kinds = schema["properties"]["risks"]["items"]["properties"]["exposure"]["enum"]
        srs = ["SR 1.1", "SR 1.2", "SR 1.5", "SR 1.8", "SR 2.1", "SR 3.1", "SR 4.1", "SR 5.1", "SR 5.2", "SR 7.7"]
        rows = [(a, k, f"An attacker exploits {k} on {a}", srs, BOILERPLATE) for a in BLIND_ASSETS for k in kinds]
    if flaw == "phantom-asset":
        rows.append(
            (
                "historian",
                "default-credentials",
                "The historian server keeps its vendor password",
                ["SR 1.5"],
                "Factory accounts removed on the historian",
            )
        )
    status = "fixed" if flaw == "register-invalid" else "mitigated"
    doc = {
        "plant": candidate,
        "assessed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "risks": [
            {
                "id": f"R{i:02d}",
                "asset": a,
                "exposure": e,
                "threat": t,
                "iec62443_sr": s,
                "mitigation": m,
                "status": status,
            }
            for i, (a, e, t, s, m) in enumerate(rows, 1)
        ],
    }
    (ws / params["risk_register"]).write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flaw", choices=sorted(FLAWS))
    flaw = parser.parse_args().flaw
    sheet = json.loads(Path(os.environ["AIOTLAB_DATASHEET"]).read_text())
    params = json.loads(Path(os.environ["AIOTLAB_LAB_PARAMS"]).read_text())
    ws = Path(os.environ["AIOTLAB_WORKSPACE"])
    cfg = Path(sheet["config_dir"])
    os.umask(0o077)
    factory_sensors = (cfg / "sensors.yaml").read_text(encoding="utf-8")
    shared_broker(flaw)
    if flaw == "sensors-plaintext":
        (cfg / "sensors.yaml").write_text(factory_sensors, encoding="utf-8")
        aiotlab("plant", "reload", "sensors")
    if flaw == "sys-readable":  # one line more in the collector's ACL block
        acl = cfg / params["mqtt_acl_file"]
        text = acl.read_text(encoding="utf-8")
        if "user collector\n" not in text:
            raise SystemExit(f"no collector block in {acl}: cannot add the flaw")
        acl.write_text(text.replace("user collector\n", "user collector\ntopic read $SYS/#\n", 1), encoding="utf-8")
        aiotlab("plant", "reload", "broker")
    plc2_file(cfg, ws, sheet, params, flaw)
    aiotlab("plant", "reload", "plc2")
    text = fw1_text(sheet, params, flaw)
    if flaw == "not-persisted":  # tried on the running config, never saved to fw1.yaml
        running = ws / "fw1-candidate.yaml"
        running.write_text(text, encoding="utf-8")
        aiotlab("plant", "apply", "fw1", str(running))
    else:
        (cfg / "fw1.yaml").write_text(text, encoding="utf-8")
        aiotlab("plant", "reload", "fw1")
    schema = json.loads((ws / ".aiotlab" / "risk-register.schema.json").read_text(encoding="utf-8"))
    risk_register(ws, os.environ["AIOTLAB_CANDIDATE"], params, schema, flaw)
    print("hardened for ics-hardening" + (f" with flaw {flaw}: {FLAWS[flaw]}" if flaw else ""))


if __name__ == "__main__":
    main()
