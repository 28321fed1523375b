"""The CLI as an instructor uses it, at 80 columns: `aiotlab --version`; rosters in UTF-8 (with or without a BOM) or
Big5, anything else refused with the file and line; a real 5-candidate exam graded in a terminal (one plant down):
spinners only while a candidate is being graded, none left after, result tables within 80 columns with coloured
verdicts and the roster's names; the cohort CSV with names in UTF-8 with a BOM; `report verify` told whose signature
is expected by the exam file or a public key, with clear errors."""

from __future__ import annotations

import csv
import fcntl
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len

from aiotlab.simulators import addressing as ad

from conftest import AIOTLAB

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"  # rich's "dots" spinner, the grading progress's
ROSTER = {  # id: (name, what the candidate runs: the lab's reference collector with one flaw, or none)
    "cli-ref": ("王小明", None),
    "cli-scale": ("陳美玲", "scale"),
    "cli-topic": ("Carol Lee", "topic"),
    "cli-word": ("林志豪", "word-order"),
    "cli-down": ("黃淑芬", None),  # their plant is down at grading time
}
EXPECTED_FAIL = {"cli-scale": "daq.values", "cli-topic": "daq.coverage", "cli-word": "daq.values"}


def env80(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOTLAB_EXAM_SECRET")}
    return {**env, "COLUMNS": "80", "LINES": "40", **extra}


def run(*args: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AIOTLAB, *args], capture_output=True, text=True, timeout=timeout, env=env80(**extra))


def run_in_terminal(args: list[str], timeout: float = 400) -> tuple[int, str]:
    """Run the CLI in a pseudo-terminal of 80 columns, as an instructor's terminal would; returns (exit, raw output)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 80, 0, 0))
    proc = subprocess.Popen(
        [*AIOTLAB, *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env80(TERM="xterm-256color"),
        start_new_session=True,
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the terminal's other end closed: the command has ended
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        else:
            os.killpg(proc.pid, signal.SIGTERM)
            raise AssertionError(f"aiotlab {' '.join(args)} did not end in {timeout} s")
    finally:
        os.close(master)
    return proc.wait(timeout=30), out.decode("utf-8", "replace")


def lines_of(text: str) -> list[str]:
    return ANSI.sub("", text).replace("\r", "").split("\n")


def assert_fits_80(text: str) -> None:
    """Nothing goes past column 80 but a path that cannot fit (printed whole, for the terminal to wrap)."""
    wide = [
        line
        for line in lines_of(text)
        if cell_len(line.rstrip()) > 80
        and not (line.split()[-1].startswith("/") and cell_len(line.rsplit(" ", 1)[0]) < 80)
    ]
    assert not wide, "wider than 80 columns:\n" + "\n".join(wide)


def write_exam(d: Path, roster: bytes, exam_id: str = "cli-exam", out: str = "out") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "exam.secret").write_text("exam-secret-for-the-cli-test\n")
    (d / "roster.csv").write_bytes(roster)
    path = d / "exam.yaml"
    path.write_text(
        f"exam: {exam_id}\nlabs: [data-acquisition]\nbackend: process\nsecret: {{file: exam.secret}}\n"
        f"roster: roster.csv\nout: {out}\n"
    )
    return path


def roster_text(names: dict[str, str]) -> str:
    return "id,name\r\n" + "".join(f"{c},{name}\r\n" for c, name in names.items())


def table_row(text: str, first: str) -> str:
    """The line of a printed table whose first cell is `first`."""
    return next(line for line in lines_of(text) if re.match(rf"│ {re.escape(first)} +│", line))


# --- version ---------------------------------------------------------------------------------------------------


def test_version_is_the_packages() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    script = Path(sys.executable).with_name("aiotlab")  # the installed console script, as a user types it
    for argv in ([[str(script)]] if script.exists() else []) + [AIOTLAB]:
        r = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout == f"aiotlab {version}\n", (argv, r.stdout, r.stderr)


# --- rosters -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoding", ["utf-8", "utf-8-sig", "cp950"], ids=["utf-8", "utf-8 with BOM", "Big5 (Excel on zh-TW Windows)"]
)
def test_roster_in_utf8_or_big5_is_read_with_its_names(aiot_home: Path, tmp_path: Path, encoding: str) -> None:
    exam = write_exam(tmp_path, roster_text({"enc-a": "王小明", "enc-b": "陳美玲"}).encode(encoding))
    r = run("exam", "status", str(exam))
    assert "Traceback" not in r.stderr and r.returncode == 1, r.stdout + r.stderr  # 1: no plant launched yet
    for c, name in (("enc-a", "王小明"), ("enc-b", "陳美玲")):
        row = table_row(r.stdout, c)
        assert name in row and "not launched" in row, r.stdout
    assert_fits_80(r.stdout)


@pytest.mark.parametrize(
    "raw,line,message",
    [
        ("id,name\r\nzoe,Zoë\r\n".encode("cp1252"), 2, "neither UTF-8 nor Big5"),
        ("id,name\nabc,王小明\n".encode() + "def,陳美玲\n".encode("cp950"), 2, "mixes encodings"),
        ("id,name\nabc,王小明\n".encode("utf-16"), 1, "UTF-16"),
        ("學號,姓名\nabc,王小明\n".encode(), 1, "needs an 'id' column (its first line has '學號', '姓名')"),
        ("id,name\nabc,王小明\nAbc Def,陳美玲\n".encode("cp950"), 3, "candidate id 'Abc Def'"),
    ],
    ids=["cp1252", "mixed", "utf-16", "no id column", "bad id"],
)
def test_unreadable_roster_is_refused_naming_file_and_line(
    aiot_home: Path, tmp_path: Path, raw: bytes, line: int, message: str
) -> None:
    exam = write_exam(tmp_path, raw)
    r = run("exam", "up", str(exam), "--practice", timeout=60, COLUMNS="300")  # the message on one line
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith(f"error: {tmp_path / 'roster.csv'}:{line}: "), r.stderr
    assert message in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()  # nothing launched


# --- an exam graded at 80 columns --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graded(aiot_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Five candidates on a Big5 roster: four graded at once in an 80-column terminal (the reference and three
    flawed collectors), the fifth's plant killed before grading."""
    d = tmp_path_factory.mktemp("cli-exam")
    exam = write_exam(d, roster_text({c: name for c, (name, _) in ROSTER.items()}).encode("cp950"))
    (d / "collector.py").write_text(
        "import os, sys\n"
        f"flaws = {{c: f for c, (_, f) in {ROSTER!r}.items()}}\n"
        "import pathlib, subprocess\n"
        "candidate, python, collector, plan, root = sys.argv[1:6]\n"
        "subprocess.run([python, str(pathlib.Path(collector).with_name('make_plan.py'))], check=True)\n"
        "argv = [python, collector, '--plan', plan, '--topic-root', root]\n"
        "flaw = flaws.get(candidate)\n"
        "os.execv(python, argv + (['--flaw', flaw] if flaw else []))\n"
    )
    up = run("exam", "up", str(exam), "--practice", timeout=200)
    assert up.returncode == 0, up.stdout + up.stderr
    victim = ad.read_state("cli-down")
    os.kill(victim["pid"], signal.SIGKILL)
    time.sleep(0.5)
    solution = (
        f"{{python}} {d / 'collector.py'} {{candidate}} {{python}} "
        "{labs_dir}/data-acquisition/solutions/reference/collector.py {plan_file} {topic_root}"
    )
    t0 = time.monotonic()
    code, raw = run_in_terminal(["exam", "grade", str(exam), "--lang", "en", "--solution", solution])
    seconds = time.monotonic() - t0
    yield {"dir": d, "exam": exam, "up": up, "code": code, "raw": raw, "seconds": seconds}
    run("exam", "down", str(exam), timeout=120)
    shutil.rmtree(ad.plant_dir("cli-down"), ignore_errors=True)


def test_exam_up_table_fits_80_columns_with_names(graded: dict[str, Any]) -> None:
    up = graded["up"].stdout
    assert_fits_80(up)
    assert "5/5 plants running" in up
    for c, (name, _) in ROSTER.items():
        assert c in up and name in up
        ws = str(graded["dir"] / "out" / c / "workspace")
        if len(ws) <= 76:  # a path is never cut (nor broken) where it fits the terminal
            assert ws in up, up


def test_grading_in_a_terminal_shows_spinners_only_while_grading(graded: dict) -> None:
    raw, code = graded["raw"], graded["code"]
    assert code == 1, raw[-3000:]  # one candidate not graded
    assert "Traceback" not in raw
    text = ANSI.sub("", raw.replace("\x1b[2K", "\n")).replace("\r", "")  # an erased line: a line's start
    # the display kept updating while the work went on: the elapsed time of a grading was shown at 20 s and more
    assert re.search(rf"[{SPINNER}] cli-ref: .* 0:00:[2-5]\d", text), text[-3000:]
    # a candidate done leaves the display: no spinner beside them after their line
    for c in ROSTER:
        mark = re.search(rf"^[✓½✗–!] {c}: ", text, re.M)
        assert mark, (c, text[-3000:])
        assert not re.search(rf"[{SPINNER}] {c}: ", text[mark.end() :]), f"{c}'s spinner went on after their result"
    # and nothing of the display is left once grading is over: what follows is the result, for good
    final = raw[raw.rfind("\x1b[?25h") :]
    assert not any(s in final for s in SPINNER), ANSI.sub("", final)
    assert "checks not passed" in final and "cohort summary:" in final
    assert_fits_80(final)


def test_result_table_has_names_and_coloured_verdicts(graded: dict) -> None:
    final = graded["raw"][graded["raw"].rfind("\x1b[?25h") :]
    rows = {c: table_row(final, c) for c in ROSTER}
    for c, (name, _) in ROSTER.items():
        assert name in rows[c], rows[c]
    assert "✓ 100/100" in rows["cli-ref"] and "7/7" in rows["cli-ref"] and "all passed" in rows["cli-ref"]
    for c, check in EXPECTED_FAIL.items():
        assert "½" in rows[c] or "✗" in rows[c], rows[c]
        assert check in final.split(c, 1)[1], (c, check)
    assert "not graded" in rows["cli-down"]
    assert "\x1b[32m✓" in final  # verdicts in colour on a terminal (and marked, for a log without colour)
    assert "plant cli-down down since" in " ".join(ANSI.sub("", final).split())


def test_cohort_csv_has_names_and_a_bom_for_excel(graded: dict) -> None:
    path = graded["dir"] / "out" / "reports" / "cohort" / "data-acquisition" / "cohort.csv"
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 with BOM: Excel shows the Chinese names as written
    rows = list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))
    assert list(rows[0])[:6] == ["candidate", "name", "lab", "points", "max_points", "percent"]
    assert {r["candidate"]: r["name"] for r in rows} == {c: n for c, (n, _) in ROSTER.items() if c != "cli-down"}
    assert next(float(r["percent"]) for r in rows if r["candidate"] == "cli-ref") == 100.0


def test_grading_piped_to_a_log_prints_lines_not_a_spinner(graded: dict) -> None:
    """In a log or a pipe a spinner cannot be redrawn: each candidate's result is a line (here every plant is down)."""
    assert run("exam", "down", str(graded["exam"]), timeout=120).returncode == 0
    r = run("exam", "grade", str(graded["exam"]), timeout=200)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert "\x1b[" not in r.stdout and not any(s in r.stdout for s in SPINNER)
    for c in ROSTER:
        assert f"– {c}: plant {c} down since" in r.stdout, r.stdout
    assert_fits_80(r.stdout)


# --- report verify -----------------------------------------------------------------------------------------------


def report_of(graded: dict, c: str = "cli-ref") -> Path:
    return graded["dir"] / "out" / "reports" / c / "data-acquisition" / "latest" / "report.json"


def test_verify_with_the_exam_file_or_its_public_key(graded: dict) -> None:
    for how in (["--exam", str(graded["exam"])], ["--key", str(graded["dir"] / "out" / "exam-public-key.pem")]):
        r = run("report", "verify", str(report_of(graded)), *how)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "expected signer:" in r.stdout and "signature valid" in r.stdout and "verified" in r.stdout
    r = run("report", "verify", str(report_of(graded)), "--exam", str(graded["exam"]))
    assert "exam cli-exam" in r.stdout


def test_verify_against_another_exam_fails_naming_it(graded: dict, tmp_path: Path) -> None:
    from aiotlab.grader import signing

    other = write_exam(tmp_path, b"id\nzed\n", exam_id="other-exam")
    _, pub = signing.make_pair(tmp_path / "out" / "keys")
    shutil.copyfile(pub, tmp_path / "out" / "exam-public-key.pem")
    r = run("report", "verify", str(report_of(graded)), "--exam", str(other))
    out = " ".join(r.stdout.split())
    assert r.returncode == 1 and "signed with another key" in out, out
    assert "the report is of exam cli-exam, not other-exam" in out and "NOT verified" in out


@pytest.mark.parametrize(
    "case,message",
    [
        ("both", "not both"),
        ("exam not up", "has no public key at"),
        ("private key", "is a private key"),
        ("exam file as key", "is not an Ed25519 public key in PEM"),
        ("key missing", "cannot read the public key"),
        ("no key named", "this report is of exam cli-exam: name its key with --exam EXAM.yaml"),
    ],
)
def test_verify_errors_are_clear(graded: dict, tmp_path: Path, case: str, message: str) -> None:
    exam, pub = str(graded["exam"]), str(graded["dir"] / "out" / "exam-public-key.pem")
    args = {
        "both": ["--exam", exam, "--key", pub],
        "exam not up": ["--exam", str(write_exam(tmp_path, b"id\nzed\n", exam_id="never-up"))],
        "private key": ["--key", str(graded["dir"] / "out" / "keys" / "signing-key.pem")],
        "exam file as key": ["--key", exam],
        "key missing": ["--key", str(tmp_path / "nope.pem")],
        "no key named": [],
    }[case]
    r = run("report", "verify", str(report_of(graded)), *args, AIOTLAB_HOME=str(tmp_path / "empty-home"))
    err = " ".join(r.stderr.split())
    assert r.returncode == 1 and "Traceback" not in r.stderr and message in err, r.stdout + r.stderr
