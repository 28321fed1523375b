"""Device config files in the plant's state directory: generated once with factory defaults, then the candidate's.

Hardening survives restarts because the plant never regenerates a file that exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .broker import default_config


def fw1_default(hmi: str) -> str:
    """FW-1's factory file; its rule example allows `hmi`, this plant's own HMI address (never another plant's)."""
    sources = f"#     sources: [{hmi}/32]"
    pad = " " * max(1, 41 - len(sources))  # the comments of the example's lines in one column
    return f"""# FW-1 industrial firewall rules (aiotlab). Apply changes with: aiotlab plant reload fw1
# Factory default: allow everything (no segmentation).
#
# default_action: allow | deny           what happens when no rule matches
# deny_response:  exception | drop       answer a denied request with Modbus exception 01, or close the connection
# log_allowed:    true | false           log allowed requests too (denials are always logged)
# rules: first match wins; a rule matches a request when source, target, function code and ranges all match.
#   - name: hmi-read-write
{sources}{pad}# IPv4 addresses or CIDR blocks (here: this plant's HMI)
#     targets: [plc1]                    # plc1 and/or em1; omit for both
#     function_codes: [1, 2, 3, 4, 6]    # omit for all; or read_only: true for 1-4
#     ranges:                            # optional: every address the request touches must be inside one range
#       - {{table: holding_registers, start: 0, end: 9}}
#     write_ranges: []                   # optional: ranges that writes must stay inside
#     action: allow                      # allow | deny
default_action: allow
deny_response: exception
log_allowed: true
rules: []
"""


def plc2_default(users: dict[str, Any]) -> str:
    doc = {
        "security_policies": ["None"],
        "identity_tokens": ["anonymous", "username"],
        "anonymous_role": "operator",
        "users": {name: {"password": str(u["password"]), "role": u["role"]} for name, u in users.items()},
        "roles": {"viewer": ["read"], "operator": ["read", "write", "call"], "engineer": ["read", "write", "call"]},
        "trust_list": None,
        "max_sessions": 32,
        "reject_unlisted_channels": False,
    }
    header = """# PLC-2 OPC UA server security (aiotlab). Apply changes with: aiotlab plant reload plc2
# Factory default, as shipped by many vendors: no security, anonymous access with write rights.
#
# security_policies: any of None, Basic256Sha256_Sign, Basic256Sha256_SignAndEncrypt,
#   Aes128Sha256RsaOaep_Sign, Aes128Sha256RsaOaep_SignAndEncrypt, Aes256Sha256RsaPss_Sign,
#   Aes256Sha256RsaPss_SignAndEncrypt. Sessions on any channel not listed here are refused.
# identity_tokens: any of anonymous, username, x509
# users: name -> {password | password_hash (pbkdf2_sha256$iter$salt$hash) | certificate (path), role}
# roles: role -> permissions from [read, write, call]
# trust_list: directory of trusted client application certificates (its *.der, *.pem and *.crt files, each PEM or
#   DER; other files are ignored); null accepts any client certificate
# reject_unlisted_channels: false (factory, "compatibility mode") lets a client open a session over a
#   SecurityPolicy#None channel even when None is not in security_policies; true refuses sessions on any channel
#   whose policy and mode are not listed above
"""
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def sensors_default(mqtt_port: int, nodes: list[str]) -> str:
    lines = [
        "# How the wireless gateway's sensor nodes reach the broker. Apply with: aiotlab plant reload sensors",
        "broker:",
        f"  port: {mqtt_port}",
        "  tls: false          # true: connect with TLS (give ca_file to verify the broker)",
        "  ca_file: null",
        "nodes:               # per-node MQTT account (null = anonymous)",
    ]
    lines += [f"  {n}: {{username: null, password: null}}" for n in nodes]
    return "\n".join(lines) + "\n"


def ensure_configs(config_dir: Path, params: dict[str, Any], hosts: dict[str, str], ports: dict[str, int]) -> None:
    config_dir.mkdir(parents=True, exist_ok=True)
    devices = params["devices"]
    files = {
        "fw1.yaml": lambda: fw1_default(hosts["hmi"]),
        "plc2.yaml": lambda: plc2_default(devices["plc2"]["default_users"]),
        "mosquitto.conf": lambda: default_config(
            hosts["broker"], ports["mqtt"], int(devices["broker"]["max_queued_messages"])
        ),
        "sensors.yaml": lambda: sensors_default(ports["mqtt"], [n["id"] for n in devices["sensors"]["nodes"]]),
    }
    for name, make in files.items():
        path = config_dir / name
        if not path.exists():
            path.write_text(make(), encoding="utf-8")
