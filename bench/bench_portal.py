"""Portal benchmark: N candidates polling their page every 5 s (their page, then the clock), as browsers do.

Method: a practice exam of N candidates (no plants: the candidate page reads the exam's state and kits only);
its signing key made as `exam up` would; the portal started with the real CLI (`aiotlab portal`, uvicorn, one
process); every candidate logs in once (argon2), then for DURATION s each polls GET /me and GET /api/me/clock
every 5 s (start times spread over the first 5 s), from when all have logged in (the login rush, 100
argon2 verifications on two cores, is reported apart). Latency is per request, client side (httpx, one connection
per candidate, all in one asyncio loop of this process). Memory: the portal process's PSS at the end.
Usage: python bench/bench_portal.py [N] [DURATION_S]   (default 100 60)
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import AIOTLAB, accepting, pss_kib, save  # noqa: E402


def quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def candidate(
    base: str, cid: str, password: str, start: asyncio.Event, until: list[float], lat: list[float],
    logins: list[float], errors: list[str],
) -> None:  # fmt: skip
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        s = time.perf_counter()
        r = await c.post("/login", data={"user": cid, "password": password})
        logins.append(time.perf_counter() - s)
        if r.status_code not in (200, 303):
            errors.append(f"{cid} login {r.status_code}")
            return
        await start.wait()  # polling starts once everyone is logged in: the steady state, not the login rush
        await poll(c, until, lat, errors, cid)


async def poll(c: httpx.AsyncClient, until: list[float], lat: list[float], errors: list[str], who: str) -> None:
    """A candidate's open page: GET /me and GET /api/me/clock every 5 s until until[0] (first after 0-5 s)."""
    await asyncio.sleep(random.uniform(0, 5))
    while time.monotonic() < until[0]:
        t0 = time.monotonic()
        for path in ("/me", "/api/me/clock"):
            s = time.perf_counter()
            try:
                r = await c.get(path)
            except httpx.HTTPError as exc:
                errors.append(f"{who} {path} {type(exc).__name__}")
                continue
            lat.append(time.perf_counter() - s)
            if r.status_code != 200:
                errors.append(f"{who} {path} {r.status_code}")
        await asyncio.sleep(max(0.0, 5.0 - (time.monotonic() - t0)))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    duration = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    base_dir = Path(tempfile.mkdtemp(prefix="aiotlab-bench-portal-"))
    env = {**os.environ, "AIOTLAB_HOME": str(base_dir / "home")}
    env.pop("AIOTLAB_EXAM_SECRET", None)
    (base_dir / "exam.secret").write_text("bench-portal\n")
    ids = [f"c{i:03d}" for i in range(n)]
    (base_dir / "roster.csv").write_text("id,name\n" + "".join(f"{c},考生{c}\n" for c in ids), encoding="utf-8")
    exam = base_dir / "exam.yaml"
    exam.write_text(
        "exam: bench-portal\nlabs: [data-acquisition]\nbackend: process\ntime_limit_min: 120\n"
        "secret: {file: exam.secret}\nroster: roster.csv\nout: out\n"
    )
    subprocess.run(
        [sys.executable, "-c", f"from aiotlab.exam import load_exam, ensure_keys; from pathlib import Path; e = load_exam(Path({str(exam)!r})); "
         "e.use_secret(); e.out.mkdir(parents=True, exist_ok=True); ensure_keys(e)"],
        check=True, env=env, timeout=60,
    )  # fmt: skip
    port = 18800
    proc = subprocess.Popen(
        [*AIOTLAB, "portal", str(exam), "--port", str(port)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        out = []
        assert proc.stdout is not None
        while not any("portal of" in ln for ln in out):
            out.append(proc.stdout.readline())
        logins = dict(re.findall(r"login issued \(shown once\): (\S+) / (\S+)", "".join(out)))
        deadline = time.monotonic() + 30
        while not accepting("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.1)
        lat: list[float] = []
        errors: list[str] = []
        t_login = time.monotonic()

        login_lat: list[float] = []

        async def run() -> None:
            start, until = asyncio.Event(), [0.0]
            tasks = [
                asyncio.create_task(
                    candidate(f"http://127.0.0.1:{port}", c, logins[c], start, until, lat, login_lat, errors)
                )
                for c in ids
            ]
            while len(login_lat) < n and not all(t.done() for t in tasks):
                await asyncio.sleep(0.1)
            until[0] = time.monotonic() + duration
            start.set()
            await asyncio.gather(*tasks)

        asyncio.run(run())
        result = {
            "candidates": n,
            "duration_s": duration,
            "requests": len(lat),
            "errors": len(errors),
            "error_examples": errors[:5],
            "latency_ms": {
                "p50": round(1000 * quantile(lat, 0.5), 1),
                "p95": round(1000 * quantile(lat, 0.95), 1),
                "p99": round(1000 * quantile(lat, 0.99), 1),
                "max": round(1000 * max(lat), 1) if lat else None,
            },
            "login_all_s": round(max(login_lat), 1) if login_lat else None,
            "login_ms_p50": round(1000 * quantile(login_lat, 0.5), 1),
            "wall_s": round(time.monotonic() - t_login, 1),
            "portal_pss_mib": round(pss_kib(proc.pid) / 1024, 1),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        shutil.rmtree(base_dir, ignore_errors=True)
    print(result)
    save("portal", result)


if __name__ == "__main__":
    main()
