"""Hardening toolkit for the secure-pipeline reference solution (and the broker part of ics-hardening's, whose own
script labs/ics-hardening/solutions/harden_ics.py does FW-1 and the risk register), written from the briefs alone.

What a candidate does by hand, scripted: make a CA and the broker's certificate, hash the issued MQTT passwords
with mosquitto_passwd, write the ACL and a TLS-only mosquitto.conf, point the sensor gateway at TLS with its
accounts, lock PLC-2's OPC UA down, then save and reload.
`--flaw NAME` reproduces one realistic mistake; each flawed solution of the labs is this program plus one flaw.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

FLAWS = (
    "plaintext-listener",  # TLS listener added, the factory plaintext listener left open
    "tls11-listener",  # a second TLS listener (port + 1) that still accepts TLS 1.1
    "tls11-mtls-listener",  # the same, but it demands a client certificate (the grader gets no MQTT there)
    "no-san",  # broker certificate without the subjectAltName of the broker's address
    "allow-anonymous",  # allow_anonymous true (everything else hardened)
    "passwd-readable",  # password file hashed, but readable by every local user (0644)
    "acl-hash",  # sensor accounts may read '#'
    "acl-forge-data",  # each sensor account may also publish every node's data topic (forge another node's data)
    "acl-pattern",  # the sensors' rows written as one `pattern readwrite <root>/%u/#`: it applies to every account
    "grader-publishes",  # the grader account may also publish on telemetry/# (read-only in the account table)
    "sys-readable",  # the collector account may read $SYS/#
    "log-no-timestamp",  # broker log lines without timestamps
    "key-glob",  # the broker's key saved as pki/plant-broker.key, readable by every local user (0644)
    "key-der",  # a DER backup of the CA's key, pki/ca-backup.der, readable by every local user (0644)
    "sign-endpoint",  # PLC-2 also offers Basic256Sha256 with Sign only
    "audit-after",  # the read tool prints the data, then writes the audit line
    "since-exclusive",  # the read tool returns readings with ts > --since, not >=
    "mtls-required",  # the TLS listener demands a client certificate: the issued accounts cannot connect with one
    "csv-store",  # the read tool serves a CSV store (written by the csv-store solution's collector wrapper)
    "anonymous-ua",  # None endpoint removed, anonymous identity still accepted
    "none-channel",  # compatibility mode left on: sessions over a None channel still work
)


def aiotlab(*args: str) -> None:
    exe = Path(sys.executable).with_name("aiotlab")
    cmd = [str(exe) if exe.exists() else "aiotlab", *args, "--candidate", os.environ["AIOTLAB_CANDIDATE"]]
    subprocess.run(cmd, check=True, timeout=60)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def make_pki(pki: Path, broker_ip: str, flaw: str | None = None) -> Path:
    """A private CA and a broker certificate valid for the broker's IP address (the name clients verify); returns
    the broker key's path."""
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("aiotlab plant CA"))
        .issuer_name(_name("aiotlab plant CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(broker_ip if flaw == "no-san" else "plant broker"))  # no-san: the address in the CN only
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    if flaw != "no-san":
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(broker_ip))])
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    write_key(pki / "ca.key", ca_key)
    if flaw == "key-der":  # "a DER copy for the Windows tool": a private key under a name no pattern covers
        backup = pki / "ca-backup.der"
        backup.write_bytes(
            ca_key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        backup.chmod(0o644)
    (pki / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    broker_key = pki / ("plant-broker.key" if flaw == "key-glob" else "broker.key")
    write_key(broker_key, key)
    if flaw == "key-glob":  # a key name the brief's pattern covers, left readable by every local user
        broker_key.chmod(0o644)
    (pki / "broker.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return broker_key


def make_ua_client_cert(pki: Path, name: str, uri: str) -> tuple[Path, Path]:
    import asyncio

    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    cert, key = pki / f"{name}.der", pki / f"{name}.pem"
    asyncio.run(
        setup_self_signed_certificate(
            key, cert, uri, "localhost", [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": name}
        )
    )
    key.chmod(0o600)
    return cert, key


def broker_files(
    cfg: Path, ws: Path, sheet: dict[str, Any], params: dict[str, Any], flaw: str | None, broker_key: Path
) -> None:
    host, root = sheet["mqtt"]["host"], sheet["mqtt"]["topic_root"]
    passwd = cfg / params["mqtt_password_file"]
    passwd.unlink(missing_ok=True)
    passwd.touch(mode=0o600)
    for user, password in params["mqtt_accounts"].items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, str(password)], check=True, timeout=30)
    passwd.chmod(0o644 if flaw == "passwd-readable" else 0o600)
    acl = ["# MQTT access control: one block per account (secure-pipeline brief, ACL table)"]
    if flaw == "acl-pattern":  # looks like the sensors' rows, but patterns apply to every account
        acl += [f"pattern readwrite {root}/%u/#", ""]
    for node in (n["id"] for n in sheet["mqtt"]["nodes"] if flaw != "acl-pattern"):
        acl += [f"user {node}", f"topic write {root}/{node}/#", f"topic read {root}/{node}/config"]
        if flaw == "acl-hash":
            acl.append("topic read #")
        if flaw == "acl-forge-data":  # "every sensor writes data": a node may publish any node's data topic
            acl.append(f"topic write {root}/+/data")
        acl.append("")
    acl += ["user collector", f"topic read {root}/#", "topic write telemetry/#"]
    acl += ["topic read $SYS/#", ""] if flaw == "sys-readable" else [""]
    acl += [
        "user grader",
        "topic readwrite telemetry/#" if flaw == "grader-publishes" else "topic read telemetry/#",
        "",
    ]
    (cfg / params["mqtt_acl_file"]).write_text("\n".join(acl), encoding="utf-8")
    (cfg / params["mqtt_acl_file"]).chmod(0o600)
    user = "user root\n" if os.geteuid() == 0 else ""
    extra_listener = f"\nlistener {sheet['mqtt']['port']} {host}\n" if flaw == "plaintext-listener" else ""
    if flaw in ("tls11-listener", "tls11-mtls-listener"):  # OpenSSL 3 speaks TLS 1.1 only at security level 0
        extra_listener = f"""
listener {int(params["mqtt_tls_port"]) + 1} {host}
cafile {ws / "pki/ca.crt"}
certfile {ws / "pki/broker.crt"}
keyfile {broker_key}
tls_version tlsv1.1
ciphers DEFAULT:@SECLEVEL=0
{"require_certificate true" if flaw == "tls11-mtls-listener" else ""}
"""
    stamp = (
        "log_timestamp false\n"
        if flaw == "log-no-timestamp"
        else "log_timestamp true\nlog_timestamp_format %Y-%m-%dT%H:%M:%S\n"
    )
    (cfg / "mosquitto.conf").write_text(
        f"""# Hardened broker (secure-pipeline): TLS 1.2+ only, accounts, ACLs, audit logging.
per_listener_settings false
allow_anonymous {"true" if flaw == "allow-anonymous" else "false"}
password_file {passwd}
acl_file {cfg / params["mqtt_acl_file"]}

listener {params["mqtt_tls_port"]} {host}
cafile {ws / "pki/ca.crt"}
certfile {ws / "pki/broker.crt"}
keyfile {broker_key}
tls_version tlsv1.2
{"require_certificate true" if flaw == "mtls-required" else ""}
{extra_listener}
set_tcp_nodelay true
max_queued_messages 1000
persistence false
{user}log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
{stamp}""",
        encoding="utf-8",
    )
    sensors = {
        "broker": {"port": int(params["mqtt_tls_port"]), "tls": True, "ca_file": str(ws / "pki/ca.crt")},
        "nodes": {
            n["id"]: {"username": n["id"], "password": str(params["mqtt_accounts"][n["id"]])}
            for n in sheet["mqtt"]["nodes"]
        },
    }
    (cfg / "sensors.yaml").write_text(yaml.safe_dump(sensors, sort_keys=False), encoding="utf-8")
    (cfg / "sensors.yaml").chmod(0o600)


def plc2_file(cfg: Path, ws: Path, params: dict[str, Any], flaw: str | None) -> None:
    trust = cfg / "plc2-trust"
    shutil.rmtree(trust, ignore_errors=True)
    trust.mkdir()
    shutil.copyfile(os.environ["AIOTLAB_GRADER_CERT"], trust / "aiotlab-grader.der")
    collector_cert = ws / "pki" / "collector-ua.der"
    if collector_cert.exists():
        shutil.copyfile(collector_cert, trust / "collector.der")
    tokens = ["anonymous", "username"] if flaw == "anonymous-ua" else ["username"]
    doc = {
        "security_policies": ["Basic256Sha256_SignAndEncrypt", "Aes256Sha256RsaPss_SignAndEncrypt"]
        + (["Basic256Sha256_Sign"] if flaw == "sign-endpoint" else []),
        "reject_unlisted_channels": flaw != "none-channel",
        "identity_tokens": tokens,
        "anonymous_role": "viewer",
        "users": {
            name: {"password": str(pw), "role": params["ua_roles"][name]} for name, pw in params["ua_accounts"].items()
        },
        "roles": {"viewer": ["read"], "operator": ["read", "call"], "engineer": ["read", "write", "call"]},
        "trust_list": "plc2-trust",
        "max_sessions": 16,
    }
    (cfg / "plc2.yaml").write_text(
        "# Hardened PLC-2 (OPC UA)\n" + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8"
    )
    (cfg / "plc2.yaml").chmod(0o600)


def main() -> None:
    parser = argparse.ArgumentParser()
    # ics-hardening has its own script (labs/ics-hardening/solutions/harden_ics.py), which runs this one for the
    # broker, sensors and PLC-2 with --lab secure-pipeline
    parser.add_argument("--lab", choices=("secure-pipeline",), required=True)
    parser.add_argument("--flaw", choices=FLAWS)
    args = parser.parse_args()
    sheet = json.loads(Path(os.environ["AIOTLAB_DATASHEET"]).read_text())
    params = json.loads(Path(os.environ["AIOTLAB_LAB_PARAMS"]).read_text())
    ws = Path(os.environ["AIOTLAB_WORKSPACE"])
    cfg = Path(sheet["config_dir"])
    os.umask(0o077)
    broker_key = make_pki(ws / "pki", sheet["mqtt"]["host"], args.flaw)
    make_ua_client_cert(ws / "pki", "collector-ua", "urn:aiotlab:collector")
    broker_files(cfg, ws, sheet, params, args.flaw, broker_key)
    plc2_file(cfg, ws, params, args.flaw)
    for device in ("broker", "sensors", "plc2"):
        aiotlab("plant", "reload", device)
    if args.lab == "secure-pipeline":  # the audited read path to stored data
        bin_dir = ws / "bin"
        bin_dir.mkdir(exist_ok=True)
        tool = bin_dir / "read-telemetry"
        here = Path(__file__).resolve().parent
        extra = {
            "audit-after": " --audit-after",
            "csv-store": " --store csv",
            "since-exclusive": " --since-exclusive",
        }.get(args.flaw or "", "")
        tool.write_text(
            f'#!/bin/sh\nexport AIOTLAB_WORKSPACE="{ws}"\n'
            f'exec "{sys.executable}" "{here / "read_telemetry.py"}"{extra} "$@"\n'
        )
        tool.chmod(0o700)
    print(f"hardened for {args.lab}" + (f" with flaw {args.flaw}" if args.flaw else ""))


if __name__ == "__main__":
    main()
