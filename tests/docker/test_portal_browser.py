"""The exam portal in a real browser (Playwright driving Debian's Chromium) on an exam-mode exam: two candidates with
a workstation each, one lab, a short time limit, `aiotlab portal` served as a user starts it. A candidate logs in,
sees the clock and their deadline, works in the browser terminal and submits; the instructor starts the exam,
extends the other candidate's deadline, grades and releases; the first candidate then finds their report; a
candidate's tries at other people's pages are refused; and the second candidate's terminal closes at their
deadline, their workstation login locked and their processes ended. Screenshots of the main pages at 1366x768 go
to docs/screenshots/ (the README shows them).

The tests run in order and share one exam (each step builds on the one before, as an exam does)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import AIOTLAB

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium, headless; without the background-networking flags its connections out are refused here
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1366, "height": 768}
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
LAB = "data-acquisition"
A, B = "pb-alice", "pb-bob"  # distinct from other tiers' candidates: container names are the engine's, not ours
LIMIT_MIN = 1.0  # A works and submits within it; B gets EXTEND_MIN more and runs out of time
EXTEND_MIN = 1
FULL_MARKS = r"\b100(\.0)?/100(\.0)?\b"  # points as the report has them (floats: 100.0/100.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(what: str, cond: Any, timeout: float, every: float = 0.2) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not within {timeout} s: {what}")


def workstation(home: Path, cid: str) -> str:
    """The candidate's workstation container (one lab: their plant is named after them)."""
    return json.loads((home / "plants" / cid / "plant.json").read_text())["workstation"]["container"]


def in_workstation(container: str, *cmd: str) -> str:
    out = subprocess.run(["docker", "exec", "-u", "root", container, *cmd], capture_output=True, text=True, timeout=30)
    return out.stdout + out.stderr


def login_status(container: str) -> str:
    """`passwd -S candidate`'s second field: P (usable password), L (locked)."""
    return in_workstation(container, "passwd", "-S", "candidate").split()[1]


@pytest.fixture(scope="module")
def exam(aiot_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no {CHROMIUM} (apt-get install chromium; ./run.sh test-docker installs it)")
    static = Path(__file__).resolve().parents[2] / "aiotlab" / "portal" / "static" / "node_modules" / "@xterm"
    if not static.is_dir():
        pytest.skip("xterm.js not installed (npm ci --prefix aiotlab/portal/static; ./run.sh test-docker does it)")
    d = tmp_path_factory.mktemp("portal-browser")
    (d / "exam.secret").write_text("portal-browser-secret-5c1d\n")
    (d / "roster.csv").write_text(f"id,name\n{A},王小明\n{B},李小華\n", encoding="utf-8")
    exam_file = d / "exam.yaml"
    exam_file.write_text(
        f"exam: portal-browser\nlabs: [{LAB}]\nbackend: docker\ntime_limit_min: {LIMIT_MIN}\n"
        "workstation: {ssh_bind: 127.0.0.1}\nsecret: {file: exam.secret}\nroster: roster.csv\nout: out\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOTLAB_EXAM_SECRET")}
    env["COLUMNS"] = "200"  # the logins table on one line per candidate
    proc = None
    try:
        up = subprocess.run(
            [*AIOTLAB, "exam", "up", str(exam_file)], capture_output=True, text=True, env=env, timeout=300
        )
        assert up.returncode == 0, up.stdout + up.stderr
        logins = dict(re.findall(r"(pb-\w+)\s*│[^│\n]*│\s*ssh -p \d+ candidate@\S+\s*│\s*([A-Za-z0-9]{14})", up.stdout))
        assert set(logins) == {A, B}, up.stdout
        port = free_port()
        proc = subprocess.Popen(
            [*AIOTLAB, "portal", str(exam_file), "--port", str(port), "--concurrency", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        assert proc.stdout is not None
        lines: list[str] = []
        end = time.monotonic() + 60
        while time.monotonic() < end and not any("portal of" in ln for ln in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        logins.update(re.findall(r"login issued \(shown once\): (\S+) / (\S+)", "".join(lines)))
        assert {"instructor", "assessor"} <= set(logins), lines
        base = f"http://127.0.0.1:{port}"
        wait_until("the portal answers", lambda: _answers(base), 30)
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield {
                    "base": base,
                    "logins": logins,
                    "out": d / "out",
                    "home": aiot_home,
                    "browser": browser,
                    "pages": {},
                }
            finally:
                browser.close()
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run([*AIOTLAB, "exam", "down", str(exam_file)], capture_output=True, env=env, timeout=300)


def _answers(base: str) -> bool:
    import httpx

    try:
        return httpx.get(base + "/login", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def shot(page: Any, name: str, show: str | None = None) -> None:
    """The page as a person sees it at 1366x768: from its top, or scrolled just enough to show `show`."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import Error as PlaywrightError

    for _ in range(2):
        try:
            page.evaluate("window.scrollTo(0, 0)")
            if show and page.locator(show).count():
                page.locator(show).scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / f"{name}.png"))
            return
        except PlaywrightError as exc:  # the page reloaded itself meanwhile (the candidate page does at the freeze)
            if "context was destroyed" not in str(exc):
                raise
            page.wait_for_load_state()
    raise AssertionError(f"the page kept navigating: no screenshot {name}")


def log_in(exam: dict[str, Any], user: str, screenshot: str | None = None) -> Any:
    """A fresh browser context (its own cookies) logged in as `user`, on the page the portal sends them to."""
    context = exam["browser"].new_context(
        base_url=exam["base"], viewport=VIEWPORT, locale="zh-TW", timezone_id="Asia/Taipei"
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(exam["base"] + "/")
    assert page.url.endswith("/login")
    if screenshot:
        shot(page, screenshot)
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", exam["logins"][user])
    page.click("#login")
    page.wait_for_load_state()
    exam["pages"][user] = page
    return page


def terminal_text(page: Any) -> str:
    return page.locator("#terminal .xterm-rows").inner_text()


def run_in_terminal(page: Any, command: str, expect: str, timeout: float = 15) -> str:
    """Type a command into the browser terminal as a person would, then wait for `expect` on the screen."""
    page.click("#terminal")
    page.keyboard.type(command)
    page.keyboard.press("Enter")
    return wait_until(f"{expect!r} in the terminal", lambda: expect in (t := terminal_text(page)) and t, timeout)


def wait_terminal_connected(page: Any) -> None:
    """Connected, and the shell's prompt shown (typed before it, a command would be echoed twice, as over SSH)."""
    page.wait_for_selector('#terminal-status[data-state="connected"]', timeout=20_000)
    wait_until("the prompt", lambda: f"~/{LAB}$" in terminal_text(page), 15)


def cohort(page: Any) -> dict[str, Any]:
    """The instructor's cohort, through the page's own session (the browser's cookies)."""
    r = page.request.get("/api/instructor/cohort")
    assert r.ok, r.status
    return {c["id"]: c for c in r.json()["candidates"]}


def test_candidate_sits_the_exam_in_the_browser(exam: dict[str, Any]) -> None:
    base = exam["base"]
    inst = log_in(exam, "instructor")
    assert inst.url == base + "/instructor"
    inst.click("#start")
    inst.wait_for_load_state()
    assert cohort(inst)[A]["deadline"], "the exam started"

    alice = log_in(exam, A, screenshot="login")
    assert alice.url == base + "/me"
    # the server's clock and her own deadline, counting down
    clock = alice.request.get("/api/me/clock").json()
    assert clock["status"] == "running" and clock["deadline"] and 0 < clock["seconds_left"] <= 60 * LIMIT_MIN
    wait_until("the clock shown", lambda: alice.inner_text("#server-time").strip(), 5)
    assert alice.inner_text("#deadline").strip()
    left = wait_until("time left shown", lambda: re.fullmatch(r"0:0\d:\d\d", alice.inner_text("#time-left")), 5)
    assert left is not None
    assert alice.get_attribute("#deadline", "data-deadline") == str(clock["deadline"])

    # the browser terminal: a login shell as `candidate` in her work folder, on her own workstation
    wait_terminal_connected(alice)
    run_in_terminal(alice, "echo hello-$((6*7))", "hello-42")
    run_in_terminal(alice, 'echo "user=$(id -un) dir=$PWD"', f"user=candidate dir=/home/candidate/{LAB}")
    # what she writes lands in her workspace on the exam host
    run_in_terminal(alice, "echo from-the-browser > note.txt && echo written", "written")
    note = exam["out"] / A / "workspace" / LAB / "note.txt"
    assert (
        wait_until("note.txt in the workspace", lambda: note.is_file() and note.read_text(), 5) == "from-the-browser\n"
    )
    shot(alice, "candidate")

    # another candidate's pages and staff pages: refused, whatever the URL
    for path in (
        f"/assessor/report/{B}/{LAB}",
        "/instructor",
        f"/instructor/candidate/{B}",
        "/api/instructor/cohort",
        "/instructor/export/reports.zip",
        "/assessor",
    ):
        r = alice.request.get(path)
        assert r.status == 403, (path, r.status)
    page = alice.context.new_page()
    response = page.goto(base + "/instructor")
    assert response is not None and response.status == 403 and "not for your role" in page.content()
    page.close()
    token = alice.get_attribute("input[name=csrf]", "value")
    r = alice.request.post(
        "/api/instructor/action",
        data={"action": "extend", "candidate": A, "minutes": 60},
        headers={"X-CSRF-Token": token},
    )
    assert r.status == 403
    assert B not in alice.content() and "李小華" not in alice.content()

    # submit, with the lab's reference collector as the command to grade: the workstation freezes
    alice.fill(f"input[name='command-{LAB}']", "reference")
    alice.once("dialog", lambda dialog: dialog.accept())
    alice.click("#submit")
    alice.wait_for_selector("#frozen")
    assert alice.locator("#terminal").count() == 0  # no terminal once submitted
    assert login_status(workstation(exam["home"], A)) == "L"


def test_instructor_extends_grades_and_releases(exam: dict[str, Any]) -> None:
    inst = exam["pages"]["instructor"]
    inst.goto(exam["base"] + "/instructor")
    before = cohort(inst)[B]["deadline"]
    inst.select_option("select[name=candidate]", B)
    inst.fill("input[name=minutes]", str(EXTEND_MIN))
    inst.click("#extend")
    inst.wait_for_load_state()
    after = cohort(inst)
    assert after[B]["deadline"] == pytest.approx(before + 60 * EXTEND_MIN, abs=0.01)
    assert after[A]["submitted_at"] and after[B]["extension_min"] == EXTEND_MIN
    # health as the engine reports it: every device container running, and the workstation
    assert after[B]["health"] == {B: "running", f"{B}::workstation": "running"}, after[B]["health"]
    assert inst.locator(f"tr[data-candidate='{B}'] div", has_text="工作站: running").count() == 1
    exam["deadline_b"] = after[B]["deadline"]
    exam["original_deadline_b"] = before
    # A's submission was queued for grading; the instructor grades her again (a new attempt), from her row
    inst.click(f"tr[data-candidate='{A}'] button[value=grade]")
    inst.wait_for_load_state()
    assert cohort(inst)[A]["grading"][LAB]["status"] in ("queued", "grading")


def test_terminal_closes_at_the_deadline(exam: dict[str, Any]) -> None:
    """B's time runs out (after the extension): the terminal shows it closed within 2 s, the login is locked."""
    bob = log_in(exam, B)
    wait_terminal_connected(bob)
    run_in_terminal(bob, 'echo "user=$(id -un)"', "user=candidate")
    run_in_terminal(bob, "sleep 4242 & echo started-$!", "started-")
    # a loop that keeps writing into his lab folder, each line forked anew: it must not outlive the freeze
    run_in_terminal(
        bob,
        f"(while :; do date +%s.%N >> ~/{LAB}/late.txt; sleep 0.1; done) >/dev/null 2>&1 & echo writer-$((6*7))",
        "writer-42",
    )
    container = workstation(exam["home"], B)
    assert login_status(container) == "P"
    deadline = exam["deadline_b"]
    assert bob.get_attribute("#deadline", "data-deadline") == str(deadline)  # his extended deadline
    # past his first deadline he still works: the extension holds
    wait_until("past the first deadline", lambda: time.time() > exam["original_deadline_b"] + 3, 120, every=0.5)
    assert bob.get_attribute("#terminal-status", "data-state") == "connected"
    run_in_terminal(bob, "echo still-$((40+2))", "still-42")
    # the deadline
    bob.wait_for_selector('#terminal-status[data-state="closed"]', timeout=(deadline - time.time() + 10) * 1000)
    closed_at = time.time()
    status = bob.inner_text("#terminal-status")
    text = terminal_text(bob)
    locked = wait_until("the login locked", lambda: login_status(container) == "L" and time.time(), 10, every=0.1)
    print(
        f"\nterminal closed {closed_at - deadline:+.2f} s and login locked {locked - deadline:+.2f} s after the deadline"
    )
    assert -0.5 <= closed_at - deadline <= 2.0, closed_at - deadline
    assert "time is up" in status and "Time is up" in text and "考試時間已到" in text
    shot(bob, "candidate-deadline", show="#terminal-status")
    assert locked - deadline <= 3.0, locked - deadline
    # nothing of his goes on running
    assert "sleep 4242" not in in_workstation(container, "ps", "-u", "candidate", "-o", "args=")

    def frozen_state() -> dict[str, Any] | None:  # saved once the lock and the snapshot are done (after the login lock)
        f = json.loads((exam["out"] / "portal" / "state.json").read_text())["candidates"][B]["frozen"]
        return f if f and "workstation" in f and "snapshot" in f else None

    frozen = wait_until("the freeze recorded with its lock and snapshot", frozen_state, 30, every=0.2)
    assert frozen["reason"] == "deadline" and frozen["workstation"].startswith("locked:"), frozen
    # work after the deadline is not graded: the writer stopped within 2 s of it, nothing is added later, and the
    # snapshot taken at the freeze holds what the workspace holds
    late = f"/home/candidate/{LAB}/late.txt"
    lines = in_workstation(container, "cat", late).split()
    time.sleep(1.5)
    assert in_workstation(container, "cat", late).split() == lines, "the workspace changed after the freeze"
    last = float(lines[-1])
    print(f"last write in the workspace {last - deadline:+.2f} s after the deadline")
    assert last - deadline <= 2.0, last - deadline
    with tarfile.open(exam["out"] / "portal" / "snapshots" / frozen["snapshot"]["file"]) as tar:
        member = tar.extractfile(f"{B}/{LAB}/late.txt")
        assert member is not None and member.read().decode().split() == lines
    # the page follows: no terminal, his work frozen
    bob.wait_for_selector("#frozen", timeout=15_000)
    assert bob.locator("#terminal").count() == 0


def test_results_released_and_read(exam: dict[str, Any]) -> None:
    inst = exam["pages"]["instructor"]
    inst.goto(exam["base"] + "/instructor")

    def a_graded() -> dict[str, Any] | None:
        g = cohort(inst)[A]["grading"].get(LAB, {})
        done = g.get("status") in ("graded", "failed", "not graded")
        attempts = len(list((exam["out"] / "reports" / A / LAB).glob("attempt-*")))
        return g if done and attempts >= 2 else None

    graded = wait_until("both of A's gradings", a_graded, 400, every=1)
    assert graded["status"] == "graded" and graded["points"] == graded["max_points"] == 100, graded
    # the cohort view follows by itself (SSE): her row shows the score
    inst.wait_for_selector(f"tr[data-candidate='{A}'] td.grading:has-text('100/100')")
    assert cohort(inst)[B]["frozen"]["reason"] == "deadline"
    shot(inst, "instructor")

    alice = exam["pages"][A]
    alice.goto(exam["base"] + "/me")
    assert alice.locator(f"a[href='/me/report/{LAB}']").count() == 0  # not before the release
    assert alice.request.get(f"/me/report/{LAB}").status == 403
    inst.click("#release")
    inst.wait_for_load_state()
    assert inst.locator("#release").count() == 0

    alice.goto(exam["base"] + "/me")
    link = alice.locator(f"a[href='/me/report/{LAB}']")
    assert link.count() == 1
    assert re.search(FULL_MARKS, alice.locator(f".lab[data-lab='{LAB}']").inner_text())
    link.click()
    alice.wait_for_load_state()
    assert alice.url.endswith(f"/me/report/{LAB}") and LAB in alice.content()
    # after the release as before: another candidate's report is not hers to read
    assert alice.request.get(f"/assessor/report/{B}/{LAB}").status == 403

    assessor = log_in(exam, "assessor")
    assert assessor.url == exam["base"] + "/assessor"
    row = assessor.locator("#reports tbody tr", has_text=A)
    assert re.search(FULL_MARKS, row.inner_text()) and "已驗證" in row.inner_text()
    shot(assessor, "assessor")
    row.locator("a").click()
    assessor.wait_for_load_state()
    assert assessor.url.endswith(f"/assessor/report/{A}/{LAB}")
    shot(assessor, "report")
