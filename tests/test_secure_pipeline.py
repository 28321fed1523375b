"""Secure-pipeline specifics: the storage and key checks judge positive evidence (a world-readable CSV or a
non-SQLite file is not "encrypted"), the read tool's audit-before-print order is observed, not assumed; and one
broker defect (a certificate without the broker's address) fails one check while the checks that need a verified
connection are not assessable, naming the cause once. The full set of flawed solutions is graded live by
tests/test_security_labs.py; this module grades only the certificate case again to look at its report closely."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from aiotlab.grader import report
from aiotlab.grader.checks import pipeline
from aiotlab.grader.engine import GradeContext, grade
from aiotlab.grader.observers import Message, MqttObservation
from aiotlab.grader.results import FAIL, NOT_ASSESSABLE, PASS
from aiotlab.labs.loader import load_lab

from conftest import cli

LAB = "secure-pipeline"
ONLY = [x for x in os.environ.get("AIOTLAB_TEST_LABS", "").split(",") if x]


class FakeControl:
    """The control plane as the storage checks use it: the broker's saved config."""

    def __init__(self, conf: str = "", broker_log: list[str] | None = None) -> None:
        self.conf, self.broker_log = conf, broker_log

    def get(self, path: str) -> Any:
        if path == "/v1/config/mosquitto.conf":
            return {"name": "mosquitto.conf", "mode": "0o600", "text": self.conf}
        if path.startswith("/v1/logs/broker") and self.broker_log is not None:
            return {"lines": self.broker_log}
        raise KeyError(path)


def make_ctx(ws: Path, conf: str = "", messages: int = 1) -> GradeContext:
    lab = load_lab(LAB)
    ctx = GradeContext(lab, "t", dict(lab.data["parameters"]), {}, {}, FakeControl(conf), ws)  # type: ignore[arg-type]
    ctx.observation = MqttObservation(
        messages=[Message("telemetry/plc1/level", time.time(), b"{}", 2, body={}) for _ in range(messages)],
        window=(time.time() - 20, time.time()),
    )
    return ctx


def spec(check_id: str) -> dict[str, Any]:
    return next(c for c in load_lab(LAB).checks if c["id"] == check_id)


def write(path: Path, text: str, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def test_world_readable_csv_is_not_protected(tmp_path: Path) -> None:
    """The old check took any non-SQLite file for encrypted: a world-readable CSV store passed."""
    data = tmp_path / "data"
    write(data / "telemetry.csv", "device,tag,value\nplc1,level,1.0\n", 0o644)
    data.chmod(0o755)
    r = pipeline.storage_protected(make_ctx(tmp_path), spec("storage.protected"))
    assert r.status == FAIL
    bad = [p for p in r.evidence["probes"] if not p["ok"]]
    assert {p["observed"] for p in bad} == {"mode 0755", "mode 0644"}
    assert "data/ has mode 0755" in r.summary["en"]  # what was observed, not the check's title
    assert r.evidence["files"] == ["data/telemetry.csv"]


def test_non_sqlite_file_readable_by_others_fails_and_private_store_passes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write(data / "telemetry.db", os.urandom(64).hex(), 0o604)  # "looks encrypted": still readable by others
    data.chmod(0o700)
    assert pipeline.storage_protected(make_ctx(tmp_path), spec("storage.protected")).status == FAIL
    (data / "telemetry.db").chmod(0o600)
    write(data / "audit.jsonl", "{}\n", 0o644)  # the audit log is storage.audit_trail's matter, not this check's
    r = pipeline.storage_protected(make_ctx(tmp_path), spec("storage.protected"))
    assert r.status == PASS, r.evidence
    assert r.evidence["files"] == ["data/telemetry.db"]


def test_a_link_is_judged_by_what_it_points_to(tmp_path: Path) -> None:
    """Nothing is read through a link, but its target's permission bits are what protects the data."""
    outside = write(tmp_path / "elsewhere" / "store.csv", "device,tag,value\n", 0o644)
    (tmp_path / "data").mkdir(mode=0o700)
    (tmp_path / "data" / "telemetry.csv").symlink_to(outside)
    r = pipeline.storage_protected(make_ctx(tmp_path), spec("storage.protected"))
    assert r.status == FAIL
    assert any("a symbolic link to" in p["observed"] and not p["ok"] for p in r.evidence["probes"]), r.evidence


def test_storage_without_telemetry_is_not_assessable_naming_the_broker_defect(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, messages=0)
    ctx.block("broker-cert", "certificate without the broker's address", "憑證未含代理伺服器位址", "mq.tls_versions")
    r = pipeline.storage_protected(ctx, spec("storage.protected"))
    assert (r.status, r.blocked_by) == (NOT_ASSESSABLE, "broker-cert")
    r = pipeline.observed(ctx, spec("daq.coverage"))
    assert (r.status, r.blocked_by) == (NOT_ASSESSABLE, "broker-cert")


def test_no_collector_is_not_blamed_on_the_broker_defect(tmp_path: Path) -> None:
    """With a broker defect recorded but nothing from the workstation in the broker's log since grading started,
    no collector ran: coverage fails saying so (from the log), storage is not assessable naming that, not the CA."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    log = [f"{now}: New connection from 127.64.9.77:40000 on port 8883.", f"{now}: Client <unknown> disconnected."]
    ctx = make_ctx(tmp_path, messages=0)
    ctx.control = FakeControl(broker_log=log)  # type: ignore[assignment]
    ctx.plant_info = {"addresses": {"hosts": {"workstation": "127.64.9.40", "broker": "127.64.9.1"}}}
    ctx.block("mqtt-ca-file", "the candidate's CA certificate is missing", "考生 CA 憑證不存在", "mq.tls_versions")
    r = pipeline.observed(ctx, spec("daq.coverage"))
    assert r.status == FAIL and "nothing from the workstation connected" in r.summary["en"], r.summary
    r = pipeline.storage_protected(ctx, spec("storage.protected"))
    assert (r.status, r.blocked_by) == (NOT_ASSESSABLE, "nothing-published"), r.summary
    assert "CA" not in r.summary["en"] and "daq.coverage" in r.summary["en"], r.summary
    # the same log with the collector's connection in it: the broker defect explains the silence
    ctx = make_ctx(tmp_path, messages=0)
    ctx.control = FakeControl(broker_log=[*log, f"{now}: New connection from 127.64.9.40:41000 on port 8883."])  # type: ignore[assignment]
    ctx.plant_info = {"addresses": {"hosts": {"workstation": "127.64.9.40", "broker": "127.64.9.1"}}}
    ctx.block("mqtt-ca-file", "the candidate's CA certificate is missing", "考生 CA 憑證不存在", "mq.tls_versions")
    assert pipeline.storage_protected(ctx, spec("storage.protected")).blocked_by == "mqtt-ca-file"


def test_every_key_the_glob_matches_is_checked_and_named(tmp_path: Path) -> None:
    """The old check looked at three fixed names only: pki/plant-broker.key (0644) passed."""
    write(tmp_path / "pki" / "ca.key", "k", 0o600)
    write(tmp_path / "pki" / "collector-ua.pem", "k", 0o600)
    write(tmp_path / "pki" / "plant-broker.key", "k", 0o644)
    outside = write(tmp_path / "elsewhere" / "mqtt.key", "k", 0o640)
    ctx = make_ctx(tmp_path, conf=f"listener 8883\nkeyfile {outside}\n")
    r = asyncio.run(pipeline.private_keys(ctx, spec("storage.private_keys")))
    assert r.status == FAIL
    assert set(r.evidence["keys"]) == {
        "pki/ca.key",
        "pki/collector-ua.pem",
        "pki/plant-broker.key",
        f"{outside} (the broker's keyfile)",
    }
    bad = {p["what"].split(":")[0] for p in r.evidence["probes"] if not p["ok"]}
    assert bad == {"pki/plant-broker.key", f"{outside} (the broker's keyfile)"}
    for p in r.evidence["probes"]:
        assert ("why" in p) == (not p["ok"])  # passing probes carry no failure wording
    (tmp_path / "pki" / "plant-broker.key").chmod(0o600)
    outside.chmod(0o600)
    r = asyncio.run(pipeline.private_keys(ctx, spec("storage.private_keys")))
    assert r.status == PASS and "pki/plant-broker.key" in r.summary["en"]


def tool(tmp_path: Path, body: str, n: int) -> list[str]:
    script = tmp_path / "tool.py"
    script.write_text(
        "import json, sys\n"
        "audit = lambda: open(sys.argv[1], 'a').write(json.dumps({'user': 'u'}) + '\\n')\n"
        f"rows = ''.join(json.dumps({{'ts': str(i), 'value': i}}) + '\\n' for i in range({n}))\n" + body
    )
    return [sys.executable, str(script), str(tmp_path / "audit.jsonl")]


@pytest.mark.parametrize(
    "body,n,before",
    [
        ("audit()\nsys.stdout.write(rows)\n", 2000, True),
        ("sys.stdout.write(rows)\nsys.stdout.flush()\naudit()\n", 20, False),  # printed, then audited
        ("sys.stdout.write(rows)\naudit()\n", 2000, False),  # more than a pipe buffer: written at once
        ("sys.stdout.write(rows)\naudit()\n", 20, True),  # still buffered: nothing left before the audit line
        ("import os\nos.write(1, rows.encode())\naudit()\n", 20, False),
    ],
)
def test_read_tool_order_is_observed(tmp_path: Path, body: str, n: int, before: bool) -> None:
    t0 = time.monotonic()
    audit = tmp_path / "audit.jsonl"
    run = pipeline.run_held(tool(tmp_path, body, n), tmp_path, lambda: audit.exists() and audit.stat().st_size > 0)
    assert run["before_output"] is before, run["order"]
    assert len(run["out"].splitlines()) == n and run["out"].startswith(b'{"ts": "0"'), run["out"][:80]
    assert run["exit"] == 0
    assert time.monotonic() - t0 < 8.0  # a tool blocked on its output is recognised, not waited out


@pytest.fixture(scope="module")
def san_run(aiot_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if ONLY and LAB not in ONLY:
        pytest.skip(f"{LAB} not graded in this run")
    out = tmp_path_factory.mktemp("san")
    cand = "s-sec-san-blocker"
    cli("plant", "down", "-c", cand, check=False)
    try:
        run = asyncio.run(grade(load_lab(LAB), cand, solution="flawed-broker-san", out_dir=out))
        doc = report.write_all(run, out)
    finally:
        cli("plant", "down", "-c", cand, check=False)
    return {"doc": doc, "dir": out}


DEPENDENTS = {
    "mq.accounts",
    "mq.acl",
    "mq.sys_hidden",
    "pipeline.secure_channels",
    "storage.audit_trail",
    "daq.coverage",
    "daq.values",
}


def test_certificate_defect_fails_once_and_blocks_its_dependents(san_run: dict[str, Any]) -> None:
    doc = san_run["doc"]
    by_id = {c["id"]: c for c in doc["checks"]}
    explain = "\n".join(f"{c['id']}: {c['status']} {c.get('blocked_by')} - {c['summary']['en']}" for c in doc["checks"])
    assert by_id["mq.tls_versions"]["status"] == FAIL, explain
    blocked = {cid for cid, c in by_id.items() if c["status"] == NOT_ASSESSABLE}
    assert blocked == DEPENDENTS, explain
    assert all(by_id[c]["blocked_by"] == "broker-cert" and by_id[c]["points"] == 0 for c in DEPENDENTS)
    assert {cid for cid, c in by_id.items() if c["status"] == PASS} == set(by_id) - DEPENDENTS - {"mq.tls_versions"}
    # named once, at the top; what became of the collector itself (it gave up on the broker) is said apart
    causes = [c for c in doc["not_assessable"] if c["blocked_checks"]]
    assert [c["cause"] for c in causes] == ["broker-cert"], causes
    assert causes[0]["failed_check"] == "mq.tls_versions"
    assert set(causes[0]["blocked_checks"]) == DEPENDENTS
    assert "subjectAltName" in causes[0]["text"]["en"] or "IP address mismatch" in causes[0]["text"]["en"]
    for cid in DEPENDENTS:  # the dependents say why they were not assessed, not a failure of their own
        assert by_id[cid]["summary"]["en"].startswith("Not assessable: the broker certificate"), by_id[cid]["summary"]


def test_tls_evidence_words_match_the_verdicts(san_run: dict[str, Any]) -> None:
    ev = json.loads((san_run["dir"] / "evidence" / "mq.tls_versions.json").read_text())
    for p in ev["probes"]:
        assert ("why" in p) == (not p["ok"]), p
        if p["ok"] and "pinned to TLSv1" in p["what"]:
            assert "refused" in p["observed"], p
    bad = [p for p in ev["probes"] if not p["ok"]]
    assert bad and all("certificate rejected" in str(p["observed"]) for p in bad), bad
