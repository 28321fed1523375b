"""Each check's scoring rule, stated in the lab data and in the brief, applied to what the check measured.

Rules (lab.yaml `checks[].scoring`):
- `all-or-nothing` (default): full points when the check passes, none otherwise.
- `per-item`: the check judges named items (streams, metrics, listeners); each has an equal share and an item that
  is wrong in any sample loses its whole share. The check passes only when every item does.
- `fraction` with `floor`: points in proportion to the measured fraction, none below the floor (so a systematic
  error is never nearly free). The check passes only at its own threshold.
A not-assessable or broken check never scores.
"""

from __future__ import annotations

from typing import Any

from .results import ERROR, FAIL, NOT_ASSESSABLE, PARTIAL, PASS, CheckResult

RULES = ("all-or-nothing", "per-item", "fraction")


def rule_of(spec: dict[str, Any]) -> dict[str, Any]:
    s = spec.get("scoring") or {"rule": "all-or-nothing"}
    return s if isinstance(s, dict) else {"rule": str(s)}


def validate(spec: dict[str, Any]) -> str | None:
    """Why a check's scoring entry is invalid, or None."""
    s = rule_of(spec)
    if s.get("rule") not in RULES:
        return f"scoring rule must be one of {RULES}, not {s.get('rule')!r}"
    if s["rule"] == "fraction":
        floor = s.get("floor")
        if not isinstance(floor, int | float) or not 0.5 <= float(floor) < 1.0:
            return "a fraction rule needs a floor in [0.5, 1.0): below it the check scores nothing"
    if s["rule"] == "per-item" and not s.get("items"):
        return "a per-item rule names what its items are (items: {en: ..., zh-TW: ...})"
    return None


def apply(spec: dict[str, Any], r: CheckResult) -> CheckResult:
    """The check's points under its stated rule. Status pass is kept only for a pass; points never exceed max."""
    mx = float(spec["points"])
    r.max_points = mx
    if r.status in (ERROR, NOT_ASSESSABLE):
        r.points = 0.0
        return r
    s = rule_of(spec)
    rule = s["rule"]
    if r.status == PASS:
        r.points = mx
        return r
    if rule == "per-item" and r.items:
        r.points = round(mx * sum(r.items.values()) / len(r.items), 2)
    elif rule == "fraction" and r.fraction is not None:
        r.points = round(mx * r.fraction, 2) if r.fraction >= float(s["floor"]) else 0.0
    else:
        r.points = 0.0
    r.status = PARTIAL if r.points > 0 else FAIL
    return r


def _a(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeio" else "a"


def describe(spec: dict[str, Any], lang: str) -> str:
    """The rule in the brief's words."""
    s = rule_of(spec)
    rule = s["rule"]
    if rule == "per-item":
        items = s["items"]
        return (
            f"每{items['zh-TW']}均分配分，任何一處有誤之{items['zh-TW']}不得該份分數"
            if lang == "zh-TW"
            else f"shared equally per {items['en']}; {_a(items['en'])} {items['en']} found wrong anywhere loses its whole share"
        )
    if rule == "fraction":
        floor = float(s["floor"])
        return (
            f"依符合比例給分，低於 {floor:.0%} 不給分"
            if lang == "zh-TW"
            else f"in proportion to the fraction that conforms, nothing below {floor:.0%}"
        )
    return "全有或全無" if lang == "zh-TW" else "all or nothing"
