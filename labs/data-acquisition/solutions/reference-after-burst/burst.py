"""Read PLC-1 at RATE requests/s for SECONDS from the workstation address, then stop (an earlier attempt's load);
then write the reference acquisition plan (make_plan.py), as the reference's own setup does."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pymodbus.client import ModbusTcpClient


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=30.0)
    args = parser.parse_args()
    sheet = json.loads(Path(os.environ["AIOTLAB_DATASHEET"]).read_text())
    plc1 = sheet["plc1"]
    client = ModbusTcpClient(
        plc1["host"], port=int(plc1["port"]), source_address=(sheet["network"]["workstation"], 0), timeout=2
    )
    if not client.connect():
        raise SystemExit(f"PLC-1 at {plc1['host']}:{plc1['port']} did not answer")
    end, n = time.monotonic() + args.seconds, 0
    while time.monotonic() < end:
        client.read_input_registers(0, count=1, device_id=int(plc1.get("unit_id", 1)))
        n += 1
        time.sleep(max(0.0, n / args.rate - (args.seconds - (end - time.monotonic()))))
    client.close()
    print(f"burst: {n} requests in {args.seconds:g} s")
    subprocess.run([sys.executable, str(Path(__file__).parent.parent / "reference" / "make_plan.py")], check=True)


if __name__ == "__main__":
    main()
