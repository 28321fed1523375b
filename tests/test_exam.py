"""`aiotlab exam up/status/grade/down` on the process backend with a 20-candidate roster: every plant launched
with the exam's own secret, every kit written, a crashed plant found and cleaned, everyone graded at once with
signed reports and a cohort summary (CSV + HTML), and nothing left running afterwards."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from aiotlab.simulators import addressing as ad

from conftest import AIOTLAB

pytestmark = pytest.mark.timeout(600)

N = 20


def exam_cli(*args: str, secret_file: Path | None = None, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("AIOTLAB_EXAM_SECRET", None)  # the exam file says where its secret is
    return subprocess.run([*AIOTLAB, "exam", *args], capture_output=True, text=True, timeout=timeout, env=env)


def write_exam(d: Path, roster: str = "roster.csv", **extra: str) -> Path:
    (d / "exam.secret").write_text("exam-secret-for-the-test\n")
    lines = {
        "exam": "t-exam",
        "labs": "[data-acquisition]",
        "backend": "process",
        "secret": "{file: exam.secret}",
        "roster": roster,
        "out": "out",
        **extra,
    }
    path = d / "exam.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in lines.items()))
    return path


def test_exam_lifecycle_for_a_roster_of_twenty(aiot_home: Path, tmp_path: Path) -> None:
    ids = [f"ex{i:02d}" for i in range(N)]
    (tmp_path / "roster.csv").write_text("id,name\n" + "".join(f"{c},Candidate {c}\n" for c in ids))
    exam = write_exam(tmp_path)
    t0 = time.monotonic()
    up = exam_cli("up", str(exam), "--practice")
    launch_s = time.monotonic() - t0
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"{N}/{N} plants running" in up.stdout
    for c in ids:
        kit = tmp_path / "out" / c / "workspace" / "data-acquisition" / ".aiotlab"
        assert {
            "brief.en.md",
            "brief.zh-TW.md",
            "datasheet.json",
            "datasheet.zh-TW.md",
            "datasheet.en.md",
            "lab-params.json",
        } <= {p.name for p in kit.iterdir()}
        assert ad.is_running(ad.read_state(c))
    state = json.loads((tmp_path / "out" / "exam-state.json").read_text())
    assert set(state["candidates"]) == set(ids) and state["backend"] == "process"
    assert launch_s < 120, f"launching {N} plants took {launch_s:.0f} s"

    st = exam_cli("status", str(exam))
    assert st.returncode == 0, st.stdout + st.stderr

    # a crashed plant: its daemon killed outright, its broker left behind
    victim = ad.read_state(ids[3])
    os.kill(victim["pid"], signal.SIGKILL)
    time.sleep(0.5)
    st = exam_cli("status", str(exam))
    assert st.returncode == 1 and "crashed" in st.stdout

    # the crashed plant is not restarted and graded behind the instructor's back: it is reported, not graded
    graded = exam_cli("grade", str(exam), "--solution", "reference", "--lang", "en")
    assert graded.returncode == 1, graded.stdout[-3000:] + graded.stderr[-3000:]
    assert f"plant {ids[3]} down since" in " ".join(graded.stdout.split()), graded.stdout[-3000:]
    assert not ad.is_running(ad.read_state(ids[3]))
    reports = tmp_path / "out" / "reports"
    assert "down since" in (reports / ids[3] / "data-acquisition" / "attempt-1" / "not-graded.txt").read_text()
    cohort_csv = reports / "cohort" / "data-acquisition" / "cohort.csv"
    assert cohort_csv.read_bytes().startswith(b"\xef\xbb\xbf")  # UTF-8 with BOM, for Excel
    rows = list(csv.DictReader(cohort_csv.open(encoding="utf-8-sig", newline="")))
    graded_ids = [c for c in ids if c != ids[3]]
    assert sorted(r["candidate"] for r in rows) == graded_ids
    assert all(r["name"] == f"Candidate {r['candidate']}" for r in rows)  # the roster's names
    assert all(float(r["percent"]) == 100.0 for r in rows), [(r["candidate"], r["percent"]) for r in rows]
    html = (reports / "cohort" / "data-acquisition" / "cohort.html").read_text()
    for c in graded_ids:
        link = f"../../{c}/data-acquisition/attempt-1/report.html"
        assert link in html and (reports / "cohort" / "data-acquisition" / link).resolve().is_file()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOTLAB_EXAM_SECRET")}
    first = reports / ids[0] / "data-acquisition" / "attempt-1" / "report.json"
    verify = subprocess.run(
        [*AIOTLAB, "report", "verify", str(first), "--exam", str(exam)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert verify.returncode == 0, verify.stdout  # the exam's public key alone: no secret in the environment
    assert json.loads(first.read_text())["manifest"]["exam"] == "t-exam"
    assert (reports / ids[0] / "data-acquisition" / "latest").resolve() == first.parent.resolve()
    assert exam_cli("down", str(exam)).returncode == 0
    for c in ids:
        s = ad.read_state(c)
        assert not ad.pid_alive(s.get("pid")) and not ad.pid_alive(s.get("mosquitto_pid"))
    assert not ad.pid_alive(victim.get("mosquitto_pid"))  # the crashed plant's leftover broker is gone too


def test_exam_with_two_labs_keeps_a_kit_per_lab_with_the_exams_time_limit(aiot_home: Path, tmp_path: Path) -> None:
    (tmp_path / "roster.csv").write_text("id\nkitone\n")
    exam = write_exam(tmp_path, labs="[data-acquisition, ics-hardening]", time_limit_min="75")
    try:
        up = exam_cli("up", str(exam), "--practice")
        assert up.returncode == 0, up.stdout + up.stderr
        kits = {
            lab: tmp_path / "out" / "kitone" / "workspace" / lab / ".aiotlab"
            for lab in ("data-acquisition", "ics-hardening")
        }
        params = {lab: json.loads((k / "lab-params.json").read_text()) for lab, k in kits.items()}
        assert "needs_s" in params["data-acquisition"] and "risk_register" in params["ics-hardening"]
        for lab, k in kits.items():
            en = (k / "brief.en.md").read_text()
            assert "time limit 75 min" in en, lab  # the exam's time limit, not the lab's default
            assert lab in en and f"kitone.{lab}" in en  # the brief names the lab's own plant
            sheet = json.loads((k / "datasheet.json").read_text())
            assert (
                sheet["addresses_assigned"]
                and sheet["plc1"]["host"]
                == ad.Addresses.for_slot(ad.read_state(f"kitone.{lab}")["slot"], _spec_addressing()).hosts["plc1"]
            )
        # a plant per lab: hardening one lab's plant never changes the plant another lab's brief describes
        states = {lab: ad.read_state(f"kitone.{lab}") for lab in kits}
        assert all(ad.is_running(st) for st in states.values())
        assert len({st["slot"] for st in states.values()}) == 2
        st = exam_cli("status", str(exam))
        assert st.returncode == 0 and "kitone.ics-hardening" in st.stdout, st.stdout
    finally:
        exam_cli("down", str(exam))
    assert not any(ad.is_running(ad.read_state(f"kitone.{lab}")) for lab in ("data-acquisition", "ics-hardening"))


def _spec_addressing() -> dict:
    from aiotlab.simulators.launch import load_spec

    return load_spec()["addressing"]


def test_process_backend_is_practice_mode_only(aiot_home: Path, tmp_path: Path) -> None:
    (tmp_path / "roster.csv").write_text("id\nzed\n")
    r = exam_cli("up", str(write_exam(tmp_path)), timeout=60)
    assert r.returncode != 0 and "NOT an isolated exam" in r.stdout + r.stderr and "--practice" in r.stdout + r.stderr
    assert not (tmp_path / "out").exists()


def test_kit_refuses_a_candidate_without_a_plant(aiot_home: Path, tmp_path: Path) -> None:
    r = subprocess.run(
        [*AIOTLAB, "lab", "kit", "data-acquisition", "-c", "noplantyet", "--workspace", str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0 and "no plant yet" in r.stdout + r.stderr
    assert not (tmp_path / "ws" / ".aiotlab").exists()
    show = subprocess.run(
        [*AIOTLAB, "lab", "show", "data-acquisition", "-c", "noplantyet", "--lang", "en"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert show.returncode == 0 and show.stdout.startswith("> **Warning**: candidate noplantyet has no plant yet")


@pytest.mark.parametrize(
    "change,message",
    [
        ({"secret": "{env: AIOTLAB_TEST_NO_SUCH_VAR}"}, "AIOTLAB_TEST_NO_SUCH_VAR"),
        ({"secret": "s3cr3t"}, "never the secret itself"),
        ({"labs": "[no-such-lab]"}, "unknown lab"),
        ({"backend": "kubernetes"}, "backend 'kubernetes'"),
        ({"roster": "[Alice]"}, "candidate id 'Alice'"),
        ({"roster": "[bob, bob]"}, "twice"),
        ({"roster": "missing.csv"}, "missing.csv"),
    ],
)
def test_bad_exam_files_are_refused_clearly(aiot_home: Path, tmp_path: Path, change: dict, message: str) -> None:
    (tmp_path / "roster.csv").write_text("id\nzed\n")
    exam = write_exam(tmp_path, **change)
    r = exam_cli("up", str(exam), "--practice", timeout=60)
    assert r.returncode != 0 and message in (r.stdout + r.stderr), r.stdout + r.stderr
    assert not (tmp_path / "out").exists()  # nothing launched, nothing written
