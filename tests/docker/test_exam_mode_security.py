"""Exam mode for the security labs: the candidate configures their devices only through the config service
(validated by allow-list, never the control token), the grader's probes come from the plant network itself (the
HMI's and the workstation's addresses inside their containers, attacker addresses drawn per run), and the labs'
reference and flawed solutions get the verdicts they get on process plants."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from aiotlab.labs.loader import load_lab

from conftest import AIOTLAB, cli

pytestmark = pytest.mark.docker
SECRET = "exam-mode-security-secret-51c"
CAND = "sec-a"


@pytest.fixture(scope="module")
def exam(aiot_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("exam-security")
    (d / "secret.txt").write_text(SECRET + "\n")
    (d / "roster.csv").write_text(f"id\n{CAND}\n")
    (d / "exam.yaml").write_text(
        "exam: exam-security-tier\nlabs: [secure-pipeline]\nbackend: docker\nworkstation: {ssh_bind: 127.0.0.1}\n"
        "secret: {file: secret.txt}\nroster: roster.csv\nout: out\n"
    )
    try:
        cli("exam", "up", str(d / "exam.yaml"), timeout=300)
        yield d, json.loads((aiot_home / "plants" / CAND / "plant.json").read_text())
    finally:
        cli("exam", "down", str(d / "exam.yaml"), timeout=180, check=False)


def in_ws(state: dict[str, Any], script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "exec", "-u", "candidate", state["workstation"]["container"], "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )


def grade(d: Path, lab: str, solution: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOTLAB_EXAM_SECRET")}
    env["AIOTLAB_EXAM_SECRET_FILE"] = str(d / "secret.txt")
    out = d / "graded"
    proc = subprocess.run(
        [*AIOTLAB, "grade", lab, "-c", CAND, "--solution", solution, "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    report = out / CAND / lab / "latest" / "report.json"
    assert report.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return {c["id"] for c in json.loads(report.read_text())["checks"] if c["status"] != "pass"}


def test_device_configs_only_through_the_validating_config_service(exam: Any) -> None:
    d, st = exam
    folder = st["workstation"]["config_dir"]
    sheet = json.loads((d / "out" / CAND / "workspace" / "secure-pipeline" / ".aiotlab" / "datasheet.json").read_text())
    assert sheet["config_dir"] == folder and sheet["config_service"].endswith(".5:8080")
    # a legitimate change is accepted and in effect
    ok = in_ws(st, f"cd {folder} && echo 'max_keepalive 300' >> mosquitto.conf && aiotlab plant reload broker")
    assert ok.returncode == 0, ok.stderr
    assert "max_keepalive 300" in in_ws(st, "aiotlab plant config mosquitto.conf").stdout
    good = in_ws(st, f"cat {folder}/mosquitto.conf").stdout
    attempts = {
        "plugin": "echo 'plugin /home/candidate/evil.so' >> mosquitto.conf",
        "log_dest": "echo 'log_dest file /etc/cron.d/evil' >> mosquitto.conf",
        "listener": "echo 'listener 1884 0.0.0.0' >> mosquitto.conf && echo 'listener 1885 10.9.9.9' >> mosquitto.conf",
        "link": "rm mosquitto.conf && ln -s /run/aiotlab/control.token mosquitto.conf",
        "size": "head -c 400000 /dev/zero | tr '\\\\0' '#' >> mosquitto.conf",
    }
    for what, edit in attempts.items():
        # the edit, the reload, then the good config back (it comes on stdin: the edit may have replaced the file)
        res = subprocess.run(
            ["docker", "exec", "-i", "-u", "candidate", st["workstation"]["container"], "sh", "-c",
             f"cd {folder} && {edit}; aiotlab plant reload broker; rc=$?; rm -f mosquitto.conf; "
             f"cat > mosquitto.conf; exit $rc"],
            input=good, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert res.returncode == 1 and "refused" in res.stderr, (what, res.stdout, res.stderr)
    # every refusal left the broker running its last good config, and the control token never left the plant
    running = in_ws(st, "aiotlab plant config mosquitto.conf").stdout
    assert "max_keepalive 300" in running and "plugin" not in running and "evil" not in running
    assert "Bearer" not in running
    fw = in_ws(
        st,
        f"cd {folder} && python3 -c \"import yaml;d=yaml.safe_load(open('fw1.yaml'));"
        f"d['rules']=[{{'name':f'r{{i}}','sources':['10.0.0.1/32'],'action':'allow'}} for i in range(201)];"
        f"yaml.safe_dump(d,open('/home/candidate/fw-big.yaml','w'))\" && aiotlab plant apply fw1 /home/candidate/fw-big.yaml",
    )
    assert fw.returncode == 1 and "200" in fw.stderr, fw.stderr
    # the control plane itself is out of the workstation's reach (the config service holds the token)
    probe = in_ws(
        st, f"curl -s -m 3 -o /dev/null -w '%{{http_code}}' http://{st['addresses']['hosts']['control']}:9900/v1/status"
    )
    assert probe.stdout.strip() in ("000", ""), probe.stdout


def test_a_config_named_in_another_is_never_copied_unvalidated(exam: Any) -> None:
    """A red-team finding: a comment naming the config folder in sensors.yaml once copied every device config of
    the folder, unvalidated, into the devices' copy (a broker acl_file pointing at the plant's key, printed back on
    restart). Now a device config reaches the devices only through its own device's validation."""
    d, st = exam
    folder = st["workstation"]["config_dir"]
    res = in_ws(
        st,
        f"cd {folder} && cp mosquitto.conf /tmp/good.conf && "
        "echo 'acl_file /var/lib/aiotlab/plant/plant.key' >> mosquitto.conf && "
        f"echo '# {folder}/' >> sensors.yaml && aiotlab plant reload sensors; rc=$?; "
        "cp /tmp/good.conf mosquitto.conf; exit $rc",
    )
    assert res.returncode == 0, res.stderr
    assert "mosquitto.conf" not in res.stdout and "fw1.yaml" not in res.stdout, res.stdout
    restart = in_ws(st, "aiotlab plant restart broker")
    assert restart.returncode == 0, restart.stderr
    running = in_ws(st, "aiotlab plant config mosquitto.conf").stdout
    assert "plant.key" not in running and (d / "secret.txt").read_text().strip() not in restart.stdout + restart.stderr


@pytest.mark.parametrize(
    ("lab", "solution"),
    [
        ("secure-pipeline", "reference"),
        ("secure-pipeline", "flawed-audit-after"),  # the read tool run in the workstation, its output held
        ("ics-hardening", "reference"),
        ("ics-hardening", "flawed-old-attackers"),  # attacker addresses drawn per run, on the plant network
        ("ics-hardening", "flawed-hmi-blocked"),  # the positive control from the HMI's own address
    ],
)
def test_security_labs_graded_in_exam_mode(exam: Any, lab: str, solution: str) -> None:
    d, _ = exam
    assert grade(d, lab, solution) == set(load_lab(lab).solutions[solution].expect_fail)
