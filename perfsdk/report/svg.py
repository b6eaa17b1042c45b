"""Plots as inline SVG, drawn in Python: the report must open with no network, so no
plotting library in the page, no CDN, no fonts.

A ``Chart`` is one plot over a run's time axis (seconds from the run's start,
labelled with the UTC clock). It collects what to draw, fits the value axis to
the data, and renders one ``<svg class="plot">`` whose drawn data sit in
``<g class="marks">`` (what the browser test looks for). Hovering a mark shows
its ``<title>``: the browser's own tooltip, no script needed.

>>> chart = Chart("p99", (0.0, 10.0), y_label="ms", t0_ns=0)
>>> chart.line([0, 4, 6, 10], [1.0, 2.0, float("nan"), 3.0], "p99")   # NaN: no data, a gap
>>> chart.points([5], [2.0], "anomaly", tips=["slow"])
>>> svg = chart.render()
>>> svg.count("<path"), svg.count("<circle"), "<title>slow</title>" in svg   # a lone point is a dot
(1, 2, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from typing import Any, Sequence

import numpy as np

__all__ = ["PALETTE", "Chart", "clip", "clock", "nice_step"]

#: Distinct colours for series (Tableau 10, readable on white and in print).
PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac"]
ANOMALY = "#d62728"

WIDTH, PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 900, 64, 34, 16, 26


def nice_step(span: float, ticks: int = 6) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about ``ticks`` ticks over ``span``.

    >>> nice_step(100.0), nice_step(0.7), nice_step(0.0)
    (20.0, 0.1, 1.0)
    """
    if not span > 0 or not math.isfinite(span):
        return 1.0
    raw = span / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    for mult in (1.0, 2.0, 5.0, 10.0):
        if raw <= mult * power * 1.0001:
            return round(mult * power, 12)
    return 10.0 * power


TITLE_CHARS = 200  # the most of a plot's title shown
_TIME_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600,
               43200, 86400)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis its last (a name can be megabytes).

    >>> clip("checkout", 5), clip("cart", 5)
    ('chec…', 'cart')
    """
    return text if len(text) <= limit else text[:limit - 1] + "…"


def clock(t_ns: float, with_ms: bool = False, days: bool = False) -> str:
    """UTC wall-clock time of a unix-ns instant, ``HH:MM:SS`` (and ``.mmm``); its date with ``days``."""
    when = datetime.fromtimestamp(t_ns / 1e9, tz=timezone.utc)
    if days:
        return when.strftime("%Y-%m-%d")
    return when.strftime("%H:%M:%S.%f")[:-3] if with_ms else when.strftime("%H:%M:%S")


def _fmt(v: float) -> str:
    """Compact tick labels: 0.5, 12, 1.2k, 3M."""
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:g}M"
    if a >= 1e4:
        return f"{v / 1e3:g}k"
    return f"{v:.4g}"


@dataclass
class _Mark:
    kind: str  # line, step, band, points, span, ticks
    xs: np.ndarray
    ys: np.ndarray = field(default_factory=lambda: np.empty(0))
    ys2: np.ndarray = field(default_factory=lambda: np.empty(0))  # band: upper; points: whisker top
    ys_lo: np.ndarray = field(default_factory=lambda: np.empty(0))  # points: whisker bottom
    label: str = ""
    color: str = ""
    tips: Sequence[str] = ()
    dashed: bool = False
    css: str = ""
    shape: str = "circle"
    scales: bool = True  # counts when fitting the value axis


class Chart:
    """One plot over a run's time axis.

    Parameters
    ----------
    title
        Shown above the plot and read by screen readers (``TITLE_CHARS`` at most: a span name can
        be megabytes, and every plot of its route shows it).
    x_range
        ``(start, end)`` in seconds from ``t0_ns``: the same for every plot of a run.
    y_label
        The unit of the value axis.
    t0_ns
        The run's start (unix ns): tick labels are its UTC clock plus the offset.
    log_y
        A logarithmic value axis (latencies that span decades); ``None`` decides from the data.
    categories
        Named lanes instead of a numeric value axis (the decision timeline).
    """

    def __init__(self, title: str, x_range: tuple[float, float], *, y_label: str, t0_ns: int, height: int = 190,
                 log_y: bool | None = False, y_floor: float | None = None, y_ceiling: float | None = None,
                 categories: Sequence[str] | None = None) -> None:
        lo, hi = x_range
        self.title, self.y_label, self.t0_ns = clip(title, TITLE_CHARS), y_label, t0_ns
        self.x_lo, self.x_hi = float(lo), float(hi) if hi > lo else float(lo) + 1.0
        self.log_y, self.y_floor, self.y_ceiling = log_y, y_floor, y_ceiling
        self.categories = list(categories) if categories is not None else None
        self.height = height if categories is None else max(60, 26 * len(categories) + 40)
        self._marks: list[_Mark] = []
        self._colors = iter(PALETTE * 4)

    # -- what to draw ----------------------------------------------------------
    def line(self, xs: Any, ys: Any, label: str, color: str | None = None, dashed: bool = False) -> None:
        """A line through the points; a NaN breaks it (an empty bucket is no data, not zero)."""
        self._marks.append(_Mark("line", _arr(xs), _arr(ys), label=label, color=color or next(self._colors),
                                 dashed=dashed))

    def step(self, xs: Any, ys: Any, label: str, color: str | None = None, dashed: bool = False) -> None:
        """A value that holds until the next change (a capacity, a pool size), to the axis's end."""
        self._marks.append(_Mark("step", _arr(xs), _arr(ys), label=label, color=color or next(self._colors),
                                 dashed=dashed))

    def band(self, xs: Any, lower: Any, upper: Any, label: str, color: str | None = None) -> None:
        """A shaded interval (a forecast's prediction band); it does not stretch the value axis."""
        self._marks.append(_Mark("band", _arr(xs), _arr(lower), _arr(upper), label=label,
                                 color=color or next(self._colors), scales=False))

    def points(self, xs: Any, ys: Any, label: str, color: str = ANOMALY, tips: Sequence[str] = (),
               lower: Any = None, upper: Any = None, shape: str = "circle") -> None:
        """Markers with tooltips; ``lower``/``upper`` draw a whisker (e.g. the detector's normal band)."""
        xs = _arr(xs)
        self._marks.append(_Mark("points", xs, _arr(ys), _arr(upper) if upper is not None else np.empty(0),
                                 _arr(lower) if lower is not None else np.empty(0), label=label, color=color,
                                 tips=tips, shape=shape))

    def span(self, x0: float, x1: float, label: str, css: str, tip: str = "") -> None:
        """A shaded stretch of time (a fault, an incident); ``css`` is its class."""
        self._marks.append(_Mark("span", _arr([x0, x1]), label=label, css=css, tips=(tip or label,)))

    # -- drawing ---------------------------------------------------------------
    def render(self) -> str:
        w, h = WIDTH, self.height
        self._plot_w, self._plot_h = w - PAD_LEFT - PAD_RIGHT, h - PAD_TOP - PAD_BOTTOM
        self._fit_y()
        parts = [f'<svg class="plot" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
                 f'aria-label="{escape(self.title)}" preserveAspectRatio="xMinYMin meet">',
                 self._axes(), '<g class="spans">']
        parts += [self._span(m) for m in self._marks if m.kind == "span"]
        parts.append('</g><g class="marks">')
        for m in self._marks:
            if m.kind == "band":
                parts.append(self._band(m))
        for m in self._marks:
            if m.kind in ("line", "step"):
                parts.append(self._line(m))
        for m in self._marks:
            if m.kind == "points":
                parts.append(self._points(m))
        parts.append("</g></svg>")
        legend = self._legend()
        return (f'<figure class="chart"><figcaption>{escape(self.title)}</figcaption>{"".join(parts)}'
                f'{legend}</figure>')

    def _fit_y(self) -> None:
        if self.categories is not None:
            self.y_lo, self.y_hi, self._log = -0.5, len(self.categories) - 0.5, False
            return
        values = [m.ys for m in self._marks if m.kind in ("line", "step", "points") and m.scales]
        data = np.concatenate(values) if values else np.empty(0)
        data = data[np.isfinite(data)]
        positive = data[data > 0]
        log = self.log_y
        if log is None:  # latencies: a log axis once the data span more than a decade and a half
            log = bool(len(positive) == len(data) and len(data) and np.max(positive) / np.min(positive) > 30)
        self._log = bool(log and len(positive))
        if self._log:
            lo, hi = float(np.min(positive)), float(np.max(positive))
            self.y_lo, self.y_hi = math.log10(lo) - 0.05, math.log10(hi) + 0.05
            return
        lo = float(np.min(data)) if len(data) else 0.0
        hi = float(np.max(data)) if len(data) else 1.0
        lo = min(lo, 0.0) if lo >= 0 else lo  # quantities: from zero
        if self.y_floor is not None:
            lo = self.y_floor
        if self.y_ceiling is not None:
            hi = max(hi, self.y_ceiling)
        if hi <= lo:
            hi = lo + 1.0
        self.y_lo, self.y_hi = lo, hi + 0.05 * (hi - lo)

    def _x(self, xs: np.ndarray) -> np.ndarray:
        return PAD_LEFT + (xs - self.x_lo) / (self.x_hi - self.x_lo) * self._plot_w

    def _y(self, ys: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.log10(np.where(ys > 0, ys, np.nan)) if self._log else ys
        y = PAD_TOP + (1.0 - (v - self.y_lo) / (self.y_hi - self.y_lo)) * self._plot_h
        return np.clip(y, PAD_TOP - 2.0, PAD_TOP + self._plot_h + 2.0)

    def _axes(self) -> str:
        top, bottom, left, right = PAD_TOP, PAD_TOP + self._plot_h, PAD_LEFT, PAD_LEFT + self._plot_w
        out = [f'<g class="axes"><rect class="frame" x="{left}" y="{top}" width="{self._plot_w}" '
               f'height="{self._plot_h}"/>']
        for value, label in self._y_ticks():
            y = float(self._y(np.array([value]))[0])
            out.append(f'<line class="grid" x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}"/>'
                       f'<text class="tick" x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">{escape(label)}</text>')
        span = self.x_hi - self.x_lo
        day = _TIME_STEPS[-1]
        step = next((s for s in _TIME_STEPS if span / s <= 8), None)
        if step is None:  # more than 8 days (one span off a clock never set): whole days, about 8 ticks
            step = day * max(1.0, nice_step(span / day, 8))
        t = math.ceil(self.x_lo / step) * step
        while t <= self.x_hi + 1e-9:
            x = float(self._x(np.array([t]))[0])
            label = clock(self.t0_ns + t * 1e9, with_ms=step < 1, days=step >= day)
            out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}"/>'
                       f'<text class="tick" x="{x:.1f}" y="{bottom + 14}" text-anchor="middle">{label}</text>')
            t += step
        out.append(f'<text class="unit" x="{left}" y="{top - 4}">{escape(self.y_label)}</text></g>')
        return "".join(out)

    def _y_ticks(self) -> list[tuple[float, str]]:
        if self.categories is not None:
            return [(float(i), c if len(c) <= 9 else c[:8] + "…") for i, c in enumerate(self.categories)]
        if self._log:
            ticks = []
            for k in range(math.floor(self.y_lo), math.ceil(self.y_hi) + 1):
                for m in (1, 2, 5):
                    v = m * 10.0 ** k
                    if self.y_lo <= math.log10(v) <= self.y_hi:
                        ticks.append((v, _fmt(v)))
            return ticks if len(ticks) <= 9 else [t for t in ticks if t[1].lstrip("0.").startswith("1")]
        step = nice_step(self.y_hi - self.y_lo, 4)
        v = math.ceil(self.y_lo / step) * step
        ticks = []
        while v <= self.y_hi + 1e-12:
            ticks.append((v, _fmt(round(v, 10))))
            v += step
        return ticks

    def _span(self, m: _Mark) -> str:
        x0, x1 = self._x(np.clip(m.xs, self.x_lo, self.x_hi))
        if x1 - x0 < 1.5:  # a very short incident still shows
            x1 = x0 + 1.5
        return (f'<rect class="{m.css}" x="{x0:.1f}" y="{PAD_TOP}" width="{x1 - x0:.1f}" height="{self._plot_h}">'
                f'<title>{escape(m.tips[0])}</title></rect>')

    def _segments(self, xs: np.ndarray, ys: np.ndarray) -> list[list[tuple[float, float]]]:
        """Screen points, split where a value is missing."""
        out: list[list[tuple[float, float]]] = [[]]
        for x, y in zip(self._x(xs).tolist(), self._y(ys).tolist()):
            if math.isnan(y):
                if out[-1]:
                    out.append([])
                continue
            out[-1].append((x, y))
        return [s for s in out if s]

    def _line(self, m: _Mark) -> str:
        xs, ys = m.xs, m.ys
        if m.kind == "step" and len(xs):  # hold each value until the next, and to the axis's end
            xs = np.append(np.repeat(xs, 2)[1:], self.x_hi)
            ys = np.repeat(ys, 2)
        segments = self._segments(xs, ys)
        d = "".join("M" + "L".join(f"{x:.1f} {y:.1f}" for x, y in s) for s in segments if len(s) > 1)
        dash = ' stroke-dasharray="5 3"' if m.dashed else ""
        out = [f'<path class="series" d="{d}" stroke="{m.color}"{dash}><title>{escape(m.label)}</title></path>'
               if d else ""]
        out += [f'<circle cx="{s[0][0]:.1f}" cy="{s[0][1]:.1f}" r="1.8" fill="{m.color}"/>'
                for s in segments if len(s) == 1]  # a lone point: a dot, so it shows
        return "".join(out)

    def _band(self, m: _Mark) -> str:
        ok = np.isfinite(m.ys) & np.isfinite(m.ys2)
        if ok.sum() < 2:
            return ""
        xs, lo, hi = self._x(m.xs[ok]), self._y(m.ys[ok]), self._y(m.ys2[ok])
        pts = [f"{x:.1f},{y:.1f}" for x, y in zip(xs.tolist(), hi.tolist())]
        pts += [f"{x:.1f},{y:.1f}" for x, y in zip(xs[::-1].tolist(), lo[::-1].tolist())]
        return (f'<polygon class="band" points="{" ".join(pts)}" fill="{m.color}">'
                f'<title>{escape(m.label)}</title></polygon>')

    def _points(self, m: _Mark) -> str:
        ok = np.isfinite(m.ys) & np.isfinite(m.xs)  # a point with no time is not drawn (the caller says so)
        xs, ys = self._x(m.xs), self._y(m.ys)
        whiskers = len(m.ys_lo) == len(m.ys) and len(m.ys2) == len(m.ys)
        lo = self._y(m.ys_lo) if whiskers else None
        hi = self._y(m.ys2) if whiskers else None
        out = [f'<g class="points" fill="{m.color}" stroke="{m.color}">']
        for i in np.flatnonzero(ok).tolist():
            x, y = xs[i], ys[i]
            tip = f"<title>{escape(m.tips[i])}</title>" if i < len(m.tips) else ""
            if lo is not None and hi is not None and np.isfinite(lo[i]) and np.isfinite(hi[i]):
                out.append(f'<line class="whisker" x1="{x:.1f}" x2="{x:.1f}" y1="{lo[i]:.1f}" y2="{hi[i]:.1f}"/>')
            if m.shape == "up":
                out.append(f'<path d="M{x - 4.5:.1f} {y + 4:.1f}L{x + 4.5:.1f} {y + 4:.1f}L{x:.1f} {y - 4.5:.1f}Z">'
                           f'{tip}</path>')
            elif m.shape == "down":
                out.append(f'<path d="M{x - 4.5:.1f} {y - 4:.1f}L{x + 4.5:.1f} {y - 4:.1f}L{x:.1f} {y + 4.5:.1f}Z">'
                           f'{tip}</path>')
            else:
                r = 2.5 if m.shape == "dot" else 4
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}">{tip}</circle>')
        out.append("</g>")
        return "".join(out)

    def _legend(self) -> str:
        items, seen = [], set()
        for m in self._marks:
            key = (m.kind, m.label, m.css)
            if not m.label or key in seen:
                continue
            seen.add(key)
            if m.kind == "span":
                swatch = f'<span class="swatch {m.css}"></span>'
            elif m.kind == "band":
                swatch = f'<span class="swatch band" style="background:{m.color}"></span>'
            elif m.kind == "points" and m.shape in ("up", "down"):
                glyph = "▲" if m.shape == "up" else "▼"
                swatch = f'<span class="swatch glyph" style="color:{m.color}">{glyph}</span>'
            elif m.kind == "points":
                swatch = f'<span class="swatch dot" style="background:{m.color}"></span>'
            else:
                style = "dashed" if m.dashed else "solid"
                swatch = f'<span class="swatch line" style="border-top:2px {style} {m.color}"></span>'
            items.append(f"<span>{swatch}{escape(m.label)}</span>")
        return f'<div class="legend">{"".join(items)}</div>' if items else ""


def _arr(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).ravel()
