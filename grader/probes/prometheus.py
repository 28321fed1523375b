"""Prometheus probes: scrape an exporter, run promtool, and run a real Prometheus server (Debian's 2.42).

Everything here is bounded: a scrape reads at most MAX_SCRAPE_BYTES within its timeout, promtool runs under a
time limit, and the server is started and stopped by the grader (never left behind: `stop` kills its process
group). A missing binary is a clear error naming the package, not a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

MAX_SCRAPE_BYTES = 4 * 1024 * 1024  # a plant exporter's page is a few kB; anything this big is hostile or broken
SCRAPE_TIMEOUT_S = 3.0
PROMTOOL_TIMEOUT_S = 30.0
SERVER_READY_TIMEOUT_S = 30.0
API_TIMEOUT_S = 5.0


class ToolMissing(RuntimeError):
    """promtool or prometheus is not installed."""


def binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None)
    if path is None:
        raise ToolMissing(f"{name} is not installed: install Debian's 'prometheus' package (./run.sh setup does)")
    return path


@dataclass
class Scrape:
    url: str
    t: float  # when the response was complete (wall clock)
    status: int | None = None
    text: str = ""
    error: str | None = None
    content_type: str = ""
    elapsed_s: float = 0.0
    # what went wrong, for the checks to word in each language: "refused", "unreachable", "timeout", "too-large",
    # "disconnected", "other" (None when a response came); error is the plain English account, error_detail the
    # HTTP library's own text (evidence only: it speaks of "ssl:default" even for plain HTTP)
    error_kind: str | None = None
    error_detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200

    def describe(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "status": self.status,
            "error": self.error,
            **({"error_detail": self.error_detail} if self.error_detail else {}),
            "bytes": len(self.text.encode()),
            "content_type": self.content_type,
            "elapsed_s": round(self.elapsed_s, 3),
        }


async def scrape(url: str, timeout: float = SCRAPE_TIMEOUT_S, max_bytes: int = MAX_SCRAPE_BYTES) -> Scrape:
    """GET an exporter's page the way Prometheus would (same Accept header), bounded in time and size."""
    t0 = time.time()
    out = Scrape(url, t0)
    headers = {"Accept": "text/plain;version=0.0.4;q=1,*/*;q=0.1"}
    try:
        async with asyncio.timeout(timeout):
            async with aiohttp.ClientSession() as session:
                async with session.get(url, headers=headers) as resp:
                    out.status, out.content_type = resp.status, resp.headers.get("Content-Type", "")
                    body = bytearray()
                    async for chunk in resp.content.iter_chunked(65536):
                        body += chunk
                        if len(body) > max_bytes:
                            out.error, out.error_kind = f"response larger than {max_bytes} bytes", "too-large"
                            break
                    out.text = body[:max_bytes].decode("utf-8", "replace")
    except TimeoutError:
        out.error, out.error_kind = f"no complete response within {timeout:.0f} s", "timeout"
    except (aiohttp.ClientError, OSError) as exc:
        out.error, out.error_kind = connection_problem(exc)
        out.error_detail = f"{type(exc).__name__}: {exc}"
    out.t = time.time()
    out.elapsed_s = out.t - t0
    return out


def connection_problem(exc: BaseException) -> tuple[str, str]:
    """(plain English account, kind) of a failed HTTP request, without the library's wording."""
    os_error = getattr(exc, "os_error", None) if isinstance(exc, aiohttp.ClientConnectorError) else exc
    if isinstance(os_error, ConnectionRefusedError):
        return "connection refused", "refused"
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(os_error, OSError):
        why = os.strerror(os_error.errno) if os_error.errno else str(os_error)
        return f"cannot connect ({why})", "unreachable"
    if isinstance(exc, aiohttp.ServerDisconnectedError | ConnectionResetError):
        return "the connection was closed before a complete response", "disconnected"
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return f"malformed HTTP response ({type(exc).__name__}: {exc})", "other"
    if isinstance(exc, OSError) and exc.errno:
        return f"connection error ({os.strerror(exc.errno)})", "other"
    return f"{type(exc).__name__}: {exc}", "other"


@dataclass
class ToolRun:
    argv: list[str]
    rc: int | None
    output: str
    error: str | None = None

    def describe(self, limit: int = 4000) -> dict[str, Any]:
        return {"argv": self.argv, "exit": self.rc, "output": self.output[-limit:], "error": self.error}


async def promtool(args: list[str], stdin: str | None = None, cwd: Path | None = None) -> ToolRun:
    """Run promtool (bounded); its stdout and stderr together, as an assessor would read them."""
    argv = [binary("promtool"), *args]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin is not None else None), PROMTOOL_TIMEOUT_S
        )
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return ToolRun(argv, None, "", f"promtool did not finish within {PROMTOOL_TIMEOUT_S:.0f} s")
    return ToolRun(argv, proc.returncode, out.decode("utf-8", "replace"))


@dataclass
class PrometheusServer:
    """A real Prometheus, started by the grader with a generated config, in a private data directory."""

    listen: str  # host:port
    workdir: Path
    proc: asyncio.subprocess.Process | None = None
    started: float = 0.0
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    @classmethod
    async def start(cls, config_text: str, listen: str, files: dict[str, str] | None = None) -> PrometheusServer:
        """Write the config (and files it names, e.g. rules) to a fresh directory, start, wait until ready."""
        workdir = Path(tempfile.mkdtemp(prefix="aiotlab-prom-"))
        for name, text in (files or {}).items():
            (workdir / name).write_text(text, encoding="utf-8")
        (workdir / "prometheus.yml").write_text(config_text, encoding="utf-8")
        server = cls(listen, workdir)
        argv = [
            binary("prometheus"),
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address={listen}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=info",
        ]
        with server.log_path.open("ab") as log:
            server.proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=workdir,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        server.started = time.time()
        try:
            await server.wait_ready()
        except Exception:
            await server.stop()
            raise
        return server

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.returncode is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with asyncio.timeout(1.0), aiohttp.ClientSession() as s, s.get(f"{self.url}/-/ready") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"prometheus not ready within {SERVER_READY_TIMEOUT_S:.0f} s: {self.log_tail()}")

    def log_tail(self, lines: int = 12) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def api(self, path: str, **params: Any) -> Any:
        """GET /api/v1/<path>; the `data` member, or RuntimeError carrying Prometheus's own error text."""
        async with asyncio.timeout(API_TIMEOUT_S), aiohttp.ClientSession() as s:
            async with s.get(f"{self.url}/api/v1/{path}", params={k: str(v) for k, v in params.items()}) as r:
                body = json.loads(await r.text())
        if body.get("status") != "success":
            raise RuntimeError(f"{body.get('errorType', 'error')}: {body.get('error', body)}")
        return body["data"]

    async def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query (at a past time if given): the result vector, a scalar as a one-element list."""
        data = await self.api("query", query=expr, **({"time": f"{at:.3f}"} if at is not None else {}))
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        if data["resultType"] == "matrix":
            return [{"metric": s["metric"], "value": s["values"][-1]} for s in data["result"] if s["values"]]
        return data["result"]

    async def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """A range query: [{"metric": labels, "values": [[t, "v"], ...]}, ...] (a matrix)."""
        data = await self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}")
        return data["result"] if data["resultType"] == "matrix" else []

    async def alerts(self) -> list[dict[str, Any]]:
        return (await self.api("alerts"))["alerts"]

    async def own_metrics(self) -> dict[str, float]:
        """This server's own /metrics, summed by metric name: how the grader's Prometheus itself kept up (missed
        rule evaluations, failed scrapes); an empty dict when it cannot be read."""
        s = await scrape(f"{self.url}/metrics")
        out: dict[str, float] = {}
        if not s.ok:
            return out
        from prometheus_client.parser import text_string_to_metric_families

        try:
            for fam in text_string_to_metric_families(s.text):
                for sample in fam.samples:
                    out[sample.name] = out.get(sample.name, 0.0) + float(sample.value)
        except ValueError:
            return {}
        return out

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                await asyncio.wait_for(self.proc.wait(), 5.0)
        shutil.rmtree(self.workdir, ignore_errors=True)
