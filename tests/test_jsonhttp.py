"""The control plane's HTTP server (simulators/jsonhttp.py) over real sockets: what urllib, aiohttp and curl send."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import ClientSession

from aiotlab.simulators.jsonhttp import HttpError, JsonHttpServer, Request, Response, Router, json_response

TOKEN = "t0ken"


async def _echo(request: Request) -> Response:
    return json_response(
        {"method": request.method, "query": request.query, "info": request.match_info, "body": await request.json()}
    )


async def _boom(request: Request) -> Response:
    raise RuntimeError("handler bug")


async def _teapot(request: Request) -> Response:
    raise HttpError(418, "short and stout")


async def _auth(request: Request, handler: object) -> Response:
    if request.path != "/open" and request.headers.get("Authorization") != f"Bearer {TOKEN}":
        return json_response({"error": "token"}, 401)
    return await handler(request)  # type: ignore[operator]


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[tuple[str, int]]:
    r = Router()
    r.add_get("/open", _echo)
    r.add_get("/items/{name}", _echo)
    r.add_post("/items/{name}", _echo)
    r.add_delete("/items", _echo)
    r.add_get("/boom", _boom)
    r.add_get("/teapot", _teapot)
    srv = JsonHttpServer(r, _auth, max_body=1024)
    await srv.start("127.0.0.1", 0)
    assert srv.server is not None
    host, port = srv.server.sockets[0].getsockname()[:2]
    try:
        yield host, port
    finally:
        await asyncio.wait_for(srv.stop(), 3.0)  # kept-alive connections must not hold it up


def run(test: Callable[[tuple[str, int]], Awaitable[None]]) -> None:
    async def main() -> None:
        async with serving() as addr:
            await test(addr)

    asyncio.run(main())


async def _raw(addr: tuple[str, int], data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(*addr)
    writer.write(data)
    await writer.drain()
    out = await asyncio.wait_for(reader.read(), 5.0)  # the server closes when it is done
    writer.close()
    return out


def _responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        n = int(headers.get("content-length", 0))
        out.append((int(lines[0].split()[1]), headers, rest[:n]))
        raw = rest[n:]
    return out


def test_aiohttp_client_keep_alive_routes_and_errors() -> None:
    run(_aiohttp_client)


async def _aiohttp_client(server: tuple[str, int]) -> None:
    base = f"http://{server[0]}:{server[1]}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with ClientSession() as s:
        async with s.post(f"{base}/items/a%20b?x=1&x=2&y=", json={"v": 1}, headers=auth) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "application/json; charset=utf-8"
            assert await r.json() == {
                "method": "POST",
                "query": {"x": "1", "y": ""},
                "info": {"name": "a b"},
                "body": {"v": 1},
            }
        async with s.get(f"{base}/items/z", headers=auth) as r:
            assert (await r.json())["body"] is None
        async with s.get(f"{base}/items/z") as r:
            assert r.status == 401
        async with s.get(f"{base}/open") as r:
            assert r.status == 200
        async with s.get(f"{base}/nowhere", headers=auth) as r:
            assert r.status == 404 and "error" in await r.json()
        async with s.put(f"{base}/items/z", headers=auth) as r:
            assert r.status == 405
        async with s.get(f"{base}/boom", headers=auth) as r:
            assert r.status == 500
        async with s.get(f"{base}/teapot", headers=auth) as r:
            assert r.status == 418 and (await r.json()) == {"error": "short and stout"}
        async with s.post(f"{base}/items/z", data=b"x" * 2000, headers=auth) as r:
            assert r.status == 413
        async with s.head(f"{base}/open") as r:
            assert r.status == 200 and int(r.headers["Content-Length"]) > 0 and await r.read() == b""


def test_raw_requests() -> None:
    run(_raw_requests)


async def _raw_requests(server: tuple[str, int]) -> None:
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
    # two requests on one connection, the second asks to close
    out = _responses(
        await _raw(server, b"GET /open HTTP/1.1\r\nHost: x\r\n\r\nGET /open HTTP/1.1\r\nConnection: close\r\n\r\n")
    )
    assert [(s, h["connection"]) for s, h, _ in out] == [(200, "keep-alive"), (200, "close")]
    # HTTP/1.0 closes unless asked otherwise
    ((status, headers, _),) = _responses(await _raw(server, b"GET /open HTTP/1.0\r\n\r\n"))
    assert status == 200 and headers["connection"] == "close"
    # chunked body, with Expect: 100-continue answered first
    body = json.dumps({"k": "v"}).encode()
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    raw = await _raw(
        server,
        b"POST /items/c HTTP/1.1\r\n" + auth + b"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n"
        b"Connection: close\r\n\r\n" + chunked,
    )
    assert raw.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    ((status, _, payload),) = _responses(raw.split(b"\r\n\r\n", 1)[1])
    assert status == 200 and json.loads(payload)["body"] == {"k": "v"}
    # an unauthorised request's body is never read: answered, then the connection closes
    ((status, headers, _),) = _responses(
        await _raw(server, b"POST /items/c HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
    )
    assert status == 401 and headers["connection"] == "close"
    # malformed and oversized requests
    assert _responses(await _raw(server, b"NONSENSE\r\n\r\n"))[0][0] == 400
    assert _responses(await _raw(server, b"GET /open HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n"))[0][0] == 431
    big = b"POST /items/c HTTP/1.1\r\n" + auth + b"Content-Length: 999999\r\n\r\n"
    assert _responses(await _raw(server, big))[0][0] == 413


def test_stop_ends_kept_alive_connections() -> None:
    async def kept_alive(server: tuple[str, int]) -> None:
        reader, writer = await asyncio.open_connection(*server)
        writer.write(b"GET /open HTTP/1.1\r\n\r\n")
        await writer.drain()
        await reader.readuntil(b"}")  # answered; the connection stays open when `serving` stops the server

    run(kept_alive)


def test_urllib_client_against_a_plant_style_server() -> None:
    async def main() -> None:
        r = Router()
        r.add_post("/items/{name}", _echo)
        srv = JsonHttpServer(r, _auth)
        await srv.start("127.0.0.1", 0)
        assert srv.server is not None
        port = srv.server.sockets[0].getsockname()[1]
        from aiotlab.simulators.control_client import ControlClient, ControlError

        ok = await asyncio.to_thread(ControlClient(f"http://127.0.0.1:{port}", TOKEN).post, "/items/u", {"a": [1, 2]})
        assert ok["body"] == {"a": [1, 2]}
        with pytest.raises(ControlError, match="HTTP 401: token"):
            await asyncio.to_thread(ControlClient(f"http://127.0.0.1:{port}", "wrong").post, "/items/u", {})
        with socket.create_connection(("127.0.0.1", port), 2) as s:  # a client that connects and says nothing
            await srv.stop()
            s.settimeout(2)
            try:
                assert s.recv(10) == b""  # closed by stop
            except ConnectionResetError:
                pass  # or reset, when it was still in the listening socket's backlog

    asyncio.run(main())
