"""A running plant: the model on its clock, every device on its address, ground truth, supervisor, control plane."""

from __future__ import annotations

import asyncio
import logging
import secrets
import statistics
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .addressing import Addresses
from .broker import BrokerError, MosquittoBroker
from .bus import BUS_PORT, BusError, BusLink, BusServer
from .clock import Clock, RealClock
from .configs import ensure_configs
from .devices.firewall import Conduit, Firewall
from .devices.hmi import Hmi
from .devices.modbus_device import ModbusDevice
from .devices.register_map import RegisterMap
from .params import PlantIdentity, params_digest
from .process.model import PlantModel
from .supervisor import Supervisor
from .truth import TruthRecorder
from .yamlconf import ConfigError

if TYPE_CHECKING:  # imported where a role starts: asyncua alone costs a process ~38 MiB, aiomqtt ~12 MiB
    from .devices.opcua_plc import OpcUaPlc
    from .devices.sensors import SensorNode

log = logging.getLogger(__name__)

DEVICES = ("broker", "plc1", "em1", "fw1", "plc2", "sensors", "hmi", "control")
STALL_S = 0.25
RELOADABLE = ("broker", "plc1", "em1", "fw1", "plc2", "sensors", "hmi")
ROLES = ("core", "broker", "plc1", "em1", "fw1", "plc2", "sensors", "hmi")  # one process (container) each, split
CONFIG_FILES = {"broker": "mosquitto.conf", "fw1": "fw1.yaml", "plc2": "plc2.yaml", "sensors": "sensors.yaml"}


class PlantStartError(Exception):
    """A device could not start; names the device and why. Nothing of the plant is left running."""

    def __init__(self, device: str, reason: str) -> None:
        super().__init__(f"{device}: {reason}")
        self.device = device
        self.reason = reason


class Plant:
    def __init__(
        self,
        identity: PlantIdentity,
        spec: dict[str, Any],
        params: dict[str, Any],
        addresses: Addresses,
        state_dir: Path,
        clock: Clock | None = None,
        *,
        with_hmi: bool = True,
        with_sensors: bool = True,
        with_control: bool = True,
        roles: frozenset[str] | None = None,
        link: BusLink | None = None,
        public: Addresses | None = None,
        config_dir: Path | None = None,
    ) -> None:
        """One process runs the whole plant (roles None) or some roles of a plant split over processes: the
        "core" role owns the model, clock, truth and control plane; a device role gets `link`, its bus to the
        core. `public` is how clients reach the plant when that differs from where devices bind (published
        container ports). `config_dir`: where the device configs are when not in the state folder (exam mode:
        the validated copy of the candidate's config folder, at the same path as in their workstation)."""
        self.identity = identity
        self.spec = spec
        self.params = params
        self.addr = addresses
        self.public = public or addresses
        self.roles = frozenset(ROLES) if roles is None else roles
        self.link = link
        self.bus: BusServer | None = None
        self.bus_host = addresses.hosts["control"]  # where the core serves its device processes
        self.dir = state_dir
        self.clock = clock or RealClock()
        self.with_hmi, self.with_sensors, self.with_control = with_hmi, with_sensors, with_control
        for sub in ("config", "logs", "pki"):
            (state_dir / sub).mkdir(parents=True, exist_ok=True)
        self.config_dir = config_dir or state_dir / "config"
        self.loops = 0  # completed physics loop iterations (settle() waits on them)
        self._loop_waiters: list[asyncio.Future[int]] = []
        self.running_configs: dict[str, Path] = {}  # device -> applied but unsaved config (lost on restart)
        self.logs = state_dir / "logs"
        self.model: Any
        self.truth: Any
        if link is None:
            ensure_configs(self.config_dir, params, addresses.hosts, addresses.ports)
            self.model = PlantModel(params, identity.physics_seed, self.clock.now())
            self.truth = TruthRecorder(state_dir / "truth.db")
        else:  # a device process: the core made the configs and records the truth
            self.model = link.mirror
            self.truth = link.truth
            link.stats_source = self.role_stats
            link.on_command = self.on_core_command
        self.supervisor = Supervisor(self.event)
        self.token = self._token()
        devs = params["devices"]
        self.plc1_map = RegisterMap(devs["plc1"]["tables"])
        self.em1_map = RegisterMap(devs["em1"]["tables"])
        self.plc1: ModbusDevice | None = None
        self.em1: ModbusDevice | None = None
        self.fw1: Firewall | None = None
        self.plc2: OpcUaPlc | None = None
        self.broker: MosquittoBroker | None = None
        self.sensors: list[SensorNode] = []
        self.hmi: Hmi | None = None
        self.control: Any = None
        self.started_at: float | None = None
        self.jitter: deque[float] = deque(maxlen=3000)
        self.ticks = 0
        self.device_errors: dict[str, str] = {}

    # -- helpers ---------------------------------------------------------------------------------
    def _token(self) -> str:
        path = self.dir / "control.token"
        if path.exists():
            return path.read_text().strip()
        token = secrets.token_urlsafe(32)
        path.touch(mode=0o600)
        path.write_text(token)
        return token

    def event(self, kind: str, **detail: Any) -> None:
        self.truth.event(self.clock.now(), kind, **detail)

    def fault_state(self, device: str) -> tuple[bool, float]:
        return self.model.faults.device_fault(device, self.clock.now())

    def model_write(self, source: str, value: Any, via: str) -> None:
        if self.link is not None:
            self.link.write(source, value, via)
            return
        self.model.write(source, value)
        self.event("write", tag=source, value=value, via=via)

    @property
    def split(self) -> bool:
        """True when some of this plant's devices run in other processes."""
        return self.roles != frozenset(ROLES)

    @property
    def h(self) -> dict[str, str]:
        return self.addr.hosts

    @property
    def p(self) -> dict[str, int]:
        return self.addr.ports

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start every device; on the first failure stop what started and raise PlantStartError."""
        self.truth.set_meta(
            candidate=self.identity.candidate,
            seed=self.identity.seed,
            params_digest=params_digest(self.params),
            identity_digest=self.identity.digest(),
            tick_s=self.spec["clock"]["tick_s"],
            addresses=self.addr.as_dict(),
        )
        self.started_at = self.clock.now()
        steps = [
            (name, step)
            for name, step in (
                ("broker", self._start_broker),
                ("plc1", self._start_plc1),
                ("em1", self._start_em1),
                ("fw1", self._start_fw1),
                ("plc2", self._start_plc2),
            )
            if name in self.roles
        ]
        if "core" in self.roles and self.split:
            steps.append(("bus", self._start_bus))
        if "core" in self.roles and self.with_control:
            steps.append(("control", self._start_control))
        try:
            for name, step in steps:
                try:
                    await step()
                except PlantStartError:
                    raise
                except ConfigError as exc:
                    raise PlantStartError(name, str(exc)) from exc
                except BrokerError as exc:
                    raise PlantStartError(name, str(exc)) from exc
                except OSError as exc:
                    raise PlantStartError(name, _explain_oserror(exc)) from exc
        except BaseException:
            await self.stop()
            raise
        if "core" in self.roles:
            self.supervisor.run("physics", self._physics)
        elif "plc2" in self.roles:
            self.supervisor.run("plc2-sync", self._follow_core)
        if "broker" in self.roles:
            self.supervisor.run("broker-watch", self._watch_broker)
        if self.with_sensors and "sensors" in self.roles:
            self._start_sensors()
        if self.with_hmi and "hmi" in self.roles:
            self._start_hmi()
        self.event("plant_start" if "core" in self.roles else "device_start", candidate=self.identity.candidate)

    async def stop(self) -> None:
        await self.supervisor.stop()
        for dev in (self.control, self.bus, self.plc2, self.fw1, self.plc1, self.em1, self.broker):
            if dev is not None:
                try:
                    await dev.stop()
                except Exception as exc:  # noqa: BLE001 - stopping must go on whatever one device does
                    log.warning("stop %r: %r", dev, exc)
        self.control = self.bus = self.plc2 = self.fw1 = self.plc1 = self.em1 = self.broker = None
        try:
            self.event("plant_stop")
            self.truth.flush()
        except Exception:  # noqa: BLE001
            pass

    def close(self) -> None:
        self.truth.close()

    async def _start_broker(self) -> None:
        self.broker = MosquittoBroker(
            self.config_path("broker"), self.logs / "mosquitto.log", self.h["broker"], self.p["mqtt"]
        )
        if self.broker.binary is None:
            self.event("broker_fallback", reason="mosquitto not installed")
        await self.broker.start()

    async def _start_plc1(self) -> None:
        d = self.params["devices"]["plc1"]
        self.plc1 = ModbusDevice(
            "plc1",
            int(d["unit_id"]),
            self.plc1_map,
            lambda: self.model.plc1_image,
            lambda tag, v: self.model_write(tag, v, "plc1"),
            lambda: self.fault_state("plc1"),
            {self.h["fw1_field"]},
            {0: "aiotlab", 1: "PLC-1 TANK", 2: "1.4.2"},
            float(d["load_window_s"]),
        )
        await self.plc1.start(self.h["plc1_field"], self.p["modbus"])

    async def _start_em1(self) -> None:
        d = self.params["devices"]["em1"]
        self.em1 = ModbusDevice(
            "em1",
            int(d["unit_id"]),
            self.em1_map,
            lambda: self.model.values,
            lambda tag, v: self.model_write(tag, v, "em1"),
            lambda: self.fault_state("em1"),
            {self.h["fw1_field"]},
            {0: "aiotlab", 1: "EM-1 METER", 2: "2.0.7"},
        )
        await self.em1.start(self.h["em1_field"], self.p["modbus"])

    async def _start_fw1(self) -> None:
        conduits = [
            Conduit(name, self.addr.conduit_listen(name), (self.h[f"{name}_field"], self.p["modbus"]))
            for name in self.params["devices"]["fw1"]["conduits"]
        ]
        self.fw1 = Firewall(self.config_path("fw1"), self.logs / "fw1.jsonl", self.h["fw1_field"], conduits)
        await self.fw1.start()

    async def _start_plc2(self) -> None:
        from .devices.opcua_plc import OpcUaPlc
        from .devices.opcua_security import load_security_config

        cfg = load_security_config(self.config_path("plc2"), self.config_dir)
        d = self.params["devices"]["plc2"]
        self.plc2 = OpcUaPlc(
            d,
            cfg,
            f"opc.tcp://{self.public.hosts['plc2']}:{self.public.ports['opcua']}{d['path']}",
            self.dir / "pki",
            self.logs / "plc2-audit.jsonl",
            lambda: self.model.values,
            lambda tag, v: self.model_write(tag, v, "plc2"),
            self._call,
            lambda: self.fault_state("plc2"),
            self.clock.now,
            self.event,
            bind=(self.h["plc2"], self.p["opcua"]) if self.public is not self.addr else None,
        )
        await self.plc2.start()

    def _call(self, method: str) -> Any:
        if self.link is not None:
            return self.link.call(method)  # awaited by PLC-2's method handler
        ok = self.model.call(method)
        self.event("call", method=method, result=ok)
        return ok

    async def _start_bus(self) -> None:
        self.bus = BusServer(self.bus_host, BUS_PORT, self.token, self._from_device, self._call)
        await self.bus.start()

    def _from_device(self, role: str, msg: dict[str, Any]) -> None:
        """What a device process reports: applied to the model and recorded as if it ran here."""
        op = msg.get("op")
        if op == "write":
            self.model_write(str(msg["tag"]), msg["value"], str(msg.get("via", role)))
        elif op == "event":
            self.truth.event(float(msg.get("t") or self.clock.now()), str(msg["kind"]), **(msg.get("detail") or {}))
        elif op == "emission":
            node, seq, t, topic, payload = msg["args"]
            self.truth.emission(str(node), int(seq), float(t), str(topic), str(payload))

    def _snapshot(self) -> dict[str, Any]:
        now = self.clock.now()
        targets = {f["target"] for f in self.model.faults.listing()}
        return {
            "t": self.model.t,
            "values": self.model.values,
            "plc1_image": self.model.plc1_image,
            "faults": {x: self.model.faults.device_fault(x, now) for x in targets},
        }

    async def _follow_core(self) -> None:
        """PLC-2 in its own process: refresh its address space whenever the core sends a new process image."""
        assert self.link is not None
        while True:
            await self.link.mirror.updated.wait()
            self.link.mirror.updated.clear()
            if self.plc2 is not None:
                await self.plc2.sync()

    def role_stats(self) -> dict[str, Any]:
        """This process's device counters, as the core's status reports them."""
        out: dict[str, Any] = {}
        if self.plc1:
            out["plc1"] = {**self.plc1.stats, "load_rps": self.plc1.load.rate()}
        if self.em1:
            out["em1"] = dict(self.em1.stats)
        if self.fw1:
            out["fw1"] = {**self.fw1.stats, "requests_by_source": self.fw1.requests_by_source}
        if self.broker:
            out["broker"] = self._broker_status()
        if self.sensors:
            out["sensors"] = self._sensor_status()
        if self.hmi:  # "at": when these counters were read (a split plant's reach the core a bus period later)
            out["hmi"] = {**self.hmi.stats, "at": time.time()}
        return out

    async def on_core_command(self, cmd: dict[str, Any]) -> Any:
        """A device command from the core (the control plane's reload/apply/restart, run where the device is)."""
        device = str(cmd.get("device"))
        if device not in self.roles:
            raise KeyError(f"{device} does not run here")
        if cmd.get("op") != "reload":
            raise ValueError(f"unknown device command {cmd.get('op')!r}")
        config = cmd.get("config")
        if config and Path(config) != self.config_dir / CONFIG_FILES.get(device, ""):
            self.running_configs[device] = Path(config)
        else:
            self.running_configs.pop(device, None)
        return await self.reload(device, keep_running=True)

    async def _start_control(self) -> None:
        from .control_api import ControlApi

        self.control = ControlApi(self, self.h["control"], self.p["control"], self.token)
        await self.control.start()

    def _start_sensors(self) -> None:
        d = self.params["devices"]["sensors"]
        from .devices.sensors import SensorNode, load_link

        link_path = self.config_path("sensors")
        link = load_link(link_path, self.p["mqtt"])
        self.sensors = []
        for node in d["nodes"]:
            s = SensorNode(
                node,
                d["topic_root"],
                tuple(d["period_limits_s"]),
                self.params["process"]["wireless"],
                self.h["broker"],
                self.h["sensors"],
                lambda: link,
                lambda: self.model.values,
                self.clock.now,
                self.truth.emission,
                self.fault_state,
                self.event,
                phase=self.identity.rng(f"sensor-phase:{node['id']}").random(),
            )
            self.sensors.append(s)
            self.supervisor.run(f"sensor:{s.id}", s.run)

    def _start_hmi(self) -> None:
        d = self.params["devices"]["hmi"]
        self.hmi = Hmi(
            self.h["plc1"],
            self.p["modbus"],
            self.h["hmi"],
            int(self.params["devices"]["plc1"]["unit_id"]),
            self.plc1_map,
            float(d["poll_period_s"]),
            float(d["write_every_s"]),
            self.logs / "hmi.jsonl",
            self.identity.rng("hmi"),
            tuple(self.params["process"]["tank"]["operating_setpoint_m"]),
        )
        self.supervisor.run("hmi", self.hmi.run)

    # -- the physics loop ------------------------------------------------------------------------
    async def _physics(self) -> None:
        tick = float(self.spec["clock"]["tick_s"])
        next_t = self.model.t + tick
        first = True
        while True:
            await self.clock.sleep_until(next_t)
            late = max(0.0, self.clock.now() - next_t)
            if first:  # the first deadline dates from before the devices started (~0.2 s): not loop jitter
                first = False
                late = 0.0
            self.jitter.append(late)
            if late > STALL_S:  # the loop was blocked: record it so benchmarks and graders can see when and how long
                self.event("tick_stall", late_ms=round(late * 1000, 1))
            self.model.scan.load_rps = self._plc1_load()
            while self.model.t + tick <= self.clock.now() + 1e-9:  # catch up after a stall, one fixed step at a time
                values = self.model.step(tick)
                self.truth.sample(self.model.t, values)
                self.ticks += 1
                if self.ticks % 10 == 0:
                    self.truth.flush()
            if self.bus is not None:
                self.bus.broadcast(self._snapshot())
            if self.plc2 is not None:
                await self.plc2.sync()
            self.loops += 1
            waiters, self._loop_waiters = self._loop_waiters, []
            for w in waiters:
                if not w.done():
                    w.set_result(self.loops)
            next_t = self.model.t + tick

    async def settle(self, loops: int = 2, timeout: float = 5.0) -> None:
        """Return once the physics loop has completed `loops` more iterations: a fault, write or event accepted by
        the control plane is then in the values every device serves (the snapshot of the first iteration reached
        the device processes before the second one ended)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for _ in range(loops):
            fut: asyncio.Future[int] = loop.create_future()
            self._loop_waiters.append(fut)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                return

    def _plc1_load(self) -> float:
        if self.plc1 is not None:
            return self.plc1.load.rate()
        if self.bus is not None:
            return float(self.bus.stats.get("plc1", {}).get("plc1", {}).get("load_rps", 0.0))
        return 0.0

    async def _watch_broker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.broker is not None and not self.broker.alive() and "broker" not in self.device_errors:
                self.event("device_restart", device="broker", error="mosquitto exited")
                log.warning("broker exited; restarting")
                try:
                    await self.broker.restart()
                except BrokerError as exc:
                    self.device_errors["broker"] = str(exc)

    # -- reload ----------------------------------------------------------------------------------
    def config_path(self, device: str) -> Path:
        """The config a device runs with: an applied-but-unsaved one if any, else the saved file."""
        return self.running_configs.get(device) or self.config_dir / CONFIG_FILES[device]

    async def apply(self, device: str, text: str) -> dict[str, Any]:
        """Run a device with a config that is not saved (like a firewall's running config): a restart loses it.

        Lets an engineer try a change before saving it, and lets labs show what unsaved hardening is worth."""
        if device not in CONFIG_FILES:
            raise KeyError(f"unknown device {device!r}; configurable: {', '.join(CONFIG_FILES)}")
        running = self.dir / "running-config"
        running.mkdir(exist_ok=True)
        path = running / CONFIG_FILES[device]
        previous = self.running_configs.get(device)
        path.write_text(text, encoding="utf-8")
        self.running_configs[device] = path
        try:
            result = await self.reload(device, keep_running=True)
        except Exception:
            if previous is None:
                self.running_configs.pop(device, None)
            raise
        self.event("apply", device=device, saved=False)
        return {**result, "applied": True, "saved": False}

    async def factory_reset(self) -> dict[str, Any]:
        """Every configurable device back to its factory config, saved and running: what a lab whose brief
        describes a factory plant starts from, whatever an earlier lab or attempt left on this plant."""
        before: dict[str, str | None] = {}
        applied = set()
        for device, name in CONFIG_FILES.items():
            path = self.config_dir / name
            before[device] = path.read_text(encoding="utf-8") if path.is_file() else None
            if self.running_configs.pop(device, None) is not None:
                applied.add(device)
            path.unlink(missing_ok=True)
        ensure_configs(self.config_dir, self.params, self.addr.hosts, self.addr.ports)
        done = []
        for device, name in CONFIG_FILES.items():
            # only a device whose config changed is restarted: a plant already at factory keeps running untouched
            # (restarting the broker and sensors needlessly would cut messages in flight and restart sequences)
            if device in applied or before[device] != (self.config_dir / name).read_text(encoding="utf-8"):
                await self.reload(device)
                done.append(device)
        self.event("factory_reset", devices=done)
        return {"factory_reset": done}

    async def restart(self, device: str) -> dict[str, Any]:
        """Power-cycle a device: it comes back with its saved config (anything only applied is gone)."""
        self.running_configs.pop(device, None)
        result = await self.reload(device)
        self.event("restart", device=device)
        return {**result, "restarted": True}

    async def reload(self, device: str, keep_running: bool = False) -> dict[str, Any]:
        """Apply an edited device config. A bad file raises ConfigError and leaves the running device as it was."""
        if device not in RELOADABLE:
            raise KeyError(f"unknown device {device!r}; reloadable: {', '.join(RELOADABLE)}")
        if not keep_running:
            self.running_configs.pop(device, None)
        if device not in self.roles:  # runs in another process: it reloads there, from the shared state folder
            if self.bus is None:
                raise KeyError(f"{device} does not run in this process")
            path = self.config_path(device) if device in CONFIG_FILES else None
            try:
                await self.bus.command(device, {"op": "reload", "device": device, "config": path and str(path)})
            except BusError as exc:
                if "ConfigError" in str(exc):
                    raise ConfigError(path or Path(device), str(exc).split(": ", 1)[-1]) from None
                raise
            self.event("reload", device=device)
            return {"device": device, "reloaded": True}
        if device == "fw1" and self.fw1:
            self.fw1.reload(self.config_path("fw1"))
        elif device == "plc2":
            from .devices.opcua_security import load_security_config

            load_security_config(self.config_path("plc2"), self.config_dir)  # validate before touching the server
            if self.plc2:
                await self.plc2.stop()
            await self._start_plc2()
        elif device == "broker" and self.broker:
            self.device_errors.pop("broker", None)
            self.broker.config_path = self.config_path("broker")
            try:
                await self.broker.restart()
            except BrokerError as exc:
                self.device_errors["broker"] = str(exc)
                raise ConfigError(self.config_path("broker"), str(exc)) from None
        elif device == "sensors":
            from .devices.sensors import load_link

            load_link(self.config_path("sensors"), self.p["mqtt"])
            for s in self.sensors:
                await self.supervisor.stop(f"sensor:{s.id}")
            self._start_sensors()
        elif device == "hmi":
            await self.supervisor.stop("hmi")
            self._start_hmi()
        elif device in ("plc1", "em1"):
            dev = getattr(self, device)
            if dev:
                await dev.stop()
            await (self._start_plc1() if device == "plc1" else self._start_em1())
        self.event("reload", device=device)
        return {"device": device, "reloaded": True}

    # -- status ----------------------------------------------------------------------------------
    def endpoints(self) -> list[dict[str, Any]]:
        h, p = self.public.hosts, self.public.ports
        d = self.params["devices"]
        return [
            {
                "device": "plc1",
                "protocol": "modbus-tcp",
                "endpoint": f"{h['plc1']}:{p['modbus']}",
                "unit_id": d["plc1"]["unit_id"],
                "via": "fw1",
            },
            {
                "device": "em1",
                "protocol": "modbus-tcp",
                "endpoint": f"{h['em1']}:{p['modbus']}",
                "unit_id": d["em1"]["unit_id"],
                "via": "fw1",
            },
            {
                "device": "plc2",
                "protocol": "opc-ua",
                "endpoint": f"opc.tcp://{h['plc2']}:{p['opcua']}{d['plc2']['path']}",
            },
            {"device": "broker", "protocol": "mqtt", "endpoint": f"mqtt://{h['broker']}:{p['mqtt']}"},
            {"device": "hmi", "protocol": "client", "endpoint": h["hmi"]},
            {"device": "workstation", "protocol": "client", "endpoint": h["workstation"]},
        ]

    def _broker_status(self) -> dict[str, Any]:
        return {
            "alive": self.broker.alive() if self.broker else False,
            "embedded": bool(self.broker and self.broker.binary is None),
            "restarts": self.broker.restarts if self.broker else 0,
            "error": self.device_errors.get("broker"),
        }

    def _sensor_status(self) -> dict[str, Any]:
        return {
            s.id: {
                "connected": s.connected,
                "published": s.published,
                "seq": s.seq,
                "report_period_s": s.period,
                "battery_pct": round(s.battery.percent, 2),
            }
            for s in self.sensors
        }

    def _public_address(self, ip: str) -> str:
        """A device-side source address as the datasheet names it (the workstation is the network's gateway)."""
        for name, host in self.addr.hosts.items():
            if host == ip and name in self.public.hosts:
                return self.public.hosts[name]
        if self.public is not self.addr and ip == self.addr.hosts["workstation"].rsplit(".", 1)[0] + ".254":
            # published ports: every client comes through the engine's proxy on the host, which is the
            # workstation when the plant is used from the host
            return self.public.hosts["workstation"]
        return ip

    def status(self) -> dict[str, Any]:
        jit = sorted(self.jitter)

        def pct(q: float) -> float | None:
            return round(jit[min(len(jit) - 1, int(q * len(jit)))] * 1000, 2) if jit else None

        devices = self.role_stats()
        remote: dict[str, Any] = {}
        if self.bus is not None:  # the other processes' latest counters
            for role, stats in self.bus.stats.items():
                if role in self.bus.peers:
                    remote.update(stats)
        devices = {**remote, **devices}
        fw1 = devices.get("fw1")
        if fw1 is not None and self.public is not self.addr:
            fw1 = {
                **fw1,
                "requests_by_source": {self._public_address(k): v for k, v in fw1["requests_by_source"].items()},
            }
        plc1 = {k: v for k, v in (devices.get("plc1") or {}).items() if k != "load_rps"}
        return {
            "candidate": self.identity.candidate,
            "time": self.clock.now(),
            "started_at": self.started_at,
            "ticks": self.ticks,
            "tick_jitter_ms": {
                "p50": pct(0.5),
                "p99": pct(0.99),
                "max": round(jit[-1] * 1000, 2) if jit else None,
                "mean": round(statistics.fmean(jit) * 1000, 3) if jit else None,
            },
            "plc1": {
                "scan_time_ms": self.model.scan.scan_time_ms,
                "load_rps": self.model.scan.load_rps,
                "budget_rps": self.model.scan.budget,
                **plc1,
            },
            "em1": devices.get("em1"),
            "fw1": fw1,
            "broker": devices.get("broker") or self._broker_status(),
            "sensors": devices.get("sensors") or {},
            "hmi": devices.get("hmi"),
            "supervised": self.supervisor.status(),
            "processes": (
                {role: role in self.bus.ready for role in ROLES if role != "core"} if self.bus is not None else None
            ),
            "unsaved_configs": sorted(self.running_configs),
            "faults": self.model.faults.listing(),
            "events": self.model.active_events(),
        }


def _explain_oserror(exc: OSError) -> str:
    import errno

    if exc.errno == errno.EADDRINUSE:
        return f"address already in use ({exc})"
    if exc.errno == errno.EACCES:
        return f"permission denied binding a port ({exc}); run as root or lower net.ipv4.ip_unprivileged_port_start"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"address not available ({exc}); loopback 127.0.0.0/8 must be routed to lo"
    return str(exc)
