"""The portal's durable state: the exam clock, each candidate's extension, submission and grading, results
release; and the audit log of instructor actions. One JSON file written atomically (0600) and a JSON-lines log:
a restarted portal continues the same exam."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NOT_STARTED, RUNNING, PAUSED, ENDED = "not_started", "running", "paused", "ended"


def write_private(path: Path, text: str) -> None:
    """Write atomically, owner-only, never through a link."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


@dataclass
class Store:
    """Everything the portal decides, kept in <out>/portal/state.json; times are epoch seconds (the server's)."""

    folder: Path
    time_limit_min: float
    data: dict[str, Any] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    @classmethod
    def open(cls, folder: Path, time_limit_min: float) -> Store:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = cls(folder, time_limit_min)
        try:
            store.data = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            store.data = {"status": NOT_STARTED, "started_at": None, "paused_at": None, "paused_s": 0.0}
        store.data.setdefault("candidates", {})
        store.data.setdefault("released", False)
        return store

    def save(self) -> None:
        with self.lock:
            write_private(self.folder / "state.json", json.dumps(self.data, indent=2, sort_keys=True))

    def audit(self, who: str, action: str, **detail: Any) -> dict[str, Any]:
        """Append one instructor action to the audit log (who, what, when) and return it."""
        entry = {"ts": time.time(), "who": who, "action": action, **detail}
        with self.lock:
            fd = os.open(self.folder / "audit.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        return entry

    def audit_log(self, limit: int = 500) -> list[dict[str, Any]]:
        try:
            lines = (self.folder / "audit.jsonl").read_text(encoding="utf-8").splitlines()[-limit:]
        except FileNotFoundError:
            return []
        return [json.loads(ln) for ln in lines if ln.strip()]

    # -- the clock -----------------------------------------------------------------------------------------
    @property
    def status(self) -> str:
        return str(self.data["status"])

    def candidate(self, cid: str) -> dict[str, Any]:
        with self.lock:
            return self.data["candidates"].setdefault(
                cid, {"extension_min": 0.0, "submitted_at": None, "frozen": None, "grading": {}, "commands": {}}
            )

    def paused_s(self, now: float | None = None) -> float:
        """Time the exam stood paused, the current pause included."""
        now = time.time() if now is None else now
        extra = now - self.data["paused_at"] if self.status == PAUSED and self.data["paused_at"] else 0.0
        return float(self.data["paused_s"]) + extra

    def deadline(self, cid: str, now: float | None = None) -> float | None:
        """When this candidate's time ends (None before the exam starts): start + limit + their extension + pauses."""
        if self.data["started_at"] is None:
            return None
        c = self.candidate(cid)
        return (
            float(self.data["started_at"])
            + 60.0 * (self.time_limit_min + float(c["extension_min"]))
            + self.paused_s(now)
        )

    def seconds_left(self, cid: str, now: float | None = None) -> float | None:
        now = time.time() if now is None else now
        d = self.deadline(cid, now)
        if d is None:
            return None
        if self.status == ENDED or self.candidate(cid)["submitted_at"]:
            return 0.0
        return max(0.0, d - now)

    def may_work(self, cid: str, now: float | None = None) -> bool:
        """The candidate's workstation is theirs: the exam runs (not paused), their time is not up, not submitted."""
        left = self.seconds_left(cid, now)
        return self.status == RUNNING and left is not None and left > 0

    def start(self) -> None:
        with self.lock:
            if self.status != NOT_STARTED:
                raise ValueError(f"the exam is {self.status}, not waiting to start")
            self.data.update(status=RUNNING, started_at=time.time())
            self.save()

    def pause(self) -> None:
        with self.lock:
            if self.status != RUNNING:
                raise ValueError(f"the exam is {self.status}: only a running exam can be paused")
            self.data.update(status=PAUSED, paused_at=time.time())
            self.save()

    def resume(self) -> None:
        with self.lock:
            if self.status != PAUSED:
                raise ValueError(f"the exam is {self.status}, not paused")
            self.data["paused_s"] = self.paused_s()
            self.data.update(status=RUNNING, paused_at=None)
            self.save()

    def end(self) -> None:
        with self.lock:
            if self.status == ENDED:
                raise ValueError("the exam has already ended")
            if self.status == PAUSED:
                self.data["paused_s"] = self.paused_s()
            self.data.update(status=ENDED, paused_at=None, ended_at=time.time())
            self.save()

    def extend(self, cids: list[str], minutes: float) -> None:
        if not 0 < minutes <= 600:
            raise ValueError("an extension is between 0 and 600 minutes")
        with self.lock:
            for cid in cids:
                c = self.candidate(cid)
                if c["submitted_at"]:
                    raise ValueError(f"{cid} has submitted: their work is frozen")
                c["extension_min"] = float(c["extension_min"]) + minutes
            self.save()
