"""A candidate's files named by lab parameters (a rule file, a dashboard, a plan), read once per grading, and the
words for one that cannot be read."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any


def artefact(ctx: Any, key: str) -> tuple[Path, str | None, dict[str, Any]]:
    """(path, text or None, evidence) of a candidate file named by a lab parameter, read once per grading. A file
    that is not there is recorded with what its folder holds instead (a rule file saved as alerts.yaml)."""
    path = Path(ctx.workspace) / str(ctx.params[key])
    cache_key = f"dash.file.{key}"
    if cache_key not in ctx.cache:
        try:
            data = path.read_bytes()[:2_000_000]
            ctx.cache[cache_key] = (data.decode("utf-8", "replace"), hashlib.sha256(data).hexdigest(), {})
        except OSError as exc:
            extra: dict[str, Any] = {"missing": isinstance(exc, FileNotFoundError)}
            if extra["missing"]:
                extra["folder_holds"] = folder_listing(path.parent)
            ctx.cache[cache_key] = (None, f"{type(exc).__name__}: {exc.strerror or exc}", extra)
    text, digest, extra = ctx.cache[cache_key]
    if text is not None:
        return path, text, {"file": str(path), "sha256": digest}
    return path, text, {"file": str(path), "expected": str(ctx.params[key]), "error": digest, **extra}


def folder_listing(folder: Path, limit: int = 8) -> list[str] | None:
    """Up to `limit` names in a folder (sorted among the first 200 it lists), None if there is no such folder."""
    try:
        names = [f"{p.name}/" if p.is_dir() else p.name for p in itertools.islice(folder.iterdir(), 200)]
    except OSError:
        return None
    return sorted(names)[:limit]


def file_problem(evidence: dict[str, Any]) -> tuple[str, str]:
    """(en, zh-TW) of why a candidate file could not be read, naming the path the brief gives and, for a missing
    file, what its folder holds instead."""
    rel = evidence["expected"]
    if not evidence.get("missing"):
        return f"{rel} cannot be read: {evidence['error']}", f"{rel} 無法讀取：{evidence['error']}"
    folder = str(Path(rel).parent)
    en, zh = f"{rel} is missing from your workspace", f"{rel} 不在您的工作目錄中"
    holds = evidence.get("folder_holds")
    if folder in ("", "."):
        return en, zh
    if holds is None:
        return f"{en} (there is no folder {folder}/)", f"{zh}（沒有 {folder}/ 資料夾）"
    if not holds:
        return f"{en} ({folder}/ is empty)", f"{zh}（{folder}/ 是空的）"
    return f"{en} ({folder}/ holds {', '.join(holds)})", f"{zh}（{folder}/ 內有 {'、'.join(holds)}）"


def json_artefact(
    ctx: Any, key: str, schema: str
) -> tuple[dict[str, Any] | None, dict[str, Any], tuple[str, str] | None]:
    """(the document or None, evidence, why it is unusable (en, zh-TW)) of a candidate's JSON file named by a lab
    parameter: strict JSON (NaN refused; nesting deeper than any plan refused, a hostile file), valid against the
    lab's schema `schema`."""
    from jsonschema import Draft202012Validator

    path, text, evidence = artefact(ctx, key)
    if text is None:
        return None, evidence, file_problem(evidence)
    try:
        doc = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"{c} is not JSON")))
    except (ValueError, RecursionError) as exc:
        what = "nested too deep" if isinstance(exc, RecursionError) else str(exc)[:200]
        return None, evidence, (f"{path.name} is not usable JSON ({what})", f"{path.name} 不是可用的 JSON（{what}）")
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:200]}"
        for e in Draft202012Validator(ctx.lab.schema(schema)).iter_errors(doc)
    ]
    if errors:
        return (
            None,
            {**evidence, "schema_errors": errors[:20]},
            (f"{path.name} does not follow {schema}: {errors[0]}", f"{path.name} 不符合 {schema}：{errors[0]}"),
        )
    return doc, evidence, None
