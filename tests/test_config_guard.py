"""Allow-list validation of candidate device configs (exam mode): every legitimate config passes (factory, and the
labs' reference and flawed hardenings as their own config-writing functions write them), and every dangerous or
out-of-bounds one is refused with a message naming the file, the line and the reason. No plant is started."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from aiotlab.labs.loader import load_lab
from aiotlab.simulators import config_guard as cg
from aiotlab.simulators.config_guard import ConfigRefused, validate

CANDIDATE = "guard-alice"
CFG = "/var/lib/aiotlab/plant/config"
HOST = "10.64.0.1"


@pytest.fixture(autouse=True)
def _private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOTLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AIOTLAB_EXAM_SECRET", "config-guard-test-secret")


def files_in(folder: Path) -> dict[str, bytes]:
    """What a candidate hands a device: the plain files of a config folder (subfolders such as pki/ stay put)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def hand(device: str, folder: Path, *, hosts: list[str], only: tuple[str, ...] = ()) -> None:
    files = files_in(folder)
    main = cg.CONFIG_FILES[device]
    keep = {main, *only}
    validate(device, {n: c for n, c in files.items() if n in keep}, config_dir=str(folder), own_hosts=hosts)


def load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def refused(device: str, files: dict[str, bytes], hosts: list[str] | None = None, cfg: str = CFG) -> ConfigRefused:
    with pytest.raises(ConfigRefused) as info:
        validate(device, files, config_dir=cfg, own_hosts=hosts or [HOST])
    return info.value


def conf(*lines: str) -> dict[str, bytes]:
    return {"mosquitto.conf": ("\n".join(lines) + "\n").encode()}


GOOD_BROKER = (
    "per_listener_settings false",
    "allow_anonymous false",
    f"password_file {CFG}/mosquitto.passwd",
    f"acl_file {CFG}/mosquitto.acl",
    f"listener 8883 {HOST}",
    f"cafile {CFG}/pki/ca.crt",
    f"certfile {CFG}/pki/broker.crt",
    f"keyfile {CFG}/pki/broker.key",
    "tls_version tlsv1.2",
    "log_dest stderr",
)


# -- consistency with the devices ----------------------------------------------------------------------------


def test_device_table_and_vocabularies_match_the_devices() -> None:
    from aiotlab.simulators import runtime
    from aiotlab.simulators.devices import opcua_security as ua

    assert cg.CONFIG_FILES == runtime.CONFIG_FILES
    assert cg._PLC2_POLICIES == set(ua.POLICIES)
    assert cg._PLC2_TOKENS == set(ua.TOKENS)
    assert cg._PLC2_PERMISSIONS == ua.PERMISSIONS
    assert (cg.MAX_FILE_BYTES, cg.MAX_TOTAL_BYTES, cg.MAX_FILES, cg.MAX_FW1_RULES) == (262144, 2097152, 32, 200)


# -- every legitimate config passes ------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["process", "containers"])
def test_factory_configs_pass(tmp_path: Path, where: str) -> None:
    from aiotlab.simulators import addressing as ad
    from aiotlab.simulators.configs import ensure_configs
    from aiotlab.simulators.launch import plant_params

    _, spec, params = plant_params(CANDIDATE, secret="config-guard-test-secret")
    addr = (ad.Addresses.for_slot if where == "process" else ad.Addresses.on_networks)(3, spec["addressing"])
    cfg = tmp_path / "config"
    ensure_configs(cfg, params, addr.hosts, addr.ports)
    assert sorted(files_in(cfg)) == sorted(cg.CONFIG_FILES.values())
    for device in cg.CONFIG_FILES:
        hand(device, cfg, hosts=[addr.hosts["broker"]] if device == "broker" else [])


@pytest.fixture
def secure_pipeline(tmp_path: Path) -> tuple[ModuleType, dict[str, Any], dict[str, Any], Path]:
    from aiotlab.simulators import datasheet

    lab = load_lab("secure-pipeline")
    harden = load_module(lab.path.parent / "common" / "harden.py", "harden_for_guard")
    cfg = tmp_path / "config"
    cfg.mkdir()
    return harden, datasheet.build(CANDIDATE), lab.params_for(CANDIDATE), cfg


@pytest.mark.skipif(not Path("/usr/bin/mosquitto_passwd").exists(), reason="mosquitto_passwd not installed")
@pytest.mark.parametrize("flaw", [None, *load_module(Path(__file__).parents[1] / "labs/common/harden.py", "h").FLAWS])
def test_secure_pipeline_hardening_passes(
    secure_pipeline: Any, tmp_path: Path, flaw: str | None, monkeypatch: Any
) -> None:
    """labs/common/harden.py (the secure-pipeline reference and each flawed variant, and the broker part of
    ics-hardening's) writing into the device's config folder, its PKI in a pki/ folder there: as exam mode
    needs it, since the device reads no file of the candidate's workspace."""
    harden, sheet, params, cfg = secure_pipeline
    grader_cert = tmp_path / "grader.der"
    grader_cert.write_bytes(b"\x30\x82 not parsed here")
    monkeypatch.setenv("AIOTLAB_GRADER_CERT", str(grader_cert))
    key = harden.make_pki(cfg / "pki", sheet["mqtt"]["host"], flaw)
    harden.broker_files(cfg, cfg, sheet, params, flaw, key)
    harden.plc2_file(cfg, cfg, params, flaw)
    text = (cfg / "mosquitto.conf").read_text()
    assert f"cafile {cfg}/pki/ca.crt" in text and "password_file" in text
    hand("broker", cfg, hosts=[sheet["mqtt"]["host"]], only=(params["mqtt_password_file"], params["mqtt_acl_file"]))
    hand("sensors", cfg, hosts=[])
    hand("plc2", cfg, hosts=[])


@pytest.mark.skipif(not Path("/usr/bin/mosquitto_passwd").exists(), reason="mosquitto_passwd not installed")
def test_practice_mode_workspace_paths_are_refused(secure_pipeline: Any, tmp_path: Path) -> None:
    """The same reference as practice mode runs it: CA and broker key in the candidate's workspace. A device in
    exam mode may not read the workspace: refused, naming the line and the config folder."""
    harden, sheet, params, cfg = secure_pipeline
    ws = tmp_path / "workspace"
    key = harden.make_pki(ws / "pki", sheet["mqtt"]["host"])
    harden.broker_files(cfg, ws, sheet, params, None, key)
    broker = {n: c for n, c in files_in(cfg).items() if n.startswith("mosquitto.")}
    exc = refused("broker", broker, [sheet["mqtt"]["host"]], cfg=str(cfg))
    lines = (cfg / "mosquitto.conf").read_text().splitlines()
    assert exc.line == lines.index(f"cafile {ws}/pki/ca.crt") + 1
    assert f"mosquitto.conf:{exc.line}: cafile '{ws}/pki/ca.crt' refused" in str(exc)
    assert f"only be inside the device's config folder {cfg}" in str(exc)
    exc = refused("sensors", {"sensors.yaml": (cfg / "sensors.yaml").read_bytes()}, cfg=str(cfg))
    assert exc.file == "sensors.yaml" and "ca_file" in str(exc)


@pytest.mark.parametrize(
    "flaw", [None, *load_module(Path(__file__).parents[1] / "labs/ics-hardening/solutions/harden_ics.py", "hi").FLAWS]
)
def test_ics_hardening_plc2_and_fw1_pass(tmp_path: Path, flaw: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """harden_ics.py's own PLC-2 and FW-1 writers, the reference and each flawed variant."""
    from aiotlab.simulators import datasheet

    lab = load_lab("ics-hardening")
    mod = load_module(lab.path / "solutions" / "harden_ics.py", "harden_ics_for_guard")
    sheet, params = datasheet.build(CANDIDATE), lab.params_for(CANDIDATE)
    cfg, ws = tmp_path / "config", tmp_path / "ws"
    cfg.mkdir()
    (ws / "pki").mkdir(parents=True)
    (ws / "pki" / "collector-ua.der").write_bytes(b"collector")
    (tmp_path / "grader.der").write_bytes(b"grader")
    monkeypatch.setenv("AIOTLAB_GRADER_CERT", str(tmp_path / "grader.der"))
    mod.plc2_file(cfg, ws, sheet, params, flaw)
    (cfg / "fw1.yaml").write_text(mod.fw1_text(sheet, params, flaw), encoding="utf-8")
    hand("plc2", cfg, hosts=[])
    hand("fw1", cfg, hosts=[])


def test_more_legitimate_broker_settings_pass() -> None:
    validate(
        "broker",
        conf(
            *GOOD_BROKER,
            "# a comment",
            "",
            "listener 8884 0.0.0.0",
            "listener 8885 ::",
            "listener 8886",
            "port 1884",
            f"bind_address {HOST}",
            "socket_domain ipv4",
            "require_certificate true",
            "use_identity_as_username true",
            f"capath {CFG}/pki/",
            f"crlfile {CFG}/pki/ca.crl",
            "ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
            "ciphers_tls1.3 TLS_AES_256_GCM_SHA384",
            "tls_version tlsv1.3",
            "user root",
            "log_dest stdout",
            "log_dest topic",
            f"log_dest file {CFG}/broker.log",
            "log_type all",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "connection_messages false",
            "max_connections -1",
            "max_inflight_messages 20",
            "max_keepalive 120",
            "message_size_limit 65536",
            "max_packet_size 1048576",
            "max_qos 1",
            "retain_available false",
            "persistence true",
            f"persistence_location {CFG}/",
            "persistence_file broker.db",
            "autosave_interval 60",
            "persistent_client_expiration 14d",
            "protocol mqtt",
            "sys_interval 10",
        )
        | {"mosquitto.passwd": b"collector:$7$101$abc", "mosquitto.acl": b"user collector\ntopic read #\n"},
        config_dir=CFG,
        own_hosts=[HOST, "fd00::1"],
    )
    validate("broker", conf("listener 1883 fd00::1", "log_dest none\r"), config_dir=CFG + "/", own_hosts=["fd00::1"])


def test_referenced_files_alone_pass() -> None:
    """A new password file or certificate without the main config: the saved config names them."""
    validate(
        "broker", {"mosquitto.passwd": b"vib-01:$7$101$x\n", "ca.crt": b"-----BEGIN"}, config_dir=CFG, own_hosts=[]
    )


def test_fw1_rule_cap() -> None:
    rule = {"name": "r", "sources": ["10.64.0.40/32"], "targets": ["plc1"], "read_only": True}
    doc = {"default_action": "deny", "rules": [dict(rule, name=f"r{i}") for i in range(cg.MAX_FW1_RULES)]}
    validate("fw1", {"fw1.yaml": yaml.safe_dump(doc).encode()}, config_dir=CFG, own_hosts=[])
    doc["rules"].append(rule)
    exc = refused("fw1", {"fw1.yaml": b"# over the cap\n" + yaml.safe_dump(doc).encode()})
    assert str(exc).startswith("fw1.yaml:")
    assert f"{cg.MAX_FW1_RULES + 1} FW-1 rules; at most {cg.MAX_FW1_RULES} are accepted" in str(exc)
    assert exc.line == 3  # the comment, default_action, then rules


def test_fw1_yaml_with_aliases_of_a_legitimate_size_passes() -> None:
    text = "default_action: deny\nrules:\n- {name: a, sources: &hmi [10.64.0.30/32], read_only: true}\n"
    text += "- {name: b, sources: *hmi, targets: [plc1], function_codes: [6]}\n"
    validate("fw1", {"fw1.yaml": text.encode()}, config_dir=CFG, own_hosts=[])


# -- refusals ------------------------------------------------------------------------------------------------

MOSQUITTO_REFUSALS = [
    ("plugin /tmp/evil.so", "directive 'plugin' refused: broker plugins load code"),
    ("auth_plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so", "directive 'auth_plugin' refused"),
    ("plugin_opt_config_file /tmp/x", "directive 'plugin_opt_config_file' refused: broker plugins"),
    ("auth_opt_backends files", "directive 'auth_opt_backends' refused: broker plugins"),
    ("global_plugin /tmp/x.so", "directive 'global_plugin' refused"),
    (f"include_dir {CFG}/conf.d", "directive 'include_dir' refused: included files would escape"),
    ("include_dir /etc/mosquitto/conf.d", "directive 'include_dir' refused"),
    ("pid_file /run/mosquitto.pid", "directive 'pid_file' refused"),
    ("user nobody", "'user nobody' refused: the broker's account is the device's"),
    ("connection evil-bridge", "directive 'connection' refused: bridges connect"),
    ("address 10.64.1.1:1883", "directive 'address' refused: bridges"),
    ("bridge_cafile /etc/ssl/ca.pem", "directive 'bridge_cafile' refused: bridges"),
    ("http_dir /", "directive 'http_dir' refused"),
    ("tls_engine pkcs11", "directive 'tls_engine' refused: an OpenSSL engine loads code"),
    ("tls_keyform engine", "tls_keyform must be one of ['pem']"),
    ("bind_interface lo", "directive 'bind_interface' refused"),
    ("frobnicate yes", "directive 'frobnicate' refused: not one this exam's brokers accept"),
    ("Plugin /tmp/evil.so", "directive 'Plugin' refused: not one"),
    ("plugin\t/tmp/evil.so", "a tab outside a comment refused"),
    (f"password_file \t{CFG}/mosquitto.passwd", "a tab outside a comment refused"),
    ("  # indented comment", "a comment must start at the beginning of its line"),
    ("log_dest file /tmp/broker.log", "log_dest file '/tmp/broker.log' refused: files may only be inside"),
    (f"log_dest file {CFG}/../logs/broker.log", "'..' is not allowed"),
    (f"log_dest file {CFG}/pki/broker.log", "the log file must be a *.log file directly in"),
    (f"log_dest file {CFG}/fw1.yaml", "the log file must be a *.log file directly in"),
    (f"log_dest file {CFG}/mosquitto.conf", "the log file must be a *.log file"),
    ("log_dest file broker.log", "Mosquitto resolves a relative path against its working directory"),
    ("log_dest syslog", "log_dest syslog refused"),
    ("log_dest stdout stderr", "log_dest 'stdout stderr' refused"),
    ("listener 1883 10.64.0.2", "listener address '10.64.0.2' refused: the broker may listen only on its own"),
    ("listener 1883 127.0.0.1", "listener address '127.0.0.1' refused"),
    ("listener 1883 localhost", "listener address 'localhost' refused"),
    ("listener 1883 0.0.0.0 extra", "listener takes a port and optionally one"),
    (f"listener 0 {CFG}/mqtt.sock", "listener port '0' refused: a TCP port 1-65535 (no unix sockets)"),
    ("listener 70000", "listener port '70000' refused"),
    ("bind_address 10.64.0.9", "bind_address address '10.64.0.9' refused"),
    ("password_file mosquitto.passwd", "Mosquitto resolves a relative path against its working directory"),
    ("password_file /etc/shadow", "password_file '/etc/shadow' refused: files may only be inside"),
    (f"acl_file {CFG}/../../secret", "acl_file"),
    (f"cafile {CFG}-evil/ca.crt", "files may only be inside the device's config folder"),
    (f"certfile {CFG}/./broker.crt", "every part of the path must be a plain name"),
    (f"keyfile {CFG}//broker.key", "every part of the path must be a plain name"),
    (f"keyfile {CFG}/.hidden.key", "every part of the path must be a plain name"),
    (f"keyfile {CFG}/broker key.pem", "no spaces in paths"),
    (f"capath {CFG}/../", "'..' is not allowed"),
    ("psk_file /root/psk", "psk_file '/root/psk' refused"),
    ("persistence_location /var/lib/mosquitto/", "persistence_location '/var/lib/mosquitto/' refused"),
    (f"persistence_location {CFG}", "it must end with '/' (Mosquitto appends the file name)"),
    ("persistence_file ../mosquitto.db", "persistence_file '../mosquitto.db' refused"),
    ("persistence_file fw1.yaml", "give a plain file name ending in .db"),
    ("allow_anonymous yes", "allow_anonymous must be true or false, not 'yes'"),
    ("allow_anonymous", "allow_anonymous takes exactly one value"),
    ("max_queued_messages lots", "max_queued_messages must be an integer"),
    ("tls_version sslv3", "tls_version must be one of"),
    ("log_type everything", "log_type must be one of"),
]


@pytest.mark.parametrize(("line", "message"), MOSQUITTO_REFUSALS, ids=[r[0][:40] for r in MOSQUITTO_REFUSALS])
def test_mosquitto_refusals(line: str, message: str) -> None:
    exc = refused("broker", conf(*GOOD_BROKER, line))
    assert message in str(exc), str(exc)
    assert exc.file == "mosquitto.conf" and exc.line == len(GOOD_BROKER) + 1
    assert str(exc).startswith(f"mosquitto.conf:{len(GOOD_BROKER) + 1}: ")


def test_mosquitto_persistence_needs_its_location_in_the_folder() -> None:
    exc = refused("broker", conf(*GOOD_BROKER, "persistence true"))
    assert "persistence true needs persistence_location inside" in str(exc) and exc.line == len(GOOD_BROKER) + 1
    validate("broker", conf(f"log_dest file {CFG}/mosquitto.passwd.log"), config_dir=CFG, own_hosts=[])
    exc = refused("broker", conf(f"password_file {CFG}/x.log", f"log_dest file {CFG}/x.log"))
    assert "log_dest file x.log refused: that file is a config or a file the broker reads" in str(exc)
    assert exc.line == 2


def test_mosquitto_text_encoding_refusals() -> None:
    exc = refused("broker", {"mosquitto.conf": b"allow_anonymous false\nlog_dest stderr\x00plugin /x.so\n"})
    assert str(exc) == "mosquitto.conf:2: control character '\\x00' refused (only tabs and line ends)"
    exc = refused("broker", {"mosquitto.conf": b"# caf\xe9\n"})
    assert str(exc) == "mosquitto.conf:1: not UTF-8 text"


FW1_REFUSALS = [
    ("rules: {a: 1}\n", "rules must be a list", 1),
    ("default_action: maybe\n", "default_action must be allow or deny", 1),
    ("rules:\n- {sources: [not-an-ip]}\n", "rule 1: bad source", 2),
    ("rules:\n- {name: x, via: plc2}\n", "rule 1: unknown key 'via'", 2),
    ("firewall: off\n", "unknown key 'firewall'", 1),
    ("- just\n- a list\n", "top level must be a mapping", None),
    ("rules: [\n", "invalid YAML", 2),
    ("rules: !!python/object/apply:os.system [id]\n", "invalid YAML", 1),
    ("a: 1\n---\nb: 2\n", "invalid YAML", 2),
    ("rules:\n- {sources: 17}\n", "FW-1 cannot read this file", None),
]


@pytest.mark.parametrize(("text", "message", "line"), FW1_REFUSALS)
def test_fw1_refusals(text: str, message: str, line: int | None) -> None:
    exc = refused("fw1", {"fw1.yaml": text.encode()})
    assert message in str(exc) and exc.file == "fw1.yaml" and exc.line == line, str(exc)
    assert "aiotlab-guard-" not in str(exc)  # the temporary copy FW-1's parser read is never named


def test_yaml_bombs_are_refused_before_they_are_walked() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    exc = refused("fw1", {"fw1.yaml": ("\n".join(lines) + "\nrules: *a8\n").encode()})
    assert f"YAML too large: more than {cg.MAX_YAML_NODES} values once aliases are expanded" in str(exc)
    exc = refused("plc2", {"plc2.yaml": b"users: &u [*u]\n"})
    assert "YAML alias refers to itself" in str(exc) and exc.line == 1
    exc = refused("sensors", {"sensors.yaml": ("nodes: " + "[" * 40 + "]" * 40 + "\n").encode()})
    assert f"YAML nested deeper than {cg.MAX_YAML_DEPTH} levels" in str(exc)
    exc = refused("sensors", {"sensors.yaml": ("x: " + "[" * 5000 + "]" * 5000 + "\n").encode()})
    assert "nested deeper" in str(exc)


PLC2_REFUSALS = [
    ("trust_list: ../../trust\n", "trust_list '../../trust' refused: '..' is not allowed", 1),
    ("trust_list: /etc/ssl/certs\n", "trust_list '/etc/ssl/certs' refused: files may only be inside", 1),
    ("trust_list: .\n", "every part of the path must be a plain name", 1),
    ("trust_list: [a]\n", "trust_list must be a folder name", 1),
    (
        "users:\n  eve:\n    certificate: /home/candidate/eve.der\n    role: viewer\n",
        "user 'eve': certificate '/home/candidate/eve.der' refused",
        3,
    ),
    ("users:\n  eve: {password: x, role: viewer, shell: /bin/sh}\n", "unknown key 'shell' in user 'eve'", 2),
    ("users:\n  eve: {password: [a, b], role: viewer}\n", "user 'eve': password must be a single value", 2),
    ("security_policies: [Basic128Rsa15]\n", "security_policies must be a non-empty list of", 1),
    ("identity_tokens: []\n", "identity_tokens must be a non-empty list", 1),
    ("roles: {viewer: [read, admin]}\n", "role 'viewer' must be a list of call, read, write", 1),
    ("max_sessions: 100000\n", "max_sessions must be an integer from 1 to 1000", 1),
    ("reject_unlisted_channels: 'yes'\n", "reject_unlisted_channels must be true or false", 1),
    ("debug_shell: true\n", "unknown key 'debug_shell' in plc2.yaml", 1),
]


@pytest.mark.parametrize(("text", "message", "line"), PLC2_REFUSALS)
def test_plc2_refusals(text: str, message: str, line: int | None) -> None:
    exc = refused("plc2", {"plc2.yaml": ("# PLC-2\n" + text).encode()})
    assert message in str(exc) and exc.line == line + 1, str(exc)


def test_plc2_paths_inside_the_folder_pass() -> None:
    text = f"trust_list: plc2-trust\nusers:\n  eng: {{certificate: {CFG}/eng.der, role: engineer}}\n"
    text += "  op: {certificate: certs/op.der, role: operator}\n"
    validate("plc2", {"plc2.yaml": text.encode(), "eng.der": b"\x30"}, config_dir=CFG, own_hosts=[])
    validate("plc2", {"plc2.yaml": f"trust_list: {CFG}\n".encode()}, config_dir=CFG, own_hosts=[])


SENSORS_REFUSALS = [
    ("broker: {port: 8883, tls: true, ca_file: /etc/ssl/certs/ca.pem}\n", "ca_file '/etc/ssl/certs/ca.pem' refused", 1),
    ("broker: {tls: true, ca_file: ../ws/ca.crt}\n", "'..' is not allowed", 1),
    ("broker: {host: 10.64.9.9, port: 1883}\n", "unknown key 'host' in broker", 1),
    ("broker: {port: '8883'}\n", "broker port must be a TCP port 1-65535", 1),
    ("broker: {tls: 'yes'}\n", "broker tls must be true or false", 1),
    ("nodes:\n  vib-01: {username: a, password: b, topic: x}\n", "unknown key 'topic' in node 'vib-01'", 2),
    ("nodes: [vib-01]\n", "nodes must map a node id to its account", 1),
    ("upstream: http://x\n", "unknown key 'upstream' in sensors.yaml", 1),
]


@pytest.mark.parametrize(("text", "message", "line"), SENSORS_REFUSALS)
def test_sensors_refusals(text: str, message: str, line: int) -> None:
    exc = refused("sensors", {"sensors.yaml": text.encode()})
    assert message in str(exc) and exc.line == line and exc.file == "sensors.yaml", str(exc)


def test_sensors_ca_inside_the_folder_passes() -> None:
    for ca in ("ca.crt", "pki/ca.crt", f"{CFG}/pki/ca.crt"):
        text = (
            f"broker: {{port: 8883, tls: true, ca_file: {ca}}}\nnodes:\n  vib-01: {{username: vib-01, password: 7}}\n"
        )
        validate("sensors", {"sensors.yaml": text.encode(), "ca.crt": b"pem"}, config_dir=CFG, own_hosts=[])


FILE_REFUSALS = [
    ({"../mosquitto.conf": b""}, "file name '../mosquitto.conf' refused: use a plain file name"),
    ({"pki/ca.crt": b""}, "file name 'pki/ca.crt' refused"),
    ({".htpasswd": b""}, "file name '.htpasswd' refused"),
    ({"..": b""}, "file name '..' refused"),
    ({"a b": b""}, "file name 'a b' refused"),
    ({"x" * 129: b""}, "at most 128 characters"),
    ({"fw1.yaml": b"rules: []\n"}, "fw1.yaml is the fw1 config: hand it to fw1, not broker"),
    ({"plc2.yaml": b""}, "plc2.yaml is the plc2 config: hand it to plc2, not broker"),
    ({"mosquitto.conf": "text"}, "mosquitto.conf: the content of mosquitto.conf must be bytes"),
    ({f"f{i}": b"" for i in range(cg.MAX_FILES + 1)}, f"33 files handed to broker; at most {cg.MAX_FILES}"),
    ({"mosquitto.passwd": b"x" * (cg.MAX_FILE_BYTES + 1)}, f"mosquitto.passwd: {cg.MAX_FILE_BYTES + 1} bytes, at most"),
    (
        {f"c{i}.pem": b"x" * cg.MAX_FILE_BYTES for i in range(cg.MAX_TOTAL_BYTES // cg.MAX_FILE_BYTES + 1)},
        f"bytes in all handed to broker; at most {cg.MAX_TOTAL_BYTES}",
    ),
]


@pytest.mark.parametrize(("files", "message"), FILE_REFUSALS, ids=[str(i) for i in range(len(FILE_REFUSALS))])
def test_file_refusals(files: dict[str, Any], message: str) -> None:
    assert message in str(refused("broker", files))


def test_unknown_device_and_bad_folder() -> None:
    assert "device 'hmi' takes no config (configurable: broker, fw1, plc2, sensors)" in str(refused("hmi", {}))
    with pytest.raises(ValueError, match="config_dir must be an absolute path"):
        validate("broker", {}, config_dir="config", own_hosts=[])


def test_a_refusal_touches_nothing(tmp_path: Path) -> None:
    """validate only reads what it is given: the device's folder (its last good config) is left as it was."""
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "mosquitto.conf").write_text("listener 1883\n")
    before = {p: p.read_bytes() for p in cfg.iterdir()}
    with pytest.raises(ConfigRefused):
        validate("broker", conf("plugin /tmp/x.so"), config_dir=str(cfg), own_hosts=[HOST])
    assert {p: p.read_bytes() for p in cfg.iterdir()} == before
