"""What a check returns: a status, points, and the evidence an assessor needs to trust it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PASS, FAIL, PARTIAL, ERROR = "pass", "fail", "partial", "error"


@dataclass
class CheckResult:
    id: str
    status: str
    points: float
    max_points: float
    summary: dict[str, str]  # {"en": ..., "zh-TW": ...}: one line an assessor reads first
    evidence: dict[str, Any] = field(default_factory=dict)  # what was probed, expected vs observed, tolerances, samples
    started: float = 0.0
    finished: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verdict(
    check_id: str,
    max_points: float,
    fraction: float,
    threshold: float,
    en: str,
    zh: str,
    evidence: dict[str, Any],
    partial_credit: bool = True,
) -> CheckResult:
    """Pass at or above threshold; otherwise partial credit in proportion (or none), failing."""
    fraction = max(0.0, min(1.0, fraction))
    if fraction >= threshold:
        return CheckResult(check_id, PASS, max_points, max_points, {"en": en, "zh-TW": zh}, evidence)
    points = round(max_points * fraction, 2) if partial_credit else 0.0
    status = PARTIAL if points > 0 else FAIL
    return CheckResult(check_id, status, points, max_points, {"en": en, "zh-TW": zh}, evidence)


def failed(check_id: str, max_points: float, en: str, zh: str, evidence: dict[str, Any] | None = None) -> CheckResult:
    return CheckResult(check_id, FAIL, 0.0, max_points, {"en": en, "zh-TW": zh}, evidence or {})
