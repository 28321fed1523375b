"""What a solution the grader starts can and cannot do (practice mode): its environment carries no secret and no
key, its daemons do not outlive its grading, its output cannot fill the disk; and the plant's own processes
(daemon, Mosquitto) carry no secret in their environment either."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import psutil

from aiotlab.grader.engine import SOLUTION_LOG_MAX_BYTES, grade
from aiotlab.labs.loader import load_lab
from aiotlab.simulators import addressing as ad

from conftest import cli

HOSTILE = r"""
import json, os, sys, time
ws = os.environ["AIOTLAB_WORKSPACE"]
json.dump(dict(os.environ), open(os.path.join(ws, "env.json"), "w"))
if os.fork() == 0:              # a daemon that leaves the solution's process group
    os.setsid()
    if os.fork() == 0:
        open(os.path.join(ws, "daemon.pid"), "w").write(str(os.getpid()))
        while True:
            time.sleep(1)
    os._exit(0)
chunk = "x" * 65535 + "\n"
for _ in range(200):            # 12.8 MB of output
    sys.stdout.write(chunk)
sys.stdout.flush()
time.sleep(3600)
"""


def test_solution_env_strays_and_log_cap(aiot_home: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIOTLAB_SIGNING_KEY", str(tmp_path / "no-such-key.pem"))  # must not reach the solution
    lab = load_lab("data-acquisition")
    script = tmp_path / "hostile.py"
    script.write_text(HOSTILE)
    ws = tmp_path / "ws"
    cand = "hygiene"
    try:
        run = asyncio.run(
            grade(lab, cand, solution=f"{sys.executable} {script}", workspace=ws, out_dir=tmp_path / "out")
        )
        env = json.loads((ws / "env.json").read_text())
        for leaked in ("AIOTLAB_EXAM_SECRET", "AIOTLAB_EXAM_SECRET_FILE", "AIOTLAB_SIGNING_KEY"):
            assert leaked not in env, leaked
        assert env["AIOTLAB_CANDIDATE"] == cand and "AIOTLAB_GRADING_ID" in env
        pid = int((ws / "daemon.pid").read_text())
        deadline = time.time() + 5
        while (
            psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE and time.time() < deadline
        ):
            time.sleep(0.1)
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert run.solution["strays_ended"] >= 1
        log = tmp_path / "out" / "solution.log"
        assert SOLUTION_LOG_MAX_BYTES <= log.stat().st_size < SOLUTION_LOG_MAX_BYTES + 4096
        assert run.solution["log_bytes_dropped"] > 0 and "not kept" in log.read_text()[-300:]
        # the plant's processes: the daemon got the secret on stdin, Mosquitto got nothing of it
        daemon = psutil.Process(ad.read_state(cand)["pid"])
        procs = [daemon, *daemon.children(recursive=True)]
        assert any("mosquitto" in p.name() for p in procs)
        for p in procs:
            assert not {"AIOTLAB_EXAM_SECRET", "AIOTLAB_EXAM_SECRET_FILE"} & set(p.environ()), p.name()
        assert os.environ.get("AIOTLAB_EXAM_SECRET")  # the test's own process did have it to hand over
        assert (ad.plant_dir(cand) / "truth.db").stat().st_mode & 0o077 == 0  # private files
    finally:
        cli("plant", "down", "-c", cand, check=False)
