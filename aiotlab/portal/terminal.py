"""The exam portal's browser terminal: a WebSocket bridged to a login shell in the candidate's workstation.

`bridge` runs one terminal session on a WebSocket the portal has already authenticated and accepted. It opens
`/bin/bash -l` in the workstation container with a TTY (docker exec through the Docker SDK's low-level client), as
the candidate's user in their work folder, and pumps bytes both ways until the browser goes away, the shell exits,
or `closed` is set (the candidate's deadline or submission: a notice is written to the terminal in zh-TW and
English and the socket is closed with 1008, policy violation). Whatever ends it, every process of the shell's
session in the container is ended before `bridge` returns: no shell outlives its terminal.

Protocol (the browser side is static/terminal.js):
  browser -> server, text frames of JSON: {"type": "input", "data": "..."} and {"type": "resize", "cols": N, "rows": M}
  server -> browser, binary frames: the shell's output, as bytes (UTF-8 from the shell; xterm.js decodes it)
  close codes: 1000 "shell exited"; 1008 "deadline" (closed was set); 1011 "error: ..." (the shell could not run)

Mounting it (the portal authenticates the candidate, checks the Origin and finds their workstation first):

    @app.websocket("/candidate/terminal")
    async def candidate_terminal(websocket: WebSocket) -> None:
        ...  # session cookie -> candidate, their workstation container, their deadline event
        await websocket.accept()
        await terminal.bridge(websocket, container, "candidate", "/home/candidate", deadline_event)

and the page loads ASSETS["xterm.css"], ASSETS["xterm.js"], ASSETS["addon-fit.js"], ASSETS["terminal.js"] (files
under assets_dir()) with `<div id="terminal" data-ws="/candidate/terminal"></div>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger("aiotlab.portal.terminal")

MAX_MESSAGE = 64 * 1024  # bytes of one browser message; a larger one is refused (a notice in the terminal)
INPUT_RATE = 64 * 1024  # bytes per second the browser may type or paste, on average ...
INPUT_BURST = 256 * 1024  # ... after a burst of this many; faster input waits (back-pressure, nothing dropped)
MESSAGE_COST = 64  # every message costs at least this much of the budget (a flood of tiny messages is bounded too)
READ_CHUNK = 64 * 1024
MAX_COLS, MAX_ROWS = 1000, 500

DOCKER_TIMEOUT = 15.0  # the Docker client's own timeout on every API call (bounds the threads it runs in)
CALL_TIMEOUT = 20.0  # the bridge's wait for one Docker call (create, start, inspect)
RESIZE_TIMEOUT = 5.0
START_TIMEOUT = 10.0  # from exec start to the shell's first line (its PID)
INPUT_TIMEOUT = 10.0  # one write to the shell; a shell that takes none for this long loses that input
OUTPUT_TIMEOUT = 30.0  # one frame to the browser; a browser that takes none for this long is dropped
CLOSE_TIMEOUT = 1.0  # the notice and the close frame at the deadline (the terminal closes within 2 s)
KILL_TIMEOUT = 10.0

CLOSE_EXITED = (1000, "shell exited")
CLOSE_DEADLINE = (1008, "deadline")
CLOSE_ERROR = 1011

DEADLINE_NOTICE = (
    "\r\n\x1b[1;33m"
    "考試時間已到（或已交卷），終端機已關閉，之後的操作不列入評分。\r\n"
    "Time is up (or your work was submitted): the terminal is closed and nothing done after this is graded."
    "\x1b[0m\r\n"
)
TOO_LARGE_NOTICE = "\r\n\x1b[33m[輸入過大（超過 64 KiB），已忽略 / input larger than 64 KiB ignored]\x1b[0m\r\n"
STALLED_NOTICE = (
    "\r\n\x1b[33m[程式未讀取輸入，部分輸入已捨棄 / the program is not reading its input: some input was dropped]"
    "\x1b[0m\r\n"
)

# The shell is started through sh, which first tells its PID (in the container) on a line of its own: the bridge
# reads that line (the browser never sees it) and ends that process's whole session when the terminal ends.
PID_MARK = b"AIOTLAB-TERMINAL-PID "
START_SCRIPT = 'printf "AIOTLAB-TERMINAL-PID %s\\n" "$$"; exec "$@"'

# Run as root in the container: end every process of a session (SIGHUP, then SIGKILL to what is left after 1 s),
# found by /proc/*/stat's session field; zombies are not counted (their parent reaps them, nothing to kill).
KILL_SCRIPT = r"""
sid="$1"
case "$sid" in ''|*[!0-9]*) exit 2 ;; esac
members() {
  for d in /proc/[0-9]*; do
    line=""
    read -r line 2>/dev/null <"$d/stat" || continue
    rest="${line##*) }"
    set -- $rest
    [ "$1" != Z ] && [ "$4" = "$sid" ] && echo "${d#/proc/}"
  done
}
pids=$(members)
[ -z "$pids" ] && exit 0
kill -HUP $pids 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do
  sleep 0.1
  pids=$(members)
  [ -z "$pids" ] && exit 0
done
kill -KILL $pids 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do
  sleep 0.1
  pids=$(members)
  [ -z "$pids" ] && exit 0
done
echo "left: $pids"
exit 1
"""

ASSETS = {
    "xterm.js": "node_modules/@xterm/xterm/lib/xterm.js",
    "xterm.css": "node_modules/@xterm/xterm/css/xterm.css",
    "addon-fit.js": "node_modules/@xterm/addon-fit/lib/addon-fit.js",
    "terminal.js": "terminal.js",
}


def assets_dir() -> Path:
    """The folder of the browser terminal's files: terminal.js, and node_modules/ with xterm.js and its fit addon
    (installed by `./run.sh setup`: npm ci --prefix aiotlab/portal/static). ASSETS names the files to serve."""
    return Path(__file__).resolve().parent / "static"


def asset_path(name: str) -> Path:
    """The file for one of ASSETS' names (KeyError for any other: serve only these, not the whole folder)."""
    return assets_dir() / ASSETS[name]


_client_lock = threading.Lock()
_client: Any = None


def docker_api() -> Any:
    """The process's low-level Docker client, made on first use (DOCKER_HOST, or the local socket); blocking."""
    global _client
    with _client_lock:
        if _client is None:
            import docker

            _client = docker.from_env(timeout=int(DOCKER_TIMEOUT)).api
        return _client


T = TypeVar("T")


async def _call(fn: Callable[..., T], *args: Any, timeout: float = CALL_TIMEOUT, **kwargs: Any) -> T:
    """A blocking Docker call in a thread, waited for at most `timeout` (the client's own timeout ends the thread)."""
    return await asyncio.wait_for(asyncio.to_thread(fn, *args, **kwargs), timeout)


class _Session:
    """One exec in the workstation: its id, its raw socket, and the shell's PID in the container (its session)."""

    def __init__(self, api: Any, container: str) -> None:
        self.api = api
        self.container = container
        self.exec_id: str | None = None
        self.io: Any = None
        self.sock: socket.socket | None = None
        self.pid: int | None = None
        self.pending = b""  # output read with the PID line, for the browser
        self.size: tuple[int, int] | None = None

    async def start(self, user: str, workdir: str, shell: str) -> None:
        """Create and start the exec, then read the shell's PID line (output after it is kept in `pending`)."""
        created = await _call(
            self.api.exec_create,
            self.container,
            ["/bin/sh", "-c", START_SCRIPT, "aiotlab-terminal", shell, "-l"],
            stdin=True,
            tty=True,
            user=user,
            workdir=workdir,
            environment={"TERM": "xterm-256color", "COLORTERM": "truecolor"},
        )
        self.exec_id = created["Id"]
        self.io = await _call(self.api.exec_start, self.exec_id, tty=True, socket=True)
        raw = getattr(self.io, "_sock", self.io)
        if not isinstance(raw, socket.socket) or isinstance(raw, ssl.SSLSocket):
            raise RuntimeError("the browser terminal needs the Docker engine on a local or plain TCP socket")
        raw.setblocking(False)
        self.sock = raw
        await asyncio.wait_for(self._read_pid(), START_TIMEOUT)

    async def _read_pid(self) -> None:
        loop = asyncio.get_running_loop()
        buf = b""
        while b"\n" not in buf and len(buf) < 256:
            data = await loop.sock_recv(self.sock, READ_CHUNK)
            if not data:
                break
            buf += data
        line, sep, rest = buf.partition(b"\n")
        digits = line.removeprefix(PID_MARK).strip()
        if sep and line.startswith(PID_MARK) and digits.isdigit():
            self.pid = int(digits)
            self.pending = rest
        else:  # the shell did not start (a missing work folder, say): the browser sees what the engine said
            self.pending = buf

    async def resize(self, cols: int, rows: int) -> None:
        if self.exec_id is None or self.size == (cols, rows):
            return
        self.size = (cols, rows)
        await _call(self.api.exec_resize, self.exec_id, height=rows, width=cols, timeout=RESIZE_TIMEOUT)

    async def end(self) -> None:
        """End every process of the shell's session in the container, then close the connection. Never raises."""
        try:
            if self.pid is not None:
                await self._kill_session(self.pid)
            elif self.exec_id is not None:
                info = await _call(self.api.exec_inspect, self.exec_id)
                if info.get("Running"):
                    # It never told its PID (it did not print it in time): on the engine's host, the exec's
                    # host PID gives its PID in the container.
                    pid = _container_pid(info.get("Pid"))
                    if pid is None:
                        log.warning("terminal in %s: exec %s left running (PID unknown)", self.container, self.exec_id)
                    else:
                        await self._kill_session(pid)
        except Exception as exc:  # the bridge's end must not raise: logged
            log.warning("terminal in %s: ending the shell failed: %r", self.container, exc)
        finally:
            if self.sock is not None:
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_RDWR)
            for closable in (self.io, self.sock):
                if closable is not None:
                    with contextlib.suppress(OSError):
                        closable.close()

    async def _kill_session(self, sid: int) -> None:
        killer = await _call(
            self.api.exec_create, self.container, ["/bin/sh", "-c", KILL_SCRIPT, "aiotlab-kill", str(sid)], user="root"
        )
        out = await _call(self.api.exec_start, killer["Id"], timeout=KILL_TIMEOUT)
        code = (await _call(self.api.exec_inspect, killer["Id"])).get("ExitCode")
        if code != 0:
            text = out.decode(errors="replace").strip() if isinstance(out, bytes) else str(out)
            log.warning("terminal in %s: session %s not ended (exit %s) %s", self.container, sid, code, text)


def _container_pid(host_pid: Any) -> int | None:
    """A process's PID in its own namespace (the last of /proc/PID/status' NSpid), where /proc shows it."""
    if not isinstance(host_pid, int) or host_pid <= 0:
        return None
    try:
        for line in Path(f"/proc/{host_pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (OSError, ValueError):
        pass
    return None


class _Budget:
    """Input budget: INPUT_RATE bytes/s after a burst of INPUT_BURST; an overdraft is waited off, not dropped."""

    def __init__(self, rate: float = INPUT_RATE, burst: float = INPUT_BURST) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.at = time.monotonic()

    async def take(self, n: int) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate) - n
        self.at = now
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / self.rate)


class _Sender:
    """Binary frames to the browser, one at a time (the output pump and the notices share the socket)."""

    def __init__(self, websocket: Any) -> None:
        self.websocket = websocket
        self.lock = asyncio.Lock()

    async def send(self, data: bytes, timeout: float = OUTPUT_TIMEOUT) -> None:
        async with asyncio.timeout(timeout), self.lock:
            await self.websocket.send_bytes(data)


async def _pump_output(session: _Session, sender: _Sender) -> None:
    """The shell's output to the browser until the shell's stream ends (returns) or the browser fails (raises)."""
    assert session.sock is not None
    loop = asyncio.get_running_loop()
    if session.pending:
        await sender.send(session.pending)
    while data := await loop.sock_recv(session.sock, READ_CHUNK):
        await sender.send(data)


async def _pump_input(websocket: Any, session: _Session, sender: _Sender) -> None:
    """The browser's messages to the shell until the browser disconnects (returns)."""
    assert session.sock is not None
    loop = asyncio.get_running_loop()
    budget = _Budget()
    while True:
        # No timeout on an idle terminal (a candidate may think for an hour): the deadline, the browser's
        # disconnect and the server's WebSocket pings end this wait.
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            continue  # binary frames carry nothing from the browser
        size = len(text.encode("utf-8", "replace"))
        if size > MAX_MESSAGE:
            await sender.send(TOO_LARGE_NOTICE.encode())
            continue
        await budget.take(max(size, MESSAGE_COST))
        try:
            msg = json.loads(text)
        except ValueError:
            continue
        if not isinstance(msg, dict):
            continue
        if msg.get("type") == "input" and isinstance(msg.get("data"), str):
            try:
                await asyncio.wait_for(
                    loop.sock_sendall(session.sock, msg["data"].encode("utf-8", "replace")), INPUT_TIMEOUT
                )
            except TimeoutError:
                await sender.send(STALLED_NOTICE.encode())
        elif msg.get("type") == "resize":
            cols, rows = msg.get("cols"), msg.get("rows")
            if type(cols) is int and type(rows) is int:
                try:
                    await session.resize(min(max(cols, 1), MAX_COLS), min(max(rows, 1), MAX_ROWS))
                except Exception as exc:  # a failed resize leaves the size as it was
                    log.info("terminal in %s: resize failed: %r", session.container, exc)


async def _close(websocket: Any, sender: _Sender, code: int, reason: str, notice: str | None = None) -> None:
    """The notice (if any) and the close frame, each within CLOSE_TIMEOUT; nothing if the browser is gone."""
    from starlette.websockets import WebSocketState

    if websocket.client_state == WebSocketState.DISCONNECTED or websocket.application_state != WebSocketState.CONNECTED:
        return
    if notice:
        with contextlib.suppress(Exception):
            await sender.send(notice.encode(), timeout=CLOSE_TIMEOUT)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code, reason), CLOSE_TIMEOUT)


async def _cancel(*tasks: asyncio.Task[Any]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def bridge(
    websocket: Any,
    container: str,
    user: str,
    workdir: str,
    closed: asyncio.Event,
    *,
    shell: str = "/bin/bash",
    notice: str = DEADLINE_NOTICE,
    api: Any = None,
) -> None:
    """Bridge an accepted WebSocket to a login shell (`shell -l`, with a TTY) in `container`, as `user` in `workdir`.

    Returns when the browser disconnects, the shell exits (close 1000 "shell exited") or `closed` is set (`notice`
    written to the terminal, close 1008 "deadline", within 2 s); the shell's session in the container is ended
    before it returns. A shell that cannot start closes with 1011. `api` is a docker.APIClient (default: one from
    the environment, shared by the process)."""
    sender = _Sender(websocket)
    if closed.is_set():
        await _close(websocket, sender, *CLOSE_DEADLINE, notice)
        return
    session: _Session | None = None
    tasks: list[asyncio.Task[Any]] = []
    try:
        session = _Session(api if api is not None else await _call(docker_api), container)
        starting = asyncio.create_task(session.start(user, workdir, shell))
        deadline = asyncio.create_task(closed.wait())
        tasks = [starting, deadline]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if deadline.done():
            await _close(websocket, sender, *CLOSE_DEADLINE, notice)
            with contextlib.suppress(Exception):
                await starting  # bounded by its own timeouts: the shell it started is ended below
            return
        if starting.exception() is not None:
            raise starting.exception()  # type: ignore[misc]
        output = asyncio.create_task(_pump_output(session, sender))
        incoming = asyncio.create_task(_pump_input(websocket, session, sender))
        tasks = [deadline, output, incoming]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        await _cancel(*pending)
        if deadline in done:
            await _close(websocket, sender, *CLOSE_DEADLINE, notice)
        elif output in done and output.exception() is None:
            await _close(websocket, sender, *CLOSE_EXITED)
        elif output in done:
            log.info("terminal in %s: browser dropped: %r", container, output.exception())
        elif incoming.exception() is not None:
            log.info("terminal in %s: input failed: %r", container, incoming.exception())
    except Exception as exc:
        log.warning("terminal in %s: %r", container, exc)
        await _close(websocket, sender, CLOSE_ERROR, "error: the shell could not run")
    finally:
        await _cancel(*tasks)
        if session is not None:
            await session.end()
