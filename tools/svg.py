"""A small SVG writer for the generated pictures (no plotting library needed): boxes, lines,
text, and a line/point chart with axes. Output is deterministic, so the tests can compare a
regenerated picture with the checked-in one byte for byte."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

__all__ = ["PALETTE", "Svg", "line_chart"]

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777")


def _n(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


class Svg:
    """Shapes appended in order; :meth:`text` returns the document."""

    def __init__(self, width: float, height: float) -> None:
        self.width, self.height = width, height
        self.items: list[str] = []

    def rect(self, x: float, y: float, w: float, h: float, fill: str = "#fff",
             stroke: str = "#334155", rx: float = 6, dash: bool = False) -> None:  # fmt: skip
        extra = ' stroke-dasharray="5 4"' if dash else ""
        self.items.append(f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" '
                          f'rx="{_n(rx)}" fill="{fill}" stroke="{stroke}"{extra}/>')  # fmt: skip

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str = "#64748b",
             width: float = 1.2, arrow: bool = False, dash: bool = False) -> None:  # fmt: skip
        extra = ' marker-end="url(#arrow)"' if arrow else ""
        extra += ' stroke-dasharray="4 3"' if dash else ""
        self.items.append(f'<line x1="{_n(x1)}" y1="{_n(y1)}" x2="{_n(x2)}" y2="{_n(y2)}" '
                          f'stroke="{stroke}" stroke-width="{_n(width)}"{extra}/>')  # fmt: skip

    def curve(self, x1: float, y1: float, cx: float, cy: float, x2: float, y2: float,
              stroke: str = "#64748b", width: float = 1.2) -> None:  # fmt: skip
        """A quadratic curve from (x1, y1) to (x2, y2) bent towards (cx, cy), with an arrow."""
        self.items.append(f'<path d="M {_n(x1)} {_n(y1)} Q {_n(cx)} {_n(cy)} {_n(x2)} {_n(y2)}" '
                          f'fill="none" stroke="{stroke}" stroke-width="{_n(width)}" '
                          'marker-end="url(#arrow)"/>')  # fmt: skip

    def polyline(
        self, points: Sequence[tuple[float, float]], stroke: str, width: float = 2
    ) -> None:
        pts = " ".join(f"{_n(x)},{_n(y)}" for x, y in points)
        self.items.append(f'<polyline points="{pts}" fill="none" stroke="{stroke}" '
                          f'stroke-width="{_n(width)}"/>')  # fmt: skip

    def circle(self, x: float, y: float, r: float, fill: str) -> None:
        self.items.append(f'<circle cx="{_n(x)}" cy="{_n(y)}" r="{_n(r)}" fill="{fill}"/>')

    def text(self, x: float, y: float, s: str, size: float = 12, anchor: str = "start",
             fill: str = "#0f172a", bold: bool = False, rotate: bool = False) -> None:  # fmt: skip
        weight = ' font-weight="bold"' if bold else ""
        turn = f' transform="rotate(-90 {_n(x)} {_n(y)})"' if rotate else ""
        self.items.append(f'<text x="{_n(x)}" y="{_n(y)}" font-size="{_n(size)}" '
                          f'text-anchor="{anchor}" fill="{fill}"{weight}{turn}>{escape(s)}</text>')  # fmt: skip

    def document(self) -> str:
        """The SVG document."""
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(self.width)}" '
                f'height="{_n(self.height)}" viewBox="0 0 {_n(self.width)} {_n(self.height)}" '
                'font-family="system-ui, -apple-system, Segoe UI, sans-serif">')  # fmt: skip
        defs = ('<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" '
                'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
                '<path d="M 0 0 L 10 5 L 0 10 z" fill="#64748b"/></marker></defs>')  # fmt: skip
        bg = f'<rect width="{_n(self.width)}" height="{_n(self.height)}" fill="#fff"/>'
        return "\n".join([head, defs, bg, *self.items, "</svg>"]) + "\n"


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values from ``lo`` to ``hi`` (about ``n`` of them)."""
    raw = (hi - lo) / n or 1.0
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    count = math.floor((hi - lo) / step + 1e-9) + 1
    return [round(lo + i * step, 10) for i in range(count)]


def line_chart(title: str, x_label: str, y_label: str,
               series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
               width: float = 760, height: float = 360, log_x: bool = False) -> str:  # fmt: skip
    """A chart of ``series`` (name, points) with axes, ticks and a legend, as SVG."""
    svg = Svg(width, height)
    # The legend sits in the right margin, clear of the data.
    left, right, top, bottom = 70.0, 190.0, 40.0, 50.0
    pts = [p for _, s in series for p in s]
    fx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    xs, ys = [fx(x) for x, _ in pts], [y for _, y in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = 0.0, max(ys) * 1.1 or 1.0
    w, h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (fx(x) - x0) / ((x1 - x0) or 1) * w

    def py(y: float) -> float:
        return top + h - (y - y0) / (y1 - y0) * h

    svg.text(width / 2, 22, title, 14, "middle", bold=True)
    svg.line(left, top + h, left + w, top + h, "#334155")
    svg.line(left, top, left, top + h, "#334155")
    for t in _ticks(y0, y1):
        svg.line(left, py(t), left + w, py(t), "#e2e8f0", 1)
        svg.text(left - 6, py(t) + 4, f"{t:g}", 11, "end", "#475569")
    xticks = sorted({x for x, _ in pts})
    for t in xticks:
        svg.line(px(t), top + h, px(t), top + h + 4, "#334155")
        svg.text(px(t), top + h + 18, f"{t:g}", 11, "middle", "#475569")
    svg.text(left + w / 2, height - 10, x_label, 12, "middle", "#334155")
    svg.text(16, top + h / 2, y_label, 12, "middle", "#334155", rotate=True)
    for i, (name, s) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        svg.polyline([(px(x), py(y)) for x, y in s], colour)
        for x, y in s:
            svg.circle(px(x), py(y), 3, colour)
            svg.text(px(x) + 5, py(y) - 6, f"{y:g}", 10, fill=colour)
        svg.rect(width - right + 14, top + 6 + i * 18, 12, 12, colour, colour, 2)
        svg.text(width - right + 32, top + 16 + i * 18, name, 12)
    return svg.document()
