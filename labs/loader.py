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
    def total_points(self) -> float:
        return float(sum(c["points"] for c in self.checks))

    def params_for(self, candidate: str, seed: int | None = None) -> dict[str, Any]:
        """This candidate's lab parameters (varied ones drawn from the plant identity's key, per lab).

        `seed` is the plant's rehearsal seed, if it was started with one (a plant's state records it)."""
        return resolve(
            self.data.get("parameters", {}), PlantIdentity.for_candidate(candidate, seed=seed), path=f"lab:{self.id}"
        )

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
    return lab


def render_brief(lab: Lab, candidate: str, sheet: dict[str, Any], params: dict[str, Any], lang: str) -> str:
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

    template = env.get_template(f"brief.{lang}.md.j2")
    return template.render(
        lab=lab.data,
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
    )
