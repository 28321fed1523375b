"""The audited read path to stored telemetry (secure-pipeline reference): every read is logged, then served.

Usage: read-telemetry --user NAME --device D --tag T [--since RFC3339]   -> JSON lines {"ts": ..., "value": ...}
Each call first appends {"ts", "user", "action": "read", "device", "tag", "since", "rows"} to data/audit.jsonl, then
prints. Flawed solutions of the lab: `--audit-after` prints first and audits after; `--store csv` serves the CSV
store data/telemetry.csv (written by the flawed-csv-store solution) instead of the SQLite database.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import sqlite3
import sys
from pathlib import Path


def parse(ts: str) -> dt.datetime:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))


def stored(data: Path, store: str, device: str, tag: str) -> list[tuple[str, float]]:
    if store == "csv":
        with (data / "telemetry.csv").open(newline="", encoding="utf-8") as fh:
            return [
                (r["ts"], float(r["value"])) for r in csv.DictReader(fh) if (r["device"], r["tag"]) == (device, tag)
            ]
    db = sqlite3.connect(f"file:{data / 'telemetry.db'}?mode=ro", uri=True, timeout=5)
    try:
        return list(db.execute("SELECT ts, value FROM readings WHERE device = ? AND tag = ?", (device, tag)))
    finally:
        db.close()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--user", required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--since", default="1970-01-01T00:00:00Z")
    p.add_argument("--store", choices=("sqlite", "csv"), default="sqlite")
    p.add_argument("--audit-after", action="store_true", help="flaw: print the data first, audit afterwards")
    p.add_argument("--since-exclusive", action="store_true", help="flaw: ts > --since (the brief says ts >= --since)")
    args = p.parse_args()
    os.umask(0o077)
    data = Path(os.environ.get("AIOTLAB_WORKSPACE", Path(__file__).resolve().parent.parent)) / "data"
    since = parse(args.since)
    rows = [
        (ts, v)
        for ts, v in stored(data, args.store, args.device, args.tag)
        if (parse(ts) > since if args.since_exclusive else parse(ts) >= since)
    ]
    record = {
        "ts": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "user": args.user,
        "action": "read",
        "device": args.device,
        "tag": args.tag,
        "since": args.since,
        "rows": len(rows),
    }

    def audit() -> None:
        with (data / "audit.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    if not args.audit_after:
        audit()  # audit before serving: no unlogged read
    for ts, v in rows:
        sys.stdout.write(json.dumps({"ts": ts, "value": v}) + "\n")
    if args.audit_after:  # the flaw: the data has left before the read is on record
        sys.stdout.flush()
        audit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
