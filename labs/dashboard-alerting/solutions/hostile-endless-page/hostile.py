"""A hostile candidate: /metrics streams garbage forever, the rule file is not YAML, the dashboard and the alert plan
are JSON nested 100 000 deep. The grader must fail every check with a clear reason, on time, and never hang or crash."""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Endless(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        chunk = b"plant_tank_level_meters{" + b"x" * 8192 + b"\n"
        try:
            while True:
                self.wfile.write(chunk)
        except OSError:
            return

    def log_message(self, *args: object) -> None:
        return


def main() -> None:
    p = json.loads(Path(os.environ["AIOTLAB_LAB_PARAMS"]).read_text())
    ws = Path(os.environ["AIOTLAB_WORKSPACE"])
    if sys.argv[1:] == ["setup"]:
        (ws / p["rules_file"]).parent.mkdir(parents=True, exist_ok=True)
        (ws / p["rules_file"]).write_text("groups: [\n  - {{{{ not yaml\n", encoding="utf-8")
        (ws / p["dashboard_file"]).write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
        (ws / p["alert_plan_file"]).write_text('{"TankLevelHigh": ' + "[" * 100_000 + "]" * 100_000 + "}")
        return
    sheet = json.loads(Path(os.environ["AIOTLAB_DATASHEET"]).read_text())
    ThreadingHTTPServer((sheet["network"]["workstation"], int(p["exporter_port"])), Endless).serve_forever()


if __name__ == "__main__":
    main()
