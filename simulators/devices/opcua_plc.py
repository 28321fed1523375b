"""PLC-2: an OPC UA server (asyncua) for the heater and filling line, secured per its config file."""

from __future__ import annotations

import ast
import asyncio
import bisect
import inspect
import logging
import os
import pickle
import shutil
import tempfile
from array import array
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

from .opcua_security import (
    POLICIES,
    TOKENS,
    AuditLog,
    ConfiguredUserManager,
    LoadedTrustStore,
    RoleRuleset,
    ServerHooks,
    UaSecurityConfig,
    install_guard,
)

log = logging.getLogger(__name__)

VARIANT = {
    "Double": ua.VariantType.Double,
    "Boolean": ua.VariantType.Boolean,
    "Int32": ua.VariantType.Int32,
    "UInt32": ua.VariantType.UInt32,
    "Float": ua.VariantType.Float,
}
PYTYPE = {"Double": float, "Float": float, "Boolean": bool, "Int32": int, "UInt32": int}
# UNECE Recommendation 20 common codes for the units the plant uses (OPC UA Part 8, EUInformation)
UNECE = {
    "degC": ("CEL", "°C"),
    "kW": ("KWT", "kW"),
    "s": ("SEC", "s"),
    "1": ("C62", "1"),
    "%": ("P1", "%"),
    "m": ("MTR", "m"),
    "m3/h": ("MQH", "m³/h"),
    "bar": ("BAR", "bar"),
    "V": ("VLT", "V"),
    "A": ("AMP", "A"),
    "Hz": ("HTZ", "Hz"),
    "kWh": ("KWH", "kW·h"),
    "mm/s": ("C16", "mm/s"),
    "%RH": ("P1", "%"),
}
UNITS_NS = "http://www.opcfoundation.org/UA/units/un/cefact"


def eu_information(unit: str) -> ua.EUInformation:
    code, symbol = UNECE[unit]
    unit_id = 0
    for ch in code:
        unit_id = (unit_id << 8) | ord(ch)
    return ua.EUInformation(
        NamespaceUri=UNITS_NS, UnitId=unit_id, DisplayName=ua.LocalizedText(symbol), Description=ua.LocalizedText(unit)
    )


def shelf_path() -> Path:
    """A per-user cache of asyncua's standard address space: turns a ~2 s Server.init into ~0.1 s."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "aiotlab"
    import asyncua

    return base / f"asyncua-{asyncua.__version__ if hasattr(asyncua, '__version__') else 'x'}-aspace"


async def ensure_shelf() -> Path:
    """Build the address-space shelf once, atomically, so concurrent plants never see a half-written one.

    asyncua only uses a shelf when the bare path (or path.db) is a file; Python builds without gdbm write a
    dbm.dumb shelf as path.dat/path.dir, which asyncua would silently ignore and rebuild (~1.9 s) on every start.
    An empty marker at the bare path makes asyncua load it (dbm.whichdb still recognises the .dat/.dir pair).
    """
    target = shelf_path()
    if (target.parent / (target.name + ".ok")).exists() and target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(dir=target.parent))
    try:
        server = Server()
        await server.init(shelf_file=tmpdir / target.name)
        for f in tmpdir.iterdir():
            os.replace(f, target.parent / f.name)
        if not target.is_file():
            target.touch()
        (target.parent / (target.name + ".ok")).touch()
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return target


class _ShelfIndex:
    """key -> (offset, size) of a dbm.dumb shelf in flat sorted arrays: ~25 bytes a key where a dict of tuples
    (dbm.dumb's own index) takes ~200, 1.1 MiB less for asyncua's 6,174 standard nodes."""

    def __init__(self, keys: str, starts: array, offsets: array, sizes: array) -> None:
        self.keys, self.starts, self.offsets, self.sizes = keys, starts, offsets, sizes

    @classmethod
    def build(cls, entries: dict[str, tuple[int, int]]) -> _ShelfIndex:
        names = sorted(entries)
        starts = array("I", [0])
        for name in names:
            starts.append(starts[-1] + len(name))
        return cls(
            "".join(names),
            starts,
            array("Q", (entries[n][0] for n in names)),
            array("Q", (entries[n][1] for n in names)),
        )

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> str:  # the i-th key, for bisect
        return self.keys[self.starts[i] : self.starts[i + 1]]

    def find(self, key: str) -> tuple[int, int]:
        i = bisect.bisect_left(self, key)
        if i == len(self) or self[i] != key:
            raise KeyError(key)
        return self.offsets[i], self.sizes[i]

    def __contains__(self, key: object) -> bool:
        try:
            self.find(key)  # type: ignore[arg-type]
        except (KeyError, TypeError):
            return False
        return True

    def state(self) -> tuple[str, array, array, array]:
        return self.keys, self.starts, self.offsets, self.sizes


class _DumbShelf:
    """Read-only access to a dbm.dumb shelf through an index loaded at once (all asyncua's shelf loader needs)."""

    def __init__(self, dat: Path, index: _ShelfIndex) -> None:
        self.dat = dat
        self.index = index

    def __getitem__(self, key: str) -> Any:
        pos, size = self.index.find(key)
        with open(self.dat, "rb") as f:  # as dbm.dumb does: no descriptor held between reads
            f.seek(pos)
            return pickle.loads(f.read(size))  # noqa: S301 - our own cache, written by asyncua's shelve

    def __contains__(self, key: object) -> bool:
        return key in self.index


class _LazyNodes(MutableMapping):  # type: ignore[type-arg]
    """asyncua's LazyLoadingDict (AddressSpace.load_aspace_shelf): standard nodes are read from the shelf when
    first used and kept; nodes added by the server live in the cache only."""

    def __init__(self, source: _DumbShelf) -> None:
        self.source = source
        self.cache: dict[Any, Any] = {}

    def __getitem__(self, key: Any) -> Any:
        try:
            return self.cache[key]
        except KeyError:
            node = self.cache[key] = self.source[key.to_string()]
            return node

    def __setitem__(self, key: Any, value: Any) -> None:
        self.cache[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self.cache or (isinstance(key, ua.NodeId) and key.to_string() in self.source)

    def __delitem__(self, key: Any) -> None:
        del self.cache[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.cache.keys())

    def __len__(self) -> int:
        return len(self.cache)


_shelf_indexes: dict[Path, tuple[tuple[int, ...], _ShelfIndex]] = {}


def _dumb_index(shelf: Path) -> tuple[Path, _ShelfIndex] | None:
    """(data file, index) of a dbm.dumb shelf, or None when the shelf is another dbm.

    Opening a dbm.dumb shelf parses its .dir index with ast.literal_eval, line by line: 6,000 lines, about a tenth
    of a second of every PLC-2 start. The index is kept beside the shelf (rebuilt when the shelf changes) and in
    memory for PLC-2 restarts."""
    dat, dirfile = shelf.with_name(shelf.name + ".dat"), shelf.with_name(shelf.name + ".dir")
    try:
        stamp = (dirfile.stat().st_size, dirfile.stat().st_mtime_ns, dat.stat().st_size)
    except OSError:
        return None
    known = _shelf_indexes.get(shelf)
    if known and known[0] == stamp:
        return dat, known[1]
    saved = shelf.with_name(shelf.name + ".idx")
    index = None
    try:
        with open(saved, "rb") as f:
            saved_stamp, state = pickle.load(f)  # noqa: S301 - our own cache
        if (
            saved_stamp == stamp
            and isinstance(state, tuple)
            and len(state) == 4
            and isinstance(state[0], str)
            and all(isinstance(a, array) for a in state[1:])
        ):
            index = _ShelfIndex(*state)
    except (OSError, EOFError, ValueError, TypeError, pickle.UnpicklingError):
        pass
    if index is None:
        entries = {}
        with open(dirfile, encoding="Latin-1") as f:
            for line in f:
                key, pos_and_size = ast.literal_eval(line.rstrip())  # dbm.dumb's format: 'key', (pos, size)
                entries[key.encode("Latin-1").decode("utf-8")] = (int(pos_and_size[0]), int(pos_and_size[1]))
        index = _ShelfIndex.build(entries)
        tmp = saved.with_name(f"{saved.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                pickle.dump((stamp, index.state()), f, pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, saved)
        except OSError:
            tmp.unlink(missing_ok=True)
    _shelf_indexes[shelf] = (stamp, index)
    return dat, index


def use_fast_shelf(server: Server, shelf: Path) -> None:
    """Make `server.init(shelf_file=shelf)` load a dbm.dumb shelf through a pre-built index (no-op otherwise)."""
    found = _dumb_index(shelf)
    aspace = server.iserver.aspace
    if found is None or not hasattr(aspace, "load_aspace_shelf"):
        return
    dat, index = found

    def load(path: Path) -> None:
        aspace._nodes = _LazyNodes(_DumbShelf(dat, index))

    aspace.load_aspace_shelf = load


async def _end_time_task(server: Server) -> None:
    """End the server's once-a-second CurrentTime task now: asyncua's stop waits for it to wake up, which made
    every PLC-2 stop (plant down, a PLC-2 reload or restart) take up to a second."""
    iserver = server.iserver
    task = getattr(iserver, "time_task", None)
    if task is None or task.done():
        return
    iserver._time_task_stop = True
    task.cancel()
    await asyncio.wait([task], timeout=1.0)
    iserver.time_task = None


class OpcUaPlc:
    def __init__(
        self,
        spec: dict[str, Any],
        security: UaSecurityConfig,
        endpoint: str,
        pki_dir: Path,
        audit_path: Path,
        model_values: Callable[[], dict[str, Any]],
        model_write: Callable[[str, Any], None],
        model_call: Callable[[str], bool],
        fault_state: Callable[[], tuple[bool, float]],
        clock: Callable[[], float],
        on_event: Callable[..., None],
        bind: tuple[str, int] | None = None,
    ) -> None:
        self.spec = spec
        self.bind = bind  # where to listen when not at the endpoint's own address (a container behind a port)
        self.security = security
        self.endpoint = endpoint
        self.pki_dir = pki_dir
        self.audit = AuditLog(audit_path, clock)
        self._values = model_values
        self._write = model_write
        self._call = model_call
        self._fault_state = fault_state
        self._clock = clock
        self._on_event = on_event
        self.server: Server | None = None
        self.nodes: dict[str, tuple[Any, dict[str, Any]]] = {}  # source tag -> (node, var spec)
        self.writable: dict[ua.NodeId, dict[str, Any]] = {}
        self._last: dict[str, Any] = {}
        self.ruleset = RoleRuleset(security)

    async def start(self) -> None:
        install_guard()
        shelf = await ensure_shelf()
        server = Server(user_manager=ConfiguredUserManager(self.security, self.audit))
        use_fast_shelf(server, shelf)
        await server.init(shelf_file=shelf)
        server.set_endpoint(self.endpoint)
        if self.bind is not None:
            server.socket_address = self.bind
        server.set_server_name("aiotlab PLC-2")
        await server.set_application_uri(self.spec["application_uri"])
        server.set_security_policy([POLICIES[p] for p in self.security.policies], permission_ruleset=self.ruleset)
        server.set_identity_tokens([TOKENS[t] for t in self.security.identity_tokens])
        if self.security.needs_certificate:
            cert, key = await self._ensure_certificate()
            await server.load_certificate(str(cert))
            await server.load_private_key(str(key))
        if self.security.trust_list is not None:
            store = LoadedTrustStore(self.security.trusted_certificates)
            await store.load()
            validator = CertificateValidator(
                CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT, store
            )
            server.set_certificate_validator(validator)
        server.iserver.aiotlab_hooks = ServerHooks(
            self.security.allowed_channels(), self.audit, self._fault_state, self.security.reject_unlisted_channels
        )
        from asyncua.server.internal_session import InternalSession

        InternalSession.max_connections = self.security.max_sessions
        await self._build_address_space(server)
        self._wrap_writes(server)
        await server.start()
        self.server = server
        await self.sync()

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            await _end_time_task(server)
            try:
                await asyncio.wait_for(server.stop(), 5.0)
            except (TimeoutError, Exception) as exc:  # noqa: BLE001 - a failed stop must not block shutdown
                log.warning("PLC-2 stop: %r", exc)

    async def _ensure_certificate(self) -> tuple[Path, Path]:
        from asyncua.crypto.cert_gen import setup_self_signed_certificate
        from cryptography.x509.oid import ExtendedKeyUsageOID

        self.pki_dir.mkdir(parents=True, exist_ok=True)
        cert, key = self.pki_dir / "plc2-cert.der", self.pki_dir / "plc2-key.pem"
        host = self.endpoint.split("//", 1)[1].split(":", 1)[0]
        await setup_self_signed_certificate(
            key,
            cert,
            self.spec["application_uri"],
            host,
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            {"countryName": "TW", "organizationName": "aiotlab", "commonName": "PLC-2"},
        )
        os.chmod(key, 0o600)
        return cert, key

    async def _build_address_space(self, server: Server) -> None:
        ns = await server.register_namespace(self.spec["namespace"])
        plant = await server.nodes.objects.add_object(ua.NodeId("Plant", ns), ua.QualifiedName("Plant", ns))
        for obj in self.spec["objects"]:
            o = await plant.add_object(ua.NodeId(f"Plant.{obj['name']}", ns), ua.QualifiedName(obj["name"], ns))
            for var in obj["variables"]:
                nodeid = ua.NodeId(f"Plant.{obj['name']}.{var['name']}", ns)
                vtype = VARIANT[var["type"]]
                initial = PYTYPE[var["type"]](0)
                node = await o.add_variable(nodeid, ua.QualifiedName(var["name"], ns), ua.Variant(initial, vtype))
                await node.write_attribute(
                    ua.AttributeIds.Description,
                    ua.DataValue(ua.Variant(ua.LocalizedText(var["desc"]["en"]), ua.VariantType.LocalizedText)),
                )
                if var.get("unit"):
                    await node.add_property(
                        ua.NodeId(f"{nodeid.Identifier}.EngineeringUnits", ns),
                        ua.QualifiedName("EngineeringUnits", 0),
                        eu_information(var["unit"]),
                    )
                if "eu_range" in var:
                    lo, hi = var["eu_range"]
                    await node.add_property(
                        ua.NodeId(f"{nodeid.Identifier}.EURange", ns),
                        ua.QualifiedName("EURange", 0),
                        ua.Range(Low=float(lo), High=float(hi)),
                    )
                if var.get("writable"):
                    await node.set_writable(True)
                    self.writable[nodeid] = var
                self.nodes[var["source"]] = (node, var)
            for method in obj.get("methods", []):
                await o.add_method(
                    ua.NodeId(f"Plant.{obj['name']}.{method}", ns),
                    ua.QualifiedName(method, ns),
                    self._method(method),
                    [],
                    [ua.VariantType.Boolean],
                )

    def _method(self, name: str) -> Callable[..., Any]:
        async def call(parent: Any, *args: Any) -> list[ua.Variant]:
            ok = self._call(name)
            if inspect.isawaitable(ok):  # a device process asks its plant core
                ok = await ok
            self.audit.write(event="call", method=name, result=ok)
            self._on_event("opcua_call", method=name, result=ok)
            await self.sync()
            return [ua.Variant(ok, ua.VariantType.Boolean)]

        return call

    def _wrap_writes(self, server: Server) -> None:
        """Validate writes to process variables (type, EURange) and apply them to the process."""
        service = server.iserver.attribute_service
        original = service.write

        async def write(params: ua.WriteParameters, user: Any = None) -> list[ua.StatusCode]:
            results: list[ua.StatusCode] = []
            for wv in params.NodesToWrite:
                var = self.writable.get(wv.NodeId)
                single = ua.WriteParameters(NodesToWrite=[wv])
                if var is None or wv.AttributeId != ua.AttributeIds.Value:
                    results.extend(await original(single, user) if user is not None else await original(single))
                    continue
                status, value = _validate(var, wv.Value)
                if status == ua.StatusCodes.Good:
                    res = (await original(single, user))[0] if user is not None else (await original(single))[0]
                    status = res.value
                    if res.is_good():
                        self._write(var["source"], value)
                        self._last.pop(var["source"], None)
                uname = getattr(user, "name", None)
                self.audit.write(
                    event="write",
                    user=uname,
                    node=wv.NodeId.to_string(),
                    value=value,
                    result=ua.StatusCode(status).name,
                )
                self._on_event(
                    "opcua_write",
                    user=uname,
                    node=wv.NodeId.to_string(),
                    value=value,
                    result=ua.StatusCode(status).name,
                )
                results.append(ua.StatusCode(status))
            return results

        service.write = write  # type: ignore[method-assign]

    async def sync(self) -> None:
        """Push the model's current values to the address space (only what changed), stamped with plant time."""
        if self.server is None:
            return
        values = self._values()
        ts = _utc(self._clock())
        for source, (node, var) in self.nodes.items():
            v = values.get(source)
            if v is None or self._last.get(source) == v:
                continue
            self._last[source] = v
            dv = ua.DataValue(
                ua.Variant(PYTYPE[var["type"]](v), VARIANT[var["type"]]),
                StatusCode=ua.StatusCode(ua.StatusCodes.Good),
                SourceTimestamp=ts,
                ServerTimestamp=ts,
            )
            await self.server.write_attribute_value(node.nodeid, dv)


def _validate(var: dict[str, Any], dv: ua.DataValue) -> tuple[int, Any]:
    value = dv.Value.Value if dv.Value is not None else None
    want = PYTYPE[var["type"]]
    if want is float and isinstance(value, int | float) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
        return ua.StatusCodes.BadTypeMismatch, value
    if "eu_range" in var and want is float:
        lo, hi = var["eu_range"]
        if not (lo <= value <= hi) or value != value:
            return ua.StatusCodes.BadOutOfRange, value
    return ua.StatusCodes.Good, value


def _utc(t: float) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.UTC)
