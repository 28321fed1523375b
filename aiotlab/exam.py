"""An exam: a roster, the labs it sets, a backend, a time limit and where the exam secret is. `aiotlab exam up`
launches every candidate's plant and writes their kits; `grade` grades everyone; `down` stops and cleans up.

The exam file (YAML):

    exam: aiot-2026-11            # id, used in paths
    labs: [data-acquisition]      # lab ids
    backend: docker               # docker (exam mode: a plant and a workstation per candidate), or process
                                  # (practice mode: one person's own machine, `exam up --practice`)
    workstation: {ssh_bind: 0.0.0.0}   # docker: where candidates' SSH logins are published (port 22000 + slot)
    time_limit_min: 120
    secret: {file: exam.secret}   # or {env: VAR}; a relative path is relative to the exam file
    roster: roster.csv            # a CSV (UTF-8 or Big5) with an `id` column (and optional `name`), or a list of
                                  # ids / {id, name}
    out: exam-out                 # per candidate and lab: <out>/<id>/workspace/<lab>; reports: <out>/reports
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiotlab.simulators.yamlconf import ConfigError, load_yaml

BACKENDS = ("process", "docker")
CANDIDATE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
LAUNCH_WORKERS = 8  # plants start in parallel; each start is mostly waiting for its devices to listen


@dataclass
class Exam:
    path: Path
    id: str
    labs: list[str]
    backend: str
    time_limit_min: float  # whole minutes print as such (120); a fraction is for rehearsals and tests
    secret: dict[str, str]
    roster: list[dict[str, str]]
    out: Path
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def candidates(self) -> list[str]:
        return [c["id"] for c in self.roster]

    def plant_of(self, candidate: str, lab: str) -> str:
        """The plant a candidate sits a lab on: their own with one lab; with several, one per lab (`alice.ics-hardening`),
        so hardening in one lab never changes the plant another lab's brief describes."""
        return candidate if len(self.labs) == 1 else f"{candidate}.{lab}"

    @property
    def plants(self) -> list[str]:
        return [self.plant_of(c, lab) for c in self.candidates for lab in self.labs]

    def workspace(self, candidate: str, lab: str) -> Path:
        """One folder per lab: each lab's kit (.aiotlab/: briefs, parameters, datasheet) and the candidate's work."""
        return self.out / candidate / "workspace" / lab

    def home_of(self, candidate: str) -> Path:
        """Exam mode: the candidate's home in their workstation (every lab's folder in it)."""
        return self.out / candidate / "workspace"

    @property
    def credentials_path(self) -> Path:
        return self.out / "credentials.json"

    @property
    def reports(self) -> Path:
        return self.out / "reports"

    @property
    def keys(self) -> Path:
        """The exam's signing key pair (0700): the private key stays with the instructor, never in a workspace."""
        return self.out / "keys"

    @property
    def private_key(self) -> Path:
        from aiotlab.grader.signing import PRIVATE_NAME

        return self.keys / PRIVATE_NAME

    @property
    def public_key(self) -> Path:
        """What assessors verify reports with (`aiotlab report verify REPORT.json --key` this file)."""
        return self.out / "exam-public-key.pem"

    @property
    def state_path(self) -> Path:
        return self.out / "exam-state.json"

    def use_secret(self) -> None:
        """Make the exam secret the one every plant and report of this process (and its children) uses."""
        if "file" in self.secret:
            f = Path(self.secret["file"])
            f = f if f.is_absolute() else self.path.parent / f
            if not f.is_file() or not f.read_text(encoding="utf-8").strip():
                raise ConfigError(self.path, f"secret file {f} is missing or empty")
            os.environ["AIOTLAB_EXAM_SECRET_FILE"] = str(f.resolve())
            os.environ.pop("AIOTLAB_EXAM_SECRET", None)
        else:
            value = os.environ.get(self.secret["env"], "")
            if not value:
                raise ConfigError(self.path, f"environment variable {self.secret['env']} (the exam secret) is not set")
            os.environ["AIOTLAB_EXAM_SECRET"] = value
            os.environ.pop("AIOTLAB_EXAM_SECRET_FILE", None)


def load_exam(path: Path) -> Exam:
    """Read and validate an exam file; every problem is a ConfigError naming the file and what is wrong."""
    from aiotlab.labs.loader import load_lab

    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(path, "an exam file is a mapping (exam, labs, backend, secret, roster, out)")
    for key in ("exam", "labs", "roster", "secret"):
        if key not in data:
            raise ConfigError(path, f"missing required key '{key}'")
    if not CANDIDATE_ID.match(str(data["exam"])):
        raise ConfigError(path, f"exam id {data['exam']!r}: lower-case letters, digits, - and _ only")
    labs = data["labs"] if isinstance(data["labs"], list) else [data["labs"]]
    for lab in labs:
        try:
            load_lab(str(lab))
        except KeyError as exc:
            raise ConfigError(path, str(exc.args[0])) from exc
    backend = str(data.get("backend", "process"))
    if backend not in BACKENDS:
        raise ConfigError(path, f"backend {backend!r}: this build has {', '.join(BACKENDS)}")
    secret = data["secret"]
    if not isinstance(secret, dict) or len(secret) != 1 or not ({"file", "env"} & set(secret)):
        raise ConfigError(path, "secret: give {file: PATH} or {env: VARIABLE} (never the secret itself)")
    roster = read_roster(path, data["roster"])
    out = Path(str(data.get("out", f"{data['exam']}-out")))
    return Exam(
        path=path.resolve(),
        id=str(data["exam"]),
        labs=[str(lab) for lab in labs],
        backend=backend,
        time_limit_min=_minutes(path, data.get("time_limit_min", 120)),
        secret={k: str(v) for k, v in secret.items()},
        roster=roster,
        out=(out if out.is_absolute() else path.resolve().parent / out),
        data=dict(data),
    )


ROSTER_ENCODINGS = ("utf-8", "cp950")  # cp950: Big5 as Windows (and Excel's "CSV" on zh-TW Windows) writes it


def _minutes(path: Path, value: Any) -> float:
    try:
        minutes = float(value)
    except (TypeError, ValueError):
        raise ConfigError(path, f"time_limit_min {value!r} is not a number of minutes") from None
    if not 0 < minutes <= 24 * 60:
        raise ConfigError(path, f"time_limit_min {value!r}: more than 0 and at most 1440 minutes")
    return int(minutes) if minutes.is_integer() else minutes


def read_roster(path: Path, roster: Any) -> list[dict[str, str]]:
    """The roster: a CSV file (UTF-8 with or without a BOM, or Big5; an `id` column and an optional `name`) or a list
    of ids / {id, name}. Every problem is a ConfigError naming the file and, for a CSV, the line."""
    if isinstance(roster, str):
        f = Path(roster) if Path(roster).is_absolute() else path.parent / roster
        try:
            raw = f.read_bytes()
        except OSError as exc:
            raise ConfigError(path, f"roster {f}: {exc.strerror}") from exc
        entries = roster_csv(f, decode_roster(f, raw))
    elif isinstance(roster, list):
        entries = [
            {"id": str(r.get("id", "")), "name": str(r.get("name", "")), "line": None}
            if isinstance(r, dict)
            else {"id": str(r), "name": "", "line": None}
            for r in roster
        ]
        f = path
    else:
        raise ConfigError(path, "roster: a CSV file name or a list")
    seen: set[str] = set()
    for e in entries:
        if not CANDIDATE_ID.match(e["id"]):
            raise ConfigError(
                f, f"candidate id {e['id']!r}: lower-case letters, digits, - and _ only, ≤ 40", line=e["line"]
            )
        if e["id"] in seen:
            raise ConfigError(f, f"candidate {e['id']} is on the roster twice", line=e["line"])
        seen.add(e["id"])
    if not entries:
        raise ConfigError(f, "the roster is empty")
    return [{"id": e["id"], "name": e["name"]} for e in entries]


def decode_roster(f: Path, raw: bytes) -> str:
    """A roster file's text: UTF-8 (with or without a BOM) or Big5, told apart by which decodes (Big5 text is
    practically never valid UTF-8). Anything else is a ConfigError naming the first line neither reads."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(
            f, "the roster is UTF-16 (Excel's 'Unicode Text'): save it as 'CSV UTF-8' (or CSV in Big5)", line=1
        )
    for encoding in ROSTER_ENCODINGS:
        try:
            return raw.decode(encoding).removeprefix("\ufeff")
        except UnicodeDecodeError:
            continue
    lines = raw.split(b"\n")

    def reads(line: bytes, encoding: str) -> bool:
        try:
            line.decode(encoding)
        except UnicodeDecodeError:
            return False
        return True

    for n, line in enumerate(lines, 1):
        if not any(reads(line, e) for e in ROSTER_ENCODINGS):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad = exc.start
            raise ConfigError(
                f,
                f"neither UTF-8 nor Big5 (byte 0x{line[bad]:02x} at byte {bad + 1} of the line): save the roster "
                "as 'CSV UTF-8' (or CSV in Big5)",
                line=n,
            )
    utf8 = next(n for n, line in enumerate(lines, 1) if not reads(line, "utf-8"))
    big5 = next(n for n, line in enumerate(lines, 1) if not reads(line, "cp950"))
    raise ConfigError(
        f,
        f"the file mixes encodings: line {utf8} is not UTF-8 and line {big5} is not Big5; save the roster again as "
        "'CSV UTF-8'",
        line=min(utf8, big5),
    )


def roster_csv(f: Path, text: str) -> list[dict[str, Any]]:
    """The rows of a roster CSV, each with its line: header names are matched without case or surrounding spaces;
    a header separated by ';' or tabs (some spreadsheets' "CSV") is read as such."""
    first = text.split("\n", 1)[0]
    delimiter = next((d for d in (",", ";", "\t") if d in first), ",")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            return []
        fields = [h.strip().lower() for h in header]
        if "id" not in fields:
            found = ", ".join(repr(h) for h in header) or "nothing"
            raise ConfigError(f, f"the roster CSV needs an 'id' column (its first line has {found})", line=1)
        rows = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            cells = dict(zip(fields, row, strict=False))
            rows.append(
                {
                    "id": (cells.get("id") or "").strip(),
                    "name": (cells.get("name") or "").strip(),
                    "line": reader.line_num,
                }
            )
    except csv.Error as exc:
        raise ConfigError(f, f"not a readable CSV: {exc}", line=reader.line_num) from exc
    return rows


def launch_one(exam: Exam, candidate: str) -> dict[str, Any]:
    """Start (or keep) one candidate's plant and write their kit for every lab; a failure is reported, not raised."""
    import asyncio

    from aiotlab.grader.kit import write_kit
    from aiotlab.labs.loader import load_lab
    from aiotlab.simulators import addressing as ad
    from aiotlab.simulators.backends import BackendError, backend_of
    from aiotlab.simulators.datasheet import build

    t0 = time.monotonic()
    backend = plant_backend(exam)
    for lab_id in exam.labs:
        plant = exam.plant_of(candidate, lab_id)
        st = ad.read_state(plant)
        if not (ad.is_running(st) and backend_of(st).name == backend.name):  # a running plant of its own is kept
            try:
                st = backend.up(
                    plant, workstation=workstation_of(exam, candidate, lab_id) if backend.isolated else None
                )
            except (BackendError, OSError) as exc:
                st = {"status": "failed", "error": str(exc)}
        if st.get("status") != "running":
            return {
                "candidate": candidate,
                "status": "failed",
                "error": f"{plant}: {st.get('error')}",
                "seconds": time.monotonic() - t0,
            }
        lab = load_lab(lab_id)
        ws = exam.workspace(candidate, lab_id)
        if backend.isolated:  # the candidate's home is theirs: the kit goes in without following what they put there
            install_kit(exam, candidate, lab, plant, build(plant))
            continue
        ws.mkdir(parents=True, exist_ok=True)
        asyncio.run(
            write_kit(
                lab,
                plant,
                ws,
                lab.params_of_plant(plant),
                build(plant),
                briefs=True,
                time_limit_min=exam.time_limit_min,
            )
        )
    return {
        "candidate": candidate,
        "status": "running",
        "workspace": str(exam.workspace(candidate, exam.labs[0]).parent),
        "plants": [exam.plant_of(candidate, lab) for lab in exam.labs],
        "seconds": round(time.monotonic() - t0, 2),
    }


def workstation_of(exam: Exam, candidate: str, lab_id: str) -> Any:
    """Exam mode: the candidate's workstation, their home being their workspace folder (one folder per lab),
    owned by the workstation's unprivileged user and private."""
    from aiotlab.simulators.containers import WORKSTATION_IMAGE, WORKSTATION_UID, Workstation

    home = exam.home_of(candidate)
    if home.is_symlink():
        raise OSError(f"{home} is a link: refused")
    home.mkdir(parents=True, exist_ok=True)
    os.lchown(home, WORKSTATION_UID, WORKSTATION_UID)
    home.chmod(0o700)
    opts = exam.data.get("workstation") or {}
    return Workstation(
        home.resolve(),
        image=str(opts.get("image", WORKSTATION_IMAGE)),
        ssh_bind=str(opts.get("ssh_bind", "0.0.0.0")),  # noqa: S104 - the exam room's machines log in
        ssh_port=0,
        config_folder=f"{lab_id}/plant-config",  # each lab's plant has its own devices
    )


def install_kit(exam: Exam, candidate: str, lab: Any, plant: str, sheet: dict[str, Any]) -> None:
    """Write a lab's kit where the grader alone writes (the exam's private folder), then move it into the
    candidate's lab folder: a link the candidate planted there is moved aside, never followed by this root
    process."""
    import asyncio
    import shutil

    from aiotlab.grader.kit import write_kit
    from aiotlab.simulators.containers import WORKSTATION_UID, give_to

    ws = exam.workspace(candidate, lab.id)
    if ws.is_symlink() or (ws.exists() and not ws.is_dir()):
        ws.rename(ws.with_name(f"{ws.name}.moved-{int(time.time())}"))
    ws.mkdir(exist_ok=True)
    os.lchown(ws, WORKSTATION_UID, WORKSTATION_UID)
    staging = exam.out / ".staging" / candidate / lab.id
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    kit = asyncio.run(
        write_kit(
            lab, plant, staging, lab.params_of_plant(plant), sheet, briefs=True, time_limit_min=exam.time_limit_min
        )
    )
    give_to(kit, WORKSTATION_UID)
    seed_config_folder(exam, candidate, lab, plant)
    target = ws / ".aiotlab"
    if target.is_symlink() or target.exists():
        target.rename(ws / f".aiotlab.old-{int(time.time() * 1000)}")
    kit.rename(target)


def seed_config_folder(exam: Exam, candidate: str, lab: Any, plant: str) -> None:
    """The candidate's config folder for this lab's plant starts as a copy of the plant's factory configs (what
    they edit and hand to their devices through the config service); an existing folder is theirs, kept."""
    import shutil

    from aiotlab.simulators import addressing as ad
    from aiotlab.simulators.containers import WORKSTATION_UID, give_to

    ws_state = (ad.read_state(plant) or {}).get("workstation") or {}
    if not ws_state.get("devhome"):
        return
    rel = ws_state["config_dir"].removeprefix("/home/candidate/")
    target = exam.home_of(candidate) / rel
    if target.exists() or target.is_symlink():
        return
    staging = exam.out / ".staging" / candidate / f"{lab.id}-config"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(Path(ws_state["devhome"]) / rel, staging, symlinks=True)
    give_to(staging, WORKSTATION_UID)
    if target.parent.is_symlink() or not target.parent.is_dir():
        return  # the lab folder was moved aside above; install_kit made it anew
    staging.rename(target)


def issue_credentials(exam: Exam) -> list[dict[str, Any]]:
    """Each candidate's workstation login: a new password for a candidate who has none (returned once, for the
    instructor to hand out), the stored hash put back into a workstation that was recreated."""
    from aiotlab import credentials as cred
    from aiotlab.simulators import addressing as ad
    from aiotlab.simulators.containers import ContainerError

    backend = docker_backend(exam)
    store = cred.load(exam.credentials_path)
    issued = []
    for c in exam.candidates:
        for plant in dict.fromkeys(exam.plant_of(c, lab) for lab in exam.labs):
            st = ad.read_state(plant) or {}
            ws = st.get("workstation")
            if not ws or st.get("status") != "running":
                continue
            row = {"candidate": c, "plant": plant, "ssh": ws["ssh"], "password": None}
            try:
                if c in store:
                    backend.set_shadow(plant, store[c]["shadow"])
                else:
                    password = cred.new_password()
                    backend.set_password(plant, password)
                    store[c] = {"argon2": cred.hash_password(password), "shadow": backend.shadow_of(plant)}
                    cred.save(exam.credentials_path, store)
                    row["password"] = password
            except ContainerError as exc:
                row["error"] = str(exc)
            issued.append(row)
    return issued


def plant_backend(exam: Exam) -> Any:
    """The exam's PlantBackend (simulators/backends.py)."""
    from aiotlab.simulators.backends import backend_named

    return backend_named(exam.backend, exam.data.get("image"))


def docker_backend(exam: Exam) -> Any:
    """The exam's backend where its workstations are needed (exam mode only)."""
    backend = plant_backend(exam)
    if not backend.isolated:
        raise ValueError(f"the {exam.backend} backend has no workstations")
    return backend


def remove_leftovers(exam: Exam) -> list[str]:
    """Parts of this registry's plants that no running plant owns (a crashed or killed run), removed."""
    backend = plant_backend(exam)
    gone = backend.leftovers()
    for c in gone:
        backend.down(c)
    return gone


def up(exam: Exam) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Launch every plant (and in exam mode every workstation); returns the launches and the logins (a password
    only where one was issued now)."""
    exam.use_secret()
    exam.out.mkdir(parents=True, exist_ok=True)
    ensure_keys(exam)
    t0 = time.monotonic()
    cleaned = remove_leftovers(exam)
    with ThreadPoolExecutor(LAUNCH_WORKERS) as pool:
        results = list(pool.map(lambda c: launch_one(exam, c), exam.candidates))
    state = {
        "exam": exam.id,
        "file": str(exam.path),
        "backend": exam.backend,
        "labs": exam.labs,
        "started": time.time(),
        "launch_seconds": round(time.monotonic() - t0, 2),
        "leftovers_removed": cleaned,
        "candidates": {r["candidate"]: r for r in results},
    }
    if plant_backend(exam).isolated:
        state["logins"] = issue_credentials(exam)
    exam.state_path.write_text(
        json.dumps(
            {**state, "logins": [{k: v for k, v in r.items() if k != "password"} for r in state.get("logins", [])]},
            indent=2,
        ),
        encoding="utf-8",
    )
    return results, state.get("logins", [])


def ensure_keys(exam: Exam) -> None:
    """The exam's Ed25519 pair, made once: reports of every attempt are signed with it."""
    import shutil

    from aiotlab.grader.signing import PUBLIC_NAME, make_pair

    if not exam.private_key.is_file():
        make_pair(exam.keys)
    shutil.copyfile(exam.keys / PUBLIC_NAME, exam.public_key)
    exam.public_key.chmod(0o644)  # public: assessors verify reports with it (the private key stays 0600)


def status(exam: Exam) -> list[dict[str, Any]]:
    from aiotlab.simulators import addressing as ad
    from aiotlab.simulators.control_client import ControlClient, ControlError

    rows = []
    for c, lab_id in [(c, lab) for c in exam.candidates for lab in exam.labs]:
        plant = exam.plant_of(c, lab_id)
        if plant == c and rows and rows[-1]["candidate"] == c:
            continue  # one plant for all of this candidate's labs
        st = ad.read_state(plant)
        row: dict[str, Any] = {"candidate": plant, "plant": "not launched" if not st else st.get("status")}
        if ad.is_running(st):
            try:
                s = ControlClient.for_candidate(plant, 5.0).get("/v1/status")
                tasks = s.get("supervised", {})
                row["tasks"] = f"{sum(1 for t in tasks.values() if t.get('running'))}/{len(tasks)}"
                row["broker"] = "up" if (s.get("broker") or {}).get("alive") else "down"
                row["plant"] = "running"
            except ControlError as exc:
                row["plant"] = f"running, control plane not answering: {exc}"
        elif st and st.get("status") == "running":
            row["plant"] = "crashed (leftover: `aiotlab exam down` cleans it)"
        if st:
            from aiotlab.simulators.backends import backend_of

            backend = backend_of(st)
            if backend.isolated:
                states = backend.status(plant)
                row["containers"] = f"{sum(1 for v in states.values() if v == 'running')}/{len(states)} running"
                if st.get("workstation"):
                    row["workstation"] = states.get("workstation", "absent")
        labs = exam.labs if plant == c else [lab_id]
        row["kit"] = all((exam.workspace(c, lab) / ".aiotlab" / "datasheet.json").is_file() for lab in labs)
        rows.append(row)
    return rows


def down(exam: Exam) -> list[dict[str, Any]]:
    """Stop every roster plant, crashed ones included (their leftover brokers too)."""
    from aiotlab.simulators import addressing as ad
    from aiotlab.simulators.backends import backend_of

    def one(candidate: str) -> str:
        st = ad.read_state(candidate)
        return (backend_of(st) if st else plant_backend(exam)).down(candidate)

    plants = list(dict.fromkeys(exam.plants))
    with ThreadPoolExecutor(LAUNCH_WORKERS) as pool:
        done = list(pool.map(one, plants))
    rows = [{"candidate": c, "result": r} for c, r in zip(plants, done, strict=True)]
    rows += [{"candidate": c, "result": "leftover removed"} for c in remove_leftovers(exam)]
    return rows
