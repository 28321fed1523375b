"""The competency standards as data: extracted zh-TW text (data/*.json) merged with English renderings (en.yaml).

Indicator ids are always namespaced by standard, because P-codes repeat: `INM3513-009v1/P6.2.2`.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


@functools.cache
def standards() -> dict[str, dict[str, Any]]:
    root = resources.files("aiotlab.grader.standards")
    en = yaml.safe_load((root / "en.yaml").read_text(encoding="utf-8"))
    out: dict[str, dict[str, Any]] = {}
    for entry in sorted((root / "data").iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".json"):
            continue
        data = json.loads(entry.read_text(encoding="utf-8"))
        data["title"]["en"] = en["titles"].get(data["code"], "")
        for ind in data["indicators"]:
            ind["en"] = en["indicators"].get(ind["id"], "")
            ind["standard"] = data["code"]
        out[data["code"]] = data
    return out


def standard(code: str) -> dict[str, Any]:
    try:
        return standards()[code]
    except KeyError:
        raise KeyError(f"unknown standard {code!r}; known: {', '.join(standards())}") from None


def indicator(indicator_id: str) -> dict[str, Any]:
    """Look up `CODE/Px.y.z`; a bare P-code is refused because it is ambiguous across standards."""
    if "/" not in indicator_id:
        raise KeyError(f"indicator {indicator_id!r} must be namespaced by standard, e.g. INM3513-009v1/{indicator_id}")
    code, _ = indicator_id.split("/", 1)
    for ind in standard(code)["indicators"]:
        if ind["id"] == indicator_id:
            return ind
    raise KeyError(f"unknown indicator {indicator_id!r}")


def security_requirements() -> dict[str, dict[str, str]]:
    """IEC 62443-3-3 SRs that checks may cite: id -> {en, zh-TW} title."""
    import yaml

    path = Path(__file__).parent / "data" / "iec62443-3-3-sr.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))
