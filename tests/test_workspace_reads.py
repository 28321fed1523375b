"""The grader reads a hostile workspace without following links and within caps."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from aiotlab.grader import workspace as wsr


def test_links_are_refused_anywhere_on_the_way(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("exam secret")
    ws = tmp_path / "ws"
    (ws / "data").mkdir(parents=True)
    (ws / "data" / "ok.txt").write_text("fine")
    (ws / "data" / "link.txt").symlink_to(secret)
    (ws / "linkdir").symlink_to(tmp_path)
    assert wsr.read_text(ws, "data/ok.txt") == "fine"
    with pytest.raises(wsr.WorkspaceError, match="link"):
        wsr.read_text(ws, "data/link.txt")
    with pytest.raises(wsr.WorkspaceError):
        wsr.read_text(ws, "linkdir/secret.txt")
    with pytest.raises(wsr.WorkspaceError, match="inside the workspace"):
        wsr.read_text(ws, "../secret.txt")
    assert stat.S_ISLNK(wsr.lstat(ws, "data/link.txt").st_mode)
    names = {rel for rel, _ in wsr.walk(ws)}
    assert names == {"data", "data/ok.txt", "data/link.txt", "linkdir"}  # never descends through linkdir
    assert {rel for rel, _ in wsr.glob(ws, "**/*.txt")} == {"data/link.txt", "data/ok.txt"}


def test_caps_and_special_files(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "big.bin").write_bytes(b"x" * 2048)
    with pytest.raises(wsr.WorkspaceError, match="limit"):
        wsr.read_bytes(ws, "big.bin", max_bytes=1024)
    os.mkfifo(ws / "fifo")  # a reader would block forever on a FIFO
    with pytest.raises(wsr.WorkspaceError, match="not a regular file"):
        wsr.read_bytes(ws, "fifo")
    (ws / "zero").symlink_to("/dev/zero")
    with pytest.raises(wsr.WorkspaceError):
        wsr.read_bytes(ws, "zero")


def test_private_copy_takes_the_wal_along(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "data").mkdir(parents=True)
    (ws / "data" / "t.db").write_bytes(b"db")
    (ws / "data" / "t.db-wal").write_bytes(b"wal")
    copy = wsr.private_copy(ws, "data/t.db", 1024, also=("-wal", "-shm"))
    try:
        assert copy.read_bytes() == b"db" and (copy.parent / "t.db-wal").read_bytes() == b"wal"
        assert copy.parent != ws / "data"
    finally:
        shutil.rmtree(copy.parent)


def test_a_workstation_path_is_found_on_this_host(tmp_path: Path) -> None:
    """Exam mode: a path the candidate wrote in their workstation (a broker keyfile outside pki/) is judged where it
    is on the host; a path outside their home, or climbing out of it, is not translated."""
    from aiotlab.grader.runner import WorkstationRunner

    home = tmp_path / "exam-out" / "c1" / "workspace"
    (home / "secure-pipeline" / "broker-tls").mkdir(parents=True)
    wr = WorkstationRunner("ws-c1", home)
    got = wr.host_path("/home/candidate/secure-pipeline/broker-tls/server.key")
    assert got == home / "secure-pipeline" / "broker-tls" / "server.key"
    assert wr.host_path("/home/candidate/./secure-pipeline//x.key") == home / "secure-pipeline" / "x.key"
    assert wr.host_path("/etc/mosquitto/server.key") is None
    assert wr.host_path("/home/candidate/../root/.ssh/id_rsa") is None
    assert wr.host_path("/home/candidatex/k.key") is None
