"""The audited read path to stored telemetry (secure-pipeline reference): every read is logged, then served.

Usage: read-telemetry --user NAME --device D --tag T [--since RFC3339]   -> JSON lines {"ts": ..., "value": ...}
Each call first appends {"ts", "user", "action": "read", "device", "tag", "since", "rows"} to data/audit.jsonl.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import sys
from pathlib import Path


def parse(ts: str) -> dt.datetime:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--user", required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--since", default="1970-01-01T00:00:00Z")
    args = p.parse_args()
    os.umask(0o077)
    data = Path(os.environ.get("AIOTLAB_WORKSPACE", Path(__file__).resolve().parent.parent)) / "data"
    since = parse(args.since)
    db = sqlite3.connect(f"file:{data / 'telemetry.db'}?mode=ro", uri=True, timeout=5)
    rows = [
        (ts, v)
        for ts, v in db.execute("SELECT ts, value FROM readings WHERE device = ? AND tag = ?", (args.device, args.tag))
        if parse(ts) >= since
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
    with (data / "audit.jsonl").open("a", encoding="utf-8") as fh:  # audit before serving: no unlogged read
        fh.write(json.dumps(record) + "\n")
    for ts, v in rows:
        sys.stdout.write(json.dumps({"ts": ts, "value": v}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
