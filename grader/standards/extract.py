"""Extract the competency standards (../shared/standards/*.txt, as published) into structured data.

Run from the repository root: python -m aiotlab.grader.standards.extract ../shared/standards grader/standards/data
The output (one JSON file per standard, zh-TW text as published) is committed; English renderings live beside it
in en.yaml, keyed by namespaced indicator id, so a re-extraction never loses them.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

CODE_RE = re.compile(r"^([A-Z]{3}\d{4}-\d{3}v\d+)_")
P_RE = re.compile(r"P(\d+(?:\.\d+){2})\s*")
T_RE = re.compile(r"^\s*T\s*(\d+\.\d+)\s*(.*)$", re.S)
DUTY_RE = re.compile(r"^\s*T\s*(\d+)(?!\.)\s*(.*)$", re.S)
O_RE = re.compile(r"O\s*(\d+(?:\.\d+){2})\s*")


def clean(text: str) -> str:
    text = re.sub(r"</?p>", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    # the published files break CJK words with spaces ("落實 工控資安"): join CJK-space-CJK
    return re.sub(r"(?<=[\u3000-\u9fff\uff00-\uffef]) (?=[\u3000-\u9fff\uff00-\uffef])", "", text)


def split_codes(cell: str, pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    cell = clean(cell)
    parts = pattern.split(cell)
    return [(parts[i], parts[i + 1].strip()) for i in range(1, len(parts) - 1, 2)]


def apply_corrections(code: str, indicators: list[dict[str, Any]]) -> None:
    """Curated fixes for rows whose columns are shifted in the published text (corrections.yaml, with sources)."""
    import yaml

    fixes = yaml.safe_load((Path(__file__).parent / "corrections.yaml").read_text(encoding="utf-8")) or {}
    for fix in fixes.get(code, []):
        existing = next((i for i in indicators if i["code"] == fix["code"]), None)
        if existing is None:
            entry = {"code": fix["code"], "id": f"{code}/{fix['code']}", "knowledge": [], "skills": []}
            entry.update({k: v for k, v in fix.items() if k not in ("code", "source")})
            indicators.append(entry)
            indicators.sort(key=lambda i: [int(x) for x in i["code"][1:].split(".")])
        else:
            existing.update({k: v for k, v in fix.items() if k not in ("code", "source")})


def parse(path: Path) -> dict[str, Any]:
    """Rows have fixed columns: duty, task, output, indicator(s), level, knowledge, skills. A page break repeats
    the header and continues the previous row's cells in the same columns; those are appended."""
    text = path.read_text(encoding="utf-8")
    m = CODE_RE.match(path.name)
    if not m:
        raise ValueError(f"{path.name}: file name must start with the standard code")
    code = m.group(1)
    title_line = next(ln for ln in text.splitlines() if ln.strip() and "職能基準" in ln)
    title = clean(title_line.replace("職能基準", "").lstrip("#"))
    level_m = re.search(r"基準級別\s+(\d)", text)
    duties: dict[str, str] = {}
    tasks: dict[str, dict[str, Any]] = {}
    outputs: dict[str, dict[str, Any]] = {}
    indicators: list[dict[str, Any]] = []
    duty = task = output = None
    row_indicators: list[dict[str, Any]] = []
    started = False
    for line in text.splitlines():
        cells = line.split("\t")
        if cells and cells[0].startswith("主要職責"):
            started = True
            continue
        if not started or len(cells) < 4 or not any(c.strip() for c in cells[:4]):
            continue
        cells += [""] * (7 - len(cells))
        c_duty, c_task, c_out, c_ind = (clean(c) for c in cells[:4])
        if c_duty:
            if dm := DUTY_RE.match(c_duty):
                duty = f"T{dm.group(1)}"
                duties[duty] = dm.group(2).strip()
            elif duty:
                duties[duty] = (duties[duty] + c_duty).strip()
        if c_task:
            if tm := T_RE.match(c_task):
                task = f"T{tm.group(1)}"
                tasks[task] = {"id": task, "duty": duty, "zh-TW": tm.group(2).strip()}
            elif task:
                tasks[task]["zh-TW"] += c_task
        if c_out:
            codes = split_codes(c_out, O_RE)
            if codes:
                for oid, otext in codes:
                    output = f"O{oid}"
                    outputs[output] = {"id": output, "task": task, "zh-TW": otext}
            elif output:
                outputs[output]["zh-TW"] += c_out
        if c_ind:
            codes = split_codes(c_ind, P_RE)
            lead = P_RE.split(c_ind)[0].strip()  # text before the first code continues the previous indicator
            if row_indicators and (lead or not codes):
                row_indicators[-1]["zh-TW"] += lead if codes else c_ind
                if row_indicators[-1]["level"] is None and cells[4].strip().isdigit():
                    row_indicators[-1]["level"] = int(cells[4].strip())
            if not codes:
                continue
            level = next((int(c.strip()) for c in cells[4:] if c.strip().isdigit()), None)
            row_indicators = []
            for pid, ptext in codes:
                ind = {
                    "code": f"P{pid}",
                    "id": f"{code}/P{pid}",
                    "task": task,
                    "output": output,
                    "level": level,
                    "zh-TW": ptext,
                    "knowledge": re.findall(r"K\d+", cells[5]),
                    "skills": re.findall(r"S\d+", cells[6]),
                }
                indicators.append(ind)
                row_indicators.append(ind)
    apply_corrections(code, indicators)
    for prev, ind in zip(indicators, indicators[1:], strict=False):
        if ind["level"] is None and prev["task"] == ind["task"] and prev["level"] is not None:
            ind["level"] = prev["level"]  # a vertically merged level cell in the published table
            ind["level_inherited"] = True
    return {
        "code": code,
        "title": {"zh-TW": title},
        "level": int(level_m.group(1)) if level_m else None,
        "source": path.name,
        "duties": [{"id": k, "zh-TW": v} for k, v in duties.items()],
        "tasks": list(tasks.values()),
        "outputs": list(outputs.values()),
        "indicators": indicators,
    }


def main() -> None:
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.glob("*.txt")):
        data = parse(f)
        (dst / f"{data['code']}.json").write_text(
            json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
        print(
            f"{data['code']}: {len(data['indicators'])} indicators, {len(data['tasks'])} tasks, {len(data['outputs'])} outputs"
        )


if __name__ == "__main__":
    main()
