"""Load lab definitions (one folder per lab under labs/) and render candidate briefs.

A lab is data: lab.yaml (metadata, parameters, streams, observers, checks with weights and indicators), briefs as
Jinja2 templates per language, schemas, and solutions/ (a reference and flawed ones that declare which checks they
must fail). Adding a lab needs no engine change: checks are referenced by name from the check registry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import yaml

from aiotlab.simulators.params import PlantIdentity, resolve
from aiotlab.simulators.yamlconf import ConfigError, load_yaml

LANGS = ("zh-TW", "en")
# factory: a grading that starts a solution first puts the plant's device configs back to the factory ones (the
# brief describes a factory plant). as-configured: the plant is graded as the candidate configured it (their
# hardening is part of the solution, e.g. secure-pipeline, whose brief has them grade with --solution).
PLANT_STARTS = ("factory", "as-configured")


@dataclass
class Solution:
    name: str
    path: Path
    command: str | None
    expect_fail: list[str]
    description: str = ""
    setup: str | None = None  # run to completion first (e.g. harden the plant's configs), then `command`


@dataclass
class Lab:
    id: str
    path: Path
    data: dict[str, Any]
    solutions: dict[str, Solution] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return str(self.data["version"])

    @property
    def checks(self) -> list[dict[str, Any]]:
        return self.data["checks"]

    @property
    def requirements(self) -> list[dict[str, Any]]:
        """What the brief requires, each with the checks that assess it and the flawed solutions that violate it."""
        return self.data.get("requirements", [])

    @property
    def total_points(self) -> float:
        return float(sum(c["points"] for c in self.checks))

    def params_for(self, candidate: str, seed: int | None = None) -> dict[str, Any]:
        """This candidate's lab parameters (varied ones drawn from the plant identity's key, per lab).

        `seed` is the plant's rehearsal seed, if it was started with one (a plant's state records it)."""
        params = resolve(
            self.data.get("parameters", {}), PlantIdentity.for_candidate(candidate, seed=seed), path=f"lab:{self.id}"
        )
        if self.data.get("derived"):  # needs that must bind on this candidate's plant (labs/derive.py)
            from aiotlab.simulators.launch import plant_params

            from .derive import DERIVATIONS

            plant = plant_params(candidate, seed)[2]
            for name, how in self.data["derived"].items():
                params[name] = DERIVATIONS[how](params, plant)
        # a parameter named with a leading "_" only feeds a derivation: it is no candidate's business (not in the kit)
        return {k: v for k, v in params.items() if not k.startswith("_")}

    def params_of_plant(self, candidate: str) -> dict[str, Any]:
        """The parameters for the candidate's plant as it was last started (or would start: no seed)."""
        from aiotlab.simulators.addressing import read_state

        return self.params_for(candidate, (read_state(candidate) or {}).get("seed"))

    def schema(self, name: str = "reading.schema.json") -> dict[str, Any]:
        return json.loads((self.path / "schema" / name).read_text(encoding="utf-8"))


def labs_root() -> Path:
    return Path(str(resources.files("aiotlab.labs")))


def list_labs() -> list[Lab]:
    return [load_lab(p.name) for p in sorted(labs_root().iterdir()) if (p / "lab.yaml").is_file()]


def load_lab(lab_id: str) -> Lab:
    from aiotlab.grader.checks import registry
    from aiotlab.grader.standards import indicator

    path = labs_root() / lab_id
    if not (path / "lab.yaml").is_file():
        known = ", ".join(p.name for p in sorted(labs_root().iterdir()) if (p / "lab.yaml").is_file())
        raise KeyError(f"unknown lab {lab_id!r}; known: {known}")
    data = load_yaml(path / "lab.yaml")
    for key in ("id", "version", "title", "indicators", "checks"):
        if key not in data:
            raise ConfigError(path / "lab.yaml", f"missing required key '{key}'")
    from aiotlab.grader.standards import security_requirements

    known_fns = registry()
    srs = security_requirements()
    for c in data["checks"]:
        for sr in c.get("iec62443_sr", []):
            if sr not in srs:
                raise ConfigError(path / "lab.yaml", f"check {c['id']}: unknown IEC 62443-3-3 requirement {sr!r}")
        if c["fn"] not in known_fns:
            raise ConfigError(path / "lab.yaml", f"check {c['id']}: unknown fn {c['fn']!r}", getattr(c, "line", None))
        for ind in c.get("indicators", []):
            indicator(ind)  # raises on an unknown or un-namespaced indicator
            if ind not in data["indicators"]:
                raise ConfigError(path / "lab.yaml", f"check {c['id']}: indicator {ind} is not in the lab's list")
    for ind in data["indicators"]:
        if not any(ind in c.get("indicators", []) for c in data["checks"]):
            raise ConfigError(path / "lab.yaml", f"indicator {ind} has no check assessing it")
    from aiotlab.grader import scoring

    start = (data.get("plant") or {}).get("start", "factory")
    if start not in PLANT_STARTS:
        raise ConfigError(path / "lab.yaml", f"plant.start must be one of {PLANT_STARTS}, not {start!r}")
    for c in data["checks"]:
        why = scoring.validate(c)
        if why:
            raise ConfigError(path / "lab.yaml", f"check {c['id']}: {why}")
    lab = Lab(lab_id, path, data)
    sol_root = path / "solutions"
    if sol_root.is_dir():
        for d in sorted(sol_root.iterdir()):
            meta = d / "solution.yaml"
            if meta.is_file():
                m = yaml.safe_load(meta.read_text(encoding="utf-8"))
                unknown = set(m.get("expect_fail", [])) - {c["id"] for c in data["checks"]}
                if unknown:
                    raise ConfigError(meta, f"expect_fail names unknown checks: {sorted(unknown)}")
                if not (m.get("command") or m.get("setup")):
                    raise ConfigError(meta, "a solution needs a command, a setup, or both")
                lab.solutions[d.name] = Solution(
                    d.name,
                    d,
                    m.get("command"),
                    list(m.get("expect_fail", [])),
                    m.get("description", ""),
                    m.get("setup"),
                )
    validate_requirements(lab)
    return lab


def validate_requirements(lab: Lab) -> None:
    """The requirement table is consistent: every requirement is assessed by known checks and violated by a known
    flawed solution whose declared failures are this requirement's checks (one defect, its own checks); every check
    assesses a requirement. A lab without the table is reported by the test suite, not here."""
    reqs = lab.requirements
    if not reqs:
        return
    where = lab.path / "lab.yaml"
    check_ids = {c["id"] for c in lab.checks}
    seen_ids: set[str] = set()
    for r in reqs:
        rid = r.get("id")
        if not rid or rid in seen_ids:
            raise ConfigError(where, f"requirement id missing or repeated: {rid!r}")
        seen_ids.add(rid)
        text = r.get("text") or {}
        if not all(text.get(lang) for lang in LANGS):
            raise ConfigError(where, f"requirement {rid}: text needs both {LANGS}")
        checks = r.get("checks") or []
        if not checks or set(checks) - check_ids:
            raise ConfigError(where, f"requirement {rid}: checks must name known checks, got {checks}")
        for sol in r.get("violated_by") or []:
            if sol not in lab.solutions:
                raise ConfigError(where, f"requirement {rid}: violated_by names unknown solution {sol!r}")
            fails = set(lab.solutions[sol].expect_fail)
            if not fails & set(checks):
                raise ConfigError(where, f"requirement {rid}: {sol} fails none of its checks ({sorted(fails)})")
    unassessing = check_ids - {c for r in reqs for c in r["checks"]}
    if unassessing:
        raise ConfigError(where, f"checks that assess no stated requirement: {sorted(unassessing)}")


def requirements_table(lab: Lab, lang: str) -> str:
    """The brief's requirement list, rendered from the lab data: what is required, which check assesses it, its
    points and its scoring rule. One source for the brief, the report and the consistency test."""
    from aiotlab.grader import scoring

    by_id = {c["id"]: c for c in lab.checks}
    zh = lang == "zh-TW"
    head = (
        "| 編號 | 要求 | 評量檢查（配分，給分方式） |\n|---|---|---|\n"
        if zh
        else "| id | requirement | assessed by (points, scoring rule) |\n|---|---|---|\n"
    )
    rows = []
    for r in lab.requirements:
        cells = "<br>".join(
            f"`{cid}` {by_id[cid]['title'][lang]}（{by_id[cid]['points']} 分，{scoring.describe(by_id[cid], lang)}）"
            if zh
            else f"`{cid}` {by_id[cid]['title'][lang]} ({by_id[cid]['points']} points, {scoring.describe(by_id[cid], lang)})"
            for cid in r["checks"]
        )
        rows.append(f"| {r['id']} | {r['text'][lang].strip()} | {cells} |")
    return head + "\n".join(rows) + "\n"


def render_brief(
    lab: Lab,
    candidate: str,
    sheet: dict[str, Any],
    params: dict[str, Any],
    lang: str,
    time_limit_min: int | None = None,
) -> str:
    """The candidate's brief; `time_limit_min` is the exam's when it sets one (the lab's own is a default)."""
    from aiotlab.grader.standards import indicator

    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(lab.path)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )  # noqa: S701 - Markdown, not HTML

    def register_of(stream: dict[str, Any]) -> str:
        for tags in sheet[stream["device"]]["tables"].values():
            for t in tags:
                if t["name"] == stream["tag"]:
                    extra = f", scale {t['scale']}" if "scale" in t else ""
                    extra += f", word order {t['word_order']}" if "word_order" in t else ""
                    return f"{t['table']} {t['address']} ({t['type']}{extra})"
        raise KeyError(stream["tag"])

    def acl(row: str, which: str, node: str = "") -> str:
        """A cell of the ACL table from the lab data (`mqtt_acl`), the same rows mq.acl judges by."""
        filters = [
            f.replace("{root}", sheet["mqtt"]["topic_root"]).replace("{node}", node)
            for f in params["mqtt_acl"][row][which]
        ]
        if not filters:
            return "無" if lang == "zh-TW" else "nothing"
        cell = ", ".join(f"`{f}`" for f in filters)
        return f"僅 {cell}" if lang == "zh-TW" else f"{cell} only"

    template = env.get_template(f"brief.{lang}.md.j2")
    return template.render(
        acl=acl,
        lab={**lab.data, "time_limit_min": time_limit_min or lab.data.get("time_limit_min")},
        candidate=candidate,
        sheet=sheet,
        params=params,
        register_of=register_of,
        indicators=[indicator(i) for i in lab.data["indicators"]],
        total_points=int(lab.total_points),
        schema_text=json.dumps(lab.schema(), indent=2, ensure_ascii=False)
        if (lab.path / "schema" / "reading.schema.json").is_file()
        else "",
        schemas={
            p.name: json.dumps(json.loads(p.read_text(encoding="utf-8")), indent=2, ensure_ascii=False)
            for p in sorted((lab.path / "schema").glob("*.json"))
        },
        config_dir=sheet["config_dir"],
        requirements_table=requirements_table(lab, lang),
        scoring_of={c["id"]: scoring_describe(c, lang) for c in lab.checks},
    )


def scoring_describe(spec: dict[str, Any], lang: str) -> str:
    from aiotlab.grader import scoring

    return scoring.describe(spec, lang)
