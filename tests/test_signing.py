"""Signed, bound reports: Ed25519 with the public key alone to verify; the manifest binds exam, candidate, lab,
attempt, plant and every output file; edits, a wrong key, a report moved to another candidate's folder and a
tampered recording are all refused. No plant needed: the report is built from check results made here."""

from __future__ import annotations

import gzip
import json
import shutil
import time
from pathlib import Path

import pytest

from aiotlab.grader import report, signing
from aiotlab.grader.cohort import new_attempt, point_latest
from aiotlab.grader.engine import GradeRun
from aiotlab.grader.results import PASS, CheckResult
from aiotlab.labs.loader import load_lab

from conftest import cli


def graded(folder: Path, candidate: str = "alice") -> Path:
    """A recording beside the report, as the engine leaves one."""
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "recording.json.gz", "wt") as fh:
        json.dump({"format": "aiotlab.recording/1", "lab": "data-acquisition", "candidate": candidate}, fh)
    return folder


@pytest.fixture
def keys(tmp_path: Path) -> tuple[signing.Signer, Path]:
    priv, pub = signing.make_pair(tmp_path / "keys")
    assert priv.stat().st_mode & 0o077 == 0 and (tmp_path / "keys").stat().st_mode & 0o077 == 0
    return signing.load_signer(priv), pub


def write(folder: Path, signer: signing.Signer, candidate: str = "alice", attempt: int = 1) -> dict:
    lab = load_lab("data-acquisition")
    results = [
        CheckResult(c["id"], PASS, c["points"], c["points"], {"en": "ok", "zh-TW": "通過"}, {"seen": 1})
        for c in lab.checks
    ]
    run = GradeRun(
        lab,
        candidate,
        {"period_s": 1.0},
        {"identity_digest": "abc", "params_digest": "d" * 64},
        results,
        (time.time() - 30, time.time()),
        time.time() - 40,
        time.time(),
        {"command": None},
    )
    graded(folder, candidate)
    return report.write_all(run, folder, signer, "en", exam="t-exam", attempt=attempt)


def test_verifies_with_the_public_key_alone_and_binds_everything(tmp_path: Path, keys) -> None:
    signer, pub = keys
    folder = tmp_path / "reports" / "alice" / "data-acquisition" / "attempt-1"
    doc = write(folder, signer)
    m = doc["manifest"]
    assert (m["exam"], m["candidate"], m["lab"], m["attempt"]) == ("t-exam", "alice", "data-acquisition", 1)
    assert m["location"] == "alice/data-acquisition/attempt-1" and m["plant_fingerprint"] == "abc"
    assert {"report.html", "results.json", "recording.json.gz", "evidence/daq.values.json"} <= set(m["files"])
    assert doc["signature"]["alg"] == "Ed25519"
    ok, findings = report.verify_file(folder / "report.json", signing.load_public(pub))
    assert ok, findings
    proc = cli("report", "verify", str(folder / "report.json"), "--key", str(pub), check=False)
    assert proc.returncode == 0, proc.stdout
    other = signing.make_pair(tmp_path / "other")[1]
    ok, findings = report.verify_file(folder / "report.json", signing.load_public(other))
    assert not ok and "another key" in " ".join(findings)


@pytest.mark.parametrize(
    "tamper,words",
    [
        ("score", "modified after signing"),
        ("html", "file modified: report.html"),
        ("results", "file modified: results.json"),
        ("evidence", "evidence file modified"),
        ("recording", "file modified: recording.json.gz"),
        ("moved", "moved or copied"),
    ],
)
def test_every_tamper_is_refused(tmp_path: Path, keys, tamper: str, words: str) -> None:
    signer, pub = keys
    folder = tmp_path / "reports" / "alice" / "data-acquisition" / "attempt-1"
    write(folder, signer)
    target = folder / "report.json"
    if tamper == "score":
        doc = json.loads(target.read_text())
        doc["score"]["points"] = 100.0 if doc["score"]["points"] != 100.0 else 99.0
        target.write_text(json.dumps(doc))
    elif tamper == "html":
        (folder / "report.html").write_text((folder / "report.html").read_text().replace("</body>", "<p>x</p></body>"))
    elif tamper == "results":
        (folder / "results.json").write_text("{}")
    elif tamper == "evidence":
        ev = folder / "evidence" / "daq.values.json"
        ev.write_text(ev.read_text() + " ")
    elif tamper == "recording":
        with gzip.open(folder / "recording.json.gz", "wt") as fh:
            json.dump({"format": "aiotlab.recording/1", "lab": "data-acquisition", "forged": True}, fh)
    elif tamper == "moved":  # bob copies alice's full-marks report into his own folder
        dest = tmp_path / "reports" / "bob" / "data-acquisition" / "attempt-1"
        shutil.copytree(folder, dest)
        target = dest / "report.json"
    ok, findings = report.verify_file(target, signing.load_public(pub))
    assert not ok and words in " ".join(findings), findings


def test_replay_refuses_a_recording_its_report_does_not_bind(tmp_path: Path, keys, monkeypatch) -> None:
    signer, _ = keys
    monkeypatch.setenv("AIOTLAB_SIGNING_KEY", str(signer.source))
    folder = tmp_path / "reports" / "alice" / "data-acquisition" / "attempt-1"
    write(folder, signer)
    with gzip.open(folder / "recording.json.gz", "wt") as fh:
        json.dump({"format": "aiotlab.recording/1", "lab": "data-acquisition", "tampered": 1}, fh)
    env_key = {"AIOTLAB_SIGNING_KEY": str(signer.source)}
    proc = cli_env(env_key, "grade", "data-acquisition", "--replay", str(folder), "--out", str(tmp_path / "replayed"))
    assert proc.returncode == 1 and "refused" in proc.stdout, proc.stdout + proc.stderr
    assert not (tmp_path / "replayed" / "report.json").exists()


def cli_env(extra: dict[str, str], *args: str):  # noqa: ANN201
    import os
    import subprocess

    from conftest import AIOTLAB

    return subprocess.run([*AIOTLAB, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **extra})


def test_attempts_never_overwrite_and_latest_points_at_the_newest(tmp_path: Path, keys) -> None:
    signer, pub = keys
    lab_dir = tmp_path / "reports" / "alice" / "data-acquisition"
    for expected in (1, 2, 3):
        n, folder = new_attempt(lab_dir)
        assert n == expected
        write(folder, signer, attempt=n)
        point_latest(lab_dir, n)
    assert sorted(p.name for p in lab_dir.glob("attempt-*")) == ["attempt-1", "attempt-2", "attempt-3"]
    assert json.loads((lab_dir / "latest.json").read_text())["attempt"] == 3
    assert (lab_dir / "latest").resolve() == (lab_dir / "attempt-3").resolve()
    for n in (1, 2, 3):
        ok, findings = report.verify_file(lab_dir / f"attempt-{n}" / "report.json", signing.load_public(pub))
        assert ok, findings
