"""A canary beside the candidate's solution: is the candidate's own environment starved while it is observed?

The grader's loop lag and the plant's physics stalls say whether the grader and the plant kept up; neither sees a
workstation container (or the candidate's process on this host) starved of CPU or stuck behind a disk that stalls
its commits. A round-7 outsider's careful collector lost points that way under a load of 12-15 on two cores, with
both of those measures quiet. The canary is a tiny process started where the solution runs, as the candidate would
run: it sleeps 0.1 s at a time and syncs 4 KiB to an unlinked file in the workspace once a second, and reports how
late it woke and how long a sync took. It ends by itself after the observation; it writes nothing that stays."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

SCRIPT = r"""
import os, sys, time
end = time.monotonic() + float(sys.argv[1])
name = ".aiotlab-canary-%d" % os.getpid()
try:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.unlink(name)
except OSError:
    fd = None
lag = sync = 0.0
last = time.monotonic()
next_sync = next_say = last
while last < end:
    time.sleep(0.1)
    now = time.monotonic()
    lag = max(lag, now - last - 0.1)
    last = now
    if fd is not None and now >= next_sync:
        os.write(fd, b"x" * 4096)
        os.fsync(fd)
        sync = max(sync, time.monotonic() - now)
        next_sync = now + 1.0
        last = time.monotonic()
    if now >= next_say:
        print("%.3f %.3f" % (lag, sync), flush=True)
        next_say = now + 1.0
print("%.3f %.3f end" % (lag, sync), flush=True)
"""


class Canary:
    def __init__(self, proc: asyncio.subprocess.Process | None, error: str | None = None) -> None:
        self.proc, self.error = proc, error
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read()) if proc and proc.stdout else None

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append(line.decode("ascii", "replace").strip())

    async def result(self, grace_s: float = 5.0) -> dict[str, Any]:
        """The worst wake-up lag and sync time it saw (s); `ran` False when it could not run (then no evidence)."""
        if self.proc is None:
            return {"ran": False, "error": self.error}
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), grace_s)
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()  # the docker exec client (exam mode): the canary ends by itself there
            await self.proc.wait()
        if self._reader:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 2.0)
        last = next((ln for ln in reversed(self.lines) if ln), "")
        try:
            lag, sync = (float(x) for x in last.split()[:2])
        except ValueError:
            return {"ran": False, "error": f"no report ({last[:80]!r})"}
        return {"ran": True, "max_wake_lag_s": lag, "max_sync_s": sync, "finished": last.endswith("end")}


async def start(duration_s: float, cwd: Path, env: dict[str, str], workstation: Any = None) -> Canary:
    """Start the canary where the solution runs: in the workstation as the candidate (exam mode), else a child of
    the grader in the workspace with the solution's base environment."""
    argv = ["python3" if workstation is not None else sys.executable, "-c", SCRIPT, f"{duration_s:.1f}"]
    if workstation is not None:
        argv = workstation.wrap(argv, cwd, env)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=None if workstation is not None else cwd,
            env=None if workstation is not None else env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError as exc:
        return Canary(None, str(exc))
    return Canary(proc)
