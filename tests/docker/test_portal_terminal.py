"""The portal's browser terminal on a real Docker engine: a throwaway workstation (aiotlab-workstation:latest, no
exam), the bridge alone on a WebSocket route of a tiny FastAPI app served by uvicorn, driven by a `websockets`
client as xterm.js drives it: a login shell as `candidate` in the work folder, resize, and the ends of a session
(deadline, shell exit, browser gone), each leaving no process of the shell's session in the container."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

pytestmark = pytest.mark.docker

docker = pytest.importorskip("docker")
uvicorn = pytest.importorskip("uvicorn")
fastapi = pytest.importorskip("fastapi")
ws_client = pytest.importorskip("websockets.sync.client")
ws_exceptions = pytest.importorskip("websockets.exceptions")

from aiotlab.portal.terminal import bridge  # noqa: E402

IMAGE = "aiotlab-workstation:latest"
WORKDIR = "/home/candidate/data-acquisition"


@pytest.fixture(scope="module")
def workstation() -> Iterator[Any]:
    client = docker.from_env()
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{IMAGE} not built (./run.sh test-docker builds it)")
    container = client.containers.run(
        IMAGE,
        entrypoint=["sleep", "infinity"],
        name=f"aiotlab-term-test-{uuid.uuid4().hex[:8]}",
        detach=True,
        init=True,  # reaps what the killed shells leave
        network_disabled=True,
        labels={"aiotlab.test": "portal-terminal"},
    )
    try:
        code, out = container.exec_run(
            ["install", "-d", "-o", "candidate", "-g", "candidate", "/home/candidate", WORKDIR], user="root"
        )
        assert code == 0, out
        yield container
    finally:
        container.remove(force=True)


@dataclass
class Server:
    port: int
    loop: asyncio.AbstractEventLoop | None = None
    closed: asyncio.Event | None = None
    ended: threading.Event = field(default_factory=threading.Event)

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/terminal"

    def set_closed(self) -> None:
        assert self.loop is not None and self.closed is not None
        self.loop.call_soon_threadsafe(self.closed.set)


@pytest.fixture(scope="module")
def server(workstation: Any) -> Iterator[Server]:
    """The bridge alone, on a WebSocket route, served by uvicorn on 127.0.0.1 on a free port in a thread."""
    app = fastapi.FastAPI()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = Server(port=sock.getsockname()[1])

    @app.websocket("/terminal")
    async def terminal(websocket: fastapi.WebSocket) -> None:
        await websocket.accept()
        srv.loop, srv.closed = asyncio.get_running_loop(), asyncio.Event()
        srv.ended.clear()
        try:
            await bridge(websocket, workstation.name, "candidate", WORKDIR, srv.closed)
        finally:
            srv.ended.set()

    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", ws="websockets"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(100):
        if uv.started:
            break
        time.sleep(0.05)
    assert uv.started, "uvicorn did not start"
    try:
        yield srv
    finally:
        uv.should_exit = True
        thread.join(10)
        sock.close()


class Term:
    """The browser's side: JSON messages in, the shell's bytes out."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.text = ""

    def type(self, data: str) -> None:
        self.ws.send(json.dumps({"type": "input", "data": data}))

    def resize(self, cols: int, rows: int) -> None:
        self.ws.send(json.dumps({"type": "resize", "cols": cols, "rows": rows}))

    def plain(self) -> str:
        """What the terminal shows, less control sequences (bash's bracketed paste mode) and carriage returns."""
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.text).replace("\r", "")

    def expect(self, pattern: str, timeout: float = 10) -> re.Match[str]:
        """A regular expression over plain(), waited for."""
        end = time.monotonic() + timeout
        while not (m := re.search(pattern, self.plain())):
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{pattern!r} not seen in {self.text[-2000:]!r}")
            try:
                frame = self.ws.recv(timeout=left)
            except TimeoutError:
                continue
            assert isinstance(frame, bytes), f"text frame from the server: {frame!r}"
            self.text += frame.decode(errors="replace")
        return m

    def closed(self, timeout: float) -> Any:
        """Read until the server closes; returns the close frame it sent."""
        end = time.monotonic() + timeout
        with contextlib.suppress(ws_exceptions.ConnectionClosed):
            while time.monotonic() < end:
                with contextlib.suppress(TimeoutError):
                    frame = self.ws.recv(timeout=max(end - time.monotonic(), 0.01))
                    self.text += frame.decode(errors="replace") if isinstance(frame, bytes) else frame
            raise AssertionError(f"the socket was not closed within {timeout} s")
        return self.ws.protocol.close_rcvd


def session_left(container: Any, sid: int) -> list[str]:
    """Processes of a session still in the container (zombies are not processes that run)."""
    code, out = container.exec_run(["ps", "-eo", "pid=,sid=,stat=,args="], user="root")
    assert code == 0, out
    left = []
    for line in out.decode().splitlines():
        pid, psid, stat, args = line.split(None, 3)
        if int(psid) == sid and not stat.startswith("Z"):
            left.append(line)
    return left


def start_shell(term: Term) -> int:
    """A job in the background (the session's end must take it too); returns the shell's PID (its session)."""
    term.type("sleep 4242 & echo PID=$$\r")
    return int(term.expect(r"\nPID=(\d+)\n").group(1))


def test_login_shell_resize_and_deadline(server: Server, workstation: Any) -> None:
    with ws_client.connect(server.url(), open_timeout=10, close_timeout=2) as ws:
        term = Term(ws)
        term.type("id -un; pwd; echo hi\r")
        term.expect(rf"\ncandidate\n{re.escape(WORKDIR)}\nhi\n")
        assert "AIOTLAB-TERMINAL-PID" not in term.text

        term.resize(132, 43)
        term.type("stty size\r")
        term.expect(r"\n43 132\n")

        sid = start_shell(term)
        assert session_left(workstation, sid), "the shell's session runs"

        started = time.monotonic()
        server.set_closed()
        close = term.closed(timeout=2.0)
        took = time.monotonic() - started
    assert took < 2.0
    assert close is not None and close.code == 1008 and close.reason == "deadline"
    assert "Time is up" in term.text and "考試時間已到" in term.text
    assert server.ended.wait(15), "the bridge did not return"
    assert session_left(workstation, sid) == []


def test_shell_exit_closes_normally(server: Server, workstation: Any) -> None:
    with ws_client.connect(server.url(), open_timeout=10, close_timeout=2) as ws:
        term = Term(ws)
        sid = start_shell(term)
        term.type("exit\r")
        close = term.closed(timeout=10)
    assert close is not None and (close.code, close.reason) == (1000, "shell exited")
    assert server.ended.wait(15), "the bridge did not return"
    assert session_left(workstation, sid) == []  # the background job went with it


def test_browser_gone_ends_the_shell(server: Server, workstation: Any) -> None:
    with ws_client.connect(server.url(), open_timeout=10, close_timeout=2) as ws:
        term = Term(ws)
        sid = start_shell(term)
        ws.send("not json")  # ignored, as are oversized messages (a notice) and binary frames
        ws.send(b"\x00")
        term.type("x" * (64 * 1024 + 1))
        term.expect(r"64 KiB")
        term.type("echo still-here\r")
        term.expect(r"\nstill-here\n")
    assert server.ended.wait(15), "the bridge did not return"
    assert session_left(workstation, sid) == []


def test_deadline_while_the_shell_starts(server: Server, workstation: Any) -> None:
    """The deadline as the terminal opens: closed at once, and the shell that was starting is ended too."""
    with ws_client.connect(server.url(), open_timeout=10, close_timeout=2) as ws:
        term = Term(ws)
        for _ in range(100):
            if server.closed is not None and not server.ended.is_set():
                break
            time.sleep(0.01)
        started = time.monotonic()
        server.set_closed()
        close = term.closed(timeout=2.0)
        assert time.monotonic() - started < 2.0
    assert close is not None and (close.code, close.reason) == (1008, "deadline")
    assert server.ended.wait(15), "the bridge did not return"
    code, out = workstation.exec_run(["ps", "-u", "candidate", "-o", "pid=,stat=,args="], user="root")
    assert [line for line in out.decode().splitlines() if " Z" not in line] == []
