"""Portal benchmark in exam mode: 100 browser tabs polling their page every 5 s while 20 browser terminals are open
and in use.

Method: an exam-mode exam (Docker backend) of C candidates (default 4), brought up with the real CLI (`aiotlab exam
up`: a plant and a workstation each); the portal started with the real CLI (one uvicorn process); the instructor
starts the exam over the API. Then, together, for DURATION s:
- P polling sessions (default 100), each logged in as one of the C candidates (a candidate may have several tabs),
  GET /me and GET /api/me/clock every 5 s (start times spread over the first 5 s);
- T terminals (default 20, spread over the candidates), each a WebSocket to /me/terminal/<lab> as xterm.js opens
  it (session cookie, same Origin), a login shell in the candidate's workstation; every 2 s each types
  `echo $((N+K))z` and waits for the computed number to come back (the typed line is echoed as typed, so only the
  shell's answer matches): the terminal's keystroke-to-answer round trip.
Latency is client side (httpx and websockets, all in one asyncio loop of this process). Memory: the portal
process's PSS at the end (its docker exec sessions live in the Docker engine, which is reported apart).
Usage: python bench/bench_portal_terminals.py [POLLERS] [TERMINALS] [DURATION_S] [CANDIDATES]  (default 100 20 60 4)
Needs a running Docker engine and the images (`./run.sh test-docker` builds them).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_portal import poll, quantile  # noqa: E402
from common import AIOTLAB, accepting, pss_kib, save  # noqa: E402

LAB = "data-acquisition"


async def login(base: str, user: str, password: str) -> httpx.AsyncClient:
    c = httpx.AsyncClient(base_url=base, timeout=60)
    r = await c.post("/login", data={"user": user, "password": password})
    if r.status_code not in (200, 303):
        raise RuntimeError(f"{user} login {r.status_code}")
    return c


async def terminal(
    base: str, cookie: str, k: int, until: float, rtt: list[float], errors: list[str], opened: list[float]
) -> None:
    url = base.replace("http://", "ws://") + f"/me/terminal/{LAB}"
    s = time.perf_counter()
    try:
        async with connect(url, additional_headers={"Cookie": cookie, "Origin": base}, open_timeout=30) as ws:
            seen = ""

            async def wait_for(marker: str, timeout: float) -> bool:
                nonlocal seen
                end = time.monotonic() + timeout
                while marker not in seen:
                    left = end - time.monotonic()
                    if left <= 0:
                        return False
                    data = await asyncio.wait_for(ws.recv(), left)
                    seen += data.decode(errors="replace") if isinstance(data, bytes) else data
                return True

            await ws.send(json.dumps({"type": "resize", "cols": 120, "rows": 30}))
            await ws.send(json.dumps({"type": "input", "data": f"echo $((7000+{k}))ready\r"}))
            if not await wait_for(f"{7000 + k}ready", 30):
                errors.append(f"terminal {k}: no shell within 30 s")
                return
            opened.append(time.perf_counter() - s)
            i = 0
            while time.monotonic() < until:
                i += 1
                n = 100000 * (k + 1) + i
                seen = ""
                t0 = time.perf_counter()
                await ws.send(json.dumps({"type": "input", "data": f"echo $(({n}+0))z\r"}))
                if await wait_for(f"{n}z", 10):
                    rtt.append(time.perf_counter() - t0)
                else:
                    errors.append(f"terminal {k}: no answer within 10 s")
                await asyncio.sleep(max(0.0, 2.0 - (time.perf_counter() - t0)))
    except (OSError, TimeoutError, Exception) as exc:  # noqa: BLE001 - a benchmark reports, it does not stop
        errors.append(f"terminal {k}: {type(exc).__name__}: {exc}"[:200])


def engine_mib() -> float:
    """dockerd's and containerd's resident memory (the exec sessions' cost on the engine's side)."""
    total = 0
    for p in psutil.process_iter(["name", "memory_info"]):
        if p.info["name"] in ("dockerd", "containerd") and p.info["memory_info"]:
            total += p.info["memory_info"].rss
    return round(total / 2**20, 1)


def main() -> None:
    pollers = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    terminals = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    duration = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0
    n_cand = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    base_dir = Path(tempfile.mkdtemp(prefix="aiotlab-bench-terms-"))
    env = {**os.environ, "AIOTLAB_HOME": str(base_dir / "home"), "COLUMNS": "200"}
    env.pop("AIOTLAB_EXAM_SECRET", None)
    (base_dir / "exam.secret").write_text("bench-portal-terminals\n")
    ids = [f"bt{i:02d}" for i in range(n_cand)]
    (base_dir / "roster.csv").write_text("id,name\n" + "".join(f"{c},考生{c}\n" for c in ids), encoding="utf-8")
    exam = base_dir / "exam.yaml"
    exam.write_text(
        f"exam: bench-terms\nlabs: [{LAB}]\nbackend: docker\ntime_limit_min: 120\n"
        "workstation: {ssh_bind: 127.0.0.1}\nsecret: {file: exam.secret}\nroster: roster.csv\nout: out\n"
    )
    proc = None
    result: dict[str, Any] = {}
    try:
        t = time.monotonic()
        up = subprocess.run(
            [*AIOTLAB, "exam", "up", str(exam)], check=True, env=env, timeout=600, capture_output=True, text=True
        )
        # exam mode: a candidate's portal password is the workstation login `exam up` issued (shown once)
        issued = dict(re.findall(r"(bt\d+)\s*│[^│\n]*│\s*ssh -p \d+ candidate@\S+\s*│\s*([A-Za-z0-9]{14})", up.stdout))
        assert set(issued) == set(ids), up.stdout
        up_s = time.monotonic() - t
        port = 18801
        proc = subprocess.Popen(
            [*AIOTLAB, "portal", str(exam), "--port", str(port)], stdout=subprocess.PIPE, text=True, env=env
        )
        out: list[str] = []
        assert proc.stdout is not None
        while not any("portal of" in ln for ln in out):
            line = proc.stdout.readline()
            if not line:
                raise SystemExit("the portal ended:\n" + "".join(out))
            out.append(line)
        logins = {**dict(re.findall(r"login issued \(shown once\): (\S+) / (\S+)", "".join(out))), **issued}
        deadline = time.monotonic() + 30
        while not accepting("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.1)
        base = f"http://127.0.0.1:{port}"
        lat: list[float] = []
        rtt: list[float] = []
        opened: list[float] = []
        errors: list[str] = []

        async def run() -> None:
            inst = await login(base, "instructor", logins["instructor"])
            token = re.search(r'name="csrf" value="([^"]+)"', (await inst.get("/instructor")).text)
            assert token, "no CSRF token on /instructor"
            r = await inst.post("/api/instructor/action", json={"action": "start"}, headers={"X-CSRF-Token": token[1]})
            assert r.status_code == 200, r.text
            clients = [await login(base, ids[i % n_cand], logins[ids[i % n_cand]]) for i in range(pollers)]
            term_cookies = []
            for k in range(terminals):
                c = await login(base, ids[k % n_cand], logins[ids[k % n_cand]])
                term_cookies.append("; ".join(f"{n}={v}" for n, v in c.cookies.items()))
                await c.aclose()
            until = time.monotonic() + duration
            tasks = [poll(c, [until], lat, errors, f"tab {i}") for i, c in enumerate(clients)]
            tasks += [terminal(base, term_cookies[k], k, until, rtt, errors, opened) for k in range(terminals)]
            await asyncio.gather(*tasks)
            for c in [inst, *clients]:
                await c.aclose()

        asyncio.run(run())
        result = {
            "candidates": n_cand,
            "pollers": pollers,
            "terminals": terminals,
            "duration_s": duration,
            "exam_up_s": round(up_s, 1),
            "page_requests": len(lat),
            "page_latency_ms": {
                "p50": round(1000 * quantile(lat, 0.5), 1),
                "p95": round(1000 * quantile(lat, 0.95), 1),
                "p99": round(1000 * quantile(lat, 0.99), 1),
                "max": round(1000 * max(lat), 1) if lat else None,
            },
            "terminals_opened": len(opened),
            "terminal_open_s_max": round(max(opened), 2) if opened else None,
            "terminal_round_trips": len(rtt),
            "terminal_rtt_ms": {
                "p50": round(1000 * quantile(rtt, 0.5), 1),
                "p95": round(1000 * quantile(rtt, 0.95), 1),
                "max": round(1000 * max(rtt), 1) if rtt else None,
            },
            "errors": len(errors),
            "error_examples": errors[:5],
            "portal_pss_mib": round(pss_kib(proc.pid) / 1024, 1),
            "docker_engine_rss_mib": engine_mib(),
        }
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=15)
        subprocess.run([*AIOTLAB, "exam", "down", str(exam)], env=env, timeout=300, capture_output=True)
        shutil.rmtree(base_dir, ignore_errors=True)
    print(result)
    save("portal-terminals", result)


if __name__ == "__main__":
    main()
