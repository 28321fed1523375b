"""A small HTTP/1.1 server for JSON APIs on asyncio streams (the plant's control plane).

The control plane used aiohttp's web server. Importing aiohttp cost every plant process about 11 MiB and 0.2 s of
its start (aiohttp also builds two TLS client contexts with the system CA store at import), for a loopback API
of twenty routes, so it is served by this instead: request line and headers (bounded), Content-Length or chunked
bodies up to a limit (413 above it), `Expect: 100-continue`, keep-alive, routes with `{name}` segments, 404/405,
HEAD for GET routes. Handlers get a Request and return a Response; a handler that raises HttpError answers with
its status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

log = logging.getLogger(__name__)

REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
}
MAX_HEAD = 32 * 1024  # request line and headers together
HEAD_TIMEOUT_S = 30.0  # a started request must send its head and body within this
KEEPALIVE_S = 75.0  # an idle kept-alive connection is closed after this (as aiohttp does)


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"


def json_response(data: Any, status: int = 200, dumps: Callable[[Any], str] = json.dumps) -> Response:
    return Response(status, dumps(data).encode())


class Headers(dict[str, str]):
    """Header fields by lower-cased name; looked up case-insensitively."""

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name.lower() if isinstance(name, str) else name)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Headers
    match_info: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    body_read: bool = False

    async def json(self) -> Any:
        """The body as JSON (json.JSONDecodeError when it is not)."""
        return json.loads(self.body or b"null")

    async def text(self) -> str:
        return self.body.decode("utf-8", "replace")


Handler = Callable[[Request], Awaitable[Response]]
Middleware = Callable[[Request, Handler], Awaitable[Response]]


class Router:
    def __init__(self) -> None:
        self.routes: list[tuple[str, list[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method.upper(), pattern.strip("/").split("/"), handler))

    def add_get(self, pattern: str, handler: Handler) -> None:
        self.add("GET", pattern, handler)

    def add_post(self, pattern: str, handler: Handler) -> None:
        self.add("POST", pattern, handler)

    def add_delete(self, pattern: str, handler: Handler) -> None:
        self.add("DELETE", pattern, handler)

    def resolve(self, method: str, raw_path: str) -> tuple[Handler, dict[str, str]]:
        parts = raw_path.strip("/").split("/")
        path_found = False
        for m, pattern, handler in self.routes:
            if len(pattern) != len(parts):
                continue
            info: dict[str, str] = {}
            for want, got in zip(pattern, parts, strict=True):
                if want.startswith("{") and want.endswith("}"):
                    if not got:
                        break
                    info[want[1:-1]] = unquote(got)
                elif want != unquote(got):
                    break
            else:
                path_found = True
                if m == method or (m == "GET" and method == "HEAD"):
                    return handler, info
        if path_found:
            raise HttpError(405, f"method {method} not allowed here")
        raise HttpError(404, "not found")


class JsonHttpServer:
    """Serve `router` on host:port; `middleware` (if any) wraps every routed request, auth included."""

    def __init__(self, router: Router, middleware: Middleware | None = None, max_body: int = 64 * 1024) -> None:
        self.router = router
        self.middleware = middleware
        self.max_body = max_body
        self.server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self._connection, host, port, reuse_address=True, limit=MAX_HEAD)

    async def stop(self) -> None:
        if self.server is None:
            return
        self.server.close()
        tasks = [t for t in self._connections if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 5.0)
        self.server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            keep_alive, idle_s = True, HEAD_TIMEOUT_S
            while keep_alive:
                try:
                    async with asyncio.timeout(idle_s):
                        line = await reader.readline()
                except TimeoutError:
                    return
                if not line:
                    return
                if line in (b"\r\n", b"\n"):  # tolerated between requests
                    continue
                idle_s = KEEPALIVE_S
                try:
                    response, keep_alive, head_only = await self._request(line, reader, writer)
                except HttpError as exc:
                    response, keep_alive, head_only = _error(exc.status, exc.message), False, False
                writer.write(_head(response, keep_alive) + (b"" if head_only else response.body))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _request(
        self, line: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[Response, bool, bool]:
        """Read one request after its first line, run it; (response, keep the connection, HEAD)."""
        try:
            method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ")
        except ValueError:
            raise HttpError(400, "malformed request line") from None
        if not version.startswith("HTTP/1."):
            raise HttpError(400, "HTTP/1.x only")
        try:
            async with asyncio.timeout(HEAD_TIMEOUT_S):
                headers = await _read_headers(reader, len(line))
        except TimeoutError:
            raise HttpError(408, "request head not received in time") from None
        except ValueError:  # a line over the stream's limit
            raise HttpError(431, "request head too large") from None
        conn = headers.get("connection", "").lower()
        keep_alive = "keep-alive" in conn if version == "HTTP/1.0" else "close" not in conn
        raw_path, _, qs = target.partition("?")
        request = Request(method.upper(), unquote(raw_path), dict(reversed(parse_qsl(qs, True))), headers)
        lost: list[BaseException] = []

        async def routed(req: Request) -> Response:
            handler, req.match_info = self.router.resolve(req.method, raw_path)
            try:
                async with asyncio.timeout(HEAD_TIMEOUT_S):
                    req.body = await self._body(reader, writer, headers)
            except TimeoutError:
                raise HttpError(408, "request body not received in time") from None
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                lost.append(exc)
                raise HttpError(400, "connection lost while reading the body") from None
            except ValueError:
                raise HttpError(400, "malformed chunked body") from None
            req.body_read = True
            return await handler(req)

        try:
            if self.middleware is not None:
                response = await self.middleware(request, routed)
            else:
                response = await routed(request)
        except HttpError as exc:
            response = _error(exc.status, exc.message)
        except Exception:  # noqa: BLE001 - a failing handler answers 500, the server goes on
            log.exception("%s %s failed", request.method, request.path)
            response = _error(500, "internal error")
        if lost:
            raise lost[0]
        declared = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
        if declared and not request.body_read:
            keep_alive = False  # an unread body would be taken for the next request
        return response, keep_alive, request.method == "HEAD"

    async def _body(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: Headers) -> bytes:
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = 0
        if not chunked:
            text = headers.get("content-length", "0")
            if not text.isdigit():
                raise HttpError(400, "bad Content-Length")
            length = int(text)
            if length > self.max_body:
                raise HttpError(413, f"body larger than {self.max_body} bytes")
            if length == 0:
                return b""
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if not chunked:
            return await reader.readexactly(length)
        out = bytearray()
        while True:
            size = int((await reader.readline()).split(b";", 1)[0].strip(), 16)
            if size == 0:
                while await reader.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields are ignored
                return bytes(out)
            if len(out) + size > self.max_body:
                raise HttpError(413, f"body larger than {self.max_body} bytes")
            out += await reader.readexactly(size)
            await reader.readexactly(2)


async def _read_headers(reader: asyncio.StreamReader, size: int) -> Headers:
    headers = Headers()
    while True:
        line = await reader.readline()
        size += len(line)
        if size > MAX_HEAD:
            raise HttpError(431, "request head too large")
        if line in (b"\r\n", b"\n"):
            return headers
        if not line:
            raise asyncio.IncompleteReadError(line, None)
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise HttpError(400, "malformed header line")
        headers[name.strip().lower()] = value.strip()


def _error(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


def _head(response: Response, keep_alive: bool) -> bytes:
    return (
        f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Status')}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    ).encode("latin-1")
