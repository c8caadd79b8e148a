"""Server-rendered SVG charts: crisp at any size, no script, CSP-clean (presentation attributes only).

Every function returns an SVG string; every piece of text in it is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

INK, GRID, MUTED = "#1f2937", "#e5e7eb", "#6b7280"
PALETTE = ("#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d")


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


class _Frame:
    def __init__(self, width: int, height: int, x_range: tuple[float, float], y_range: tuple[float, float], *, left: int = 52, right: int = 16, top: int = 16, bottom: int = 44) -> None:
        self.width, self.height = width, height
        self.left, self.right, self.top, self.bottom = left, right, top, bottom
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range

    def x(self, value: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (value - self.x0) / span * (self.width - self.left - self.right)

    def y(self, value: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.height - self.bottom - (value - self.y0) / span * (self.height - self.top - self.bottom)

    def axes(self, x_label: str, y_label: str, x_ticks: Sequence[tuple[float, str]], y_ticks: Sequence[tuple[float, str]]) -> list[str]:
        parts = []
        for value, text in y_ticks:
            y = self.y(value)
            parts.append(f'<line x1="{self.left}" y1="{y:.1f}" x2="{self.width - self.right}" y2="{y:.1f}" stroke="{GRID}" stroke-width="1"/>')
            parts.append(f'<text x="{self.left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="{MUTED}">{escape(text)}</text>')
        for value, text in x_ticks:
            x = self.x(value)
            parts.append(f'<line x1="{x:.1f}" y1="{self.top}" x2="{x:.1f}" y2="{self.height - self.bottom}" stroke="{GRID}" stroke-width="1"/>')
            parts.append(f'<text x="{x:.1f}" y="{self.height - self.bottom + 16}" text-anchor="middle" font-size="11" fill="{MUTED}">{escape(text)}</text>')
        base = self.height - self.bottom
        parts.append(f'<line x1="{self.left}" y1="{base}" x2="{self.width - self.right}" y2="{base}" stroke="{INK}" stroke-width="1"/>')
        parts.append(f'<line x1="{self.left}" y1="{self.top}" x2="{self.left}" y2="{base}" stroke="{INK}" stroke-width="1"/>')
        parts.append(f'<text x="{(self.left + self.width - self.right) / 2:.1f}" y="{self.height - 8}" text-anchor="middle" font-size="12" fill="{INK}">{escape(x_label)}</text>')
        parts.append(
            f'<text x="14" y="{(self.top + base) / 2:.1f}" text-anchor="middle" font-size="12" fill="{INK}" transform="rotate(-90 14 {(self.top + base) / 2:.1f})">{escape(y_label)}</text>'
        )
        return parts


def _svg(width: int, height: int, title: str, parts: Sequence[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" class="chart" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>" + "".join(parts) + "</svg>"
    )


def _ticks(low: float, high: float, count: int = 5, percent: bool = False) -> list[tuple[float, str]]:
    step = (high - low) / count
    decimals = 0 if abs(step * 100 - round(step * 100)) < 1e-9 else 1  # 2.5 % steps keep their half: no two "2%" ticks
    return [(low + i * step, f"{(low + i * step) * 100:.{decimals}f}%" if percent else _fmt(low + i * step)) for i in range(count + 1)]


def _legend(frame: _Frame, entries: Sequence[tuple[str, str, bool]], *, bottom: bool = False) -> list[str]:
    parts = []
    y = frame.height - frame.bottom - 10 - 16 * (len(entries) - 1) if bottom else frame.top + 8
    x = frame.left + 10
    for text, color, dashed in entries:
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        parts.append(f'<line x1="{x}" y1="{y}" x2="{x + 18}" y2="{y}" stroke="{color}" stroke-width="2"{dash}/>')
        parts.append(f'<text x="{x + 24}" y="{y + 4}" font-size="11" fill="{INK}">{escape(text)}</text>')
        y += 16
    return parts


def _polyline(frame: _Frame, points: Sequence[tuple[float, float]], color: str, *, dashed: bool = False, width: float = 2) -> str:
    if not points:
        return ""
    coords = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in points)
    dash = ' stroke-dasharray="5 4"' if dashed else ""
    return f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="{width}"{dash}/>'


def risk_coverage(coverage: Sequence[float], risk: Sequence[float], *, operating_coverage: float | None, target_risk: float | None, aurc: float | None) -> str:
    top = max([0.05, *(r for r in risk), *([target_risk * 1.5] if target_risk else [])])
    top = min(1.0, round(top + 0.05, 1) if top > 0.1 else round(top * 1.25 + 0.005, 2))
    frame = _Frame(560, 300, (0, 1), (0, top))
    parts = frame.axes("coverage (share routed, most confident first)", "selective risk", _ticks(0, 1, 5, percent=True), _ticks(0, top, 4, percent=True))
    parts.append(_polyline(frame, list(zip(coverage, risk)), PALETTE[0]))
    legend = [(f"model (AURC {aurc:.4f})" if aurc is not None else "model", PALETTE[0], False)]
    if target_risk is not None:
        parts.append(_polyline(frame, [(0, target_risk), (1, target_risk)], PALETTE[4], dashed=True, width=1.5))
        legend.append((f"target risk {target_risk:.0%}", PALETTE[4], True))
    if operating_coverage is not None:
        parts.append(_polyline(frame, [(operating_coverage, 0), (operating_coverage, top)], MUTED, dashed=True, width=1.5))
        legend.append((f"operating coverage {operating_coverage:.0%}", MUTED, True))
    parts += _legend(frame, legend)
    return _svg(frame.width, frame.height, "Risk-coverage curve", parts)


def reliability(series: Sequence[tuple[str, Sequence[dict]]]) -> str:
    frame = _Frame(420, 340, (0, 1), (0, 1))
    parts = frame.axes("confidence", "accuracy", _ticks(0, 1, 5), _ticks(0, 1, 5))
    parts.append(_polyline(frame, [(0, 0), (1, 1)], MUTED, dashed=True, width=1))
    legend = [("perfect calibration", MUTED, True)]
    for index, (name, bins) in enumerate(series):
        color = PALETTE[index + 1]
        points = [(b["confidence"], b["accuracy"]) for b in bins]
        parts.append(_polyline(frame, points, color))
        for b in bins:
            parts.append(
                f'<circle cx="{frame.x(b["confidence"]):.1f}" cy="{frame.y(b["accuracy"]):.1f}" r="3.5" fill="{color}">'
                f'<title>{escape(name)}: confidence {b["confidence"]:.2f}, accuracy {b["accuracy"]:.2f}, {b["count"]} requests</title></circle>'
            )
        legend.append((name, color, False))
    parts += _legend(frame, legend)
    return _svg(frame.width, frame.height, "Reliability diagram", parts)


def _blue(share: float) -> str:
    share = max(0.0, min(1.0, share))
    r, g, b = (int(255 + (end - 255) * share) for end in (30, 64, 175))
    return f"#{r:02x}{g:02x}{b:02x}"


def confusion(labels: Sequence[str], matrix: Sequence[Sequence[int]]) -> str:
    n = len(labels)
    cell = 36 if n <= 8 else 26 if n <= 20 else max(8, 520 // max(n, 1))
    label_width = min(190, 7 * max((len(label) for label in labels), default=4) + 10)
    left, top = label_width, int(label_width * 0.85)
    size = n * cell
    width, height = left + size + int(label_width * 0.6) + 12, top + size + 12
    parts = []
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        for j, count in enumerate(row):
            share = count / total
            x, y = left + j * cell, top + i * cell
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell - 1}" height="{cell - 1}" fill="{_blue(share) if count else "#f9fafb"}">'
                f"<title>gold {escape(labels[i])}, predicted {escape(labels[j])}: {count} ({share:.0%} of the row)</title></rect>"
            )
            if count and cell >= 22:
                color = "#ffffff" if share > 0.55 else INK
                parts.append(f'<text x="{x + cell / 2 - 0.5:.1f}" y="{y + cell / 2 + 4:.1f}" text-anchor="middle" font-size="10" fill="{color}">{count}</text>')
    font = 11 if cell >= 20 else 8
    for i, label in enumerate(labels):
        parts.append(f'<text x="{left - 6}" y="{top + i * cell + cell / 2 + 4:.1f}" text-anchor="end" font-size="{font}" fill="{INK}">{escape(label)}</text>')
        x = left + i * cell + cell / 2
        parts.append(f'<text x="{x:.1f}" y="{top - 6}" font-size="{font}" fill="{INK}" transform="rotate(-55 {x:.1f} {top - 6})">{escape(label)}</text>')
    return _svg(width, height, "Confusion matrix", parts)


def interval_over_time(points: Sequence[dict], *, target: float | None) -> str:
    """Live precision (cumulative) with its interval as a band, by day."""
    n = len(points)
    low = min([p["low"] for p in points] + ([target] if target else [])) if points else 0.0
    floor = max(0.0, min(0.9, int(low * 10) / 10))
    frame = _Frame(560, 280, (-0.5, max(n - 0.5, 0.5)), (floor, 1.0))
    step = max(1, n // 8)
    x_ticks = [(i, p["day"][5:]) for i, p in enumerate(points) if i % step == 0]
    steps = round((1.0 - floor) / 0.05)
    y_ticks = _ticks(floor, 1.0, steps, percent=True) if steps <= 6 else _ticks(floor, 1.0, round((1.0 - floor) / 0.1), percent=True)
    parts = frame.axes("day (cumulative)", "routed precision", x_ticks, y_ticks)
    if points:
        upper = [(i, p["high"]) for i, p in enumerate(points)]
        lower = [(i, p["low"]) for i, p in reversed(list(enumerate(points)))]
        if n == 1:
            upper = [(-0.06, points[0]["high"]), (0.06, points[0]["high"])]
            lower = [(0.06, points[0]["low"]), (-0.06, points[0]["low"])]
        coords = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in upper + lower)
        parts.append(f'<polygon points="{coords}" fill="{PALETTE[0]}" fill-opacity="0.18" stroke="none"/>')
        parts.append(_polyline(frame, [(i, p["precision"]) for i, p in enumerate(points)], PALETTE[0]))
        for i, p in enumerate(points):
            parts.append(
                f'<circle cx="{frame.x(i):.1f}" cy="{frame.y(p["precision"]):.1f}" r="3.5" fill="{PALETTE[0]}">'
                f'<title>{escape(p["day"])}: {p["correct"]}/{p["audited"]} = {p["precision"]:.3f} [{p["low"]:.3f}, {p["high"]:.3f}]</title></circle>'
            )
    legend = [("live precision, 95% interval shaded", PALETTE[0], False)]
    if target:
        parts.append(_polyline(frame, [(-0.5, target), (max(n - 0.5, 0.5), target)], PALETTE[4], dashed=True, width=1.5))
        legend.append((f"target {target:.0%}", PALETTE[4], True))
    parts += _legend(frame, legend, bottom=True)
    return _svg(frame.width, frame.height, "Live routed precision from audit samples", parts)


def escalation_bars(buckets: Sequence[dict], reasons: Sequence[str], names: dict[str, str] | None = None) -> str:
    """Escalated requests per period (each once, coloured by its first reason), with the escalation rate as a line (right axis)."""
    names = names or {}
    n = len(buckets)
    peak = max([sum(b.get("primary", b["reasons"]).values()) for b in buckets] + [1])
    unit = max(1, math.ceil(peak * 1.15 / 4))  # whole requests on the axis
    frame = _Frame(560, 300, (-0.5, max(n - 0.5, 0.5)), (0, unit * 4), right=48)
    step = max(1, n // 8)
    x_ticks = [(i, b["bucket"][5:]) for i, b in enumerate(buckets) if i % step == 0]
    parts = frame.axes("period", "escalated requests", x_ticks, [(unit * k, str(unit * k)) for k in range(5)])
    colors = {reason: PALETTE[(i + 1) % len(PALETTE)] for i, reason in enumerate(reasons)}
    width = min(40, 0.7 * (frame.width - frame.left - frame.right) / max(n, 1))
    for i, b in enumerate(buckets):
        base = 0
        for reason in reasons:
            count = b.get("primary", b["reasons"]).get(reason, 0)
            if not count:
                continue
            y_top, y_bottom = frame.y(base + count), frame.y(base)
            parts.append(
                f'<rect x="{frame.x(i) - width / 2:.1f}" y="{y_top:.1f}" width="{width:.1f}" height="{y_bottom - y_top:.1f}" fill="{colors[reason]}">'
                f"<title>{escape(b['bucket'])}: {count} {escape(names.get(reason, reason))}</title></rect>"
            )
            base += count
    # escalation rate on a right-hand 0..100% axis
    right = frame.width - frame.right
    rate_y = lambda rate: frame.height - frame.bottom - rate * (frame.height - frame.top - frame.bottom)  # noqa: E731
    for value in (0, 0.5, 1):
        parts.append(f'<text x="{right + 6}" y="{rate_y(value) + 4:.1f}" font-size="11" fill="{INK}">{value:.0%}</text>')
    coords = " ".join(f"{frame.x(i):.1f},{rate_y(b['rate']):.1f}" for i, b in enumerate(buckets))
    if coords:
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{INK}" stroke-width="2"/>')
        for i, b in enumerate(buckets):
            parts.append(f'<circle cx="{frame.x(i):.1f}" cy="{rate_y(b["rate"]):.1f}" r="3" fill="{INK}"><title>{escape(b["bucket"])}: {b["escalated"]}/{b["n"]} escalated ({b["rate"]:.0%})</title></circle>')
    entries = [("escalation rate (right axis)", INK, False)] + [(names.get(reason, reason), colors[reason], False) for reason in reasons[:6]]
    parts += _legend(frame, entries)
    return _svg(frame.width, frame.height, "Escalations over time", parts)
