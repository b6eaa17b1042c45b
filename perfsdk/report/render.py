"""The report as one HTML page: sections, tables and plots, from what ``data`` computed.

Everything the page needs is inside it (styles, SVG plots); it opens with no
network. Sizes are bounded whatever the input: plots have at most
``MAX_BUCKETS`` points a series, tables and markers are capped, and each cap
says what it left out.
"""

from __future__ import annotations

import math
import os
from html import escape
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from perfsdk._runtime import write_atomically
from perfsdk._version import __version__
from perfsdk.instrument.incidents import Incident
from perfsdk.report.data import (
    COMPARISON, SERVICE, Buckets, Controller, Demo, Fault, RouteLatency, Run, controllers, incidents, load,
    resource_metrics, route_latency,
)
from perfsdk.report.forecast import LEVEL, ForecastBand, forecast_band
from perfsdk.report.svg import ANOMALY, PALETTE, Chart, clip, clock

__all__ = ["render", "write_report"]

ROUTE_PLOTS = 6  # routes with their own latency plot (the busiest); the table lists the rest
FORECAST_ROUTES = 3  # routes with an ARIMA band (the busiest)
TABLE_ROWS = 200  # decision rows shown at most
MARKERS = 300  # anomaly markers a plot, decision markers a kind
LIST_ROWS = 50  # routes, anomalies and incidents listed at most
CONTROLLER_PLOTS = 6  # caches, and pools, plotted at most (those with the most decisions)
TIMELINE_LANES = 30  # controllers in the decision timeline at most (those with the most decisions)
SERVICE_LINES = len(PALETTE)  # services drawn on one resource plot at most (a colour each; the most sampled)
INCIDENT_SPANS = 100  # incidents shaded on every time axis at most (the largest)
TIP_CHARS = 400
WORDS_CHARS = 2000  # an incident in words, at most (one of thousands of anomalies would be megabytes)
GROW, SHRINK, KEEP = "#2ca02c", "#d62728", "#8c8c8c"
BATCH = "#8c564b"  # anomalies found offline by ``perfsdk analyze`` (the live detectors' are red)


def write_report(path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    """Write the HTML report for an export directory (or a demo's output directory).

    ``out`` defaults to ``report.html`` inside ``path``. The file appears whole
    (written aside, then renamed) or not at all. Raises ``FileNotFoundError``
    or ``ValueError`` saying what is wrong with ``path``, ``OSError`` when
    ``out`` cannot be written.

    >>> import tempfile, perfsdk
    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> root = tempfile.mkdtemp()
    >>> sdk = perfsdk.init(tracer_provider=TracerProvider(), export_dir=root, sample_resources=False)
    >>> for _ in range(3):
    ...     with sdk.tracer_provider.get_tracer("demo").start_as_current_span("GET /cart"):
    ...         pass
    >>> sdk.shutdown()
    >>> page = write_report(root)
    >>> page.name, "GET /cart" in page.read_text()
    ('report.html', True)
    """
    source = Path(path)
    demo, runs = load(source)
    target = Path(out) if out is not None else source / "report.html"
    page = render(source, demo, runs)
    return write_atomically(target, page)


def render(source: Path, demo: Demo | None, runs: Sequence[tuple[str, Path]]) -> str:
    """The whole page for ``source`` (see ``data.load`` for ``demo`` and ``runs``)."""
    sections, contents = [], []
    if demo is not None:
        sections.append(_comparison(demo))
        contents.append(("table-1", "Table 1: traditional against perfsdk"))
    for name, run_path in runs:
        anchor = f"run-{_slug(name)}"
        heading = f"Run: {name}" if demo is not None else f"Export directory {source}"
        sections.append(_run_section(Run.read(name, run_path), demo.faults if demo else [], anchor, heading))
        contents.append((anchor, heading))
    if demo is not None and not runs:
        sections.append('<section><h2>Runs</h2><p class="note">No run directories (traditional/, perfsdk/) '
                        "next to the comparison table.</p></section>")
    toc = "".join(f'<li><a href="#{a}">{escape(t)}</a></li>' for a, t in contents)
    title = f"perfsdk report: {source.name or source}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
            f"<body><header><h1>{escape(title)}</h1><p>From the Arrow tables in <code>{escape(str(source))}</code>, "
            f"by perfsdk {escape(__version__)}. Times are UTC. Hover a mark for its details.</p>"
            f'<nav><ol>{toc}</ol></nav></header>{"".join(sections)}'
            f"<footer>How to read this report: docs/report.md in perfsdk's documentation.</footer>"
            f"</body></html>")


# -- Table 1 -------------------------------------------------------------------
def judged_winner(traditional: float | None, perfsdk: float | None, better: str) -> str:
    """Who the numbers say won a row: ``perfsdk``, ``traditional``, ``tie`` or ``""`` (not measured).

    >>> judged_winner(200.0, 160.0, "lower"), judged_winner(82.0, 95.0, "lower"), judged_winner(None, 1.0, "higher")
    ('perfsdk', 'traditional', '')
    """
    if traditional is None or perfsdk is None or not (math.isfinite(traditional) and math.isfinite(perfsdk)):
        return ""
    if math.isclose(traditional, perfsdk, rel_tol=1e-9, abs_tol=1e-12):
        return "tie"
    if better not in ("lower", "higher"):
        return ""
    perfsdk_lower = perfsdk < traditional
    return "perfsdk" if perfsdk_lower == (better == "lower") else "traditional"


def _comparison(demo: Demo) -> str:
    rows = demo.comparison.to_pylist()
    has_paper = any(r.get("paper_traditional") is not None or r.get("paper_ai") is not None for r in rows)
    head = ("<tr><th>row</th><th>what was compared</th><th>traditional</th><th>perfsdk</th><th>unit</th>"
            "<th>better</th>" + ("<th>paper: traditional</th><th>paper: AI</th>" if has_paper else "")
            + "<th>winner</th></tr>")
    body, tally = [], {"perfsdk": 0, "traditional": 0, "tie": 0, "": 0}
    for r in rows:
        better = str(r.get("better") or "")
        judged = judged_winner(r.get("traditional"), r.get("perfsdk"), better)
        recorded = str(r.get("winner") or "")
        winner = recorded or judged
        tally[winner if winner in tally else ""] += 1
        note = ""
        if recorded and judged and recorded != judged:
            note = f' <span class="warn">(recorded {escape(recorded)}; the numbers say {escape(judged)})</span>'
        elif not recorded and judged:
            note = ' <span class="note">(from the numbers)</span>'
        cells = [f"<td>{escape(str(r.get('row') or ''))}</td>", f"<td>{escape(str(r.get('compared') or ''))}</td>",
                 _num_cell(r.get("traditional"), "traditional", winner == "traditional"),
                 _num_cell(r.get("perfsdk"), "perfsdk", winner == "perfsdk"),
                 f"<td>{escape(str(r.get('unit') or ''))}</td>", f"<td>{escape(better)}</td>"]
        if has_paper:
            cells += [_num_cell(r.get("paper_traditional"), "paper_traditional", False),
                      _num_cell(r.get("paper_ai"), "paper_ai", False)]
        shown = {"perfsdk": "perfsdk", "traditional": "traditional", "tie": "tie"}.get(winner, "not measured")
        cells.append(f'<td class="winner {escape(winner or "none")}">{escape(shown)}{note}</td>')
        body.append(f'<tr class="comparison-row">{"".join(cells)}</tr>')
    info = "".join(f"<li><b>{escape(str(k))}</b>: {escape(str(v))}</li>" for k, v in demo.info.items())
    summary = (f"perfsdk better on {tally['perfsdk']} of {len(rows)} rows, traditional on {tally['traditional']}, "
               f"ties {tally['tie']}, not measured {tally['']}.")
    paper = (" The paper's columns are the seed paper's Table 1 (AI-driven against traditional performance "
             "engineering), shown beside this run's measurements, not compared with them." if has_paper else "")
    faults = ""
    if demo.faults:
        items = "".join(f"<tr><td>{escape(f.fault)}</td><td>{escape(f.route)}</td><td>{clock(f.start_ns, True)}</td>"
                        f"<td>{(f.end_ns - f.start_ns) / 1e9:.1f} s</td></tr>" for f in demo.faults)
        faults = ("<h3>Injected faults (ground truth)</h3><p>Shaded grey on every time axis below.</p>"
                  f'<table class="faults"><tr><th>fault</th><th>route</th><th>from</th><th>for</th></tr>{items}</table>')
    return (f'<section id="table-1"><h2>Table 1: traditional against perfsdk</h2>'
            f"<p>Measured in this run from <code>{COMPARISON}</code>; the winner's figure is in bold, whichever "
            f"side it is. {escape(summary)}{paper}</p>"
            f'<table class="comparison">{head}{"".join(body)}</table>'
            f'{"<h3>Run</h3><ul class=info>" + info + "</ul>" if info else ""}{faults}</section>')


def _num_cell(value: Any, column: str, win: bool) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return f'<td class="num {column}" data-value="">—</td>'
    css = f"num {column}" + (" win" if win else "")
    return f'<td class="{css}" data-value="{float(value)!r}">{escape(_fmt(float(value)))}</td>'


def _fmt(v: float) -> str:
    """Figures as a person reads them: 160, 0.8523, 12,346.

    >>> _fmt(160.0), _fmt(0.85234), _fmt(12345.6), _fmt(float("nan"))
    ('160', '0.8523', '12,346', '—')
    """
    if not math.isfinite(v):
        return "—"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


# -- one run -------------------------------------------------------------------
class _Context:
    """What every plot of a run shares: its time axis and what to shade on it."""

    def __init__(self, run: Run, faults: Sequence[Fault], grouped: Sequence[Incident]) -> None:
        self.run = run
        self.t0_ns = run.t0_ns
        self.x_end = max((run.t1_ns - run.t0_ns) / 1e9, 1e-3)
        self.faults = [f for f in faults if (not f.run or f.run == run.name)
                       and f.end_ns >= run.t0_ns and f.start_ns <= run.t1_ns]
        self.incidents = list(grouped)
        largest = sorted(self.incidents, key=lambda i: len(i.members), reverse=True)[:INCIDENT_SPANS]
        self.shaded = [i for i in self.incidents if any(i is j for j in largest)]
        self.dated = clock(run.t0_ns, days=True) != clock(run.t1_ns, days=True)  # spans days: tables say the date
        self.several = len(run.services) > 1  # then routes, controllers and resources name their service

    def named(self, name: str, service: Any) -> str:
        """``name`` as the page shows it: with its service in brackets when the run has several."""
        return f"{name} ({service})" if self.several else name

    def service_cell(self, service: Any, head: bool = False) -> str:
        """A table's service column: only when the run has several services (one would repeat on every row)."""
        if not self.several:
            return ""
        return "<th>service</th>" if head else f"<td>{escape(_clip(str(service or '')))}</td>"

    def time(self, when: Any) -> str:
        """A table's time: ``HH:MM:SS.mmm``, with the date before it when the run spans more than one day."""
        return _time(when, self.dated)

    def x(self, t_ns: Any) -> np.ndarray:
        return (np.asarray(t_ns, dtype=np.float64) - self.t0_ns) / 1e9

    def chart(self, title: str, y_label: str, x_end: float | None = None, **options: Any) -> Chart:
        chart = Chart(title, (0.0, self.x_end if x_end is None else x_end), y_label=y_label, t0_ns=self.t0_ns,
                      **options)
        for f in self.faults:
            chart.span(float(self.x(f.start_ns)), float(self.x(f.end_ns)), "injected fault", "fault",
                       tip=f"fault: {f.fault} on {f.route}, {clock(f.start_ns)} to {clock(f.end_ns)}")
        for incident in self.shaded:
            if incident.started is None or incident.ended is None:
                continue
            start, end = incident.started.timestamp() * 1e9, incident.ended.timestamp() * 1e9
            chart.span(float(self.x(start)), float(self.x(end)), "incident", "incident",
                       tip=_clip(str(incident)))
        return chart


def _run_section(run: Run, faults: Sequence[Fault], anchor: str, heading: str) -> str:
    if run.empty:
        return (f'<section id="{anchor}"><h2>{escape(heading)}</h2><p class="note">No rows in any perfsdk table '
                f"under <code>{escape(str(run.path))}</code>"
                + (f" (left out, a required value missing: {escape('; '.join(run.dropped))})" if run.dropped else "")
                + ".</p></section>")
    buckets = Buckets.over(run.t0_ns, run.t1_ns)
    routes, kind = route_latency(run.spans, buckets, ROUTE_PLOTS)
    grouped = incidents(run.anomalies, run.path)
    ctx = _Context(run, faults, grouped)
    sized = controllers(run.decisions)
    parts = [f'<section id="{anchor}"><h2>{escape(heading)}</h2>',
             _summary(run, routes, grouped, buckets, ctx),
             _latency(ctx, routes, kind, buckets),
             _forecasts(ctx, routes, buckets),
             _caches(ctx, [c for c in sized if c.kind == "cache"]),
             _pools(ctx, [c for c in sized if c.kind != "cache"]),
             _decisions(ctx, sized),
             _incidents(ctx),
             _anomalies(ctx, run.anomalies),
             _resources(ctx, run.resources, buckets),
             "</section>"]
    return "".join(parts)


def _summary(run: Run, routes: list[RouteLatency], grouped: list[Incident], buckets: Buckets, ctx: _Context) -> str:
    facts = [
        ("services", ", ".join(_clip(s) for s in run.services[:LIST_ROWS]) + (
            f" and {len(run.services) - LIST_ROWS:,} more" if len(run.services) > LIST_ROWS else "") or "—"),
        ("from", f"{_iso(run.t0_ns)} to {_iso(run.t1_ns)} ({ctx.x_end:,.1f} s)"),
        ("spans", f"{run.spans.num_rows:,} in {len(routes)} routes"),
        ("anomalies", f"{run.anomalies.num_rows:,}, in {len(grouped):,} incidents" + _by_source(run.anomalies)),
        ("decisions", f"{run.decisions.num_rows:,}"),
        ("resource samples", f"{run.resources.num_rows:,}"),
        ("time bucket", f"{buckets.width_s:g} s"),
    ]
    if ctx.faults:
        facts.append(("injected faults in this run", ", ".join(f"{f.fault} ({f.route})" for f in ctx.faults)))
    if run.skipped:  # as perfsdk analyze names them
        facts.append(("skipped (unreadable)", "; ".join(_clip(why) for why in run.skipped[:LIST_ROWS])
                      + (f" and {len(run.skipped) - LIST_ROWS:,} more" if len(run.skipped) > LIST_ROWS else "")))
    if run.dropped:
        facts.append(("left out (a required value missing or not a number)", "; ".join(run.dropped)))
    items = "".join(f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in facts)
    return f'<ul class="info">{items}</ul>'


def _iso(t_ns: int) -> str:
    """A full UTC date and time, ``2023-11-14T22:13:20.000Z``: the summary says when the run was."""
    return f"{clock(t_ns, days=True)}T{clock(t_ns, True)}Z"


def _by_source(anomalies: pa.Table) -> str:
    """How many anomalies ``perfsdk analyze`` found offline, when it found some (the rest are the live detectors')."""
    if anomalies.num_rows == 0:
        return ""
    batch = pc.sum(pc.fill_null(pc.equal(anomalies["source"], "analyze"), False)).as_py() or 0
    return f" ({batch:,} found offline by perfsdk analyze, {anomalies.num_rows - batch:,} live)" if batch else ""


def _latency(ctx: _Context, routes: list[RouteLatency], kind: str, buckets: Buckets) -> str:
    out = ['<h3>Latency per route</h3>']
    if not routes:
        return out[0] + '<p class="note">No spans in this run.</p>'
    what = ("server spans, by route (the span name: method and route template)" if kind == "SERVER"
            else "spans by name (no server spans: the service is not an HTTP server, or not instrumented as one)")
    out.append(f"<p>{escape(what)}; p50 and p99 per {buckets.width_s:g} s bucket, the busiest "
               f"{min(ROUTE_PLOTS, len(routes))} plotted. Red marks are anomalies the live detectors confirmed, "
               "brown ones anomalies <code>perfsdk analyze</code> found offline (source <code>analyze</code>), "
               "each with the normal band it broke as a whisker; orange stretches are incidents; grey, injected "
               "faults.</p>")
    anomalies = ctx.run.anomalies
    x = buckets.centers_s
    for route in routes[:ROUTE_PLOTS]:
        chart = ctx.chart(f"{ctx.named(route.route, route.service)}: p50 and p99 latency", "ms", log_y=None)
        chart.line(x, route.p50_series, "p50", PALETTE[0])
        chart.line(x, route.p99_series, "p99", PALETTE[1])
        mine = anomalies.filter(pc.and_(
            pc.and_(pc.equal(anomalies["series"], route.route), pc.equal(anomalies[SERVICE], route.service)),
            pc.fill_null(pc.not_equal(anomalies["metric"], "errors"), True))) \
            if anomalies.num_rows else anomalies  # latency only: not a failing run, whose value is a percentage
        timeless = _anomaly_points(ctx, chart, mine)
        out.append(chart.render())
        if timeless:
            out.append(f'<p class="note">{timeless:,} of its anomalies have no time and are not marked; '
                       "they are in the anomalies table.</p>")
    counts = _anomaly_counts(anomalies)
    rows = "".join(
        f"<tr>{ctx.service_cell(r.service)}<td>{escape(_clip(r.route))}</td><td class=num>{r.count:,}</td>"
        f"<td class=num>{r.errors:,}</td><td class=num>{_fmt(r.p50_ms)}</td><td class=num>{_fmt(r.p95_ms)}</td>"
        f"<td class=num>{_fmt(r.p99_ms)}</td><td class=num>{_fmt(r.max_ms)}</td>"
        f"<td class=num>{counts.get((r.service, r.route), 0)}</td></tr>"
        for r in routes[:LIST_ROWS])
    more = (f'<p class="note">{len(routes) - LIST_ROWS} more routes not listed.</p>'
            if len(routes) > LIST_ROWS else "")
    out.append(f'<table class="routes"><tr>{ctx.service_cell(None, head=True)}<th>route</th><th>spans</th>'
               "<th>errors</th><th>p50 ms</th><th>p95 ms</th>"
               f"<th>p99 ms</th><th>max ms</th><th>anomalies</th></tr>{rows}</table>{more}")
    return "".join(out)


def _anomaly_counts(anomalies: pa.Table) -> dict[tuple[str, str], int]:
    """Anomalies per (service, series): a route's are its own service's."""
    if anomalies.num_rows == 0:
        return {}
    counted = anomalies.group_by([SERVICE, "series"]).aggregate([("series", "count")])
    return dict(zip(zip(counted[SERVICE].to_pylist(), counted["series"].to_pylist()),
                    counted["series_count"].to_pylist()))


def _anomaly_points(ctx: _Context, chart: Chart, anomalies: pa.Table) -> int:
    """Mark the anomalies (the ``MARKERS`` strongest), the live detectors' apart from ``perfsdk
    analyze``'s; returns how many could not be placed, having no time."""
    if anomalies.num_rows == 0:
        return 0
    if anomalies.num_rows > MARKERS:  # the strongest
        anomalies = anomalies.take(pc.array_sort_indices(pc.abs(anomalies["score"]), order="descending")[:MARKERS])
    batch = pc.fill_null(pc.equal(anomalies["source"], "analyze"), False)
    for rows, label, color in ((anomalies.filter(pc.invert(batch)), "anomaly (live detector)", ANOMALY),
                               (anomalies.filter(batch), "anomaly (perfsdk analyze, offline)", BATCH)):
        if rows.num_rows:
            listed = rows.to_pylist()
            t_ns = [math.nan if t is None else t for t in pc.cast(rows["timestamp"], pa.int64()).to_pylist()]
            chart.points(ctx.x(t_ns), [_f(r["value"]) for r in listed], f"{label} and its normal band",
                         color, tips=[_anomaly_tip(r) for r in listed],
                         lower=[_f(r["lower"]) for r in listed], upper=[_f(r["upper"]) for r in listed])
    return anomalies["timestamp"].null_count


def _anomaly_tip(r: dict[str, Any]) -> str:
    when = _time(r["timestamp"], True)
    return _clip(f"{when} {r['series']}: {_fmt(_f(r['value']))} against an expected {_fmt(_f(r['expected']))} "
                 f"(normal band {_fmt(_f(r['lower']))} .. {_fmt(_f(r['upper']))}, score {_f(r['score']):.1f}) "
                 f"[{r['detector']}{', perfsdk analyze' if r.get('source') == 'analyze' else ''}]")


def _f(value: Any) -> float:
    return math.nan if value is None else float(value)


def _forecasts(ctx: _Context, routes: list[RouteLatency], buckets: Buckets) -> str:
    out = ["<h3>ARIMA forecast bands</h3>"]
    chosen = [r for r in routes[:FORECAST_ROUTES] if r.p50_series is not None]
    if not chosen:
        return out[0] + '<p class="note">No spans to forecast.</p>'
    horizon = max(3, min(20, buckets.count // 6))
    out.append(f"<p>For the busiest routes: an ARIMA model with its coefficients estimated by statsmodels "
               f"(Hannan-Rissanen) on the log of "
               f"each {buckets.width_s:g} s bucket's median latency. The line is the model's one-step-ahead "
               f"forecast of each bucket from the buckets before it; the band around it, its {LEVEL:.0%} "
               f"prediction interval: where the next median was expected to fall. Past the run's end, the forecast "
               f"{horizon} buckets ahead with its {LEVEL:.0%} interval, widening as it looks further. Medians "
               f"outside the band are marked: what a forecasting detector would question. (The live detectors' "
               f"own bands, per span, are the whiskers on the anomaly marks above.)</p>")
    x = buckets.centers_s
    ahead_x = x[-1] + buckets.width_s * np.arange(1, horizon + 1)
    for route in chosen:
        assert route.p50_series is not None
        band = forecast_band(route.p50_series, horizon)
        name = ctx.named(route.route, route.service)
        if not isinstance(band, ForecastBand):
            out.append(f'<p class="note">{escape(_clip(name))}: no band: {escape(band)}.</p>')
            continue
        chart = ctx.chart(f"{name}: median latency and its {band.label} forecast", "ms",
                          x_end=float(ahead_x[-1] + buckets.width_s / 2), log_y=None)
        chart.band(x, band.lower, band.upper, f"{LEVEL:.0%} one-step-ahead prediction interval", "#9ecae1")
        joined_x = np.r_[x[-1], ahead_x]  # past the end, from the last bucket on: one continuous band
        chart.band(joined_x, np.r_[band.lower[-1], band.ahead_lower], np.r_[band.upper[-1], band.ahead_upper],
                   f"{LEVEL:.0%} interval past the end", "#c6dbef")
        chart.line(x, band.mean, f"{band.label} one-step-ahead forecast", "#08519c", dashed=True)
        chart.line(joined_x, np.r_[band.mean[-1], band.ahead_mean], "forecast past the end", "#6baed6", dashed=True)
        chart.line(x, route.p50_series, "observed median (p50)", PALETTE[0])
        if len(band.outside):
            i = band.outside
            tips = [f"{clock(ctx.t0_ns + x[k] * 1e9)}: median {_fmt(route.p50_series[k])} ms outside "
                    f"{_fmt(band.lower[k])} .. {_fmt(band.upper[k])} ms" for k in i.tolist()]
            chart.points(x[i], route.p50_series[i], "median outside the band", "#7b3294", tips=tips, shape="dot")
        out.append(chart.render())
    return "".join(out)


def _markers(ctx: _Context, chart: Chart, ctl: Controller, y: np.ndarray) -> None:
    """Up and down triangles where a decision changed the value, with its explanation."""
    held = ctl.held
    before = ctl.column("value_before")
    t = ctx.x(ctl.t_ns)
    explanations = ctl.rows["explanation"].to_pylist()
    for kind, mask, color in (("up", held > before, GROW), ("down", held < before, SHRINK)):
        idx = np.flatnonzero(mask)
        idx = idx[np.linspace(0, len(idx) - 1, MARKERS).astype(int)] if len(idx) > MARKERS else idx
        if len(idx):
            chart.points(t[idx], y[idx], "grew" if kind == "up" else "shrank", color,
                         tips=[_decision_tip(ctl.t_ns[i], explanations[i]) for i in idx.tolist()], shape=kind)


def _held_step(chart: Chart, ctl: Controller, t: np.ndarray, label: str) -> None:
    """What the target held: its first decision's starting value from the axis's start, then each decision's."""
    chart.step(np.r_[min(0.0, t[0]), t], np.r_[ctl.column("value_before")[:1], ctl.held], label, PALETTE[0])


def _decision_tip(t_ns: int, explanation: str | None) -> str:
    return _clip(f"{clock(t_ns, True)} {explanation or ''}")


def _clip(text: str) -> str:
    return clip(text, TIP_CHARS)


def _value_chart(ctx: _Context, ctl: Controller, t: np.ndarray, title: str, unit: str, label: str) -> str:
    """What a controller held after each decision (advisory: the recommendation dashed), the moves marked."""
    chart = ctx.chart(title, unit)
    _held_step(chart, ctl, t, label)
    if (ctl.rows["mode"].to_numpy(zero_copy_only=False) == "advisory").any():
        chart.step(t, ctl.column("value_after"), "recommended (advisory)", PALETTE[1], dashed=True)
    _markers(ctx, chart, ctl, ctl.held)
    return chart.render()


def _sized_section(title: str, controllers: list[Controller], missing: str, intro: str,
                   draw: Callable[[Controller], list[str]]) -> str:
    """A section of the controllers of one kind: a note when there are none, else the plots of each."""
    if not controllers:
        return (f'<h3>{title}</h3><p class="note">No {missing} decisions in this run (no <code>Adaptive'
                f'{missing.capitalize()}</code> was sized while <code>perfsdk.init(export_dir=...)</code> ran).</p>')
    shown, more = _busiest(controllers, CONTROLLER_PLOTS)
    note = (f'<p class="note">{more:,} more {missing}s not plotted (those with the fewest decisions); their '
            "decisions are in the decisions table.</p>" if more else "")
    return f"<h3>{title}</h3><p>{intro}</p>" + "".join(part for ctl in shown for part in draw(ctl)) + note


def _busiest(controllers: list[Controller], most: int) -> tuple[list[Controller], int]:
    """The ``most`` controllers with the most decisions, in their order, and how many were left out:
    a plot each would make the page grow with the controllers."""
    chosen = {id(c) for c in sorted(controllers, key=lambda c: -c.rows.num_rows)[:most]}
    return [c for c in controllers if id(c) in chosen], max(0, len(controllers) - most)


def _caches(ctx: _Context, caches: list[Controller]) -> str:
    def draw(ctl: Controller) -> list[str]:
        t = ctx.x(ctl.t_ns)
        name = ctx.named(ctl.name, ctl.service)
        ratio = ctx.chart(f"cache {name}: hit ratio per interval", "hit ratio", y_floor=0.0, y_ceiling=1.0)
        ratio.line(t, ctl.feature("hit_ratio"), "hit ratio", PALETTE[2])
        return [_value_chart(ctx, ctl, t, f"cache {name}: capacity", "entries", "capacity held"), ratio.render()]

    return _sized_section(
        "Adaptive caches: capacity and hit ratio", caches, "cache",
        "The capacity each cache held after each decision (advisory controllers: the recommendation dashed), "
        "and the hit ratio of the interval each decision judged. Triangles mark the decisions that changed the "
        "capacity; hover one for its explanation.", draw)


def _pools(ctx: _Context, pools: list[Controller]) -> str:
    def draw(ctl: Controller) -> list[str]:
        t = ctx.x(ctl.t_ns)
        name = ctx.named(ctl.name, ctl.service)
        out = [_value_chart(ctx, ctl, t, f"{ctl.kind} {name}: size",
                            "connections" if ctl.kind == "pool" else "value", "size held")]
        if ctl.kind != "pool":
            return out
        waits, latencies = ctl.feature("wait_p95_ms"), ctl.feature("p95_ms")
        if not (np.isfinite(waits).any() or np.isfinite(latencies).any()):
            return out + [f'<p class="note">pool {escape(_clip(name))}: no interval had enough acquisitions '
                          "to measure its waits.</p>"]
        wait = ctx.chart(f"pool {name}: wait and latency per interval", "ms", log_y=None)
        wait.line(t, waits, "p95 wait for a connection", PALETTE[3])
        wait.line(t, latencies, "p95 wait and use", PALETTE[4])
        return out + [wait.render()]

    return _sized_section(
        "Connection pools: size and wait time", pools, "pool",
        "The connections each pool held after each decision, and per interval the p95 time callers waited for "
        "a connection and the p95 the pool measured for its work (wait and use). Triangles mark the decisions "
        "that changed the size.", draw)


def _decisions(ctx: _Context, sized: list[Controller]) -> str:
    out = ["<h3>Decision timeline</h3>"]
    if not sized:
        return out[0] + '<p class="note">No decisions in this run: nothing adaptive was sized.</p>'
    lanes, more = _busiest(sized, TIMELINE_LANES)
    title = "every decision, by controller" if not more else f"decisions of the {len(lanes)} busiest controllers"
    chart = ctx.chart(title, "", categories=[ctx.named(c.name, c.service) for c in lanes])
    for lane, ctl in enumerate(lanes):
        actions = np.asarray(ctl.rows["action"].to_pylist(), dtype=object)
        t = ctx.x(ctl.t_ns)
        explanations = ctl.rows["explanation"].to_pylist()
        for action, shape, color in (("grow", "up", GROW), ("shrink", "down", SHRINK), ("keep", "dot", KEEP)):
            idx = np.flatnonzero(actions == action)
            if len(idx) > MARKERS:
                idx = idx[np.linspace(0, len(idx) - 1, MARKERS).astype(int)]
            if len(idx):
                chart.points(t[idx], np.full(len(idx), float(lane)), action, color, shape=shape,
                             tips=[_decision_tip(ctl.t_ns[i], explanations[i]) for i in idx.tolist()])
    out.append(chart.render())
    if more:
        out.append(f'<p class="note">{more:,} more controllers not drawn (those with the fewest decisions); '
                   "the table below draws on all of them.</p>")
    table = pa.concat_tables([c.rows for c in sized]).sort_by("timestamp")
    n = table.num_rows
    note = ""
    if n > TABLE_ROWS:
        changed = pc.or_(pc.not_equal(table["value_before"], table["value_after"]), pc.is_valid(table["guardrail"]))
        chosen = np.flatnonzero(changed.to_numpy(zero_copy_only=False))
        label = "that changed a value or met a guardrail"
        if len(chosen) == 0 or len(chosen) > TABLE_ROWS:
            pool = chosen if len(chosen) else np.arange(n)
            chosen = pool[np.linspace(0, len(pool) - 1, TABLE_ROWS).astype(int)]
            label += ", evenly spaced" if len(pool) < n else ""
            label = "evenly spaced" if len(pool) == n else label
        table = table.take(pa.array(np.unique(chosen)))
        note = (f'<p class="note">{table.num_rows} of {n:,} decisions shown ({label}); every one is in the '
                "decisions table.</p>")
    rows = []
    for r in table.to_pylist():
        applied = "applied" if r["applied"] else ("advisory" if r["mode"] == "advisory" else "not applied")
        rows.append(f"<tr><td>{ctx.time(r['timestamp'])}</td>{ctx.service_cell(r[SERVICE])}"
                    f"<td>{escape(r['controller'])}</td>"
                    f"<td>{escape(r['action'])}</td><td class=num>{_fmt(_f(r['value_before']))} → "
                    f"{_fmt(_f(r['value_after']))}</td><td>{applied}</td><td>{escape(r['guardrail'] or '')}</td>"
                    f"<td class=explanation>{escape(r['explanation'] or '')}</td></tr>")
    out.append(f'{note}<table class="decisions"><tr><th>time</th>{ctx.service_cell(None, head=True)}'
               '<th>controller</th><th>action</th><th>value</th>'
               f'<th></th><th>guardrail</th><th>explanation</th></tr>{"".join(rows)}</table>')
    return "".join(out)


def _incidents(ctx: _Context) -> str:
    out = ["<h3>Incidents</h3>"]
    if not ctx.incidents:
        return out[0] + '<p class="note">No incidents: no anomalies in this run.</p>'
    out.append("<p>Anomalies that started within 30 s of each other, grouped as the live SDK groups them; the "
               "likely origin first: a span called by other anomalous spans (from the spans' parent links) "
               "before its callers, then the earliest, then the largest deviation. Every anomaly is in "
               "one (the live SDK keeps only its newest 100 incidents of 50 anomalies; this page has them all)"
               + (f"; the {INCIDENT_SPANS} largest of the {len(ctx.incidents):,} are shaded on the time axes"
                  if len(ctx.incidents) > INCIDENT_SPANS else "") + ".</p>")
    show_faults = bool(ctx.faults)
    rows = []
    for n, incident in enumerate(ctx.incidents[:LIST_ROWS], start=1):
        origin = incident.origin
        origin_name = ctx.named(str(origin.details.get("series", origin.detector)), origin.details.get(SERVICE))
        series = list(dict.fromkeys(ctx.named(str(a.details.get("series", a.detector)), a.details.get(SERVICE))
                                    for a in incident.members))
        started, ended = incident.started, incident.ended
        matched = ""
        if show_faults and started is not None and ended is not None:
            hit = [f"{f.fault} ({f.route})" for f in ctx.faults
                   if f.start_ns <= ended.timestamp() * 1e9 and f.end_ns >= started.timestamp() * 1e9]
            matched = f"<td>{escape(', '.join(hit) or 'none')}</td>"
        rows.append(f"<tr><td class=num>{n}</td><td>{ctx.time(started)}</td><td>{ctx.time(ended)}</td>"
                    f"<td class=num>{len(incident.members)}</td>"
                    f"<td><b>{escape(_clip(origin_name))}</b></td>"
                    f"<td>{escape(_clip(', '.join(series)))}</td>{matched}"
                    f"<td class=explanation>{escape(clip(str(incident), WORDS_CHARS))}</td></tr>")
    more = (f'<p class="note">{len(ctx.incidents) - LIST_ROWS} more incidents not listed.</p>'
            if len(ctx.incidents) > LIST_ROWS else "")
    fault_head = "<th>injected fault it overlaps</th>" if show_faults else ""
    out.append(f'<table class="incidents"><tr><th>#</th><th>from</th><th>to</th><th>anomalies</th>'
               f'<th>likely origin</th><th>series</th>{fault_head}<th>in words</th></tr>{"".join(rows)}</table>{more}')
    return "".join(out)


def _time(when: Any, dated: bool = False) -> str:
    """``HH:MM:SS.mmm`` of a datetime (``?`` for none), the date before it when ``dated``."""
    if when is None:
        return "?"
    return when.strftime("%Y-%m-%d %H:%M:%S.%f" if dated else "%H:%M:%S.%f")[:-3]


def _anomalies(ctx: _Context, anomalies: pa.Table) -> str:
    if anomalies.num_rows == 0:
        return ""
    top = anomalies.take(pc.array_sort_indices(pc.abs(anomalies["score"]), order="descending")[:LIST_ROWS])
    rows = "".join(
        f"<tr><td>{ctx.time(r['timestamp'])}</td>{ctx.service_cell(r[SERVICE])}"
        f"<td>{escape(_clip(r['series']))}</td>"
        f"<td class=num>{_fmt(_f(r['value']))}</td>"
        f"<td class=num>{_fmt(_f(r['expected']))}</td><td class=num>{_fmt(_f(r['lower']))} .. {_fmt(_f(r['upper']))}"
        f"</td><td class=num>{_f(r['score']):.1f}</td><td>{escape(r['source'] or '')}</td>"
        f"<td>{escape(r['detector'])}</td></tr>" for r in top.to_pylist())
    shown = "" if anomalies.num_rows <= LIST_ROWS else f" (the {LIST_ROWS} strongest of {anomalies.num_rows:,})"
    return (f"<h3>Anomalies{shown}</h3><table class=anomalies><tr><th>time</th>{ctx.service_cell(None, True)}"
            f"<th>series</th><th>value</th>"
            f"<th>expected</th><th>normal band</th><th>score</th><th>source</th><th>detector</th></tr>{rows}</table>")


def _resources(ctx: _Context, resources: pa.Table, buckets: Buckets) -> str:
    if resources.num_rows == 0:
        return ""
    metrics, more_metrics = resource_metrics(resources, buckets, ROUTE_PLOTS, SERVICE_LINES)
    each = " a line per service (the legend names it)," if ctx.several else ""
    out = [f"<h3>Process resources</h3><p>Mean of the samples in each bucket,{each} the samples of a service's "
           "processes averaged together (the resources table has no process id column).</p>"]
    x = buckets.centers_s
    for m in metrics:
        chart = ctx.chart(m.metric, m.unit)
        for k, (service, mean) in enumerate(zip(m.services, m.means)):
            if ctx.several:
                chart.line(x, mean, service, PALETTE[k % len(PALETTE)])
            else:
                chart.line(x, mean, m.metric, PALETTE[5])
        out.append(chart.render())
        if m.more_services:
            out.append(f'<p class="note">{escape(_clip(m.metric))}: {m.more_services:,} more services not drawn '
                       "(those with the fewest samples).</p>")
    if more_metrics:
        out.append(f'<p class="note">{more_metrics:,} more metrics not plotted (the first {ROUTE_PLOTS} by name '
                   "are); their samples are in the resources table.</p>")
    return "".join(out)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "run"


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:0 auto;max-width:960px;
padding:0 16px 40px}
h1{font-size:22px;margin:18px 0 4px}h2{font-size:19px;border-bottom:2px solid #4e79a7;padding-bottom:3px;margin-top:34px}
h3{font-size:16px;margin:22px 0 6px}code{font-size:13px;background:#f3f3f3;padding:0 3px}
table{border-collapse:collapse;margin:8px 0;font-size:13px;width:100%}
th,td{border-bottom:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}th{background:#f5f5f5}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.win{font-weight:700;background:#e8f4e8}td.winner.perfsdk{color:#1a7f37}td.winner.traditional{color:#9a3412}
td.explanation{font-size:12px;color:#444;max-width:520px}
.note{color:#666;font-style:italic}.warn{color:#b91c1c;font-weight:600}
ul.info{list-style:none;padding:0;margin:6px 0;columns:2}ul.info li{margin:1px 0}
figure.chart{margin:10px 0 16px}figure.chart figcaption{font-weight:600;font-size:13px;margin-bottom:2px}
svg.plot{display:block;max-width:100%;height:auto;background:#fff}
svg.plot .frame{fill:none;stroke:#bbb}svg.plot .grid{stroke:#eee}
svg.plot .tick,svg.plot .unit{font-size:11px;fill:#666}
svg.plot .series{fill:none;stroke-width:1.6}svg.plot .band{opacity:.55;stroke:none}
svg.plot .whisker{stroke-width:1;opacity:.6}svg.plot .points path,svg.plot .points circle{stroke-width:.5}
svg.plot rect.fault,.swatch.fault{fill:#bdbdbd;background:#bdbdbd;opacity:.45}
svg.plot rect.incident,.swatch.incident{fill:#fdae6b;background:#fdae6b;opacity:.4}
.legend{font-size:12px;color:#444;display:flex;flex-wrap:wrap;gap:4px 14px;margin-top:2px}
.swatch{display:inline-block;width:14px;height:10px;margin-right:4px;vertical-align:middle}
.swatch.line{height:0;width:18px}.swatch.glyph{width:auto;height:auto;font-size:11px}.swatch.dot{width:8px;height:8px;border-radius:50%}.swatch.band{opacity:.55}
footer{margin-top:40px;color:#666;font-size:12px}
"""
