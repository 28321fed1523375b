"""The `aiotlab` command line."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(
    help="aiotlab: practical-exam harness for AIoT and ICS security.", no_args_is_help=True, add_completion=False
)
plant_app = typer.Typer(help="The candidate's virtual plant.", no_args_is_help=True)
app.add_typer(plant_app, name="plant")
standards_app = typer.Typer(help="Competency standards and their behaviour indicators.", no_args_is_help=True)
app.add_typer(standards_app, name="standards")
lab_app = typer.Typer(help="Labs (practical exam tasks).", no_args_is_help=True)
app.add_typer(lab_app, name="lab")
report_app = typer.Typer(help="Exam reports.", no_args_is_help=True)
app.add_typer(report_app, name="report")
exam_app = typer.Typer(help="Exams: a roster's plants, kits and grading (EXAM.yaml).", no_args_is_help=True)
app.add_typer(exam_app, name="exam")
ExamFile = Annotated[Path, typer.Argument(metavar="EXAM.yaml", help="The exam file (roster, labs, backend, secret).")]
console = Console()
err_console = Console(stderr=True)
err = Console(stderr=True)

Candidate = Annotated[str, typer.Option("--candidate", "-c", help="Candidate id (the plant's owner).")]


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def endpoint_table(endpoints: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for col in ("device", "protocol", "endpoint", "notes"):
        table.add_column(col)
    for e in endpoints:
        notes = []
        if "unit_id" in e:
            notes.append(f"unit id {e['unit_id']}")
        if e.get("via"):
            notes.append(f"through {e['via'].upper()}")
        if e["protocol"] == "client":
            notes.append("source address")
        table.add_row(e["device"], e["protocol"], e["endpoint"], ", ".join(notes))
    return table


@plant_app.command("up")
def plant_up(
    candidate: Candidate = "demo",
    seed: Annotated[int | None, typer.Option(help="Explicit seed instead of (exam secret, candidate).")] = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run in the background.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the endpoint table as JSON.")] = False,
    backend: Annotated[
        str, typer.Option(help="process (this machine, embedded) or docker (one container per device).")
    ] = "process",
    image: Annotated[str, typer.Option(help="Plant image for the docker backend.")] = "aiotlab-plant:latest",
) -> None:
    """Start the candidate's plant and print its endpoints."""

    def show(state: dict[str, Any]) -> None:
        from rich.markup import escape

        for w in state.get("warnings") or []:
            err.print(f"[bold yellow]WARNING:[/] {escape(w)}")
        if as_json:
            keys = ("candidate", "status", "slot", "pid", "endpoints", "control", "warnings", "error")
            print(json.dumps({k: state.get(k) for k in keys}, indent=2))
        else:
            console.print(
                endpoint_table(state.get("endpoints") or [], f"plant of {candidate} (slot {state.get('slot')})")
            )
            console.print(f"datasheet: aiotlab plant datasheet --candidate {candidate}")

    from aiotlab.simulators.backends import BackendError, backend_named

    try:
        chosen = backend_named(backend, image)
    except BackendError as exc:
        _fail(str(exc))
    if chosen.isolated or detach:  # started in the background (a daemon, or containers)
        try:
            state = chosen.up(candidate, seed)
        except (BackendError, ValueError) as exc:
            _fail(f"plant did not start: {exc}{_in_use_hint(str(exc))}")
        if chosen.isolated:
            from aiotlab.simulators.control_client import ControlClient

            state = {**state, "endpoints": ControlClient.for_candidate(candidate).get("/v1/info")["endpoints"]}
        show(state)
        return

    def ready(plant: Any) -> None:
        from aiotlab.simulators import addressing as ad

        show(ad.read_state(candidate) or {})
        if not as_json:
            console.print("[green]running[/] - Ctrl-C stops the plant")

    from aiotlab.simulators import launch
    from aiotlab.simulators.runtime import PlantStartError
    from aiotlab.simulators.yamlconf import ConfigError

    try:
        asyncio.run(launch.serve(candidate, seed, on_ready=ready))
    except (PlantStartError, ConfigError, ValueError) as exc:
        _fail(f"plant did not start: {exc}{_in_use_hint(str(exc))}")


def _in_use_hint(error: str) -> str:
    """An address in use is another plant on this machine (another AIOTLAB_HOME, another user) or a service: say
    what to do rather than leave the socket error alone."""
    if "address already in use" not in error.lower() and "in use by" not in error.lower():
        return ""
    return (
        "\n  another plant on this machine (another AIOTLAB_HOME or user), or a service, holds these addresses. "
        "`aiotlab plant status` lists this registry's plants. A plant that has never run takes another slot when "
        "started again; one whose kit already names its addresses keeps them: stop the other plant first."
    )


@plant_app.command("status")
def plant_status(
    candidate: Annotated[str | None, typer.Option("--candidate", "-c")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List plants and whether they run; with a running plant, its live device status."""
    from aiotlab.simulators import addressing as ad
    from aiotlab.simulators.control_client import ControlClient

    states = [s for s in ad.all_states() if candidate is None or s.get("candidate") == candidate]
    out = []
    for s in states:
        alive = ad.is_running(s) if ad.is_container_plant(s) else ad.pid_alive(s.get("pid"))
        entry = {**s, "alive": alive}
        if alive and s.get("status") == "running":
            try:
                entry["live"] = ControlClient.for_candidate(s["candidate"]).get("/v1/status")
            except Exception as exc:  # noqa: BLE001 - status must report, not crash
                entry["live_error"] = str(exc)
        elif s.get("status") == "running":
            entry["status"] = "crashed"
        out.append(entry)
    if as_json:
        print(json.dumps(out, indent=2, default=str))
        return
    table = Table(title="plants")
    for col in ("candidate", "status", "slot", "pid", "plc1 scan ms", "tick p99 ms", "sensors", "broker"):
        table.add_column(col)
    for e in out:
        live = e.get("live") or {}
        sensors = live.get("sensors") or {}
        table.add_row(
            e.get("candidate", "?"),
            e.get("status", "?"),
            str(e.get("slot")),
            str(e.get("pid") or e.get("backend") or "-"),
            f"{live['plc1']['scan_time_ms']:.1f}" if live else "-",
            str((live.get("tick_jitter_ms") or {}).get("p99", "-")) if live else "-",
            ", ".join(f"{k}:{v['published']}" for k, v in sensors.items()) or "-",
            ("up" if live.get("broker", {}).get("alive") else "DOWN") if live else "-",
        )
    console.print(table)
    if not out:
        console.print("no plants")


@plant_app.command("down")
def plant_down(
    candidate: Annotated[str | None, typer.Option("--candidate", "-c")] = "demo",
    all_plants: Annotated[bool, typer.Option("--all", help="Stop every plant.")] = False,
) -> None:
    """Stop the candidate's plant (or all), and clean leftovers of crashed ones."""
    from aiotlab.simulators import addressing as ad

    names = [s["candidate"] for s in ad.all_states()] if all_plants else [candidate or "demo"]
    from aiotlab.simulators.backends import BackendError, backend_of

    for name in names:
        try:
            console.print(f"{name}: {backend_of(ad.read_state(name)).down(name)}")
        except BackendError as exc:
            err.print(f"{name}: {exc}")


@plant_app.command("compose-env")
def plant_compose_env(
    candidate: Candidate = "demo",
    seed: Annotated[int | None, typer.Option(help="Explicit seed instead of (exam secret, candidate).")] = None,
    image: Annotated[str, typer.Option(help="The plant image.")] = "aiotlab-plant:latest",
) -> None:
    """Record the candidate's plant as a compose plant and print its variables for docker-compose --env-file."""
    from aiotlab.simulators.containers import ContainerError, register

    try:
        env = register(candidate, seed, "compose", image)
    except (ContainerError, ValueError) as exc:
        _fail(str(exc))
    for k, v in env.items():
        print(f"{k}={v}")


@plant_app.command("wait")
def plant_wait(
    candidate: Candidate = "demo",
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 90.0,
) -> None:
    """Wait until the candidate's plant answers with every device connected (containers take a while)."""
    from aiotlab.simulators.containers import ContainerError, wait_ready

    try:
        st = wait_ready(candidate, timeout)
    except ContainerError as exc:
        _fail(str(exc))
    console.print(f"{candidate}: ready (slot {st.get('slot')}, {st.get('backend', 'process')} backend)")


@plant_app.command("reload")
def plant_reload(
    device: Annotated[str, typer.Argument(help="broker, plc1, em1, fw1, plc2, sensors or hmi")],
    candidate: Candidate = "demo",
) -> None:
    """Apply an edited device config (files in the plant's state directory under config/)."""
    from aiotlab.simulators.control_client import DEVICE_OP_TIMEOUT_S, ControlClient, ControlError

    try:
        result = ControlClient.for_candidate(candidate, DEVICE_OP_TIMEOUT_S).post(f"/v1/reload/{device}", {})
    except ControlError as exc:
        _fail(str(exc))
    console.print(f"[green]reloaded[/] {result['device']}")


@plant_app.command("apply")
def plant_apply(
    device: Annotated[str, typer.Argument(help="broker, fw1, plc2 or sensors")],
    config: Annotated[Path, typer.Argument(help="config file to run the device with (not saved)")],
    candidate: Candidate = "demo",
) -> None:
    """Run a device with a config without saving it: like a firewall's running config, a restart loses it."""
    from aiotlab.simulators.control_client import DEVICE_OP_TIMEOUT_S, ControlClient, ControlError

    try:
        text = config.read_text(encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot read {config}: {exc}")
    try:
        result = ControlClient.for_candidate(candidate, DEVICE_OP_TIMEOUT_S).post(f"/v1/apply/{device}", {"text": text})
    except ControlError as exc:
        _fail(str(exc))
    console.print(
        f"[yellow]applied[/] {result['device']} (running config only: save it to the config directory and run "
        f"`aiotlab plant reload {device}`, or it is lost when the device restarts)"
    )


@plant_app.command("restart")
def plant_restart(
    device: Annotated[str, typer.Argument(help="a device (broker, plc1, em1, fw1, plc2, sensors, hmi) or all")],
    candidate: Candidate = "demo",
) -> None:
    """Power-cycle a device: it comes back with its saved config."""
    from aiotlab.simulators.control_client import DEVICE_OP_TIMEOUT_S, ControlClient, ControlError
    from aiotlab.simulators.runtime import RELOADABLE

    client = ControlClient.for_candidate(candidate, DEVICE_OP_TIMEOUT_S)
    for name in RELOADABLE if device == "all" else (device,):
        try:
            client.post(f"/v1/restart/{name}", {})
        except ControlError as exc:
            _fail(str(exc))
        console.print(f"[green]restarted[/] {name}")


@plant_app.command("datasheet")
def plant_datasheet(
    candidate: Candidate = "demo",
    seed: Annotated[int | None, typer.Option()] = None,
    lang: Annotated[str, typer.Option(help="zh-TW or en")] = "zh-TW",
    fmt: Annotated[str, typer.Option("--format", "-f", help="md, html or json")] = "md",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """The candidate's datasheet: devices, addresses, register maps, OPC UA nodes, MQTT topics."""
    from aiotlab.simulators.datasheet import render

    if lang not in ("zh-TW", "en") or fmt not in ("md", "html", "json"):
        _fail("--lang must be zh-TW or en; --format md, html or json")
    text = render(candidate, seed=seed, lang=lang, fmt=fmt)
    if out:
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}")
    else:
        sys.stdout.write(text)


@standards_app.command("list")
def standards_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The standards aiotlab knows, with their indicator counts."""
    from aiotlab.grader.standards import standards

    data = standards()
    if as_json:
        print(
            json.dumps(
                [{"code": c, "title": s["title"], "indicators": len(s["indicators"])} for c, s in data.items()],
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    table = Table(title="competency standards")
    for col in ("code", "title (zh-TW)", "title (en)", "level", "indicators"):
        table.add_column(col)
    for c, s in data.items():
        table.add_row(c, s["title"]["zh-TW"], s["title"]["en"], str(s["level"]), str(len(s["indicators"])))
    console.print(table)


@standards_app.command("show")
def standards_show(
    code: Annotated[str, typer.Argument(help="A standard (INM3513-009v1) or an indicator (INM3513-009v1/P6.2.2).")],
    lang: Annotated[str, typer.Option(help="zh-TW, en or both")] = "both",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A standard's tasks and indicators, or one indicator."""
    from aiotlab.grader.standards import indicator, standard

    try:
        data = indicator(code) if "/" in code or code.startswith("P") else standard(code)
    except KeyError as exc:
        _fail(str(exc.args[0]))
    if as_json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    inds = [data] if "/" in code else data["indicators"]
    if "/" not in code:
        console.print(
            f"[bold]{data['code']}[/] {data['title']['zh-TW']} / {data['title']['en']} (level {data['level']})"
        )
    table = Table()
    for col in ("indicator", "task", "level", "text"):
        table.add_column(col)
    for i in inds:
        text = {"zh-TW": i["zh-TW"], "en": i["en"]}.get(lang, f"{i['zh-TW']}\n{i['en']}")
        table.add_row(i["id"], i["task"] or "", str(i["level"] or "-"), text)
    console.print(table)


@lab_app.command("list")
def lab_list() -> None:
    """The labs, with the indicators they assess."""
    from aiotlab.labs.loader import list_labs

    table = Table(title="labs")
    for col in ("id", "version", "title", "indicators", "checks", "solutions"):
        table.add_column(col)
    for lab in list_labs():
        table.add_row(
            lab.id,
            lab.version,
            f"{lab.data['title']['zh-TW']}\n{lab.data['title']['en']}",
            "\n".join(lab.data["indicators"]),
            str(len(lab.checks)),
            ", ".join(lab.solutions),
        )
    console.print(table)


@lab_app.command("show")
def lab_show(
    lab_id: Annotated[str, typer.Argument(metavar="LAB")],
    candidate: Candidate = "demo",
    lang: Annotated[str, typer.Option(help="zh-TW or en")] = "zh-TW",
) -> None:
    """The candidate's brief, rendered with their own plant and parameters."""
    from aiotlab.labs.loader import load_lab, render_brief
    from aiotlab.simulators.datasheet import build

    try:
        lab = load_lab(lab_id)
        params = lab.params_of_plant(candidate)
        sheet = build(candidate)
        if not sheet["addresses_assigned"]:
            warn = (
                f"> **注意**：考生 {candidate} 尚未有工廠，以下位址僅為範例，並非您的位址。請先執行 "
                f"`aiotlab plant up --candidate {candidate} --detach`。\n\n"
                if lang == "zh-TW"
                else f"> **Warning**: candidate {candidate} has no plant yet; the addresses below are placeholders, "
                f"not yours. Start it first: `aiotlab plant up --candidate {candidate} --detach`.\n\n"
            )
            sys.stdout.write(warn)
            err_console.print(f"[yellow]{candidate} has no plant yet: the brief's addresses are placeholders[/]")
        sys.stdout.write(render_brief(lab, candidate, sheet, params, lang))
    except (KeyError, ValueError) as exc:
        _fail(str(exc.args[0] if exc.args else exc))


@lab_app.command("kit")
def lab_kit(
    lab_id: Annotated[str, typer.Argument(metavar="LAB")],
    workspace: Annotated[Path, typer.Option(help="Your workspace; the kit goes to <workspace>/.aiotlab/")],
    candidate: Candidate = "demo",
) -> None:
    """Write the candidate's kit: briefs, datasheet, lab parameters, schemas, the grader's OPC UA certificate."""
    from aiotlab.grader.kit import write_kit
    from aiotlab.labs.loader import load_lab
    from aiotlab.simulators.datasheet import build

    try:
        lab = load_lab(lab_id)
    except KeyError as exc:
        _fail(str(exc.args[0]))
    params = lab.params_of_plant(candidate)
    sheet = build(candidate)
    if not sheet["addresses_assigned"]:
        _fail(
            f"{candidate} has no plant yet, so a kit would carry another plant's addresses. Start it first: "
            f"aiotlab plant up --candidate {candidate} --detach"
        )
    workspace.mkdir(parents=True, exist_ok=True)
    kit = asyncio.run(write_kit(lab, candidate, workspace.resolve(), params, sheet, briefs=True))
    for f in sorted(kit.iterdir()):
        console.print(f"  {f}")


@app.command("grade")
def grade_cmd(
    lab_id: Annotated[str, typer.Argument(metavar="LAB")],
    candidates: Annotated[
        list[str] | None, typer.Option("--candidate", "-c", help="Repeat to grade several at once.")
    ] = None,
    solution: Annotated[
        str | None, typer.Option(help="Command to start (or a lab solution name, e.g. reference).")
    ] = None,
    workspace: Annotated[Path | None, typer.Option(help="Candidate workspace (one candidate only).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("reports"),
    lang: Annotated[str, typer.Option(help="Default language of report.html")] = "zh-TW",
    replay: Annotated[Path | None, typer.Option(help="Re-run the checks on a graded run's recording.json.gz.")] = None,
) -> None:
    """Grade candidates' live work against their plants; write signed reports."""
    from aiotlab.grader.cohort import grade_cohort
    from aiotlab.labs.loader import load_lab

    try:
        lab = load_lab(lab_id)
    except KeyError as exc:
        _fail(str(exc.args[0]))
    if replay is not None:
        from aiotlab.grader.replay import replay_run

        same = replay_run(lab, replay, out, lang, console)
        raise typer.Exit(0 if same else 1)
    if not candidates:
        _fail("give --candidate (repeat for several) or --replay")
    if workspace and len(candidates) > 1:
        _fail("--workspace is for one candidate; with several, each gets OUT/<candidate>/workspace")
    docs = asyncio.run(grade_cohort(lab, candidates, solution, workspace, out, lang, console))
    raise typer.Exit(0 if docs else 1)


@report_app.command("verify")
def report_verify(
    file: Annotated[Path, typer.Argument(metavar="REPORT.json")],
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            metavar="PUBLIC.pem",
            help="The Ed25519 public key whose signature is expected (an exam's exam-public-key.pem).",
        ),
    ] = None,
    exam_file: Annotated[
        Path | None,
        typer.Option(
            "--exam",
            metavar="EXAM.yaml",
            help="The exam whose signature is expected: its public key (<out>/exam-public-key.pem) is used and "
            "the report must be of this exam.",
        ),
    ] = None,
) -> None:
    """Check a report's Ed25519 signature, every output file it binds, and where it is (public key only).

    Name whose signature is expected with --exam EXAM.yaml or --key PUBLIC.pem; with neither, this machine's own
    key is used (reports graded here outside an exam)."""
    from aiotlab.grader import signing
    from aiotlab.grader.report import verify_file

    if key is not None and exam_file is not None:
        _fail("give --exam EXAM.yaml or --key PUBLIC.pem, not both (each names whose signature is expected)")
    report_exam = _report_exam(file)
    expected_exam = None
    if exam_file is not None:
        expected_exam, key_path = _exam_public_key(exam_file)
        if not key_path.is_file():
            _fail(
                f"exam {expected_exam} has no public key at {key_path}: `aiotlab exam up {exam_file}` makes the "
                "exam's key pair; or name the key itself with --key PUBLIC.pem"
            )
        public, source = _load_public_key(key_path), f"exam {expected_exam} ({key_path})"
    elif key is not None:
        public, source = _load_public_key(key), str(key)
    else:
        try:
            public, where = signing.default_public()
        except (OSError, ValueError) as exc:
            if report_exam:
                _fail(
                    f"this report is of exam {report_exam}: name its key with --exam EXAM.yaml (the exam's file) or "
                    "--key PUBLIC.pem (the exam's exam-public-key.pem)"
                )
            _fail(f"name whose signature is expected with --exam EXAM.yaml or --key PUBLIC.pem ({exc})")
        source = f"this machine's own key ({where})"
    console.print(f"expected signer: {escape(source)}, key {signing.key_id(public)}", soft_wrap=True)
    ok, findings = verify_file(file, public)
    if expected_exam is not None and report_exam is not None and report_exam != expected_exam:
        ok = False
        findings.append(f"the report is of exam {report_exam}, not {expected_exam}")
    for f in findings:
        console.print(("[green]✓[/] " if ok else "[red]✗[/] ") + escape(f), soft_wrap=True)
    if ok:
        console.print(f"[green]verified[/]: signed by {escape(source)}", soft_wrap=True)
    else:
        hint = _of_exam(report_exam) if exam_file is None and key is None else ""
        console.print(f"[red]NOT verified[/] against {escape(source)}{escape(hint)}", soft_wrap=True)
    raise typer.Exit(0 if ok else 1)


def _report_exam(file: Path) -> str | None:
    """The exam a report says it is of (its signed manifest), if it can be read; verify_file reports what cannot."""
    try:
        manifest = json.loads(file.read_text(encoding="utf-8")).get("manifest") or {}
    except (OSError, ValueError, AttributeError):
        return None
    return str(manifest["exam"]) if manifest.get("exam") else None


def _of_exam(exam: str | None) -> str:
    return f" (this report says it is of exam {exam}: verify it with that exam's file or key)" if exam else ""


def _exam_public_key(path: Path) -> tuple[str, Path]:
    """An exam's id and public key from its exam file alone: an assessor verifying reports needs neither the
    roster nor the secret (the key's place is the one `aiotlab exam up` writes: <out>/exam-public-key.pem)."""
    from aiotlab.simulators.yamlconf import ConfigError, load_yaml

    try:
        data = load_yaml(path)
    except ConfigError as exc:
        _fail(str(exc))
    if not isinstance(data, dict) or "exam" not in data:
        _fail(f"{path} is not an exam file (no `exam:` key); a public key goes with --key PUBLIC.pem")
    out = Path(str(data.get("out", f"{data['exam']}-out")))
    out = out if out.is_absolute() else path.resolve().parent / out
    return str(data["exam"]), out / "exam-public-key.pem"


def _load_public_key(path: Path) -> Any:
    from cryptography.exceptions import UnsupportedAlgorithm

    from aiotlab.grader import signing

    try:
        data = path.read_bytes()
    except OSError as exc:
        _fail(f"cannot read the public key {path}: {exc.strerror or exc}")
    if b"PRIVATE KEY" in data:
        _fail(
            f"{path} is a private key: verify with the public one (exam-public-key.pem); the private key stays "
            "with the instructor"
        )
    try:
        return signing.load_public(path)
    except (ValueError, UnsupportedAlgorithm):
        _fail(
            f"{path} is not an Ed25519 public key in PEM: give the exam's exam-public-key.pem with --key, or the "
            "exam file with --exam"
        )


@app.command("demo")
def demo(
    lab: Annotated[str, typer.Option(help="Lab to demonstrate.")] = "data-acquisition",
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("demo-out"),
) -> None:
    """The main job: a plant up, the lab's reference solution run against it, graded, reports written."""
    from aiotlab.demo import run_demo

    code = asyncio.run(run_demo(lab, out, console))
    raise typer.Exit(code)


def _print_version(value: bool) -> None:
    if value:
        from aiotlab import __version__

        console.print(f"aiotlab {__version__}")
        raise typer.Exit()


@app.callback()
def _version(
    version: Annotated[
        bool, typer.Option("--version", help="Show the version.", callback=_print_version, is_eager=True)
    ] = False,
) -> None:
    """aiotlab: practical-exam harness for AIoT and ICS security."""


def _exam(path: Path):  # noqa: ANN202 - an aiotlab.exam.Exam; imported lazily to keep the CLI fast
    from aiotlab.exam import load_exam
    from aiotlab.simulators.yamlconf import ConfigError

    try:
        exam = load_exam(path)
        exam.use_secret()
    except ConfigError as exc:
        _fail(str(exc))
    return exam


PRACTICE_WARNING = (
    "practice mode: the process backend runs every plant as your own user on this machine. It is NOT an isolated "
    "exam: whoever can log in here as this user can read every plant's truth and parameters. Use it to rehearse "
    "or practise; sit real exams in containers (backend: docker)."
)


@exam_app.command("up")
def exam_up(
    exam_file: ExamFile,
    practice: Annotated[
        bool, typer.Option("--practice", help="Allow the process backend (practice: not an isolated exam).")
    ] = False,
) -> None:
    """Launch every candidate's plant and write each one's kit (briefs, datasheet, issued credentials)."""
    import time

    from aiotlab.exam import up

    exam = _exam(exam_file)
    from aiotlab.exam import plant_backend

    if not plant_backend(exam).isolated:
        if not practice:
            _fail(f"refused: {PRACTICE_WARNING} To run it anyway for practice: aiotlab exam up {exam_file} --practice")
        err_console.print(f"[yellow]warning: {PRACTICE_WARNING}[/]")
    else:
        _warn_uid_taken()
    t0 = time.monotonic()
    from aiotlab.simulators.containers import ContainerError

    try:
        with console.status(f"launching {len(exam.candidates)} plants ({exam.backend} backend)"):
            results, logins = up(exam)
    except (ContainerError, OSError, ValueError) as exc:
        _fail(f"exam {exam.id} did not come up: {exc}")
    from aiotlab.grader.cohort import candidate_columns, fit_table

    names = _names(exam)
    table = Table(title=f"exam {exam.id}: {', '.join(exam.labs)} (kits in <workspace>/<lab>/.aiotlab/)")
    lead = candidate_columns(table, names, [r["candidate"] for r in results])
    for col in ("plant", "workspace", "ready in"):
        table.add_column(col)
    for r in results:
        ok = r["status"] == "running"
        table.add_row(
            *lead(r["candidate"]),
            "[green]running[/]" if ok else f"[red]failed: {escape(str(r.get('error')))}[/]",
            escape(r.get("workspace", "")),
            f"{r['seconds']:.1f} s",
        )
    console.print(fit_table(table, console))
    bad = [r for r in results if r["status"] != "running"]
    console.print(f"{len(results) - len(bad)}/{len(results)} plants running in {time.monotonic() - t0:.1f} s")
    if logins:
        _print_logins(logins, names)
    raise typer.Exit(1 if bad or any(r.get("error") for r in logins) else 0)


WORKSTATION_UID = 1000  # the workstation image's `candidate` user (infra/docker/Dockerfile.workstation)


def _warn_uid_taken() -> None:
    """Exam mode: the candidates' homes on this host belong to uid 1000; a real account with that uid would own
    them too (README, exam mode). Said at every `exam up`, since the instructor may not know."""
    import pwd

    try:
        account = pwd.getpwuid(WORKSTATION_UID).pw_name
    except KeyError:
        return
    err_console.print(
        f"[yellow]warning: this host's account {escape(account)!r} has uid {WORKSTATION_UID}, the workstations' "
        "candidate user: on this host it owns the candidates' homes (exam-out/<id>/workspace) and can read and "
        f"change their work. Keep uid {WORKSTATION_UID} free of real accounts on an exam host (README, Exam mode).[/]"
    )


def _names(exam: Any) -> dict[str, str]:
    """Each candidate's name from the exam's roster (empty where the roster gives none)."""
    return {r["id"]: r.get("name", "") for r in exam.roster}


def _print_logins(logins: list[dict[str, Any]], names: dict[str, str]) -> None:
    """The candidates' workstation logins. A password is shown here once, when it is issued: only its hash is
    kept (out/credentials.json)."""
    from aiotlab.grader.cohort import candidate_columns, fit_table

    table = Table(title="workstation logins (SSH; passwords are shown only now: hand them out, keep them safe)")
    lead = candidate_columns(table, names, [r["candidate"] for r in logins])
    for col in ("ssh", "password"):
        table.add_column(col)
    for r in logins:
        host = r["ssh"]["bind"] if r["ssh"]["bind"] not in ("0.0.0.0", "::") else "<this host>"
        if r.get("error"):
            pw = f"[red]{escape(str(r['error']))}[/]"
        else:
            pw = escape(r["password"]) if r["password"] else "(issued before; unchanged)"
        table.add_row(*lead(r["candidate"]), f"ssh -p {r['ssh']['port']} candidate@{host}", pw)
    console.print(fit_table(table, console))


@exam_app.command("status")
def exam_status(exam_file: ExamFile) -> None:
    """Each candidate's plant and kit."""
    from aiotlab.exam import status
    from aiotlab.grader.cohort import candidate_columns, fit_table

    exam = _exam(exam_file)
    rows = status(exam)
    table = Table(title=f"exam {exam.id}")
    lead = candidate_columns(table, _names(exam), [r["candidate"] for r in rows])
    columns = ["plant", "tasks", "broker", "kit"]
    if any("containers" in r for r in rows):
        columns[2:2] = ["containers"]
    if any("workstation" in r for r in rows):
        columns[-1:-1] = ["workstation"]
    for col in columns:
        table.add_column(col)
    for r in rows:
        cells = {
            "plant": _verdict(r["plant"], r["plant"] == "running"),
            "tasks": r.get("tasks", "-"),
            "containers": r.get("containers", "-"),
            "workstation": _verdict(r["workstation"], r["workstation"] == "running") if "workstation" in r else "-",
            "broker": _verdict(r["broker"], r["broker"] == "up") if r.get("broker") else "-",
            "kit": "[green]✓[/]" if r["kit"] else "[red]✗ missing[/]",
        }
        table.add_row(*lead(r["candidate"]), *(cells[c] for c in columns))
    console.print(fit_table(table, console))
    raise typer.Exit(0 if all(r["plant"] == "running" for r in rows) else 1)


def _verdict(text: str, good: bool) -> str:
    return f"[green]{escape(text)}[/]" if good else f"[red]{escape(text)}[/]"


@exam_app.command("shell")
def exam_shell(
    exam_file: ExamFile,
    candidate: Annotated[str, typer.Argument(help="Candidate id")],
    lab: Annotated[str | None, typer.Option(help="The lab's workstation, in an exam of several labs")] = None,
    root: Annotated[
        bool, typer.Option("--root", help="As root (the instructor's repairs), not as the candidate")
    ] = False,
    command: Annotated[
        list[str] | None,
        typer.Argument(help="A command to run instead of a login shell (after --), e.g. -- ls -la"),
    ] = None,
) -> None:
    """A shell in a candidate's workstation (exam mode), as the candidate sees it; or one command run there."""
    import shutil

    from aiotlab.simulators import addressing as ad

    exam = _exam(exam_file)
    if candidate not in exam.candidates:
        _fail(f"{candidate} is not on the roster of {exam.id}")
    plant = exam.plant_of(candidate, lab or exam.labs[0])
    ws = (ad.read_state(plant) or {}).get("workstation")
    if not ws:
        _fail(f"{plant} has no workstation: exam mode (backend: docker) and `aiotlab exam up` first")
    docker = shutil.which("docker")
    if not docker:
        _fail("the docker client is not installed")
    user = "root" if root else ws["user"]
    tty = ["-it"] if sys.stdin.isatty() and sys.stdout.isatty() else ["-i"]  # scripted: no TTY to ask docker for
    argv = list(command) if command else ["bash", "-l"]
    os.execv(docker, ["docker", "exec", *tty, "-u", user, "-w", ws["home"], ws["container"], *argv])


@exam_app.command("grade")
def exam_grade(
    exam_file: ExamFile,
    solution: Annotated[
        str | None, typer.Option(help="Start this for every candidate (e.g. reference, for a rehearsal).")
    ] = None,
    lang: Annotated[str, typer.Option(help="Default language of the HTML reports")] = "zh-TW",
    restart_down: Annotated[
        bool,
        typer.Option("--restart-down", help="Restart a plant that is down and grade it (else: reported, not graded)"),
    ] = False,
) -> None:
    """Grade every candidate on every lab of the exam, concurrently; reports and cohort summaries (CSV + HTML).
    A plant that is down is reported ("down since T") and not graded unless --restart-down."""
    from aiotlab.grader.cohort import grade_cohort
    from aiotlab.labs.loader import load_lab

    exam = _exam(exam_file)
    from aiotlab.grader import signing

    try:
        signer = signing.load_signer(exam.private_key)
    except (OSError, ValueError) as exc:
        _fail(f"the exam's signing key ({exam.private_key}) cannot be read: {exc}; was `aiotlab exam up` run?")
    complete = True
    for lab_id in exam.labs:
        lab = load_lab(lab_id)
        workspaces = {c: exam.workspace(c, lab_id) for c in exam.candidates}
        docs = asyncio.run(
            grade_cohort(
                lab,
                exam.candidates,
                solution,
                workspaces,
                exam.reports,
                lang,
                console,
                cohort_dir=exam.reports / "cohort" / lab_id,
                exam=exam.id,
                signer=signer,
                plants={c: exam.plant_of(c, lab_id) for c in exam.candidates},
                restart_plants=restart_down,
                names=_names(exam),
            )
        )
        complete = complete and len(docs) == len(exam.candidates)
    raise typer.Exit(0 if complete else 1)


@app.command("portal")
def portal(
    exam_file: ExamFile,
    host: Annotated[str, typer.Option(help="Address to serve on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8800,
    concurrency: Annotated[int, typer.Option(help="Gradings at once.")] = 2,
    reset_staff: Annotated[
        bool, typer.Option("--reset-staff", help="Issue new instructor and assessor passwords (the old ones stop).")
    ] = False,
) -> None:
    """Serve the exam's portal: candidates sit it in a browser (brief, datasheet, clock, terminal, submit),
    instructors run it live, assessors read verified reports. Staff passwords are printed once, at the first start."""
    import uvicorn

    from aiotlab.portal.app import create_app

    exam = _exam(exam_file)
    if not exam.private_key.is_file():
        _fail(f"the exam has no signing key at {exam.private_key}: run `aiotlab exam up {exam_file}` first")
    app = create_app(exam, concurrency)
    accounts = app.state.portal.accounts
    issued = accounts.issue_staff(reset=reset_staff)
    from aiotlab.exam import plant_backend

    if not plant_backend(exam).isolated:
        console.print(f"[yellow]{PRACTICE_WARNING}[/]", soft_wrap=True)
        issued.update(accounts.issue_candidates())
    for user, password in issued.items():
        console.print(f"login issued (shown once): {user} / {password}", soft_wrap=True)
    console.print(f"portal of {exam.id}: http://{host}:{port}/  (API: /docs, metrics: /metrics)", soft_wrap=True)
    # the standard asyncio loop: the grader runs in this process and relies on it (uvloop refuses Popen's umask)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        ws_max_size=1 << 20,
        loop="asyncio",
        timeout_keep_alive=65,  # pages poll every 5 s: with the default 5 s a connection closed under every poll
    )


@exam_app.command("down")
def exam_down(exam_file: ExamFile) -> None:
    """Stop every candidate's plant; crashed plants' leftovers are cleaned too. Workspaces and reports stay."""
    from aiotlab.exam import down

    exam = _exam(exam_file)
    for r in down(exam):
        console.print(f"{r['candidate']}: {r['result']}")


def main() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("asyncua", "transitions", "amqtt"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    os.umask(0o077)  # plant state, truth, keys, kits and reports are private to this user (practice mode)
    app()


if __name__ == "__main__":
    main()
