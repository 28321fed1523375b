"""The candidate's kit: what a lab hands over before the exam, and what the grader gives a solution it runs.

Both paths write the same files into `<workspace>/.aiotlab/`, so a candidate tests against exactly what the grader
will use: their datasheet, the lab parameters (issued accounts included), the grader's OPC UA certificate (to put
in PLC-2's trust list), the briefs, the lab's schemas and files the lab renders for the candidate
(`labs/<lab>/kit/*.j2`, e.g. the Prometheus configuration the grader itself uses).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jinja2

from aiotlab.labs.loader import LANGS, Lab, render_brief
from aiotlab.simulators import datasheet

from .probes.opcua import grader_cert


async def write_kit(
    lab: Lab,
    candidate: str,
    workspace: Path,
    params: dict[str, Any],
    sheet: dict[str, Any],
    briefs: bool = False,
    time_limit_min: int | None = None,
) -> Path:
    """`time_limit_min`: the exam's, when the kit is written for an exam (the brief states it, not the lab's)."""
    kit = workspace / ".aiotlab"
    kit.mkdir(parents=True, exist_ok=True)
    kit.chmod(0o700)  # it holds issued passwords
    (kit / "datasheet.json").write_text(json.dumps(sheet, indent=2, ensure_ascii=False), encoding="utf-8")
    (kit / "lab-params.json").write_text(json.dumps(params, indent=2, ensure_ascii=False), encoding="utf-8")
    for lang in LANGS:  # as `aiotlab plant datasheet` prints it (a workstation has the JSON and these, no renderer)
        title, secs = datasheet.sections(sheet, lang)
        (kit / f"datasheet.{lang}.md").write_text(datasheet.to_markdown(title, secs), encoding="utf-8")
    cert, _ = await grader_cert()
    shutil.copyfile(cert, kit / "grader-opcua.der")
    for schema in sorted((lab.path / "schema").glob("*.json")) if (lab.path / "schema").is_dir() else []:
        shutil.copyfile(schema, kit / schema.name)
    for t in sorted((lab.path / "kit").glob("*.j2")):  # e.g. the Prometheus configuration the grader itself uses
        text = render_kit_file(lab, t.name, candidate=candidate, params=params, sheet=sheet)
        (kit / t.name.removesuffix(".j2")).write_text(text, encoding="utf-8")
    if briefs:
        for lang in LANGS:
            (kit / f"brief.{lang}.md").write_text(
                render_brief(lab, candidate, sheet, params, lang, time_limit_min), encoding="utf-8"
            )
    return kit


def render_kit_file(lab: Lab, name: str, **values: Any) -> str:
    """One of the lab's kit templates (`labs/<lab>/kit/<name>`), rendered with the candidate's values; the grader
    renders the same template with its own overrides (e.g. its Prometheus's rule files and address)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(lab.path / "kit")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return env.get_template(name).render(**values)
