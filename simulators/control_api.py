"""The grader-only control plane: truth, direct PLC state, faults, process events, reload.

Bound to the plant's control address (not a candidate-facing endpoint) and protected by a bearer token kept in
the plant's state directory with mode 0600. Nothing here is reachable through Modbus, OPC UA or MQTT.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
from typing import TYPE_CHECKING, Any

from .devices.modbus_device import encode_image
from .jsonhttp import HttpError, JsonHttpServer, Request, Response, Router, json_response
from .params import params_digest
from .process.model import EVENTS
from .truth import TruthReader
from .yamlconf import ConfigError

if TYPE_CHECKING:
    from .runtime import Plant

MAX_BODY = 64 * 1024


def _json(data: Any, status: int = 200) -> Response:
    return json_response(data, status, dumps=lambda d: json.dumps(d, default=_jsonable, allow_nan=False))


def _jsonable(o: Any) -> Any:
    return str(o)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


class ControlApi:
    def __init__(self, plant: Plant, host: str, port: int, token: str) -> None:
        self.plant = plant
        self.host, self.port, self.token = host, port, token
        r = Router()
        r.add_get("/v1/health", self.health)
        r.add_get("/v1/info", self.info)
        r.add_get("/v1/status", self.status)
        r.add_get("/v1/values", self.values)
        r.add_get("/v1/truth", self.truth)
        r.add_get("/v1/emissions", self.emissions)
        r.add_get("/v1/events", self.events)
        r.add_get("/v1/registers/{device}", self.registers)
        r.add_post("/v1/tags", self.write_tags)
        r.add_get("/v1/faults", self.list_faults)
        r.add_post("/v1/faults", self.add_fault)
        r.add_delete("/v1/faults", self.clear_faults)
        r.add_delete("/v1/faults/{id}", self.clear_faults)
        r.add_post("/v1/process-events", self.trigger)
        r.add_post("/v1/reload/{device}", self.reload)
        r.add_post("/v1/apply/{device}", self.apply)
        r.add_post("/v1/restart/{device}", self.restart)
        r.add_post("/v1/factory-reset", self.factory_reset)
        r.add_get("/v1/logs/{name}", self.logs)
        r.add_get("/v1/config/{name}", self.config_file)
        self.server = JsonHttpServer(r, self._auth, max_body=MAX_BODY)

    async def start(self) -> None:
        await self.server.start(self.host, self.port)

    async def stop(self) -> None:
        await self.server.stop()

    async def _auth(self, request: Request, handler: Any) -> Response:
        if request.path != "/v1/health":
            supplied = request.headers.get("Authorization", "")
            if not hmac.compare_digest(supplied.encode(), f"Bearer {self.token}".encode()):
                return _error(401, "missing or wrong bearer token")
        try:
            return await handler(request)
        except HttpError:
            raise
        except ConfigError as exc:  # an unusable device config: the device keeps running as it was
            return _json({"error": str(exc), "file": exc.path, "line": exc.line}, 422)
        except (KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
            return _error(400, f"{type(exc).__name__}: {exc}")

    async def health(self, request: Request) -> Response:
        return _json({"ok": True})

    async def info(self, request: Request) -> Response:
        p = self.plant
        return _json(
            {
                "candidate": p.identity.candidate,
                "seed": p.identity.seed,
                "params": p.params,
                "params_digest": params_digest(p.params),
                "addresses": p.public.as_dict(),
                "device_addresses": p.addr.as_dict(),  # where the devices bind (differs in containers)
                "endpoints": p.endpoints(),
                "state_dir": str(p.dir),
                "tags": sorted(p.model.values),
                "events": EVENTS,
            }
        )

    async def status(self, request: Request) -> Response:
        return _json(self.plant.status())

    async def values(self, request: Request) -> Response:
        return _json({"t": self.plant.model.t, "values": {k: _clean(v) for k, v in self.plant.model.values.items()}})

    def _range(self, request: Request) -> tuple[float, float]:
        now = self.plant.clock.now()
        start = float(request.query.get("start", now - 60))
        end = float(request.query.get("end", now))
        return start, end

    async def truth(self, request: Request) -> Response:
        self.plant.truth.flush()
        start, end = self._range(request)
        tags = [t for t in request.query.get("tags", "").split(",") if t]
        if not tags:
            return _error(400, "give tags=a,b,...")
        reader = TruthReader(self.plant.truth.path)
        try:
            series = reader.series(tags, start, end)
        finally:
            reader.close()
        return _json({k: [_clean(x) for x in v] for k, v in series.items()})

    async def emissions(self, request: Request) -> Response:
        self.plant.truth.flush()
        start, end = self._range(request)
        reader = TruthReader(self.plant.truth.path)
        try:
            return _json(reader.emissions(start, end, request.query.get("node")))
        finally:
            reader.close()

    async def events(self, request: Request) -> Response:
        self.plant.truth.flush()
        start, end = self._range(request)
        reader = TruthReader(self.plant.truth.path)
        try:
            return _json(reader.events(start, end))
        finally:
            reader.close()

    async def registers(self, request: Request) -> Response:
        """Raw register words as the device would serve them (read directly, not over the network)."""
        device = request.match_info["device"]
        regmap = {"plc1": self.plant.plc1_map, "em1": self.plant.em1_map}.get(device)
        if regmap is None:
            return _error(404, "device must be plc1 or em1")
        words = encode_image(regmap, self.plant.model.plc1_image if device == "plc1" else self.plant.model.values)
        return _json({table: {str(a): w for a, w in sorted(m.items())} for table, m in words.items()})

    async def write_tags(self, request: Request) -> Response:
        body = await request.json()
        if not isinstance(body, dict) or not body:
            return _error(400, "body must be a JSON object {tag: value}")
        for tag, value in body.items():
            self.plant.model.write(tag, value)
            self.plant.event("control_write", tag=tag, value=value)
        await self.plant.settle()
        return _json({"written": sorted(body)})

    async def list_faults(self, request: Request) -> Response:
        return _json(self.plant.model.faults.listing())

    async def add_fault(self, request: Request) -> Response:
        body = await request.json()
        f = self.plant.model.faults.add(
            str(body["kind"]),
            str(body["target"]),
            self.plant.clock.now(),
            body.get("duration_s"),
            body.get("params") or {},
        )
        self.plant.event("fault", fault=f.as_dict())
        await self.plant.settle()  # in effect in every device when the call returns
        return _json(f.as_dict(), 201)

    async def clear_faults(self, request: Request) -> Response:
        fid = request.match_info.get("id")
        n = self.plant.model.faults.clear(int(fid) if fid else None)
        self.plant.event("fault_clear", id=fid, cleared=n)
        await self.plant.settle()
        return _json({"cleared": n})

    async def trigger(self, request: Request) -> Response:
        body = await request.json()
        event = str(body["event"])
        duration = float(body.get("duration_s", 60.0))
        self.plant.model.trigger(event, duration)
        self.plant.event("process_event", event=event, duration_s=duration)
        await self.plant.settle()
        return _json({"event": event, "until": self.plant.model.active_events().get(event)}, 201)

    async def reload(self, request: Request) -> Response:
        return _json(await self.plant.reload(request.match_info["device"]))

    async def apply(self, request: Request) -> Response:
        device = request.match_info["device"]
        text = str((await request.json())["text"])
        if len(text) > 1_000_000:
            return _error(413, "config larger than 1 MB")
        return _json(await self.plant.apply(device, text))

    async def restart(self, request: Request) -> Response:
        return _json(await self.plant.restart(request.match_info["device"]))

    async def factory_reset(self, request: Request) -> Response:
        return _json(await self.plant.factory_reset())

    async def logs(self, request: Request) -> Response:
        """The last lines of a device log (broker log, FW-1 decisions, PLC-2 audit, HMI): graders read probes here."""
        files = {"broker": "mosquitto.log", "fw1": "fw1.jsonl", "plc2-audit": "plc2-audit.jsonl", "hmi": "hmi.jsonl"}
        name = request.match_info["name"]
        if name not in files:
            return _error(404, f"unknown log {name!r}; known: {', '.join(files)}")
        limit = min(int(request.query.get("lines", 2000)), 20000)
        path = self.plant.logs / files[name]
        lines = await asyncio.to_thread(_tail, path, limit)
        return _json({"log": name, "lines": lines})

    async def config_file(self, request: Request) -> Response:
        """A file of the plant's config directory (the candidate's saved configs), with its permission bits."""
        name = request.match_info["name"]
        base = self.plant.config_dir.resolve()
        path = (base / name).resolve()
        if path.parent != base or not path.is_file():
            return _error(404, f"no config file {name!r} in {base}")
        data = path.read_bytes()[:1_000_000]
        return _json({"name": name, "mode": oct(path.stat().st_mode & 0o777), "text": data.decode("utf-8", "replace")})


def _tail(path: Any, limit: int) -> list[str]:
    """Last `limit` lines of a file, reading at most 4 MB from its end."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 4 * 1024 * 1024))
            data = fh.read()
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-limit:]
