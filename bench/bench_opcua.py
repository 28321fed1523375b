"""OPC UA reads/s against a running plant's PLC-2 with asyncua's client.

Method: one detached plant; a client on the same machine reads back to back for T seconds, (a) one node per
Read request, (b) all 12 process variables in one Read request; first over SecurityPolicy None (factory
default), then after `plant reload plc2` with Basic256Sha256 SignAndEncrypt + username. Reported: requests/s,
values/s, plant CPU per request (plant process only, from /proc).
Usage: python bench/bench_opcua.py [seconds]
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from common import AIOTLAB, cli, save  # noqa: E402


async def run(url: str, ns_uri: str, nodes: list[str], seconds: float, pid: int, security: dict | None) -> dict:
    from asyncua import Client

    c = Client(url, timeout=10)
    if security:
        c.application_uri = "urn:aiotlab:test-client:bench"
        c.set_user(security["user"])
        c.set_password(security["password"])
        await c.set_security_string(security["string"])
    await c.connect()
    out = {}
    try:
        ns = await c.get_namespace_index(ns_uri)
        handles = [c.get_node(f"ns={ns};s={n}") for n in nodes]
        proc = psutil.Process(pid)
        for mode in ("single", "batch12"):
            c0 = sum(proc.cpu_times()[:2])
            n = 0
            end = time.perf_counter() + seconds
            t0 = time.perf_counter()
            while time.perf_counter() < end:
                if mode == "single":
                    await handles[0].read_value()
                else:
                    await c.read_values(handles)
                n += 1
            wall = time.perf_counter() - t0
            cpu = sum(proc.cpu_times()[:2]) - c0
            per = 1 if mode == "single" else len(handles)
            out[mode] = {
                "requests_per_s": round(n / wall),
                "values_per_s": round(n * per / wall),
                "plant_cpu_us_per_request": round(cpu / n * 1e6),
            }
    finally:
        await c.disconnect()
    return out


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    home = Path(tempfile.mkdtemp(prefix="aiotlab-bench-"))
    os.environ["AIOTLAB_HOME"] = str(home)
    os.environ.setdefault("AIOTLAB_EXAM_SECRET", "bench")
    from aiotlab.simulators import addressing as ad

    from opcua_util import client_cert

    try:
        cli("plant", "up", "-c", "uabench", "--detach")
        sheet = __import__("json").loads(cli("plant", "datasheet", "-c", "uabench", "--format", "json").stdout)
        url, ns_uri = sheet["plc2"]["endpoint"], sheet["plc2"]["namespace_uri"]
        nodes = [n["node_id"] for n in sheet["plc2"]["nodes"]]
        pid = ad.read_state("uabench")["pid"]
        results = {"None": asyncio.run(run(url, ns_uri, nodes, seconds, pid, None))}
        cfg = home / "plants" / "uabench" / "config" / "plc2.yaml"
        cfg.write_text(
            "security_policies: [Basic256Sha256_SignAndEncrypt]\nidentity_tokens: [username]\n"
            "users:\n  eng: {password: pw, role: engineer}\nroles:\n  engineer: [read, write, call]\n"
        )
        cli("plant", "reload", "plc2", "-c", "uabench")
        cert, key = asyncio.run(client_cert(home / "pki"))
        sec = {"user": "eng", "password": "pw", "string": f"Basic256Sha256,SignAndEncrypt,{cert},{key}"}
        results["Basic256Sha256_SignAndEncrypt"] = asyncio.run(run(url, ns_uri, nodes, seconds, pid, sec))
    finally:
        subprocess.run([*AIOTLAB, "plant", "down", "--all"], capture_output=True, timeout=120)
        shutil.rmtree(home, ignore_errors=True)
    save(
        "opcua", {"method": f"asyncua client, back-to-back Read requests, {seconds:.0f} s per mode", "results": results}
    )


if __name__ == "__main__":
    main()
