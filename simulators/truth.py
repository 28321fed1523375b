"""Ground truth: every tag's value at every physics tick, every sensor message, every write and fault.

Stored in SQLite in the plant's state directory so it survives the plant and can be replayed by the grader.
Rows are written in batches once a second; a tick's tag values are packed as float64 (booleans as 0/1).

A sensor message is an emission once it is handed to the broker. Its PUBACK confirms it; a publish interrupted
before that (broker restarted, node restarted) may or may not have been delivered: the node records it all the same,
with an UNCONFIRMED event naming it (node, seq, emission time), and readers get `confirmed: false` for it. Graders
never count an unconfirmed emission as missing and accept it when it was forwarded.
"""

from __future__ import annotations

import json
import sqlite3
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS samples (t REAL PRIMARY KEY, vals BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS emissions (node TEXT NOT NULL, seq INTEGER NOT NULL, t REAL NOT NULL,
                                      topic TEXT NOT NULL, payload TEXT NOT NULL, PRIMARY KEY (node, seq));
CREATE TABLE IF NOT EXISTS events (t REAL NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_t ON events (t);
CREATE INDEX IF NOT EXISTS emissions_t ON emissions (t);
"""

UNCONFIRMED = "sensor_unconfirmed"  # event kind: detail {node, seq, emitted_t} names an unconfirmed emission


class TruthRecorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        # Appends only (time-ordered keys): a small page cache serves them. SQLite's default of 2 MB filled up in a
        # plant's first ten minutes or so, the only growth of its memory after start (+1.6 MiB at 8 minutes).
        self.db.execute("PRAGMA cache_size=-512")
        self.db.executescript(SCHEMA)
        self.tags: list[str] | None = None
        self._fmt: struct.Struct | None = None
        self._samples: list[tuple[float, bytes]] = []
        self._emissions: list[tuple[str, int, float, str, str]] = []
        self._events: list[tuple[float, str, str]] = []
        row = self.db.execute("SELECT value FROM meta WHERE key='tags'").fetchone()
        if row:
            self._set_tags(json.loads(row[0]))

    def _set_tags(self, tags: list[str]) -> None:
        self.tags = tags
        self._fmt = struct.Struct(f"<{len(tags)}d")

    def set_meta(self, **items: Any) -> None:
        for k, v in items.items():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, json.dumps(v)))

    def sample(self, t: float, values: dict[str, Any]) -> None:
        if self.tags is None:
            self._set_tags(sorted(values))
            self.set_meta(tags=self.tags)
        assert self._fmt is not None and self.tags is not None
        self._samples.append((t, self._fmt.pack(*(float(values.get(k, float("nan"))) for k in self.tags))))

    def emission(self, node: str, seq: int, t: float, topic: str, payload: str) -> None:
        self._emissions.append((node, seq, t, topic, payload))

    def event(self, t: float, kind: str, **detail: Any) -> None:
        self._events.append((t, kind, json.dumps(detail, default=str)))

    def flush(self) -> None:
        if not (self._samples or self._emissions or self._events):
            return
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO samples VALUES (?, ?)", self._samples)
            self.db.executemany("INSERT OR REPLACE INTO emissions VALUES (?, ?, ?, ?, ?)", self._emissions)
            self.db.executemany("INSERT INTO events VALUES (?, ?, ?)", self._events)
        self._samples.clear()
        self._emissions.clear()
        self._events.clear()

    def close(self) -> None:
        self.flush()
        self.db.close()


class TruthReader:
    """Read-only access for the control plane and the grader."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        row = self.db.execute("SELECT value FROM meta WHERE key='tags'").fetchone()
        self.tags: list[str] = json.loads(row[0]) if row else []
        self._fmt = struct.Struct(f"<{len(self.tags)}d")

    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM meta")}

    def series(self, tags: Iterable[str], start: float, end: float, limit: int = 200_000) -> dict[str, Any]:
        tags = list(tags)
        unknown = [t for t in tags if t not in self.tags]
        if unknown:
            raise KeyError(f"unknown tags: {', '.join(unknown)}")
        idx = [self.tags.index(t) for t in tags]
        rows = self.db.execute(
            "SELECT t, vals FROM samples WHERE t >= ? AND t <= ? ORDER BY t LIMIT ?", (start, end, limit)
        ).fetchall()
        out: dict[str, Any] = {"t": [r[0] for r in rows]}
        unpacked = [self._fmt.unpack(r[1]) for r in rows]
        for name, i in zip(tags, idx, strict=True):
            out[name] = [u[i] for u in unpacked]
        return out

    def emissions(self, start: float, end: float, node: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT node, seq, t, topic, payload FROM emissions WHERE t >= ? AND t <= ?"
        args: list[Any] = [start, end]
        if node:
            q += " AND node = ?"
            args.append(node)
        q += " ORDER BY t"
        rows = [dict(zip(("node", "seq", "t", "topic", "payload"), r, strict=True)) for r in self.db.execute(q, args)]
        unconfirmed = self.unconfirmed(start)
        for r in rows:
            r["confirmed"] = (r["node"], r["seq"], round(r["t"], 6)) not in unconfirmed
        return rows

    def unconfirmed(self, start: float) -> set[tuple[str, int, float]]:
        """(node, seq, emission time) of every emission since start whose publish was interrupted before its PUBACK
        (the marker is recorded when the publish fails: at or after the emission)."""
        out = set()
        for (detail,) in self.db.execute("SELECT detail FROM events WHERE t >= ? AND kind = ?", (start, UNCONFIRMED)):
            d = json.loads(detail)
            try:
                out.add((str(d["node"]), int(d["seq"]), round(float(d["emitted_t"]), 6)))
            except (KeyError, TypeError, ValueError):
                continue
        return out

    def events(self, start: float, end: float) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT t, kind, detail FROM events WHERE t >= ? AND t <= ? ORDER BY t", (start, end))
        return [{"t": t, "kind": k, "detail": json.loads(d)} for t, k, d in rows]

    def close(self) -> None:
        self.db.close()
