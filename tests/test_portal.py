"""The exam portal over real HTTP (`aiotlab portal` as a user starts it): logins and roles on every route, CSRF,
rate limiting, the clock and deadlines, submit and freeze, grading, release, exports, the audit log, metrics.
A practice exam (process backend) of two candidates; the browser terminal is tried in the container tier."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import AIOTLAB

pytestmark = pytest.mark.timeout(600)
LAB = "data-acquisition"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(what: str, cond: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


@pytest.fixture(scope="module")
def portal(aiot_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    d = tmp_path_factory.mktemp("portal-exam")
    (d / "exam.secret").write_text("portal-exam-secret\n")
    (d / "roster.csv").write_text("id,name\npt-alice,王小明\npt-bob,李小華\n", encoding="utf-8")
    exam = d / "exam.yaml"
    # 0.25 min: long enough to log in and look around, short enough to see the deadline act
    exam.write_text(
        f"exam: portal-t\nlabs: [{LAB}]\nbackend: process\ntime_limit_min: 0.25\n"
        "secret: {file: exam.secret}\nroster: roster.csv\nout: out\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "AIOTLAB_EXAM_SECRET"}
    up = subprocess.run([*AIOTLAB, "exam", "up", str(exam), "--practice"], capture_output=True, text=True, env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    port = free_port()
    proc = subprocess.Popen(
        [*AIOTLAB, "portal", str(exam), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env, "COLUMNS": "200"},
    )
    base = f"http://127.0.0.1:{port}"
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("portal of" in ln for ln in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        logins = dict(re.findall(r"login issued \(shown once\): (\S+) / (\S+)", "".join(lines)))
        assert {"instructor", "assessor", "pt-alice", "pt-bob"} <= set(logins), lines
        wait_until("the portal answers", lambda: _answers(base), 30)
        yield {"base": base, "logins": logins, "out": d / "out", "exam": exam, "proc": proc}
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        if proc.stdout is not None:  # the server's log, tracebacks included, for a failing test to point at
            (d / "portal.log").write_text("".join(lines) + proc.stdout.read(), encoding="utf-8")
        subprocess.run([*AIOTLAB, "exam", "down", str(exam)], capture_output=True, env=env, timeout=120)


def _answers(base: str) -> bool:
    try:
        return httpx.get(base + "/login", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def client(portal: dict[str, Any], user: str, password: str | None = None) -> httpx.Client:
    c = httpx.Client(base_url=portal["base"], timeout=30, follow_redirects=False)
    r = c.post("/login", data={"user": user, "password": password or portal["logins"][user]})
    assert r.status_code == 303, (user, r.status_code, r.text[:300])
    return c


def csrf_of(c: httpx.Client, path: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', c.get(path).text)
    assert m, f"no CSRF token on {path}"
    return m.group(1)


def test_login_cookie_flags_and_wrong_passwords(portal: dict[str, Any]) -> None:
    c = httpx.Client(base_url=portal["base"], timeout=30, follow_redirects=False)
    r = c.post("/login", data={"user": "pt-alice", "password": portal["logins"]["pt-alice"]})
    cookie = r.headers["set-cookie"].lower()
    assert r.status_code == 303 and "httponly" in cookie and "samesite=strict" in cookie
    bad = httpx.post(portal["base"] + "/login", data={"user": "pt-alice", "password": "wrong"}, timeout=30)
    assert bad.status_code == 401 and "帳號或密碼錯誤" in bad.text
    unknown = httpx.post(portal["base"] + "/login", data={"user": "mallory", "password": "x"}, timeout=30)
    assert unknown.status_code == 401
    assert httpx.get(portal["base"] + "/me", timeout=30).status_code == 401  # no session, no page


def test_roles_are_enforced_route_by_route(portal: dict[str, Any]) -> None:
    alice = client(portal, "pt-alice")
    assessor = client(portal, "assessor")
    for path in (
        "/instructor",
        "/api/instructor/cohort",
        "/instructor/candidate/pt-bob",
        "/api/instructor/candidate/pt-bob",
        f"/assessor/report/pt-bob/{LAB}/attempt-1",
        "/instructor/audit",
        "/instructor/export/cohort.csv",
        "/instructor/export/results.json",
        "/instructor/export/reports.zip",
        "/assessor",
        "/assessor/report/pt-bob/" + LAB,
    ):
        assert alice.get(path).status_code == 403, path
    for path in ("/instructor", "/api/instructor/cohort", "/instructor/export/reports.zip"):
        assert assessor.get(path).status_code == 403, path
    assert assessor.get("/me").status_code == 403
    assert alice.post("/api/instructor/action", json={"action": "start"}).status_code == 403
    # a candidate's own pages name only themselves; there is no URL that takes another candidate's id
    me = alice.get("/me").text
    assert "pt-alice" in me and "pt-bob" not in me and "李小華" not in me


def test_csrf_required_on_every_form_and_api_action(portal: dict[str, Any]) -> None:
    inst = client(portal, "instructor")
    assert inst.post("/instructor/action", data={"action": "pause"}).status_code == 403
    assert inst.post("/instructor/action", data={"action": "pause", "csrf": "forged"}).status_code == 403
    assert inst.post("/api/instructor/action", json={"action": "pause"}).status_code == 403
    alice = client(portal, "pt-alice")
    assert alice.post("/me/submit", data={"command-" + LAB: "true"}).status_code == 403
    assert alice.post(f"/api/me/self-check/{LAB}").status_code == 403


def test_candidate_reads_brief_datasheet_and_self_check(portal: dict[str, Any]) -> None:
    alice = client(portal, "pt-alice")
    brief = alice.get(f"/me/brief/{LAB}")
    assert brief.status_code == 200 and "<table>" in brief.text and "<script" not in brief.text.split("<main>")[1]
    en = alice.get(f"/me/brief/{LAB}?lang=en")
    assert "Requirements" in en.text
    sheet = alice.get(f"/me/datasheet/{LAB}")
    kit = json.loads((portal["out"] / "pt-alice" / "workspace" / LAB / ".aiotlab" / "datasheet.json").read_text())
    assert sheet.status_code == 200 and kit["plc1"]["host"] in sheet.text
    assert alice.get("/me/brief/no-such-lab").status_code == 404
    token = csrf_of(alice, "/me")
    r = alice.post(f"/api/me/self-check/{LAB}", headers={"X-CSRF-Token": token})
    checks = r.json()["checks"]
    assert r.status_code == 200 and any(c["what"].startswith("data/telemetry.db") and c["ok"] is False for c in checks)
    db = portal["out"] / "pt-alice" / "workspace" / LAB / "data" / "telemetry.db"
    db.parent.mkdir(exist_ok=True)
    db.write_bytes(b"")
    checks = alice.post(f"/api/me/self-check/{LAB}", headers={"X-CSRF-Token": token}).json()["checks"]
    assert any(c["what"].startswith("data/telemetry.db") and c["ok"] for c in checks)
    db.unlink()


def test_exam_runs_from_start_to_released_results(portal: dict[str, Any]) -> None:
    inst = client(portal, "instructor")
    token = csrf_of(inst, "/instructor")
    clock = client(portal, "pt-alice").get("/api/me/clock").json()
    assert clock["status"] == "not_started" and clock["deadline"] is None
    r = inst.post("/api/instructor/action", json={"action": "start"}, headers={"X-CSRF-Token": token})
    assert r.status_code == 200 and r.json()["status"] == "running"
    # alice submits with the lab's reference collector as her command; bob runs out of time
    alice = client(portal, "pt-alice")
    left = alice.get("/api/me/clock").json()["seconds_left"]
    assert 0 < left <= 15
    r = alice.post("/me/submit", data={"csrf": csrf_of(alice, "/me"), "command-" + LAB: "reference"})
    assert r.status_code == 303 and alice.get("/api/me/clock").json()["frozen"]
    assert alice.post("/me/submit", data={"csrf": csrf_of(alice, "/me")}).status_code == 409
    # bob's deadline passes: frozen by the clock within 2 s of it
    bob = client(portal, "pt-bob")
    deadline = bob.get("/api/me/clock").json()["deadline"]
    frozen_at = wait_until(
        "bob frozen by the clock",
        lambda: (s := inst.get("/api/instructor/cohort").json()["candidates"][1])["frozen"] and s["frozen"]["at"],
        60,
    )
    assert frozen_at - deadline <= 2.0, frozen_at - deadline
    state = json.loads((portal["out"] / "portal" / "state.json").read_text())
    assert state["candidates"]["pt-bob"]["frozen"]["reason"] == "deadline"
    snap = state["candidates"]["pt-alice"]["frozen"]["snapshot"]
    assert (portal["out"] / "portal" / "snapshots" / snap["file"]).stat().st_size == snap["bytes"]
    # the extension after the deadline gives bob his workstation back; the audit log names who did it
    r = inst.post(
        "/api/instructor/action",
        json={"action": "extend", "candidate": "pt-bob", "minutes": 5},
        headers={"X-CSRF-Token": token},
    )
    assert r.status_code == 200 and not r.json()["candidates"][1]["frozen"]
    assert (
        inst.post(
            "/api/instructor/action",
            json={"action": "extend", "candidate": "pt-alice", "minutes": 5},
            headers={"X-CSRF-Token": token},
        ).status_code
        == 409
    )  # a submitted candidate's work stays frozen
    # alice's grading (queued at submit) finishes with a signed report; not visible to her until released
    graded = wait_until(
        "alice graded",
        lambda: (
            (g := inst.get("/api/instructor/cohort").json()["candidates"][0]["grading"].get(LAB, {})).get("status")
            in ("graded", "failed", "not graded")
            and g
        ),
        400,
    )
    assert graded["status"] == "graded" and graded["points"] == graded["max_points"] == 100, graded.get("error", graded)
    assert alice.get(f"/me/report/{LAB}").status_code == 403
    assert f"/me/report/{LAB}" not in alice.get("/me").text
    r = inst.post("/api/instructor/action", json={"action": "release"}, headers={"X-CSRF-Token": token})
    assert r.status_code == 200 and r.json()["released"]
    report = alice.get(f"/me/report/{LAB}")
    assert report.status_code == 200 and "data-acquisition" in report.text
    # assessors see the signature verified with the exam's public key, and pass rates per indicator
    page = client(portal, "assessor").get("/assessor").text
    assert "已驗證" in page and "INM3513-009v1/P6.2.1" in page
    # exports: names in a BOM'd CSV, results.json, the signed reports with the public key
    raw = inst.get("/instructor/export/cohort.csv").content
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0]["candidate"] == "pt-alice" and rows[0]["name"] == "王小明" and float(rows[0]["points"]) == 100
    assert inst.get("/instructor/export/results.json").json()["reports"][0]["candidate"] == "pt-alice"
    z = zipfile.ZipFile(io.BytesIO(inst.get("/instructor/export/reports.zip").content))
    assert f"pt-alice/{LAB}/report.json" in z.namelist() and "exam-public-key.pem" in z.namelist()
    actions = [(a["who"], a["action"]) for a in inst.get("/instructor/audit").json()]
    for want in [("instructor", "start"), ("pt-alice", "freeze"), ("clock", "freeze"), ("instructor", "extend"),
                 ("instructor", "release"), ("instructor", "export")]:  # fmt: skip
        assert want in actions, (want, actions)
    history = inst.get("/api/instructor/candidate/pt-alice").json()
    first = history["attempts"][LAB][0]
    assert first["score"]["points"] == 100 and first["verified"] and first["failed"] == []
    # the same history as a page, each attempt linking to its own report; per-check pass rates for assessors
    html = inst.get("/instructor/candidate/pt-alice").text
    assert f'data-attempt="{first["attempt"]}"' in html and "已驗證" in html
    one = inst.get(f"/assessor/report/pt-alice/{LAB}/{first['attempt']}")
    assert one.status_code == 200 and "pt-alice" in one.text
    assert inst.get(f"/assessor/report/pt-alice/{LAB}/..%2F..%2Fexam.secret").status_code == 404
    assert 'data-check="daq.values"' in page and "各檢查通過率" in page


def test_metrics_and_openapi(portal: dict[str, Any]) -> None:
    text = httpx.get(portal["base"] + "/metrics", timeout=30).text
    assert 'aiotlab_portal_logins_total{result="ok",role="candidate"}' in text
    assert "aiotlab_portal_grading_queue" in text and "aiotlab_portal_plant_up" in text
    spec = httpx.get(portal["base"] + "/openapi.json", timeout=30).json()
    assert "/api/instructor/action" in spec["paths"] and "/api/me/clock" in spec["paths"]


def test_login_rate_limited_per_user(portal: dict[str, Any]) -> None:  # last: bob stays throttled a minute
    codes = [
        httpx.post(portal["base"] + "/login", data={"user": "pt-bob", "password": f"guess{i}"}, timeout=30).status_code
        for i in range(7)
    ]
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429], codes
    # the right password is refused too while throttled: guessing gains nothing
    r = httpx.post(
        portal["base"] + "/login", data={"user": "pt-bob", "password": portal["logins"]["pt-bob"]}, timeout=30
    )
    assert r.status_code == 429
