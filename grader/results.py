"""What a check returns: a status, points, and the evidence an assessor needs to trust it.

A check measures; the lab data scores (grader/scoring.py applies each check's stated rule). Statuses:
- pass / fail / partial: the candidate's work was assessed;
- not_assessable: the probe could not run (a candidate defect that another check fails, named in `blocked_by`,
  or the grader itself fell behind). Never points, never a pass;
- error: the check itself broke (a grader bug). Never points, never a pass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PASS, FAIL, PARTIAL, ERROR = "pass", "fail", "partial", "error"
NOT_ASSESSABLE = "not_assessable"
GRADER_OVERLOADED = "grader-overloaded"  # the blocked_by cause when the host or grader fell behind


@dataclass
class CheckResult:
    id: str
    status: str
    points: float
    max_points: float
    summary: dict[str, str]  # {"en": ..., "zh-TW": ...}: one line an assessor reads first, matching the verdict
    evidence: dict[str, Any] = field(default_factory=dict)  # what was probed, expected vs observed, tolerances, samples
    started: float = 0.0
    finished: float = 0.0
    items: dict[str, bool] | None = None  # per-item outcomes, for the per-item scoring rule
    fraction: float | None = None  # measured fraction, for the fraction scoring rule
    blocked_by: str | None = None  # with not_assessable: the id of the cause (a blocker or GRADER_OVERLOADED)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def passed(check_id: str, max_points: float, en: str, zh: str, evidence: dict[str, Any] | None = None) -> CheckResult:
    return CheckResult(check_id, PASS, max_points, max_points, {"en": en, "zh-TW": zh}, evidence or {})


def failed(check_id: str, max_points: float, en: str, zh: str, evidence: dict[str, Any] | None = None) -> CheckResult:
    return CheckResult(check_id, FAIL, 0.0, max_points, {"en": en, "zh-TW": zh}, evidence or {})


def not_assessable(
    check_id: str,
    max_points: float,
    cause: str,
    en: str,
    zh: str,
    evidence: dict[str, Any] | None = None,
) -> CheckResult:
    """The probe could not run; `cause` names why (a blocker id, or GRADER_OVERLOADED). Zero points, not a pass."""
    return CheckResult(
        check_id,
        NOT_ASSESSABLE,
        0.0,
        max_points,
        {"en": f"Not assessable: {en}", "zh-TW": f"無法評量：{zh}"},
        evidence or {},
        blocked_by=cause,
    )


def by_items(
    check_id: str,
    max_points: float,
    items: dict[str, bool],
    en: str,
    zh: str,
    evidence: dict[str, Any] | None = None,
) -> CheckResult:
    """A check judged item by item (streams, metrics, listeners): passes only when every item does. The lab's
    scoring rule turns the items into points (per-item: a wrong item loses its whole share)."""
    if not items:
        return failed(check_id, max_points, f"Nothing to assess: {en}", f"無可評量項目：{zh}", evidence)
    ok = all(items.values())
    n_ok = sum(items.values())
    return CheckResult(
        check_id,
        PASS if ok else FAIL,
        max_points if ok else round(max_points * n_ok / len(items), 2),
        max_points,
        {"en": en, "zh-TW": zh},
        evidence or {},
        items=dict(items),
    )


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
    """Pass at or above threshold; otherwise failing. The measured fraction is kept for the fraction rule."""
    fraction = max(0.0, min(1.0, fraction))
    if fraction >= threshold:
        return CheckResult(check_id, PASS, max_points, max_points, {"en": en, "zh-TW": zh}, evidence, fraction=fraction)
    points = round(max_points * fraction, 2) if partial_credit else 0.0
    status = PARTIAL if points > 0 else FAIL
    return CheckResult(check_id, status, points, max_points, {"en": en, "zh-TW": zh}, evidence, fraction=fraction)
