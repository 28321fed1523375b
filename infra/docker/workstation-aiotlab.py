#!/opt/tools/bin/python
"""`aiotlab plant ...` in an exam workstation: the candidate's own devices, through their plant's config service.

    aiotlab plant reload DEVICE          hand DEVICE its config from your config folder (validated, then saved)
    aiotlab plant apply DEVICE FILE      run DEVICE with FILE without saving it (a restart loses it)
    aiotlab plant restart DEVICE         power-cycle DEVICE (it comes back with its saved config): broker,
                                         fw1, plc2 or sensors
    aiotlab plant logs NAME [--lines N]  broker, fw1, plc2-audit, hmi
    aiotlab plant config DEVICE          the config a device runs with, as the plant has it (DEVICE: broker,
                                         fw1, plc2, sensors, or its file name, e.g. mosquitto.conf)
    aiotlab plant devices                the devices, their config files and your config folder
    aiotlab plant datasheet [--lang en|zh-TW] [--json]
                                         your plant's datasheet, from the kit of the lab folder you are in
                                         (or your only lab): the same as ~/<lab>/.aiotlab/datasheet.json

`aiotlab lab kit LAB` says where your kit already is; `aiotlab grade` says how an exam is graded.
--candidate ID is accepted and ignored (your workstation knows its plant). A refused config changes nothing:
the device keeps its last good config; the reason is printed and the exit status is 1.
"""

import json
import os
import socket
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 90


def service() -> str:
    """The config service is host .5 of this workstation's plant network."""
    own = socket.gethostbyname(socket.gethostname())
    return f"http://{own.rsplit('.', 1)[0]}.5:8080"


def call(method: str, path: str, body: dict | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        service() + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            doc = json.loads(resp.read() or b"{}")
            ok = True
    except urllib.error.HTTPError as exc:
        doc = json.loads(exc.read() or b"{}")
        ok = False
    except (urllib.error.URLError, OSError) as exc:
        print(f"aiotlab: the config service does not answer ({exc})", file=sys.stderr)
        return 2
    if not ok:
        print(f"refused: {doc.get('error', doc)}", file=sys.stderr)
        return 1
    if "lines" in doc:
        print("\n".join(doc["lines"]))
    elif "text" in doc:
        print(doc["text"], end="")
    else:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    return 0


def kit_datasheet() -> str | None:
    """The datasheet of the lab folder the candidate is in (any depth), else of their only lab folder."""
    here = os.path.abspath(os.getcwd())
    while True:
        path = os.path.join(here, ".aiotlab", "datasheet.json")
        if os.path.isfile(path):
            return path
        if here in ("/", os.path.expanduser("~")):
            break
        here = os.path.dirname(here)
    home = os.path.expanduser("~")
    found = sorted(
        os.path.join(home, d, ".aiotlab", "datasheet.json")
        for d in os.listdir(home)
        if os.path.isfile(os.path.join(home, d, ".aiotlab", "datasheet.json"))
    )
    return found[0] if len(found) == 1 else None


def show(value: object, lang: str, indent: int = 0) -> None:
    """The datasheet as indented text, each bilingual string in the chosen language."""
    pad = "  " * indent
    if isinstance(value, dict) and set(value) <= {"en", "zh-TW"} and value:
        print(f"{pad}{value.get(lang) or value.get('en')}")
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                print(f"{pad}{k}:")
                show(v, lang, indent + 1)
            else:
                print(f"{pad}{k}: {v.get(lang) if isinstance(v, dict) and v else v}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                print(f"{pad}-")
                show(item, lang, indent + 1)
            else:
                print(f"{pad}- {item}")
    else:
        print(f"{pad}{value}")


def datasheet(lang: str, as_json: bool) -> int:
    path = kit_datasheet()
    if path is None:
        print("aiotlab: no datasheet found: run this in one of your lab folders (~/<lab>)", file=sys.stderr)
        return 2
    with open(path, encoding="utf-8") as f:
        sheet = json.load(f)
    rendered = os.path.join(os.path.dirname(path), f"datasheet.{lang}.md")
    if as_json:
        print(json.dumps(sheet, indent=2, ensure_ascii=False))
    elif os.path.isfile(rendered):  # the kit's rendered datasheet, as the host's `aiotlab plant datasheet` prints it
        with open(rendered, encoding="utf-8") as f:
            sys.stdout.write(f.read())
    else:
        print(f"# {path}")
        show(sheet, lang)
    return 0


def main(argv: list[str]) -> int:
    args, i = [], 0
    lines = "200"
    lang, as_json = "zh-TW", False
    while i < len(argv):
        if argv[i] == "--candidate":
            i += 2
            continue
        if argv[i] == "--lines":
            lines = argv[i + 1]
            i += 2
            continue
        if argv[i] == "--lang":
            lang = argv[i + 1] if i + 1 < len(argv) else lang
            i += 2
            continue
        if argv[i] == "--json":
            as_json = True
            i += 1
            continue
        args.append(argv[i])
        i += 1
    if "-h" in args or "--help" in args:  # anywhere: `plant restart --help` asks for help, not a device
        print(__doc__)
        return 0
    if args[:2] == ["lab", "kit"]:  # the briefs say to run it once; in an exam it was run for you
        lab = args[2] if len(args) > 2 else "<lab>"
        print(
            f"In an exam your kit is already in ~/{lab}/.aiotlab/ (datasheet, parameters, schemas, briefs): nothing "
            f"to do.\n考試中工具包已在 ~/{lab}/.aiotlab/（規格書、參數、Schema、題目說明），不需執行。"
        )
        return 0
    if args[:1] == ["grade"] or args[:2] == ["lab", "grade"]:
        print(
            "In an exam you do not grade yourself: submit in the exam portal (name the command to run, if any), or "
            "the instructor grades with `aiotlab exam grade`.\n考試中不自行評分：請於考試入口網站交卷（如需要，填寫評分時"
            "啟動的指令），或由監考老師以 `aiotlab exam grade` 評分。",
            file=sys.stderr,
        )
        return 2
    if len(args) < 2 or args[0] != "plant":
        print(__doc__)
        return 2
    cmd, rest = args[1], args[2:]
    if cmd == "reload" and len(rest) == 1:
        return call("POST", f"/v1/reload/{rest[0]}")
    if cmd == "apply" and len(rest) == 2:
        return call("POST", f"/v1/apply/{rest[0]}", {"path": os.path.abspath(rest[1])})
    if cmd == "restart" and len(rest) == 1:
        return call("POST", f"/v1/restart/{rest[0]}")
    if cmd == "logs" and len(rest) == 1:
        return call("GET", f"/v1/logs/{rest[0]}?lines={lines}")
    if cmd == "config" and len(rest) == 1:
        return call("GET", f"/v1/config/{rest[0]}")
    if cmd == "devices" and not rest:
        return call("GET", "/v1/devices")
    if cmd == "datasheet" and not rest:
        return datasheet(lang, as_json)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
