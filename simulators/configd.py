"""The candidate's device-configuration service in exam mode: apply, save, restart their own devices and read
their own device logs, from their workstation, never with the plant's control token.

    python -m aiotlab.simulators.configd      (the `configd` container of an exam-mode plant, docker-compose.yml)

The candidate edits their configs in ~/plant-config (their workstation's home, mounted here read-only at the same
path). On `reload DEVICE` this service reads the device's config there without following a link, validates it by
allow-list (simulators/config_guard.py), copies it and the files it names into the devices' own copy of the
candidate's home (which the devices see at /home/candidate, read-only, and nobody else writes), and asks the
plant's control plane to reload the device. A refused config changes nothing: the device keeps its last good
config, and the candidate gets the reason. Environment: AIOTLAB_SLOT, AIOTLAB_CONTROL_URL, AIOTLAB_TOKEN_FILE,
AIOTLAB_DEVHOME (default /devhome).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

from .config_guard import CONFIG_FILES, MAX_FILE_BYTES, MAX_FILES, MAX_TOTAL_BYTES, ConfigRefused, validate
from .control_client import ControlClient, ControlHttpError
from .jsonhttp import JsonHttpServer, Request, Response, Router, json_response

log = logging.getLogger("aiotlab.configd")
HOME = "/home/candidate"
CONFIG_FOLDER = os.environ.get("AIOTLAB_CONFIG_DIR", f"{HOME}/plant-config")
PORT = 8080
CONFIGD_HOST = 5  # its host number on the plant network (the candidate's side)
CONTROL_TIMEOUT_S = 60.0
_HOME_PATH = re.compile(r"/home/candidate/[A-Za-z0-9._/-]+")
_PART = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
LOGS = ("broker", "fw1", "plc2-audit", "hmi")
RESTARTABLE = ("broker", "fw1", "plc2", "sensors")


def _clip(text: str, limit: int = 1500) -> str:
    """A device's own words (Mosquitto's log lines) back to the candidate, bounded: enough to fix the config."""
    return text if len(text) <= limit else text[:limit] + f" ... ({len(text) - limit} more characters)"


class Refused(Exception):
    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def _parts(path: str) -> list[str]:
    """The components of a path in the candidate's home; refused unless every one is a plain name."""
    if not path.startswith(HOME + "/"):
        raise Refused(f"{path}: only files in your home ({HOME}) can be handed to a device")
    parts = path[len(HOME) + 1 :].rstrip("/").split("/")
    for part in parts:
        if not _PART.fullmatch(part):
            raise Refused(f"{path}: every part of the path must be a plain name (letters, digits, '.', '_', '-')")
    return parts


def read_home(path: str, limit: int = MAX_FILE_BYTES) -> tuple[bytes, int]:
    """A regular file of the candidate's home and its permission bits, opened component by component without
    following any link (a link to this service's token or another file of its own is refused, not read)."""
    parts = _parts(path)
    fd = os.open(HOME, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
        ffd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    except OSError as exc:
        raise Refused(f"{path}: cannot be read ({exc.strerror}; links are not followed)") from None
    finally:
        os.close(fd)
    with os.fdopen(ffd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"{path}: not a regular file")
        if st.st_size > limit:
            raise Refused(f"{path}: {st.st_size} bytes, at most {limit} are accepted")
        return f.read(limit + 1)[:limit], stat.S_IMODE(st.st_mode)


def list_home_dir(path: str) -> list[str]:
    """The regular files directly in a folder of the candidate's home (one level, no links)."""
    parts = _parts(path)
    fd = os.open(HOME, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts:
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
        names = []
        for name in sorted(os.listdir(fd)):
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and _PART.fullmatch(name):
                names.append(f"{path.rstrip('/')}/{name}")
        return names
    except OSError as exc:
        raise Refused(f"{path}: cannot be listed ({exc.strerror}; links are not followed)") from None
    finally:
        os.close(fd)


def gather(device: str, text: str) -> tuple[dict[str, tuple[bytes, int]], list[str]]:
    """The files a device's config needs besides itself: every file the config names in the candidate's home
    (a folder named, e.g. PLC-2's trust list, brings its files), and the non-config files of ~/plant-config
    (password and ACL files, certificates). Other devices' configs are never copied unvalidated. Also returns the
    folders the config names (other than ~/plant-config): their copies must hold exactly these files, so that a
    certificate the candidate removed from a trust list is no longer trusted."""
    wanted = set(_HOME_PATH.findall(text))
    for name in list_home_dir(CONFIG_FOLDER) if _is_dir(CONFIG_FOLDER) else []:
        wanted.add(name)
    # relative names (PLC-2's trust list, certificates) resolve against the config folder
    for rel in re.findall(r"(?m)^\s*(?:trust_list|certificate)\s*:\s*[\"']?([A-Za-z0-9._/-]+)", text):
        if not rel.startswith("/"):
            wanted.add(f"{CONFIG_FOLDER}/{rel}")
    # A device config (this device's or another's) is never copied as a file another config names: it reaches
    # the devices only through its own device's validation (a folder named in a comment once brought them all).
    configs = set(CONFIG_FILES.values())
    files: dict[str, tuple[bytes, int]] = {}
    for path in sorted(wanted):
        for one in list_home_dir(path) if _is_dir(path) else [path] if _exists(path) else []:
            if one.rsplit("/", 1)[-1] in configs:
                continue
            files[one] = read_home(one)
        if len(files) > MAX_FILES:
            raise Refused(f"more than {MAX_FILES} files named by the {device} config")
    total = sum(len(b) for b, _ in files.values())
    if total > MAX_TOTAL_BYTES:
        raise Refused(f"{total} bytes of files named by the {device} config; at most {MAX_TOTAL_BYTES}")
    folders = sorted(p.rstrip("/") for p in wanted if p.rstrip("/") != CONFIG_FOLDER and _is_dir(p))
    return files, folders


def _is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _exists(path: str) -> bool:
    try:
        os.lstat(path)
        return True
    except OSError:
        return False


class Installer:
    """Writes validated files into the devices' copy of the candidate's home; undoes a failed install."""

    def __init__(self, devhome: Path, owner: tuple[int, int] | None = None) -> None:
        """`owner`: the uid and gid the devices read their files as (the plant user)."""
        self.devhome = devhome
        self.owner = owner
        self.undo: list[tuple[Path, bytes | None, int]] = []

    def target(self, path: str) -> Path:
        return self.devhome.joinpath(*_parts(path))

    def put(self, path: str, data: bytes, mode: int) -> None:
        dest = self.target(path)
        dest.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        old = dest.read_bytes() if dest.is_file() else None
        self.undo.append((dest, old, stat.S_IMODE(dest.stat().st_mode) if old is not None else 0))
        tmp = dest.with_name(f".{dest.name}.new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode & 0o666 or 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode & 0o777)
        if self.owner is not None:
            os.chown(tmp, *self.owner)
        os.replace(tmp, dest)

    def prune(self, folder: str, keep: set[str]) -> list[str]:
        """Remove from the devices' copy of `folder` the regular files that are not in `keep` (paths as in the
        candidate's home): the copy mirrors the folder as it is now. Undone by rollback like a put."""
        target = self.target(folder)
        kept = {self.target(k) for k in keep}  # compared as installed paths: "a//b" and "a/./b" are one file
        removed: list[str] = []
        if not target.is_dir() or target.is_symlink():
            return removed
        for entry in sorted(target.iterdir()):
            rel = f"{folder}/{entry.name}"
            if entry in kept or entry.name.startswith(".") or entry.is_symlink() or not entry.is_file():
                continue
            self.undo.append((entry, entry.read_bytes(), stat.S_IMODE(entry.stat().st_mode)))
            entry.unlink()
            removed.append(rel)
        return removed

    def rollback(self) -> None:
        for dest, old, mode in reversed(self.undo):
            if old is None:
                dest.unlink(missing_ok=True)
            else:
                dest.write_bytes(old)
                os.chmod(dest, mode)
        self.undo.clear()


class ConfigService:
    def __init__(self, control_url: str, token: str, devhome: Path, own_hosts: dict[str, list[str]]) -> None:
        self.control_url, self.token, self.devhome, self.own_hosts = control_url, token, devhome, own_hosts
        self.lock = asyncio.Lock()  # one install at a time: an undo never interleaves with another install
        # the plant's own small JSON server and a urllib client: aiohttp cost this process ~11 MiB and 0.2 s
        self.client = ControlClient(control_url, token, CONTROL_TIMEOUT_S)
        r = self.router = Router()
        r.add_get("/v1/health", self.health)
        r.add_get("/v1/devices", self.devices)
        r.add_post("/v1/reload/{device}", self.reload)
        r.add_post("/v1/apply/{device}", self.apply)
        r.add_post("/v1/restart/{device}", self.restart)
        r.add_get("/v1/logs/{name}", self.logs)
        r.add_get("/v1/config/{name}", self.config)
        self.server = JsonHttpServer(r, self._errors, max_body=64 * 1024)

    async def _errors(self, request: Request, handler: Any) -> Response:
        try:
            return await handler(request)
        except Refused as exc:
            return json_response({"error": str(exc)}, status=exc.status)
        except ConfigRefused as exc:
            return json_response({"error": str(exc), "file": exc.file, "line": exc.line}, status=422)

    async def _control(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, body) of a control-plane call; run in a thread, so the service answers others meanwhile."""
        try:
            return 200, await asyncio.to_thread(self.client.call, method, path, body)
        except ControlHttpError as exc:
            return exc.status, exc.body
        except (OSError, TimeoutError, ValueError) as exc:
            raise Refused(f"the plant did not answer ({type(exc).__name__}); try again", 503) from None

    def _device(self, request: Request, allowed: tuple[str, ...] | dict[str, str]) -> str:
        device = request.match_info["device"]
        if device not in allowed:
            raise Refused(f"unknown device {device!r}; yours: {', '.join(allowed)}", 404)
        return device

    async def health(self, request: Request) -> Response:
        return json_response({"ok": True})

    async def devices(self, request: Request) -> Response:
        return json_response({"config_folder": CONFIG_FOLDER, "devices": CONFIG_FILES, "logs": list(LOGS)})

    async def _install(self, device: str, main_path: str, save: bool) -> dict[str, Any]:
        main, mode = read_home(main_path)
        text = main.decode("utf-8", "replace")
        validate(device, {CONFIG_FILES[device]: main}, config_dir=HOME, own_hosts=self.own_hosts.get(device, []))
        files, folders = gather(device, text)
        async with self.lock:
            inst = Installer(self.devhome, reader_ids())
            removed: list[str] = []
            try:
                for path, (data, fmode) in files.items():
                    inst.put(path, data, fmode)
                for folder in folders:
                    removed += inst.prune(folder, set(files))
                if save:
                    inst.put(f"{CONFIG_FOLDER}/{CONFIG_FILES[device]}", main, mode)
                    status, body = await self._control("POST", f"/v1/reload/{device}")
                else:
                    status, body = await self._control("POST", f"/v1/apply/{device}", {"text": text})
            except BaseException:
                inst.rollback()
                raise
            if status >= 400:
                inst.rollback()
                reason = str(body.get("error", body) if isinstance(body, dict) else body)
                raise Refused(f"{device} refused the config, kept its last good one: {_clip(reason)}")
        log.info("%s %s from %s (%d files)", "saved" if save else "applied", device, main_path, len(files))
        out = {**body, "device": device, "saved": save, "files": sorted(files)}
        if removed:
            out["removed"] = removed  # no longer in the candidate's folder, so no longer in the device's copy
        return out

    async def reload(self, request: Request) -> Response:
        device = self._device(request, CONFIG_FILES)
        return json_response(await self._install(device, f"{CONFIG_FOLDER}/{CONFIG_FILES[device]}", True))

    async def apply(self, request: Request) -> Response:
        device = self._device(request, CONFIG_FILES)
        try:
            path = str((await request.json())["path"])
        except (ValueError, KeyError, TypeError):
            raise Refused('give the config file as {"path": "/home/candidate/..."}', 400) from None
        return json_response(await self._install(device, path, False))

    async def restart(self, request: Request) -> Response:
        device = self._device(request, RESTARTABLE)
        status, body = await self._control("POST", f"/v1/restart/{device}")
        return json_response(body, status=status)

    async def logs(self, request: Request) -> Response:
        name = request.match_info["name"]
        if name not in LOGS:
            raise Refused(f"unknown log {name!r}; yours: {', '.join(LOGS)}", 404)
        lines = min(max(int(request.query.get("lines", "200") or 200), 1), 5000)
        status, body = await self._control("GET", f"/v1/logs/{name}?lines={lines}")
        return json_response(body, status=status)

    async def config(self, request: Request) -> Response:
        """The config a device runs with (saved): what the plant has, after validation."""
        name = request.match_info["name"]
        name = CONFIG_FILES.get(name, name)  # a device's name stands for its config file
        if name not in CONFIG_FILES.values():
            raise Refused(
                f"unknown config {name!r}; yours: " + ", ".join(f"{d} ({f})" for d, f in CONFIG_FILES.items()),
                404,
            )
        status, body = await self._control("GET", f"/v1/config/{name}")
        return json_response(body, status=status)


def reader_ids() -> tuple[int, int] | None:
    """Who owns the installed files: the plant user the devices run as in exam mode (Mosquitto included: started
    unprivileged it stays that user), so a device reads a key the candidate made 0600."""
    import pwd

    try:
        user = pwd.getpwnam("plant")
        return user.pw_uid, user.pw_gid
    except KeyError:
        return None


def own_hosts(slot: int) -> dict[str, list[str]]:
    from .addressing import Addresses, container_nets
    from .launch import load_spec

    spec = load_spec()["addressing"]
    h = Addresses.on_networks(slot, spec).hosts
    control = container_nets(slot)["control"]
    return {
        "broker": [h["broker"], f"{control}.{spec['hosts']['broker']}", "127.0.0.1"],
        "plc2": [h["plc2"], f"{control}.{spec['hosts']['plc2']}", "127.0.0.1"],
        "fw1": [h["plc1"], h["em1"]],
        "sensors": [],
    }


async def serve() -> None:
    slot = int(os.environ["AIOTLAB_SLOT"])
    token_file = Path(os.environ.get("AIOTLAB_TOKEN_FILE", "/run/aiotlab/control.token"))
    for _ in range(300):  # the core writes its token when it starts
        if token_file.is_file() and token_file.read_text().strip():
            break
        await asyncio.sleep(0.2)
    service = ConfigService(
        os.environ.get("AIOTLAB_CONTROL_URL", "http://core:9900"),
        token_file.read_text().strip(),
        Path(os.environ.get("AIOTLAB_DEVHOME", "/devhome")),
        own_hosts(slot),
    )
    from .addressing import container_nets

    await service.server.start(f"{container_nets(slot)['plant']}.{CONFIGD_HOST}", PORT)
    log.info("config service on :%d (slot %d)", PORT, slot)
    await asyncio.Event().wait()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve())
    except (KeyError, ValueError, OSError) as exc:
        print(f"configd failed to start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
