"""Exam mode on a real Docker engine: three candidates, each with a plant and a workstation; logins issued by
`exam up`; solutions graded inside the workstations with the declared verdicts; and the trust boundary tried as a
hostile candidate would, from inside a workstation (../shared/design/trust-model.md): every attempt refused, each
beside a positive control that shows the same probe succeeds where it is allowed."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from aiotlab.labs.loader import load_lab

from conftest import AIOTLAB, cli

pytestmark = pytest.mark.docker
SECRET = "exam-mode-tier-secret-7f3a"
CANDIDATES = ("em-a", "em-b", "em-c")


def failed_checks(report: Path) -> set[str]:
    doc = json.loads(report.read_text())
    return {c["id"] for c in doc["checks"] if c["status"] != "pass"}


def state(home: Path, candidate: str, lab: str = "data-acquisition") -> dict[str, Any]:
    """The state of a candidate's plant for a lab (an exam of two labs: a plant and a workstation per lab)."""
    return json.loads((home / "plants" / f"{candidate}.{lab}" / "plant.json").read_text())


def ws_run(container: str, script: str, user: str = "candidate", timeout: float = 60) -> str:
    """Run a Python script in a workstation as its user; returns what it printed."""
    out = subprocess.run(
        ["docker", "exec", "-i", "-u", user, container, "python3", "-"],
        input=script,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


CONNECT = """
import socket, json
results = {}
for host, port in %r:
    try:
        socket.create_connection((host, port), 2.0).close()
        results[f"{host}:{port}"] = "open"
    except OSError as exc:
        results[f"{host}:{port}"] = type(exc).__name__
print(json.dumps(results))
"""


def reachable(container: str, targets: list[tuple[str, int]]) -> dict[str, str]:
    return json.loads(ws_run(container, CONNECT % (targets,)))


@pytest.fixture(scope="module")
def exam(aiot_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("exam-mode")
    (d / "secret.txt").write_text(SECRET + "\n")
    (d / "roster.csv").write_text("id,name\n" + "".join(f"{c},{c.upper()}\n" for c in CANDIDATES))
    (d / "exam.yaml").write_text(
        "exam: exam-mode-tier\nlabs: [data-acquisition, dashboard-alerting]\nbackend: docker\n"
        "workstation: {ssh_bind: 127.0.0.1}\n"
        "secret: {file: secret.txt}\nroster: roster.csv\nout: out\n"
    )
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "200"  # the logins table on one line per candidate
    try:
        up = cli("exam", "up", str(d / "exam.yaml"), timeout=300)
        yield d, up.stdout
    finally:
        cli("exam", "down", str(d / "exam.yaml"), timeout=180, check=False)
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns


def test_logins_are_issued_once_and_kept_only_as_hashes(exam: Any, aiot_home: Path) -> None:
    import paramiko

    d, printed = exam
    # id │ (name │) ssh -p PORT candidate@HOST │ password
    passwords = dict(
        re.findall(r"(em-[abc])\s*│(?:[^│\n]*│)?\s*ssh -p \d+ candidate@\S+\s*│\s*([A-Za-z0-9]{14})", printed)
    )
    # one password per candidate, for each of their workstations (one per lab)
    assert len(re.findall(r"candidate@127\.0\.0\.1", printed)) == 2 * len(CANDIDATES), printed
    assert set(passwords) == set(CANDIDATES), printed
    stored = (d / "out" / "credentials.json").read_text()
    assert all(p not in stored for p in passwords.values())  # hashes only
    assert all(json.loads(stored)[c]["argon2"].startswith("$argon2") for c in CANDIDATES)
    assert oct((d / "out" / "credentials.json").stat().st_mode & 0o777) == "0o600"
    port = state(aiot_home, "em-a")["workstation"]["ssh"]["port"]

    def login(password: str) -> str:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        client.connect(
            "127.0.0.1",
            port=port,
            username="candidate",
            password=password,
            timeout=15,
            allow_agent=False,
            look_for_keys=False,
        )
        try:
            _, out, _ = client.exec_command("id -un; ls", timeout=15)
            return out.read().decode()
        finally:
            client.close()

    assert login(passwords["em-a"]).split() == ["candidate", "dashboard-alerting", "data-acquisition"]
    with pytest.raises(paramiko.AuthenticationException):
        login(passwords["em-b"])  # another candidate's password is not this workstation's
    # a second `exam up` prints no password again and keeps the one issued
    again = cli("exam", "up", str(d / "exam.yaml"), timeout=300).stdout
    assert "issued before; unchanged" in again and passwords["em-a"] not in again
    assert login(passwords["em-a"]).startswith("candidate")


def test_solutions_graded_inside_the_workstations_with_declared_verdicts(exam: Any, aiot_home: Path) -> None:
    """Reference full marks, a flawed solution exactly its declared failure, and a solution that leaves a daemon
    behind (new session, cleared environment): graded like the reference, its daemon ended with the grading."""
    d, _ = exam
    lab = load_lab("data-acquisition")
    out = d / "graded"
    # em-c wrote their own collector (the reference's code) and a start command that leaves a daemon behind
    mine = d / "out" / "em-c" / "workspace" / "data-acquisition" / "collector.py"
    mine.write_bytes((lab.path / "solutions" / "reference" / "collector.py").read_bytes())
    os.lchown(mine, 1000, 1000)
    planner = mine.with_name("make_plan.py")  # and decided their acquisition plan as the reference does
    planner.write_bytes((lab.path / "solutions" / "reference" / "make_plan.py").read_bytes())
    os.lchown(planner, 1000, 1000)
    # and a process that forks itself anew every 50 ms (a list-then-kill round trip never catches it)
    hop = mine.with_name("hop.py")
    hop.write_text("import os, time\nwhile True:\n    if os.fork():\n        os._exit(0)\n    time.sleep(0.05)\n")
    os.lchown(hop, 1000, 1000)
    escaping = (
        'sh -c \'env -i setsid sh -c "sleep 900" </dev/null >/dev/null 2>&1 & '
        "python3 hop.py </dev/null >/dev/null 2>&1 & "
        "python3 make_plan.py && exec python3 collector.py --plan {plan_file} --topic-root {topic_root}'"
    )
    runs = {"em-a": "reference", "em-b": "flawed-scale", "em-c": escaping}
    logs = grade_all("data-acquisition", runs, out, d)
    report = {c: out / f"{c}.data-acquisition" / "data-acquisition" / "latest" / "report.json" for c in runs}
    assert failed_checks(report["em-a"]) == set(), logs["em-a"]
    assert failed_checks(report["em-b"]) == set(lab.solutions["flawed-scale"].expect_fail), logs["em-b"]
    doc = json.loads(report["em-a"].read_text())
    assert doc["score"]["points"] == 100
    assert doc["solution"]["command"][:2] == [
        "python3",
        "/home/candidate/.aiotlab-labs/data-acquisition/solutions/reference/collector.py",
    ]
    # the collector wrote its database in the candidate's home, as the candidate
    db = d / "out" / "em-a" / "workspace" / "data-acquisition"  # the candidate's home holds every lab
    assert any(p.stat().st_uid == 1000 for p in db.rglob("*") if p.is_file() and p.suffix in (".db", ".sqlite"))
    # em-c: its escaped daemon was ended; nothing of the grading is left running, nothing staged is left behind
    c_doc = json.loads(report["em-c"].read_text())
    assert c_doc["solution"]["processes_ended"] >= 2, c_doc["solution"]  # the collector and its daemon
    ws = state(aiot_home, "em-c")["workstation"]["container"]
    script = (
        "import subprocess; print(subprocess.run(['ps','-o','comm=','-u','1000'],capture_output=True,text=True).stdout)"
    )
    assert ws_run(ws, script, user="root").split() == []  # no process of the candidate's user is left
    assert not (d / "out" / "em-c" / "workspace" / ".aiotlab-labs").exists()


def grade_all(lab: str, runs: dict[str, str], out: Path, d: Path) -> dict[str, str]:
    """Grade candidates' plants for a lab at once, as the instructor would with the exam's secret (not the
    suite's); returns each one's output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOTLAB_EXAM_SECRET")}
    env["AIOTLAB_EXAM_SECRET_FILE"] = str(d / "secret.txt")
    procs = {
        c: subprocess.Popen(
            [*AIOTLAB, "grade", lab, "-c", f"{c}.{lab}", "--solution", sol, "-o", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for c, sol in runs.items()
    }
    return {c: p.communicate(timeout=600)[0] for c, p in procs.items()}


def test_dashboard_lab_graded_in_exam_mode(exam: Any, aiot_home: Path) -> None:
    """The grader's Prometheus (on the host's loopback, out of a workstation's reach) scrapes the candidate's
    exporter in their workstation and evaluates their rules: reference full marks, a flawed one its failure."""
    d, _ = exam
    lab = load_lab("dashboard-alerting")
    out = d / "graded"
    runs = {"em-a": "reference", "em-b": "flawed-wrong-threshold"}
    logs = grade_all("dashboard-alerting", runs, out, d)
    for c, sol in runs.items():
        report = out / f"{c}.dashboard-alerting" / "dashboard-alerting" / "latest" / "report.json"
        assert failed_checks(report) == set(lab.solutions[sol].expect_fail), logs[c][-3000:]


def test_a_grade_with_another_secret_is_refused(exam: Any) -> None:
    """The plant was derived from the exam's secret: grading it with another would compare it with another plant."""
    d, _ = exam
    proc = subprocess.run(
        [*AIOTLAB, "grade", "data-acquisition", "-c", "em-a.data-acquisition", "-o", str(d / "wrong")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "AIOTLAB_EXAM_SECRET": "not-the-exam-secret"},
    )
    assert proc.returncode != 0 and "another exam secret" in proc.stdout + proc.stderr, proc.stdout[-2000:]


def test_datasheet_command_in_the_workstation(exam: Any, aiot_home: Path) -> None:
    """The briefs' `aiotlab plant datasheet` works in a workstation: the kit's datasheet of the lab folder."""
    ws = state(aiot_home, "em-a")["workstation"]["container"]
    out = subprocess.run(
        ["docker", "exec", "-u", "candidate", "-w", "/home/candidate/data-acquisition", ws,
         "aiotlab", "plant", "datasheet", "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    sheet = json.loads(out.stdout)
    assert sheet["candidate"] == state(aiot_home, "em-a")["candidate"] and sheet["plc1"]["host"].startswith("10.")
    text = subprocess.run(
        ["docker", "exec", "-u", "candidate", "-w", "/home/candidate/data-acquisition/.aiotlab", ws,
         "aiotlab", "plant", "datasheet", "--lang", "en"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert text.returncode == 0 and sheet["plc1"]["endpoint"] in text.stdout, text.stdout + text.stderr
    assert text.stdout.startswith("# Plant datasheet") and "Process data" in text.stdout  # the rendered one
    # the instructor runs one command there, scripted (no TTY): as the candidate, in the lab folder's home
    d, _ = exam
    one = cli("exam", "shell", str(d / "exam.yaml"), "em-a", "--", "sh", "-c", "id -un; pwd", timeout=60)
    assert one.stdout.split() == ["candidate", "/home/candidate"], one.stdout + one.stderr
    # the briefs' `aiotlab lab kit` says where the kit already is (an exam ran it for the candidate)
    kit = subprocess.run(
        ["docker", "exec", "-u", "candidate", ws, "aiotlab", "lab", "kit", "data-acquisition", "--candidate", "x"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert kit.returncode == 0 and "~/data-acquisition/.aiotlab/" in kit.stdout, kit.stdout + kit.stderr


def test_workstation_holds_no_secret_and_no_hidden_material(exam: Any, aiot_home: Path) -> None:
    ws = state(aiot_home, "em-a")["workstation"]["container"]
    script = f"""
import os, subprocess, json, importlib.util
found = subprocess.run(["grep", "-rIl", "--exclude-dir=proc", "--exclude-dir=sys", "--exclude-dir=dev", {SECRET!r}, "/"],
                       capture_output=True, text=True).stdout.split()
hidden = subprocess.run(["find", "/", "-xdev", "(", "-name", "lab.yaml", "-o", "-name", "rule-tests", "-o", "-name", "plant.key",
                         "-o", "-name", "truth.db", "-o", "-name", "control.token", "-o", "-name", "signing*.pem", ")", "-print"],
                        capture_output=True, text=True).stdout.split()
print(json.dumps({{
    "env": sorted(k for k in os.environ if k.startswith("AIOTLAB") or "SECRET" in k or "TOKEN" in k),
    "found": found, "hidden": hidden,
    "aiotlab": importlib.util.find_spec("aiotlab") is not None,
    "pymodbus": importlib.util.find_spec("pymodbus") is not None,
    "date_time_checked": not __import__("jsonschema").Draft202012Validator(
        {{"format": "date-time"}}, format_checker=__import__("jsonschema").Draft202012Validator.FORMAT_CHECKER
    ).is_valid("2026-11-29T16:20:05.418"),  # no offset: the candidate's jsonschema judges formats as the grader's
    "docker_sock": os.path.exists("/var/run/docker.sock"),
    "uid": os.getuid(),
    "homes": sorted(os.listdir("/home")),
    "sudo": subprocess.run(["sh", "-c", "command -v sudo"], capture_output=True).returncode == 0,
}}))
"""
    seen = json.loads(ws_run(ws, script, user="root"))  # even root inside the workstation finds none of it
    assert seen["env"] == [] and seen["found"] == [] and seen["hidden"] == [], seen
    assert not seen["aiotlab"] and seen["pymodbus"] and seen["date_time_checked"]  # the tools, not the harness
    assert not seen["docker_sock"] and seen["homes"] == ["candidate"] and not seen["sudo"]
    as_candidate = json.loads(ws_run(ws, script))
    assert as_candidate["uid"] == 1000 and as_candidate["env"] == []
    env = json.loads(subprocess.run(["docker", "inspect", ws], capture_output=True, text=True, check=True).stdout)[0][
        "Config"
    ]["Env"]
    assert not [e for e in env if "SECRET" in e or e.startswith("AIOTLAB")], env
    # no plant container holds the secret either: they get the plant's own key
    for c in subprocess.run(
        ["docker", "ps", "-q", "--filter", "label=io.aiotlab.candidate=em-a"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split():
        env = json.loads(subprocess.run(["docker", "inspect", c], capture_output=True, text=True).stdout)[0]["Config"][
            "Env"
        ]
        assert not [e for e in env if SECRET in e or "EXAM_SECRET" in e], env
        # the devices run unprivileged, and a plant container holds no lab material or grader
        service = json.loads(subprocess.run(["docker", "inspect", c], capture_output=True, text=True).stdout)[0][
            "Config"
        ]["Labels"]["io.aiotlab.service"]
        if service in ("workstation", "configd"):
            continue
        probe = subprocess.run(
            [
                "docker",
                "exec",
                c,
                "sh",
                "-c",
                "awk '/^Uid:/ {print $2}' /proc/1/status; python -c 'import importlib.util as u; "
                'print(u.find_spec("aiotlab.labs"), u.find_spec("aiotlab.grader"))\'',
            ],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.split()
        assert probe == ["10001", "None", "None"], (service, probe)


def test_workstation_reaches_only_its_own_plant(exam: Any, aiot_home: Path) -> None:
    a, b = state(aiot_home, "em-a"), state(aiot_home, "em-b")
    ha, hb = a["addresses"]["hosts"], b["addresses"]["hosts"]
    ws = a["workstation"]["container"]
    plant_net = ha["broker"].rsplit(".", 1)[0]
    control = ha["control"]
    # a listener on every address of the host: the grader's or any host service would be one
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", 0))  # noqa: S104 - the point: a host service on all addresses
    srv.listen(8)
    port = srv.getsockname()[1]

    def serve() -> None:
        with contextlib.suppress(OSError):  # closed when the test is done
            while True:
                srv.accept()[0].close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        own = [(ha["broker"], 1883), (ha["plc1"], 502), (ha["em1"], 502), (ha["plc2"], 4840)]
        forbidden = [
            (control, 9900),  # the control plane
            (control, 9901),  # the core's bus
            (ha["plc1_field"], 502),  # PLC-1 directly, past FW-1
            (f"{plant_net}.254", port),  # the host, on its plant-network address
            ("172.17.0.1", port),  # the host, on another of its addresses
            (hb["broker"], 1883),  # another candidate's broker (a flood would need this)
            (hb["plc1"], 502),  # another candidate's FW-1
            (hb["workstation"], 22),  # another candidate's workstation
            ("93.184.216.34", 80),  # the world outside
        ]
        seen = reachable(ws, own + forbidden)
        assert [seen[f"{h}:{p}"] for h, p in own] == ["open"] * len(own), seen
        assert [k for h, p in forbidden if seen[(k := f"{h}:{p}")] == "open"] == [], seen
        # positive controls for the negatives: from the host, the same listener and control plane answer
        socket.create_connection((f"{plant_net}.254", port), 2.0).close()
        socket.create_connection((control, 9900), 2.0).close()
    finally:
        srv.close()
    # a grader listener cannot be squatted: the workstation can bind only its own address
    bind = ws_run(
        ws,
        f"""
import socket
for addr in ({plant_net + ".254"!r}, {ha["workstation"]!r}):
    s = socket.socket()
    try:
        s.bind((addr, 9108)); print(addr, "bound")
    except OSError as exc:
        print(addr, exc.errno)
    s.close()
""",
    )
    assert f"{plant_net}.254 99" in bind and f"{ha['workstation']} bound" in bind, bind  # 99: EADDRNOTAVAIL


def test_planted_links_are_moved_aside_never_followed(exam: Any, aiot_home: Path) -> None:
    """A candidate replaces their kit folder with a link to /etc (and another lab folder with a link to /root):
    a later `exam up` re-installs the kit without writing through the link."""
    d, _ = exam
    ws = state(aiot_home, "em-b")["workstation"]["container"]
    subprocess.run(
        [
            "docker",
            "exec",
            "-u",
            "candidate",
            ws,
            "sh",
            "-c",
            "cd /home/candidate/data-acquisition && mv .aiotlab mine && ln -s /etc .aiotlab",
        ],
        check=True,
        timeout=30,
    )
    cli("exam", "up", str(d / "exam.yaml"), timeout=300)
    lab_dir = d / "out" / "em-b" / "workspace" / "data-acquisition"
    assert (lab_dir / ".aiotlab").is_dir() and not (lab_dir / ".aiotlab").is_symlink()
    assert (lab_dir / ".aiotlab" / "datasheet.json").is_file()
    assert any(p.is_symlink() for p in lab_dir.glob(".aiotlab.old-*"))
    assert not Path("/etc/datasheet.json").exists() and not Path("/etc/brief.en.md").exists()


TRUST_LIST_STEPS = r"""
set -e
cd /home/candidate/data-acquisition/plant-config
aiotlab plant config plc2.yaml > plc2.yaml
grep -v '^trust_list:' plc2.yaml > plc2.new && mv plc2.new plc2.yaml && echo 'trust_list: ua-trust' >> plc2.yaml
mkdir -p ua-trust
for n in one two; do
  openssl req -x509 -newkey rsa:2048 -nodes -keyout /tmp/$n.key -out ua-trust/$n.pem -subj /CN=$n -days 2 2>/dev/null
done
aiotlab plant reload plc2 > /tmp/first.json
rm ua-trust/two.pem
aiotlab plant reload plc2
"""


def test_a_certificate_removed_from_the_trust_list_is_no_longer_trusted(exam: Any, aiot_home: Path) -> None:
    """The devices run with a validated copy of the candidate's home: a certificate the candidate deletes from
    PLC-2's trust-list folder leaves the copy at the next reload (it once stayed trusted for good)."""
    st = state(aiot_home, "em-c")
    out = subprocess.run(
        ["docker", "exec", "-i", "-u", "candidate", st["workstation"]["container"], "sh", "-"],
        input=TRUST_LIST_STEPS, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    second = json.loads(out.stdout)
    # an exam's config folder is per lab: ~/<lab>/plant-config
    assert second["removed"] == ["/home/candidate/data-acquisition/plant-config/ua-trust/two.pem"], second
    copy = aiot_home / "plants" / "em-c.data-acquisition" / "devhome" / "data-acquisition" / "plant-config" / "ua-trust"
    assert sorted(f.name for f in copy.iterdir()) == ["one.pem"]
    # and the device reads what it was given: PLC-2 trusts one certificate now
    config = subprocess.run(
        ["docker", "exec", "-u", "candidate", st["workstation"]["container"], "aiotlab", "plant", "config", "plc2"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert config.returncode == 0 and "trust_list: ua-trust" in config.stdout, config.stdout + config.stderr


def test_exam_plants_publish_nothing_on_the_host_but_ssh(exam: Any, aiot_home: Path) -> None:
    """A practice plant publishes its ports on the host's loopback block; an exam plant serves on its own networks
    only (a host process cannot reach a candidate's plant, nor collide with it), the workstation's SSH aside."""
    import docker

    client = docker.from_env(timeout=60)
    published = {
        c.labels.get("io.aiotlab.service"): c.attrs["HostConfig"].get("PortBindings") or {}
        for c in client.containers.list(all=True, filters={"label": f"io.aiotlab.home={aiot_home}"})
    }
    assert published and all(not ports for svc, ports in published.items() if svc != "workstation"), published
    assert all(list(ports) == ["22/tcp"] for svc, ports in published.items() if svc == "workstation"), published


def test_exam_down_removes_workstations_and_their_fences(exam: Any, aiot_home: Path) -> None:
    d, _ = exam
    st = cli("exam", "status", str(d / "exam.yaml"), timeout=60).stdout
    assert st.count("11/11") == 2 * len(CANDIDATES), st  # plant, config service and workstation, per lab
    projects = [st["project"] for st in map(json.loads, (p.read_text() for p in aiot_home.glob("plants/*/plant.json")))]
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True, check=True).stdout
    assert projects and all(f"aiotlab:{p}" in rules for p in projects if "em-a" in p), rules  # fenced while up
    cli("exam", "down", str(d / "exam.yaml"), timeout=180)
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True, check=True).stdout
    assert not [p for p in projects if f"aiotlab:{p}" in rules], rules
    left = subprocess.run(
        [
            "docker",
            "ps",
            "-aq",
            "--filter",
            "label=io.aiotlab.candidate=em-a",
            "--filter",
            f"label=io.aiotlab.home={aiot_home}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert left == []
