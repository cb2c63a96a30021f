"""A server-side SVG chart of a case's readings with its threshold drawn in (no script, no CDN)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from html import escape
from zoneinfo import ZoneInfo

__all__ = ["daily_bars_svg", "readings_svg"]

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 640, 220, 44, 12, 12, 28


def readings_svg(
    points: Sequence[tuple[datetime, float]],
    *,
    threshold: float | None,
    label: str,
    tz: str = "UTC",
) -> str:
    """An accessible SVG line chart (role=img with a text alternative)."""
    if not points:
        return ""
    values = [v for _, v in points] + ([threshold] if threshold is not None else [])
    lo, hi = min(values), max(values)
    if hi - lo < 1:
        lo, hi = lo - 0.5, hi + 0.5
    margin = (hi - lo) * 0.1
    lo, hi = lo - margin, hi + margin
    t0, t1 = points[0][0], points[-1][0]
    span = max((t1 - t0).total_seconds(), 1.0)

    def x(t: datetime) -> float:
        return PAD_L + (t - t0).total_seconds() / span * (W - PAD_L - PAD_R)

    def y(v: float) -> float:
        return PAD_T + (hi - v) / (hi - lo) * (H - PAD_T - PAD_B)

    line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
    zone = ZoneInfo(tz)
    first, last = t0.astimezone(zone), t1.astimezone(zone)
    parts = [
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(label)}" '
        'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="none">',
        f'<rect x="{PAD_L}" y="{PAD_T}" width="{W - PAD_L - PAD_R}" '
        f'height="{H - PAD_T - PAD_B}" class="plot"/>',
    ]
    parts.extend(
        f'<text x="{PAD_L - 6}" y="{y(v) + 4:.1f}" class="axis" text-anchor="end">{v:.1f}</text>'
        for v in (lo + margin, (lo + hi) / 2, hi - margin)
    )
    if threshold is not None:
        ty = y(threshold)
        parts.append(
            f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{ty:.1f}" y2="{ty:.1f}" class="threshold"/>'
            f'<text x="{W - PAD_R - 4}" y="{ty - 4:.1f}" class="threshold-label" '
            f'text-anchor="end">{threshold:g} °C</text>'
        )
    parts.append(f'<polyline points="{line}" class="series"/>')
    lx, ly = x(points[-1][0]), y(points[-1][1])
    parts.append(f'<circle cx="{lx:.1f}" cy="{ly:.1f}" r="4" class="last"/>')
    parts.append(
        f'<text x="{PAD_L}" y="{H - 8}" class="axis">{first:%H:%M}</text>'
        f'<text x="{W - PAD_R}" y="{H - 8}" class="axis" text-anchor="end">{last:%H:%M}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def daily_bars_svg(days: Sequence[tuple[date, float]], *, unit: str, label: str) -> str:
    """An accessible SVG bar chart of consumption per day (role=img with a text alternative,
    and each bar titled with its day and amount)."""
    if not days:
        return ""
    top = max([v for _, v in days] + [1e-9])
    width = (W - PAD_L - PAD_R) / len(days)
    plot_h = H - PAD_T - PAD_B
    parts = [
        f'<svg class="chart bars" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(label)}" '
        'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="none">',
        f'<rect x="{PAD_L}" y="{PAD_T}" width="{W - PAD_L - PAD_R}" height="{plot_h}" '
        'class="plot"/>',
        f'<text x="{PAD_L - 6}" y="{PAD_T + 10}" class="axis" text-anchor="end">{top:.4g}</text>',
        f'<text x="{PAD_L - 6}" y="{H - PAD_B}" class="axis" text-anchor="end">0</text>',
    ]
    for i, (day, value) in enumerate(days):
        h = max(value, 0.0) / top * plot_h
        x = PAD_L + i * width
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{PAD_T + plot_h - h:.1f}" width="{max(width - 2, 1):.1f}" '
            f'height="{h:.1f}" class="bar"><title>{day.isoformat()}: {value:.4g} '
            f"{escape(unit)}</title></rect>"
        )
    first, last = days[0][0], days[-1][0]
    parts.append(
        f'<text x="{PAD_L}" y="{H - 8}" class="axis">{first:%d %b}</text>'
        f'<text x="{W - PAD_R}" y="{H - 8}" class="axis" text-anchor="end">{last:%d %b}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
