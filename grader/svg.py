"""Tiny inline-SVG charts for self-contained reports (no JavaScript, no external assets)."""

from __future__ import annotations

import html
from typing import Any

W, H, PAD = 560, 180, 36


def _scale(vals: list[float], lo: float, hi: float, a: float, b: float) -> list[float]:
    span = (hi - lo) or 1.0
    return [a + (v - lo) / span * (b - a) for v in vals]


def line_chart(title: str, series: list[tuple[str, str, list[tuple[float, float]]]]) -> str:
    """series: (label, colour, [(x, y), ...]); x shared (seconds), y in engineering units."""
    pts = [p for _, _, s in series for p in s]
    if not pts:
        return ""
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if y0 == y1:
        y0, y1 = y0 - 1, y1 + 1
    out = [
        f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{html.escape(title)}">',
        f'<text x="{PAD}" y="14" font-size="12">{html.escape(title)}</text>',
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 8}" y2="{H - PAD}" stroke="#999"/>',
        f'<text x="2" y="{PAD}" font-size="10">{y1:.4g}</text><text x="2" y="{H - PAD}" font-size="10">{y0:.4g}</text>',
    ]
    for i, (label, colour, s) in enumerate(series):
        if not s:
            continue
        px = _scale([p[0] for p in s], x0, x1, PAD, W - 8)
        py = _scale([p[1] for p in s], y0, y1, H - PAD, 22)
        if i == 0:  # the candidate's readings as points, so they stay visible where they sit on the truth line
            out.extend(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>' for x, y in zip(px, py, strict=True)
            )
        else:
            d = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(px, py, strict=True))
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{d}"/>')
        out.append(
            f'<text x="{PAD + 150 * i}" y="{H - 8}" font-size="11" fill="{colour}">■ {html.escape(label)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def histogram(title: str, values: list[float], bins: int = 20, mark: float | None = None) -> str:
    if not values:
        return ""
    lo, hi = min(values + ([mark] if mark else [])), max(values + ([mark] if mark else []))
    hi = hi if hi > lo else lo + 1
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / (hi - lo) * bins))] += 1
    top = max(counts)
    bw = (W - PAD - 8) / bins
    out = [
        f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{html.escape(title)}">',
        f'<text x="{PAD}" y="14" font-size="12">{html.escape(title)}</text>',
    ]
    for i, c in enumerate(counts):
        h = (H - PAD - 24) * c / top
        out.append(
            f'<rect x="{PAD + i * bw:.1f}" y="{H - PAD - h:.1f}" width="{bw - 1:.1f}" height="{h:.1f}" fill="#5b8def"/>'
        )
    if mark is not None:
        x = PAD + (mark - lo) / (hi - lo) * (W - PAD - 8)
        out.append(f'<line x1="{x:.1f}" y1="20" x2="{x:.1f}" y2="{H - PAD}" stroke="#d33" stroke-dasharray="4"/>')
    out.append(
        f'<text x="{PAD}" y="{H - 18}" font-size="10">{lo:.3g}</text><text x="{W - 40}" y="{H - 18}" font-size="10">{hi:.3g}</text>'
    )
    out.append("</svg>")
    return "".join(out)


def bars(title: str, items: list[tuple[str, float, bool]]) -> str:
    """items: (label, fraction 0..1, achieved)."""
    h = 22 * len(items) + 24
    out = [
        f'<svg viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" aria-label="{html.escape(title)}">',
        f'<text x="4" y="14" font-size="12">{html.escape(title)}</text>',
    ]
    for i, (label, frac, ok) in enumerate(items):
        y = 22 + 22 * i
        out.append(f'<text x="4" y="{y + 13}" font-size="11">{html.escape(label)}</text>')
        out.append(f'<rect x="200" y="{y}" width="{300 * frac:.1f}" height="16" fill="{"#2a9d4b" if ok else "#d33"}"/>')
        out.append(f'<rect x="200" y="{y}" width="300" height="16" fill="none" stroke="#bbb"/>')
    out.append("</svg>")
    return "".join(out)


def evidence_plots(results: list[dict[str, Any]]) -> list[str]:
    """Pick what people would rather look at than read: values vs truth, sampling intervals."""
    plots = []
    for r in results:
        ev = r.get("evidence", {})
        if r["id"].endswith(".values") and isinstance(ev.get("series"), dict):
            for key, pts in list(ev["series"].items())[:4]:
                if not pts:
                    continue
                t0 = pts[0][0]
                cand = [(p[0] - t0, p[1]) for p in pts if isinstance(p[1], int | float)]
                truth = [(p[0] - t0, p[2]) for p in pts if isinstance(p[2], int | float)]
                plots.append(
                    line_chart(
                        f"{key}: candidate vs ground truth / 考生值 vs 真值",
                        [("candidate", "#5b8def", cand), ("truth", "#2a9d4b", truth)],
                    )
                )
        if r["id"].endswith(".period") and isinstance(ev.get("streams"), dict):
            gaps = [g for s in ev["streams"].values() for g in s.get("intervals", [])]
            plots.append(
                histogram(
                    f"sampling intervals (s) / 取樣間隔（秒）, target {ev.get('period_s')}",
                    gaps,
                    mark=ev.get("period_s"),
                )
            )
    return [p for p in plots if p]
