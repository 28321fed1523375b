"""Plants in containers: the variables of the compose plant, and the Docker SDK backend that creates the same
services from the same docker-compose.yml for a whole roster.

Every container, network and plant state this module makes is labelled with the candidate and the registry
(AIOTLAB_HOME) it belongs to, so leftovers of a crashed run are found by label and removed, and two registries on
one engine never touch each other's plants.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import addressing as ad
from .backends import BackendError
from .daemonctl import mark
from .launch import load_spec
from .yamlconf import ConfigError, load_yaml

DEFAULT_IMAGE = "aiotlab-plant:latest"
WORKSTATION_IMAGE = "aiotlab-workstation:latest"
PLANT_UID = 10001  # the plant image's unprivileged `plant` user (infra/Dockerfile): the devices in exam mode
WORKSTATION_UID = 1000  # the image's unprivileged `candidate` user; their home is the host's workspace folder
SSH_PORT_BASE = 22000
LABEL_WORKSTATION = "io.aiotlab.workstation"
LABEL = "io.aiotlab.plant"
LABEL_CANDIDATE = "io.aiotlab.candidate"
LABEL_HOME = "io.aiotlab.home"
READY_TIMEOUT_S = 90.0
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ContainerError(BackendError):
    pass


def compose_file() -> Path:
    """The topology of a containerised plant: the repository's docker-compose.yml, or the copy an installed
    wheel carries (simulators/specs/compose links to it in the repository; the wheel has the file and the
    Prometheus config it mounts)."""
    here = Path(__file__).resolve().parent
    for path in (here.parent / "docker-compose.yml", here / "specs" / "compose" / "docker-compose.yml"):
        if path.is_file():
            return path
    raise ContainerError(f"no docker-compose.yml beside {here}: reinstall aiotlab or run from a clone")


def project_name(candidate: str) -> str:
    """A compose project name for the candidate of this registry (lower case, [a-z0-9_-]; distinct ids stay
    distinct). It ends with a tag of the registry (AIOTLAB_HOME): two registries on one engine, e.g. an exam and
    a test run, or a crashed run's leftovers, never share a container name, and removing one's workstation fence
    (tagged with this name) never removes the other's."""
    norm = re.sub(r"[^a-z0-9_-]", "-", candidate.lower())
    if norm != candidate:
        norm += "-" + hashlib.sha256(candidate.encode()).hexdigest()[:6]
    registry = hashlib.sha256(str(ad.home().resolve()).encode()).hexdigest()[:4]
    return f"aiotlab-{norm}-r{registry}"


@dataclass(frozen=True)
class Workstation:
    """Exam mode: the candidate's workstation beside the plant. `workspace` (a host folder) is its user's home;
    SSH is published at ssh_bind:ssh_port (port 0: SSH_PORT_BASE + the plant's slot)."""

    workspace: Path
    image: str = WORKSTATION_IMAGE
    ssh_bind: str = "0.0.0.0"  # noqa: S104 - candidates log in from the exam room's machines
    ssh_port: int = 0
    config_folder: str = "plant-config"  # in the home: where the candidate edits this plant's device configs

    @property
    def config_dir(self) -> str:
        return f"/home/candidate/{self.config_folder}"

    def port_for(self, slot: int) -> int:
        return self.ssh_port or SSH_PORT_BASE + slot


def plant_env(
    candidate: str, slot: int, seed: int | None, image: str = DEFAULT_IMAGE, workstation: Workstation | None = None
) -> dict[str, str]:
    """The compose variables of one candidate's plant. The exam secret is not among them and no container gets
    it: the plant's parameter key is in its state folder (see register)."""
    nets = ad.container_nets(slot)
    env = {
        "COMPOSE_PROJECT_NAME": project_name(candidate),
        "AIOTLAB_CANDIDATE": candidate,
        "AIOTLAB_SEED": "" if seed is None else str(seed),
        "AIOTLAB_SLOT": str(slot),
        "AIOTLAB_STATE": str(ad.plant_dir(candidate)),
        "AIOTLAB_PLANT_NET": nets["plant"],
        "AIOTLAB_FIELD_NET": nets["field"],
        "AIOTLAB_CONTROL_NET": nets["control"],
        "AIOTLAB_PUBLISH": ad.block(slot),
        "AIOTLAB_IMAGE": image,
        "AIOTLAB_ADDRESSING": "workstation" if workstation else "containers",
    }
    if workstation:
        env |= {
            "AIOTLAB_DEVHOME": str(ad.plant_dir(candidate) / "devhome"),
            "AIOTLAB_WORKSPACE": str(workstation.workspace),
            "AIOTLAB_WORKSTATION_IMAGE": workstation.image,
            "AIOTLAB_SSH_BIND": workstation.ssh_bind,
            "AIOTLAB_SSH_PORT": str(workstation.port_for(slot)),
        }
    return env


def nothing_published_but_ssh(topo: dict[str, Any]) -> None:
    """Exam mode: the plant serves on its own networks only (the grader reaches it there, through the host's .254 of
    the plant network); publishing its ports on the host's loopback block, as a practice plant does, would let any
    host process reach a candidate's plant and collide with a practice plant of another registry on that block.
    Only the workstation's SSH is published (candidates log in)."""
    for name, svc in topo["services"].items():
        if name != "workstation":
            svc.pop("ports", None)


def devices_see_devhome(topo: dict[str, Any], devhome: str, config_dir: str) -> None:
    """Exam mode: every plant role reads its configs from the validated copy of the candidate's home, mounted at
    the workstation's path (so a config naming /home/candidate/... means the same file on both sides); only the
    core (factory configs, factory reset) writes it, besides the config service."""
    for name, svc in topo["services"].items():
        command = svc.get("command") or []
        if "--role" not in command:
            continue
        mode = "rw" if name == "core" else "ro"
        svc["volumes"] = [*svc.get("volumes", []), f"{devhome}:/home/candidate:{mode}"]
        svc["environment"] = {**(svc.get("environment") or {}), "AIOTLAB_CONFIG_DIR": config_dir}
    if "configd" in topo["services"]:
        svc = topo["services"]["configd"]
        svc["environment"] = {**(svc.get("environment") or {}), "AIOTLAB_CONFIG_DIR": config_dir}


def give_to(root: Path, uid: int) -> None:
    """chown a tree this process made to a container's user (uid = gid), never following a link."""
    os.lchown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, uid)


def devices_unprivileged(topo: dict[str, Any]) -> None:
    """Exam mode: the plant's devices and Prometheus run as the image's unprivileged `plant` user, so a flaw in
    a parser of candidate input (a device config, a Modbus frame) gives no root in a plant container. Their ports
    below 1024 (Modbus 502) are opened by lowering the unprivileged port floor in the container's own network
    namespace. The config service stays root: it must read the candidate's private keys (0600, uid 1000) to
    validate and install them, and reads nothing else."""
    for name, svc in topo["services"].items():
        if name in ("configd", "workstation") or svc.get("image", "").startswith(("grafana", "${")):
            continue
        svc["user"] = f"{PLANT_UID}:{PLANT_UID}"
        svc["sysctls"] = {**(svc.get("sysctls") or {}), "net.ipv4.ip_unprivileged_port_start": "0"}


def write_plant_key(candidate: str, seed: int | None) -> None:
    """The plant's parameter key (HMAC of the exam secret and the plant id), 0600 in its state folder: what the
    containers derive the plant from, so that none of them needs the exam secret."""
    from .params import PlantIdentity

    if seed is not None:
        return
    path = ad.plant_dir(candidate) / "plant.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(PlantIdentity.for_candidate(candidate, secret=_secret_in_use()).key.hex())


def register(
    candidate: str,
    seed: int | None,
    backend: str,
    image: str = DEFAULT_IMAGE,
    workstation: Workstation | None = None,
) -> dict[str, str]:
    """Allocate the candidate's slot and record their plant as a container plant; returns its compose variables.

    The plant counts as running once its control plane answers (see addressing.is_running). In exam mode (with
    a workstation) the recorded addresses are the plant network's: what the candidate's workstation and the
    grader on the host reach, nothing published."""
    spec = load_spec()
    with ad.registry_lock():
        previous = ad.read_state(candidate)
        if ad.is_running(previous) and previous.get("backend") not in ad.CONTAINER_BACKENDS:
            raise ContainerError(f"{candidate} already has a running process plant: aiotlab plant down first")
        try:  # its running containers keep their slot; else the slot must be free on this machine, as for processes
            slot = (
                int(previous["slot"])
                if ad.is_running(previous) and previous.get("backend") == backend
                else ad.allocate_slot(candidate, spec["addressing"])
            )
        except ad.SlotInUse as exc:
            raise ContainerError(str(exc)) from None
        d = ad.plant_dir(candidate)
        (d / "logs").mkdir(parents=True, exist_ok=True)
        write_plant_key(candidate, seed)
        token = d / "control.token"  # made here so that the config service's file mount finds a file
        if not token.is_file():
            fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
        if workstation:  # the devices' copy of the candidate's home: readable by a device's own user
            folder = d / "devhome" / workstation.config_folder
            folder.mkdir(parents=True, exist_ok=True)
            for p in (d / "devhome", *folder.relative_to(d / "devhome").parents, folder.relative_to(d / "devhome")):
                (d / "devhome" / p).chmod(0o755)
            give_to(d, PLANT_UID)  # the devices run as the plant user (devices_unprivileged)
        public = (ad.Addresses.on_networks if workstation else ad.Addresses.published)(slot, spec["addressing"])
        ad.write_state(
            candidate,
            {
                "candidate": candidate,
                "seed": seed,
                "slot": slot,
                "pid": None,
                "backend": backend,
                "project": project_name(candidate),
                "image": image,
                "status": "running",
                "state_dir": str(d),
                "addresses": public.as_dict(),
                "control": {  # on the internal control network, which only the host and the plant's containers reach
                    "url": f"http://{ad.Addresses.on_networks(slot, spec['addressing']).hosts['control']}:"
                    f"{spec['addressing']['ports']['control']}",
                    "token_file": str(d / "control.token"),
                },
                "since": time.time(),
                "workstation": None,
            },
        )
    return plant_env(candidate, slot, seed, image, workstation)


def wait_ready(candidate: str, timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
    """Wait until the plant's control plane answers and every device process is on the core's bus."""
    from .control_client import ControlClient, ControlError

    deadline = time.monotonic() + timeout
    last = "control plane not answering"
    while time.monotonic() < deadline:
        st = ad.read_state(candidate) or {}
        token_file = Path(st.get("control", {}).get("token_file", "/nonexistent"))
        if ad.is_running(st) and token_file.exists():
            try:
                status = ControlClient(st["control"]["url"], token_file.read_text().strip(), 3.0).get("/v1/status")
                missing = [r for r, up in (status.get("processes") or {}).items() if not up]
                if not missing and status.get("broker", {}).get("alive"):
                    return st
                last = f"waiting for {', '.join(missing) or 'the broker'}"
            except ControlError as exc:
                last = str(exc)
        time.sleep(0.5)
    raise ContainerError(f"the plant of {candidate} was not ready after {timeout:.0f} s: {last}")


def _secret_in_use() -> str:
    """The exam secret this process uses: the containers must derive the same plants (the development secret,
    when none is set, warned about once here as everywhere)."""
    from .params import exam_secret

    return exam_secret()


# -- the compose file, as the Docker SDK backend reads it ---------------------------------------------------------
def substitute(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR} / ${VAR:-default} interpolation (the forms docker-compose.yml uses)."""

    def one(m: re.Match[str]) -> str:
        value = env.get(m.group(1))
        return value if value else (m.group(2) or "")

    return _VAR.sub(one, text)


def load_topology(path: Path, env: dict[str, str], profiles: set[str] | None = None) -> dict[str, Any]:
    """The services and networks of the compose file with the candidate's variables in, profiles applied."""
    raw = load_yaml(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("services"), dict):
        raise ConfigError(path, "not a compose file (no services)")

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return substitute(node, env)
        if isinstance(node, list):
            return [walk(x) for x in node]
        if isinstance(node, dict):
            return {walk(k): walk(v) for k, v in node.items()}
        return node

    data = walk(raw)
    services = {
        name: svc
        for name, svc in data["services"].items()
        if not svc.get("profiles") or set(svc["profiles"]) & (profiles or set())
    }
    return {"services": services, "networks": data.get("networks") or {}, "base": path.parent}


def _memory(text: str) -> int:
    m = re.fullmatch(r"(\d+)([kmg]?)b?", str(text).strip().lower())
    if not m:
        raise ContainerError(f"memory limit {text!r} not understood")
    return int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2)]


def _binds(volumes: list[str], base: Path) -> dict[str, dict[str, str]]:
    out = {}
    for v in volumes:
        src, dst, *mode = v.split(":")
        path = Path(src) if src.startswith("/") else (base / src).resolve()
        out[str(path)] = {"bind": dst, "mode": mode[0] if mode else "rw"}
    return out


def _ports(ports: list[str]) -> dict[int, list[tuple[str, int]]]:
    out: dict[int, list[tuple[str, int]]] = {}
    for p in ports:
        ip, host, container = p.rsplit(":", 2)
        out.setdefault(int(container), []).append((ip, int(host)))
    return out


class DockerBackend:
    """Candidates' plants as containers on a Docker engine, through the Docker SDK (a PlantBackend: backends.py)."""

    name = "docker"
    isolated = True  # exam mode: a workstation per candidate, fenced

    def __init__(self, image: str = DEFAULT_IMAGE, compose: Path | None = None, client: Any = None) -> None:
        try:
            import docker
        except ImportError:
            raise ContainerError("the docker backend needs the Docker SDK: pip install 'aiotlab[docker]'") from None
        try:
            self.client = client or docker.from_env(timeout=60)
            self.client.ping()
        except docker.errors.DockerException as exc:
            raise ContainerError(f"no Docker engine answers ({exc}); start dockerd or use backend: process") from None
        self.errors = docker.errors
        self.image = image
        self.compose = compose or compose_file()
        self.home = str(ad.home())

    def _labels(self, candidate: str) -> dict[str, str]:
        return {LABEL: "true", LABEL_CANDIDATE: candidate, LABEL_HOME: self.home}

    def _filters(self, candidate: str | None = None) -> dict[str, Any]:
        labels = [f"{LABEL}=true", f"{LABEL_HOME}={self.home}"]
        if candidate is not None:
            labels.append(f"{LABEL_CANDIDATE}={candidate}")
        return {"label": labels}

    # -- lifecycle -------------------------------------------------------------------------------------------
    def up(
        self, candidate: str, seed: int | None = None, wait: bool = True, workstation: Workstation | None = None
    ) -> dict[str, Any]:
        """Create and start the candidate's plant (after removing any leftover of theirs); wait until ready.

        With a workstation (exam mode) the plant serves on its own networks and the candidate's workstation
        joins the plant network at the datasheet's address, fenced by host firewall rules (see fence)."""
        for image in [self.image] + ([workstation.image] if workstation else []):
            try:
                self.client.images.get(image)
            except self.errors.ImageNotFound:
                raise ContainerError(f"image {image} not found: build it (infra/docker/build-image.sh)") from None
        if workstation and os.geteuid() != 0:
            raise ContainerError("exam mode fences each workstation with host firewall rules: run it as root")
        self.remove(candidate)
        env = register(candidate, seed, "docker", self.image, workstation)
        topo = load_topology(self.compose, env, {"exam"} if workstation else None)
        if workstation:
            devices_see_devhome(topo, env["AIOTLAB_DEVHOME"], workstation.config_dir)
            devices_unprivileged(topo)
            nothing_published_but_ssh(topo)
        project = env["COMPOSE_PROJECT_NAME"]
        labels = self._labels(candidate)
        try:
            nets = self._networks(project, topo, labels)
            for name, svc in topo["services"].items():
                cid = self._container(project, name, svc, nets, labels, topo["base"])
                if workstation and name == "fw1":
                    self._add_address(
                        cid,
                        env["AIOTLAB_PLANT_NET"],
                        ad.Addresses.on_networks(int(env["AIOTLAB_SLOT"]), load_spec()["addressing"]).hosts,
                    )
            if workstation:
                self.fence(candidate, env)
        except (self.errors.DockerException, ContainerError, OSError, subprocess.SubprocessError) as exc:
            self.remove(candidate)
            mark(candidate, status="failed", error=f"docker: {exc}")
            raise ContainerError(f"{candidate}: {exc}") from None
        ws_state = None
        if workstation:
            ws_state = {
                "container": f"{project}-workstation",
                "address": f"{env['AIOTLAB_PLANT_NET']}.{load_spec()['addressing']['hosts']['workstation']}",
                "user": "candidate",
                "home": "/home/candidate",
                "host_home": str(workstation.workspace),
                "config_dir": workstation.config_dir,
                "devhome": env["AIOTLAB_DEVHOME"],
                "ssh": {"bind": workstation.ssh_bind, "port": int(env["AIOTLAB_SSH_PORT"])},
            }
        mark(candidate, status="running", containers=sorted(topo["services"]), workstation=ws_state)
        return wait_ready(candidate) if wait else ad.read_state(candidate) or {}

    def _add_address(self, cid: str, plant_net: str, hosts: dict[str, str]) -> None:
        """FW-1 serves EM-1's conduit at EM-1's own datasheet address (.12) beside PLC-1's (.11): a container
        has one address per network, so the host adds the second to FW-1's interface (FW-1 binds it early:
        ip_nonlocal_bind is set in its container)."""
        pid = str(self.client.api.inspect_container(cid)["State"]["Pid"])
        ns = ["nsenter", "-t", pid, "-n", "ip"]
        shown = subprocess.run(
            [*ns, "-o", "addr", "show", "to", hosts["plc1"]], capture_output=True, text=True, timeout=10, check=True
        ).stdout.split()
        if len(shown) < 2:
            raise ContainerError(f"FW-1 has no interface with {hosts['plc1']}")
        subprocess.run(
            [*ns, "addr", "add", f"{hosts['em1']}/24", "dev", shown[1]], capture_output=True, timeout=10, check=True
        )

    # -- the workstation's fence -----------------------------------------------------------------------------
    def fence(self, candidate: str, env: dict[str, str]) -> None:
        """Host firewall rules for one workstation, on top of Docker's isolation between networks: it may not
        open a connection to the host itself (any of its addresses: the grader's listeners, the host's
        services), nor send anything off its plant network (the outside world). Replies to the host's own
        connections (the grader probing the candidate's exporter) still pass."""
        ws = f"{env['AIOTLAB_PLANT_NET']}.{load_spec()['addressing']['hosts']['workstation']}"
        tag = ["-m", "comment", "--comment", f"aiotlab:{env['COMPOSE_PROJECT_NAME']}"]
        rules = [
            ["INPUT", "-s", ws, "-m", "conntrack", "--ctstate", "NEW,INVALID", *tag, "-j", "DROP"],
            ["DOCKER-USER", "-s", ws, "!", "-d", f"{env['AIOTLAB_PLANT_NET']}.0/24", *tag, "-j", "DROP"],
        ]
        iptables = shutil.which("iptables") or "/usr/sbin/iptables"
        for rule in rules:
            subprocess.run([iptables, "-w", "5", "-I", *rule], capture_output=True, timeout=15, check=True)

    @staticmethod
    def unfence(project: str) -> int:
        """Remove the host rules tagged for this plant's project; returns how many."""
        iptables = shutil.which("iptables") or "/usr/sbin/iptables"
        if os.geteuid() != 0 or not Path(iptables).exists():
            return 0
        removed = 0
        for chain in ("INPUT", "DOCKER-USER"):
            listed = subprocess.run([iptables, "-w", "5", "-S", chain], capture_output=True, text=True, timeout=15)
            for line in listed.stdout.splitlines():
                if f'"aiotlab:{project}"' in line or f"aiotlab:{project} " in line + " ":
                    args = shlex.split(line)
                    args[0] = "-D"
                    subprocess.run([iptables, "-w", "5", *args], capture_output=True, timeout=15)
                    removed += 1
        return removed

    def workstation_exec(
        self, candidate: str, argv: list[str], user: str = "candidate", stdin: bytes | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a command in the candidate's workstation (docker exec), bounded in time."""
        st = ad.read_state(candidate) or {}
        ws = st.get("workstation") or {}
        if not ws.get("container"):
            raise ContainerError(f"{candidate} has no workstation (not an exam-mode plant)")
        return subprocess.run(
            ["docker", "exec", "-i", "-u", user, ws["container"], *argv],
            input=stdin,
            capture_output=True,
            timeout=timeout,
        )

    def set_shadow(self, candidate: str, shadow_hash: str) -> None:
        """Put back a password hash issued before (a recreated workstation keeps the candidate's password)."""
        out = self.workstation_exec(
            candidate, ["chpasswd", "-e"], user="root", stdin=f"candidate:{shadow_hash}\n".encode()
        )
        if out.returncode != 0:
            raise ContainerError(f"restoring {candidate}'s password failed: {out.stderr.decode(errors='replace')}")

    def shadow_of(self, candidate: str) -> str:
        out = self.workstation_exec(candidate, ["getent", "shadow", "candidate"], user="root")
        fields = out.stdout.decode().strip().split(":")
        if out.returncode != 0 or len(fields) < 2 or not fields[1].startswith("$"):
            raise ContainerError(f"no password hash for {candidate}'s workstation user")
        return fields[1]

    def set_password(self, candidate: str, password: str) -> None:
        """The candidate's login password in their workstation (chpasswd hashes it there; it travels on stdin,
        never in a command line)."""
        out = self.workstation_exec(candidate, ["chpasswd"], user="root", stdin=f"candidate:{password}\n".encode())
        if out.returncode != 0:
            raise ContainerError(f"setting {candidate}'s password failed: {out.stderr.decode(errors='replace')}")

    def _networks(self, project: str, topo: dict[str, Any], labels: dict[str, str]) -> dict[str, str]:
        from docker.types import IPAMConfig, IPAMPool

        out = {}
        for name, net in topo["networks"].items():
            pools = [IPAMPool(subnet=c["subnet"], gateway=c.get("gateway")) for c in net["ipam"]["config"]]
            created = self.client.networks.create(
                f"{project}_{name}",
                driver="bridge",
                internal=bool(net.get("internal")),
                options=net.get("driver_opts"),
                ipam=IPAMConfig(pool_configs=pools),
                labels=labels,
            )
            out[name] = created.name
        return out

    def _container(
        self, project: str, name: str, svc: dict[str, Any], nets: dict[str, str], labels: dict[str, str], base: Path
    ) -> str:
        api = self.client.api
        networks = list(svc["networks"].items())
        ports = _ports(svc.get("ports", []))
        host_config = api.create_host_config(
            binds=_binds(svc.get("volumes", []), base),
            port_bindings=ports,
            mem_limit=_memory(svc["mem_limit"]) if svc.get("mem_limit") else None,
            nano_cpus=int(float(svc["cpus"]) * 1e9) if svc.get("cpus") else None,
            pids_limit=int(svc["pids_limit"]) if svc.get("pids_limit") else None,
            restart_policy={"Name": "on-failure", "MaximumRetryCount": 5} if svc.get("restart") else None,
            sysctls=svc.get("sysctls"),
        )
        first, first_cfg = networks[0]
        created = api.create_container(
            svc.get("image", self.image),
            command=svc.get("command"),
            entrypoint=svc.get("entrypoint"),
            environment=svc.get("environment"),
            user=svc.get("user"),
            labels={**(svc.get("labels") or {}), **labels, "io.aiotlab.service": name},
            name=f"{project}-{name}",
            hostname=name,
            ports=list(ports),
            host_config=host_config,
            networking_config=api.create_networking_config(
                {nets[first]: api.create_endpoint_config(ipv4_address=first_cfg["ipv4_address"], aliases=[name])}
            ),
        )
        for net, cfg in networks[1:]:
            api.connect_container_to_network(created["Id"], nets[net], ipv4_address=cfg["ipv4_address"], aliases=[name])
        api.start(created["Id"])
        return str(created["Id"])

    def remove(self, candidate: str | None = None) -> list[str]:
        """Remove the containers and networks of a candidate (or of every candidate of this registry), and the
        host rules fencing their workstation."""
        removed = []
        projects = {
            c.labels.get(LABEL_CANDIDATE)
            for c in self.client.containers.list(all=True, filters=self._filters(candidate))
        }
        for cand in projects | ({candidate} if candidate else set()):
            if cand:
                self.unfence(project_name(cand))
        for c in self.client.containers.list(all=True, filters=self._filters(candidate)):
            try:
                c.remove(force=True)
                removed.append(c.name)
            except self.errors.NotFound:
                pass
        for n in self.client.networks.list(filters=self._filters(candidate)):
            try:
                n.remove()
                removed.append(n.name)
            except self.errors.NotFound:
                pass
        return removed

    def down(self, candidate: str) -> str:
        removed = self.remove(candidate)
        if ad.read_state(candidate):
            mark(candidate, status="stopped", pid=None)
        return f"removed {len(removed)} containers and networks" if removed else "nothing to remove"

    def status(self, candidate: str) -> dict[str, str]:
        """service -> container state (running, restarting, exited ...)."""
        return {
            c.labels.get("io.aiotlab.service", c.name): c.status
            for c in self.client.containers.list(all=True, filters=self._filters(candidate))
        }

    def leftovers(self, keep: set[str] = frozenset()) -> list[str]:
        """Candidates of this registry with containers or networks on the engine but no running plant recorded
        (a crashed or killed run), other than those in `keep`."""
        found = {c.labels.get(LABEL_CANDIDATE) for c in self.client.containers.list(all=True, filters=self._filters())}
        found |= {n.attrs["Labels"].get(LABEL_CANDIDATE) for n in self.client.networks.list(filters=self._filters())}
        return sorted(c for c in found if c and c not in keep and not ad.is_running(ad.read_state(c)))
