"""An installed wheel, without the repository beside it, still knows the containerised plant's topology."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json
from pathlib import Path
from aiotlab.simulators import containers as c
path = c.compose_file()
topo = c.load_topology(path, {}, {"exam"})
prom = topo["services"]["prometheus"]
src = prom["volumes"][0].split(":")[0]
print(json.dumps({"compose": str(path), "services": sorted(topo["services"]),
                  "prometheus_config": (topo["base"] / src / "prometheus.yml").is_file()}))
"""


def test_wheel_carries_the_compose_topology(tmp_path: Path) -> None:
    out = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(ROOT)],
        check=True,
        timeout=600,
        capture_output=True,
    )
    (wheel,) = out.glob("aiotlab-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        z.extractall(site)
    assert "aiotlab/simulators/specs/compose/docker-compose.yml" in names
    # the extracted wheel comes first on the path: the repository's editable install is not what answers
    probe = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert found["compose"].startswith(str(site)), found
    assert {"core", "broker", "fw1", "plc1", "em1", "plc2", "sensors", "hmi", "configd", "workstation"} <= set(
        found["services"]
    )
    assert found["prometheus_config"], "the Prometheus config the compose file mounts is not in the wheel"
