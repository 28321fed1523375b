"""Allow-list validation of the device configs a candidate hands their plant in exam mode.

A candidate configures their own devices (apply, save, restart) through a scoped interface; every config goes
through `validate` first, and a refused one never reaches the device, which keeps running its last good config.
What is allowed is what a legitimate hardening uses (the factory configs, the labs' reference and flawed
solutions); everything else is refused with a message that names the file, the line and why:

- file names are plain names (no folders, no hidden files), never another device's config file; caps on the
  number of files, on each file's size and on their total;
- Mosquitto: known directives only; no plugins (`plugin`, `auth_plugin`, `plugin_opt_*`, `auth_opt_*`), no
  bridges, no `include_dir`, `pid_file`, `http_dir`, `tls_engine`, `bind_interface`, no other `user` than the
  factory's `user root`; listeners only on the device's own addresses (or all of them); every file it reads is an
  absolute path inside the device's config folder (Mosquitto resolves relative paths against its working
  directory); logs only to stdout/stderr/none/topic or to a `*.log` file directly in that folder; persistence only
  into that folder;
- FW-1: YAML that FW-1's own parser accepts, at most MAX_FW1_RULES rules;
- PLC-2 and the sensor gateway: YAML of the shape the device reads, every file or folder it names inside the
  config folder;
- every YAML file: one document, bounded nesting and size once aliases are expanded, no tags beyond safe ones.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .yamlconf import ConfigError, LineDict, loads_yaml

MAX_FILE_BYTES = 256 * 1024
MAX_TOTAL_BYTES = 2 * 1024 * 1024
MAX_FILES = 32
MAX_FW1_RULES = 200
MAX_YAML_NODES = 50_000  # after alias expansion: a FW-1 file at its rule cap needs a few thousand
MAX_YAML_DEPTH = 32

# the main config file of each configurable device (as simulators.runtime.CONFIG_FILES, which tests compare)
CONFIG_FILES = {"broker": "mosquitto.conf", "fw1": "fw1.yaml", "plc2": "plc2.yaml", "sensors": "sensors.yaml"}

_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_COMPONENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n|\Z)")  # tabs and line ends (LF, CRLF) only
_INT = re.compile(r"-?[0-9]{1,10}")


class ConfigRefused(ValueError):
    """A config a candidate handed a device was refused; the message says what, where and why, in English."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        self.file = file
        self.line = line
        self.reason = message
        where = f"{file}:{line}: " if file and line else f"{file}: " if file else ""
        super().__init__(where + message)


def validate(device: str, files: dict[str, bytes], *, config_dir: str, own_hosts: list[str]) -> None:
    """files: name -> content of every file the candidate hands this device (the main config file under its
    CONFIG_FILES name plus the files it references, e.g. passwd, acl, certs). config_dir: the absolute folder
    these files will live in on the device. own_hosts: the device's own IP addresses (listeners may bind only
    these, or all addresses '0.0.0.0'/'::' which on a device container means its own). Raises ConfigRefused."""
    if not os.path.isabs(config_dir):
        raise ValueError(f"config_dir must be an absolute path, not {config_dir!r}")
    if device not in CONFIG_FILES:
        raise ConfigRefused(f"device {device!r} takes no config (configurable: {', '.join(CONFIG_FILES)})")
    if not isinstance(files, dict):
        raise ConfigRefused("the files must be given as a mapping of file name to content")
    if len(files) > MAX_FILES:
        raise ConfigRefused(f"{len(files)} files handed to {device}; at most {MAX_FILES} are accepted")
    main = CONFIG_FILES[device]
    others = {n: d for d, n in CONFIG_FILES.items() if d != device}
    total = 0
    for name, content in files.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigRefused(
                f"file name {name!r} refused: use a plain file name of letters, digits, '.', '_' and '-' "
                "(no folders, no leading dot, at most 128 characters)"
            )
        if name in others:
            raise ConfigRefused(f"{name} is the {others[name]} config: hand it to {others[name]}, not {device}")
        if not isinstance(content, bytes | bytearray):
            raise ConfigRefused(f"the content of {name} must be bytes", file=name)
        if len(content) > MAX_FILE_BYTES:
            raise ConfigRefused(f"{len(content)} bytes, at most {MAX_FILE_BYTES} are accepted per file", file=name)
        total += len(content)
    if total > MAX_TOTAL_BYTES:
        raise ConfigRefused(f"{total} bytes in all handed to {device}; at most {MAX_TOTAL_BYTES} are accepted")
    if main not in files:
        return  # only referenced files (a new password file, a renewed certificate): the saved config names them
    text = _text(main, bytes(files[main]))
    ctx = _Context(main, os.path.normpath(config_dir), own_hosts, set(files))
    _CHECKS[device](text, ctx)


class _Context:
    def __init__(self, file: str, config_dir: str, own_hosts: list[str], handed: set[str]) -> None:
        self.file = file
        self.config_dir = config_dir
        self.own_hosts = own_hosts
        self.handed = handed

    def refuse(self, message: str, line: int | None = None) -> ConfigRefused:
        return ConfigRefused(message, file=self.file, line=line)

    def inside(self, what: str, value: Any, line: int | None, *, relative: bool, directory: bool = False) -> str:
        """The path `value` names, checked to lie inside the config folder; returns it relative to that folder
        ('' for the folder itself). `relative`: whether the device resolves a relative path against that folder."""
        path = str(value)
        where = f"{what} {path!r} refused"
        if not path:
            raise self.refuse(f"{what} is empty", line)
        if path.startswith("/"):
            prefix = self.config_dir.rstrip("/") + "/"
            if path.rstrip("/") == self.config_dir and directory:
                return ""
            if not path.startswith(prefix):
                raise self.refuse(
                    f"{where}: files may only be inside the device's config folder {self.config_dir}", line
                )
            rest = path[len(prefix) :]
        elif not relative:
            raise self.refuse(
                f"{where}: Mosquitto resolves a relative path against its working directory, not the config "
                f"folder; give the absolute path inside {self.config_dir}",
                line,
            )
        else:
            rest = path
        if directory:
            rest = rest.rstrip("/")
        parts = rest.split("/")
        for part in parts:
            if part == "..":
                raise self.refuse(f"{where}: '..' is not allowed; files may only be inside {self.config_dir}", line)
            if not _COMPONENT.fullmatch(part):
                raise self.refuse(
                    f"{where}: every part of the path must be a plain name of letters, digits, '.', '_' and '-' "
                    "(no '.', no leading dot, no empty parts, no spaces)",
                    line,
                )
        return "/".join(parts)


def _text(name: str, content: bytes) -> str:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = content[: exc.start].count(b"\n") + 1
        raise ConfigRefused("not UTF-8 text", file=name, line=line) from None
    m = _CONTROL.search(text)
    if m:
        line = text.count("\n", 0, m.start()) + 1
        raise ConfigRefused(f"control character {m.group()!r} refused (only tabs and line ends)", file=name, line=line)
    return text


# -- Mosquitto -----------------------------------------------------------------------------------------------

_BOOL = {"true", "false"}
_MQTT_BOOL = {
    "allow_anonymous",
    "allow_zero_length_clientid",
    "autosave_on_changes",
    "check_retain_source",
    "connection_messages",
    "log_timestamp",
    "per_listener_settings",
    "persistence",
    "queue_qos0_messages",
    "require_certificate",
    "retain_available",
    "set_tcp_nodelay",
    "upgrade_outgoing_qos",
    "use_identity_as_username",
    "use_subject_as_username",
    "use_username_as_clientid",
}
_MQTT_INT = {
    "autosave_interval",
    "log_facility",
    "max_connections",
    "max_inflight_bytes",
    "max_inflight_messages",
    "max_keepalive",
    "max_packet_size",
    "max_queued_bytes",
    "max_queued_messages",
    "max_topic_alias",
    "memory_limit",
    "message_size_limit",
    "sys_interval",
    "websockets_headers_size",
    "websockets_log_level",
}
_MQTT_TEXT = {  # free text that names no file and opens nothing
    "auto_id_prefix",
    "ciphers",
    "ciphers_tls1.3",
    "clientid_prefixes",
    "log_timestamp_format",
    "mount_point",
    "psk_hint",
}
_MQTT_FILES = {"password_file", "acl_file", "cafile", "certfile", "keyfile", "crlfile", "dhparamfile", "psk_file"}
_MQTT_CHOICE = {
    "max_qos": {"0", "1", "2"},
    "protocol": {"mqtt", "websockets"},
    "socket_domain": {"ipv4", "ipv6"},
    "tls_keyform": {"pem"},
    "tls_version": {"tlsv1.3", "tlsv1.2", "tlsv1.1", "tlsv1"},
    "user": {"root"},
}
_LOG_TYPES = {"debug", "error", "warning", "notice", "information", "subscribe", "unsubscribe", "websockets"}
_LOG_TYPES |= {"none", "all"}
_PLUGIN = "broker plugins load code into the broker process"
_BRIDGE = "bridges connect the broker to other hosts"
_MQTT_REFUSED = {
    "plugin": _PLUGIN,
    "auth_plugin": _PLUGIN,
    "global_plugin": _PLUGIN,
    "auth_plugin_deny_special_chars": _PLUGIN,
    "include_dir": "included files would escape this validation; put the directives in mosquitto.conf itself",
    "pid_file": "the broker's pid file is the device's, not the candidate's",
    "http_dir": "the broker may not serve files over HTTP",
    "tls_engine": "an OpenSSL engine loads code into the broker process",
    "tls_engine_kpass_sha1": "an OpenSSL engine loads code into the broker process",
    "bind_interface": "listeners bind the device's own addresses: give the address on the listener line",
    "connection": _BRIDGE,
    "address": _BRIDGE,
    "addresses": _BRIDGE,
    "topic": _BRIDGE,
    "cleansession": _BRIDGE,
    "keepalive_interval": _BRIDGE,
    "idle_timeout": _BRIDGE,
    "restart_timeout": _BRIDGE,
    "start_type": _BRIDGE,
    "threshold": _BRIDGE,
    "try_private": _BRIDGE,
    "round_robin": _BRIDGE,
    "notifications": _BRIDGE,
    "notifications_local_only": _BRIDGE,
    "notification_topic": _BRIDGE,
    "local_clientid": _BRIDGE,
    "local_cleansession": _BRIDGE,
    "local_username": _BRIDGE,
    "local_password": _BRIDGE,
    "remote_clientid": _BRIDGE,
    "remote_username": _BRIDGE,
    "remote_password": _BRIDGE,
}
_UNSPECIFIED = {ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::")}


def _mosquitto(text: str, ctx: _Context) -> None:
    """Mosquitto's own reading of a config line: a line starting with '#' is a comment; otherwise the directive is
    the first word (words are split at spaces only), and string values are the rest of the line."""
    inputs: set[str] = set()
    logs: list[tuple[str, int]] = []
    persistence: tuple[bool, int] = (False, 0)
    location: str | None = None
    persistence_file: tuple[str, int] | None = None
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r")
        if not line or line.startswith("#"):
            continue
        if "\t" in line:
            raise ctx.refuse("a tab outside a comment refused: Mosquitto separates words with spaces only", n)
        words = [w for w in line.split(" ") if w]
        if not words:
            continue
        directive, args = words[0], words[1:]
        if directive.startswith("#"):
            raise ctx.refuse("a comment must start at the beginning of its line (Mosquitto refuses it otherwise)", n)
        rest = line.split(directive, 1)[1].strip(" \t")

        if directive in _MQTT_REFUSED or directive.startswith(("plugin_opt_", "auth_opt_", "bridge_")):
            why = _MQTT_REFUSED.get(directive) or (_BRIDGE if directive.startswith("bridge_") else _PLUGIN)
            raise ctx.refuse(f"directive {directive!r} refused: {why}", n)
        if directive in _MQTT_BOOL:
            if _one(directive, args, ctx, n) not in _BOOL:
                raise ctx.refuse(f"{directive} must be true or false, not {args[0]!r}", n)
            if directive == "persistence":
                persistence = (args[0] == "true", n)
        elif directive in _MQTT_INT:
            if not _INT.fullmatch(_one(directive, args, ctx, n)):
                raise ctx.refuse(f"{directive} must be an integer, not {args[0]!r}", n)
        elif directive in _MQTT_CHOICE:
            if _one(directive, args, ctx, n) not in _MQTT_CHOICE[directive]:
                if directive == "user":
                    raise ctx.refuse(
                        f"'user {args[0]}' refused: the broker's account is the device's; only the factory's "
                        "'user root' line may stay",
                        n,
                    )
                raise ctx.refuse(f"{directive} must be one of {sorted(_MQTT_CHOICE[directive])}, not {args[0]!r}", n)
        elif directive in _MQTT_TEXT:
            if not rest:
                raise ctx.refuse(f"{directive} needs a value", n)
        elif directive in _MQTT_FILES:
            inputs.add(ctx.inside(directive, _path_value(rest, directive, ctx, n), n, relative=False))
        elif directive == "capath":
            inputs.add(ctx.inside(directive, _path_value(rest, directive, ctx, n), n, relative=False, directory=True))
        elif directive == "persistence_location":
            if not rest.endswith("/"):
                raise ctx.refuse(
                    f"persistence_location {rest!r} refused: it must end with '/' (Mosquitto appends the file name)",
                    n,
                )
            location = ctx.inside(directive, _path_value(rest, directive, ctx, n), n, relative=False, directory=True)
        elif directive == "persistence_file":
            name = _one(directive, args, ctx, n)
            if not _NAME.fullmatch(name) or not name.endswith(".db"):
                raise ctx.refuse(f"persistence_file {name!r} refused: give a plain file name ending in .db", n)
            persistence_file = (name, n)
        elif directive == "persistent_client_expiration":
            if not re.fullmatch(r"[0-9]{1,6}[hdwmy]", _one(directive, args, ctx, n)):
                raise ctx.refuse(f"persistent_client_expiration must be a duration like 14d, not {args[0]!r}", n)
        elif directive == "log_type":
            if _one(directive, args, ctx, n) not in _LOG_TYPES:
                raise ctx.refuse(f"log_type must be one of {sorted(_LOG_TYPES)}, not {args[0]!r}", n)
        elif directive == "log_dest":
            if not args:
                raise ctx.refuse("log_dest needs a destination", n)
            if args[0] == "file":
                path = rest.split("file", 1)[1].strip(" \t")
                logs.append(
                    (ctx.inside("log_dest file", _path_value(path, "log_dest file", ctx, n), n, relative=False), n)
                )
            elif args[0] in ("stdout", "stderr", "none", "topic") and len(args) == 1:
                pass
            elif args[0] in ("syslog", "dlt"):
                raise ctx.refuse(f"log_dest {args[0]} refused: the broker logs to stdout, stderr or its own folder", n)
            else:
                raise ctx.refuse(
                    f"log_dest {rest!r} refused: use stdout, stderr, none, topic or file {ctx.config_dir}/NAME.log", n
                )
        elif directive == "listener":
            _listener(args, ctx, n)
        elif directive == "port":
            _port(_one(directive, args, ctx, n), ctx, n)
        elif directive == "bind_address":
            _own_address(_one(directive, args, ctx, n), "bind_address", ctx, n)
        else:
            raise ctx.refuse(
                f"directive {directive!r} refused: not one this exam's brokers accept (plugins, bridges, includes "
                "and unknown directives are refused)",
                n,
            )
    protected = set(CONFIG_FILES.values()) | ctx.handed | inputs
    for path, n in logs:
        if "/" in path or not path.endswith(".log"):
            raise ctx.refuse(
                f"log_dest file refused: the log file must be a *.log file directly in {ctx.config_dir}", n
            )
        if path in protected:
            raise ctx.refuse(f"log_dest file {path} refused: that file is a config or a file the broker reads", n)
    on, n = persistence
    if on and location is None:
        raise ctx.refuse(
            f"persistence true needs persistence_location inside {ctx.config_dir} (else the broker writes its "
            "database in its working directory)",
            n,
        )
    if persistence_file and persistence_file[0] in protected:
        raise ctx.refuse(f"persistence_file {persistence_file[0]} refused: that file is a config", persistence_file[1])


def _one(directive: str, args: list[str], ctx: _Context, n: int) -> str:
    if len(args) != 1:
        raise ctx.refuse(f"{directive} takes exactly one value", n)
    return args[0]


def _path_value(rest: str, directive: str, ctx: _Context, n: int) -> str:
    if not rest:
        raise ctx.refuse(f"{directive} needs a path", n)
    if any(c in rest for c in " \t"):
        raise ctx.refuse(f"{directive} {rest!r} refused: no spaces in paths", n)
    return rest


def _port(value: str, ctx: _Context, n: int) -> None:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ctx.refuse(f"listener port {value!r} refused: a TCP port 1-65535 (no unix sockets)", n)


def _own_address(value: str, what: str, ctx: _Context, n: int) -> None:
    own = set()
    for h in ctx.own_hosts:
        try:
            own.add(ipaddress.ip_address(h))
        except ValueError:
            continue
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        addr = None
    if addr is None or (addr not in own and addr not in _UNSPECIFIED):
        allowed = ", ".join([*ctx.own_hosts, "0.0.0.0", "::"])
        raise ctx.refuse(
            f"{what} address {value!r} refused: the broker may listen only on its own addresses ({allowed})", n
        )


def _listener(args: list[str], ctx: _Context, n: int) -> None:
    if not args or len(args) > 2:
        raise ctx.refuse("listener takes a port and optionally one of the device's own addresses", n)
    _port(args[0], ctx, n)
    if len(args) == 2:
        _own_address(args[1], "listener", ctx, n)


# -- YAML devices --------------------------------------------------------------------------------------------


def _yaml(text: str, ctx: _Context) -> Any:
    """The document, once it is known to be one document of bounded size and depth with aliases expanded (a
    billion-laughs file is refused before anything walks it)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ctx.refuse(f"invalid YAML: {exc.problem or exc}", mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise ctx.refuse(f"invalid YAML: {exc}") from None
    except RecursionError:
        raise ctx.refuse(f"YAML nested deeper than {MAX_YAML_DEPTH} levels") from None
    if node is not None:
        _bounded(node, ctx)
    try:
        return loads_yaml(text, ctx.file)
    except ConfigError as exc:
        raise ctx.refuse(exc.message, exc.line) from None


def _bounded(root: yaml.Node, ctx: _Context) -> None:
    sizes: dict[int, int] = {}
    visiting: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        line = node.start_mark.line + 1
        if key in visiting:
            raise ctx.refuse("YAML alias refers to itself (a recursive structure)", line)
        if depth > MAX_YAML_DEPTH:
            raise ctx.refuse(f"YAML nested deeper than {MAX_YAML_DEPTH} levels", line)
        visiting.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child, depth + 1)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k, depth + 1) + size(v, depth + 1)
        if total > MAX_YAML_NODES:
            raise ctx.refuse(f"YAML too large: more than {MAX_YAML_NODES} values once aliases are expanded", line)
        visiting.discard(key)
        sizes[key] = total
        return total

    size(root, 0)


def _line(m: Any, key: str) -> int | None:
    return m.line_of(key) if isinstance(m, LineDict) else getattr(m, "line", None)


def _keys(m: Any, allowed: set[str], what: str, ctx: _Context, line: int | None) -> None:
    if not isinstance(m, dict):
        raise ctx.refuse(f"{what} must be a mapping", line)
    for k in m:
        if k not in allowed:
            raise ctx.refuse(f"unknown key {k!r} in {what} (allowed: {', '.join(sorted(allowed))})", _line(m, str(k)))


def _fw1(text: str, ctx: _Context) -> None:
    from .devices.firewall import load_policy  # light: FW-1's own parser, so the shape is exactly what it reads

    doc = _yaml(text, ctx)
    rules = doc.get("rules") if isinstance(doc, dict) else None
    if isinstance(rules, list) and len(rules) > MAX_FW1_RULES:
        raise ctx.refuse(f"{len(rules)} FW-1 rules; at most {MAX_FW1_RULES} are accepted", _line(doc, "rules"))
    with tempfile.TemporaryDirectory(prefix="aiotlab-guard-") as tmp:
        path = Path(tmp) / ctx.file
        path.write_text(text, encoding="utf-8")
        try:
            load_policy(path)
        except ConfigError as exc:
            raise ctx.refuse(exc.message, exc.line) from None
        except Exception as exc:  # whatever FW-1's parser trips on is a refusal, never a crash of the service
            raise ctx.refuse(f"FW-1 cannot read this file: {exc}") from None


_PLC2_KEYS = {
    "security_policies",
    "identity_tokens",
    "anonymous_role",
    "users",
    "roles",
    "trust_list",
    "max_sessions",
    "reject_unlisted_channels",
}
_PLC2_POLICIES = {
    "None",
    "Basic256Sha256_Sign",
    "Basic256Sha256_SignAndEncrypt",
    "Aes128Sha256RsaOaep_Sign",
    "Aes128Sha256RsaOaep_SignAndEncrypt",
    "Aes256Sha256RsaPss_Sign",
    "Aes256Sha256RsaPss_SignAndEncrypt",
}
_PLC2_TOKENS = {"anonymous", "username", "x509"}
_PLC2_PERMISSIONS = {"read", "write", "call"}
_SCALAR = (str, int, float, bool)


def _str_list(value: Any, allowed: set[str], what: str, ctx: _Context, line: int | None, empty: bool = False) -> None:
    if not isinstance(value, list) or (not value and not empty) or any(v not in allowed for v in value):
        raise ctx.refuse(f"{what} must be a {'' if empty else 'non-empty '}list of {', '.join(sorted(allowed))}", line)


def _plc2(text: str, ctx: _Context) -> None:
    doc = _yaml(text, ctx)
    _keys(doc, _PLC2_KEYS, "plc2.yaml", ctx, None)
    if "security_policies" in doc:
        _str_list(doc["security_policies"], _PLC2_POLICIES, "security_policies", ctx, _line(doc, "security_policies"))
    if "identity_tokens" in doc:
        _str_list(doc["identity_tokens"], _PLC2_TOKENS, "identity_tokens", ctx, _line(doc, "identity_tokens"))
    if "anonymous_role" in doc and not isinstance(doc["anonymous_role"], str):
        raise ctx.refuse("anonymous_role must be a role name", _line(doc, "anonymous_role"))
    roles = doc.get("roles")
    if roles is not None:
        if not isinstance(roles, dict):
            raise ctx.refuse("roles must map a role name to a list of permissions", _line(doc, "roles"))
        for name, perms in roles.items():
            _str_list(perms, _PLC2_PERMISSIONS, f"role {name!r}", ctx, _line(roles, str(name)), empty=True)
    users = doc.get("users")
    if users is not None:
        if not isinstance(users, dict):
            raise ctx.refuse("users must map a user name to its settings", _line(doc, "users"))
        for name, u in users.items():
            where = _line(users, str(name))
            _keys(u, {"password", "password_hash", "role", "certificate"}, f"user {name!r}", ctx, where)
            for k, v in u.items():
                if not isinstance(v, _SCALAR):
                    raise ctx.refuse(f"user {name!r}: {k} must be a single value", _line(u, k))
            if u.get("certificate"):
                ctx.inside(f"user {name!r}: certificate", u["certificate"], _line(u, "certificate"), relative=True)
    if doc.get("trust_list"):
        if not isinstance(doc["trust_list"], str):
            raise ctx.refuse("trust_list must be a folder name", _line(doc, "trust_list"))
        ctx.inside("trust_list", doc["trust_list"], _line(doc, "trust_list"), relative=True, directory=True)
    if "max_sessions" in doc:
        v = doc["max_sessions"]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1000:
            raise ctx.refuse("max_sessions must be an integer from 1 to 1000", _line(doc, "max_sessions"))
    if "reject_unlisted_channels" in doc and not isinstance(doc["reject_unlisted_channels"], bool):
        raise ctx.refuse("reject_unlisted_channels must be true or false", _line(doc, "reject_unlisted_channels"))


def _sensors(text: str, ctx: _Context) -> None:
    doc = _yaml(text, ctx)
    if doc is None:
        return  # the gateway reads an empty file as its defaults
    _keys(doc, {"broker", "nodes"}, "sensors.yaml", ctx, None)
    broker = doc.get("broker")
    if broker is not None:
        _keys(broker, {"port", "tls", "ca_file"}, "broker", ctx, _line(doc, "broker"))
        port = broker.get("port")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
            raise ctx.refuse("broker port must be a TCP port 1-65535", _line(broker, "port"))
        if "tls" in broker and not isinstance(broker["tls"], bool):
            raise ctx.refuse("broker tls must be true or false", _line(broker, "tls"))
        if broker.get("ca_file"):
            if not isinstance(broker["ca_file"], str):
                raise ctx.refuse("broker ca_file must be a file name", _line(broker, "ca_file"))
            ctx.inside("ca_file", broker["ca_file"], _line(broker, "ca_file"), relative=True)
    nodes = doc.get("nodes")
    if nodes is not None:
        if not isinstance(nodes, dict):
            raise ctx.refuse("nodes must map a node id to its account", _line(doc, "nodes"))
        for node, account in nodes.items():
            if account is None:
                continue
            _keys(account, {"username", "password"}, f"node {node!r}", ctx, _line(nodes, str(node)))
            for k, v in account.items():
                if v is not None and not isinstance(v, _SCALAR):
                    raise ctx.refuse(f"node {node!r}: {k} must be a single value", _line(account, k))


_CHECKS: dict[str, Callable[[str, _Context], None]] = {
    "broker": _mosquitto,
    "fw1": _fw1,
    "plc2": _plc2,
    "sensors": _sensors,
}
