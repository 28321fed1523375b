"""Flawed solution (secure-pipeline): readings kept in a world-readable CSV instead of protected storage.

Runs the given collector against a private staging workspace (its SQLite database there is only a staging area),
mirrors the stored rows to <workspace>/data/telemetry.csv every half second, and removes the staging area when it
stops: at rest the only store is the CSV, readable by every local user (file 0644, data/ 0755). The read tool that
harden.py installs with --flaw csv-store serves this CSV (and audits every read).

Usage: csv_store.py COLLECTOR [collector arguments...]
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIELDS = ["device", "tag", "value", "unit", "quality", "ts", "source"]


def export(db: Path, out: Path) -> None:
    if not db.is_file():
        return
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)
        rows = con.execute(f"SELECT {', '.join(FIELDS)} FROM readings").fetchall()
        con.close()
    except sqlite3.Error:
        return
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(FIELDS)
        w.writerows(rows)
    tmp.chmod(0o644)
    os.replace(tmp, out)


def main() -> int:
    ws = Path(os.environ["AIOTLAB_WORKSPACE"])
    stage = Path(tempfile.mkdtemp(prefix="aiotlab-stage-"))
    (stage / "pki").symlink_to(ws / "pki")
    data = ws / "data"
    data.mkdir(exist_ok=True)
    data.chmod(0o755)
    proc = subprocess.Popen([sys.executable, *sys.argv[1:]], env={**os.environ, "AIOTLAB_WORKSPACE": str(stage)})
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    try:
        while not stopping and proc.poll() is None:
            export(stage / "data" / "telemetry.db", data / "telemetry.csv")
            time.sleep(0.5)
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=4)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        export(stage / "data" / "telemetry.db", data / "telemetry.csv")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return proc.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
