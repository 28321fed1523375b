"""What the portal does to candidates' work: freeze it (at submit, at the deadline, at the end of the exam) and
grade it, a few at a time. Freezing ends the candidate's processes and terminals, locks their workstation login,
and snapshots their home (a tar.gz whose SHA-256 is recorded): what is graded is what they left."""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import tarfile
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console

from aiotlab.exam import Exam

from .store import ENDED, RUNNING, Store

log = logging.getLogger("aiotlab.portal")
WATCH_EVERY_S = 0.5  # a deadline is acted on within this (the issue asks for 2 s)


class Jobs:
    def __init__(self, exam: Exam, store: Store, concurrency: int = 2, on_change: Callable[[], None] | None = None):
        self.exam, self.store = exam, store
        self.slots = asyncio.Semaphore(concurrency)
        self.closed: dict[str, asyncio.Event] = {c: asyncio.Event() for c in exam.candidates}
        self.on_change = on_change or (lambda: None)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.queue_length = 0
        self.durations: list[float] = []
        for c in exam.candidates:  # a restarted portal keeps frozen candidates frozen
            if store.candidate(c).get("frozen"):
                self.closed[c].set()

    # -- freezing ----------------------------------------------------------------------------------------------
    async def freeze(self, cid: str, reason: str, who: str) -> dict[str, Any]:
        """End the candidate's work now: terminals closed, processes ended, login locked, home snapshotted; then
        their labs are queued for grading with the commands they named at submit (none: the running system)."""
        c = self.store.candidate(cid)
        if c.get("frozen"):
            return c["frozen"]
        self.closed[cid].set()
        frozen: dict[str, Any] = {"at": time.time(), "reason": reason, "by": who}
        with self.store.lock:
            c["frozen"] = frozen
            if reason == "submitted":
                c["submitted_at"] = frozen["at"]
            self.store.save()
        frozen["workstation"] = await asyncio.to_thread(self._lock_workstation, cid, True)
        frozen["snapshot"] = await asyncio.to_thread(self._snapshot, cid)
        with self.store.lock:
            self.store.save()
        self.store.audit(who, "freeze", candidate=cid, reason=reason, snapshot=frozen["snapshot"])
        for lab in self.exam.labs:
            self.queue(cid, lab, c.get("commands", {}).get(lab), who)
        self.on_change()
        return frozen

    async def unfreeze(self, cid: str, who: str) -> None:
        """An extension after the deadline gives the workstation back (never after a submit)."""
        c = self.store.candidate(cid)
        if not c.get("frozen") or c.get("submitted_at"):
            return
        with self.store.lock:
            c["frozen"] = None
            self.store.save()
        self.closed[cid] = asyncio.Event()
        await asyncio.to_thread(self._lock_workstation, cid, False)
        self.store.audit(who, "unfreeze", candidate=cid)
        self.on_change()

    def _lock_workstation(self, cid: str, lock: bool) -> str:
        from aiotlab.exam import plant_backend
        from aiotlab.simulators.backends import BackendError

        backend = plant_backend(self.exam)
        if not backend.isolated:
            return "practice mode: no workstation to lock"
        done = []
        for plant in dict.fromkeys(self.exam.plant_of(cid, lab) for lab in self.exam.labs):
            try:
                if lock:  # no new login, and nothing of theirs goes on running
                    backend.workstation_exec(plant, ["passwd", "-l", "candidate"], user="root")
                    survivors = self._end_processes(backend, plant)
                    if survivors:
                        return f"{plant}: processes of the candidate still running after the freeze: {survivors}"
                else:
                    backend.workstation_exec(plant, ["passwd", "-u", "candidate"], user="root")
                done.append(plant)
            except (BackendError, OSError) as exc:
                return f"{plant}: {exc}"
        return ("locked: " if lock else "unlocked: ") + ", ".join(done)

    @staticmethod
    def _end_processes(backend: Any, plant: str, within_s: float = 5.0) -> str:
        """SIGKILL every process of the candidate until none is left: one pkill reads the process table once, so
        a process forked meanwhile (a loop in the background) would outlive it. Returns what survived, if any."""
        end = time.monotonic() + within_s
        while True:
            backend.workstation_exec(plant, ["pkill", "-KILL", "-u", "candidate"], user="root")
            left = backend.workstation_exec(plant, ["pgrep", "-a", "-u", "candidate"], user="root")
            if left.returncode == 1:  # pgrep: no process matched
                return ""
            if time.monotonic() > end:
                return left.stdout.decode(errors="replace").strip()[:300]
            time.sleep(0.05)

    def _snapshot(self, cid: str) -> dict[str, Any]:
        """tar.gz of the candidate's home as it was at the freeze (links kept as links, never followed)."""
        home = self.exam.home_of(cid)
        folder = self.store.folder / "snapshots"
        folder.mkdir(exist_ok=True, mode=0o700)
        path = folder / f"{cid}-{time.strftime('%Y%m%dT%H%M%S')}.tar.gz"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            if home.is_dir():
                tar.add(home, arcname=cid, recursive=True)  # tarfile stores symlinks as links (dereference=False)
        data = buf.getvalue()
        path.write_bytes(data)
        path.chmod(0o600)
        return {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}

    # -- grading -----------------------------------------------------------------------------------------------
    def queue(self, cid: str, lab_id: str, command: str | None, who: str) -> None:
        g = self.store.candidate(cid).setdefault("grading", {})
        g[lab_id] = {"status": "queued", "queued_at": time.time(), "command": command}
        self.store.save()
        self.queue_length += 1
        task = asyncio.get_running_loop().create_task(self._grade(cid, lab_id, command, who))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        self.on_change()

    async def _grade(self, cid: str, lab_id: str, command: str | None, who: str) -> None:
        from aiotlab.grader import signing
        from aiotlab.grader.cohort import grade_cohort
        from aiotlab.labs.loader import load_lab

        entry = self.store.candidate(cid)["grading"][lab_id]
        async with self.slots:
            self.queue_length -= 1
            entry.update(status="grading", started_at=time.time())
            self.store.save()
            self.on_change()
            t0 = time.monotonic()
            said = io.StringIO()  # what the CLI would have printed: the reason when there is no report
            try:
                docs = await grade_cohort(
                    load_lab(lab_id),
                    [cid],
                    command,
                    {cid: self.exam.workspace(cid, lab_id)},
                    self.exam.reports,
                    "zh-TW",
                    Console(file=said, width=200),
                    exam=self.exam.id,
                    signer=signing.load_signer(self.exam.private_key),
                    plants={cid: self.exam.plant_of(cid, lab_id)},
                    restart_plants=False,
                    names={r["id"]: r.get("name", "") for r in self.exam.roster},
                )
                if docs:
                    d = docs[0]
                    entry.update(
                        status="graded",
                        attempt=d["manifest"].get("attempt"),
                        points=d["score"]["points"],
                        max_points=d["score"]["max_points"],
                    )
                else:
                    lines = [ln.strip() for ln in said.getvalue().splitlines() if ln.strip()]
                    entry.update(status="not graded", error=next((ln for ln in lines if cid in ln), lines[-1:]))
            except Exception as exc:  # noqa: BLE001 - one grading's failure is shown, the portal goes on
                log.exception("grading %s/%s", cid, lab_id)
                entry.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            self.durations.append(time.monotonic() - t0)
            entry["finished_at"] = time.time()
            self.store.save()
            self.store.audit(who, "graded", candidate=cid, lab=lab_id, result=entry["status"])
            self.on_change()

    # -- the clock -------------------------------------------------------------------------------------------
    async def watch_deadlines(self) -> None:
        """Freeze each candidate whose time is up (or everyone when the exam ends), within WATCH_EVERY_S."""
        while True:
            now = time.time()
            if self.store.status in (RUNNING, ENDED):
                for cid in self.exam.candidates:
                    c = self.store.candidate(cid)
                    if c.get("frozen"):
                        continue
                    if self.store.status == ENDED or (self.store.seconds_left(cid, now) or 0) <= 0:
                        try:
                            await self.freeze(cid, "ended" if self.store.status == ENDED else "deadline", "clock")
                        except Exception:  # noqa: BLE001 - the watcher must survive one candidate's failure
                            log.exception("freezing %s", cid)
            await asyncio.sleep(WATCH_EVERY_S)
