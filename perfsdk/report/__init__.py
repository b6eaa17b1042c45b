"""A self-contained HTML report from perfsdk's Arrow tables: ``perfsdk report DIR``.

One file, viewable with no network (plots are inline SVG drawn in Python):
latency per route with anomalies and incidents marked, ARIMA forecast bands,
the adaptive caches' capacity and hit ratio, the pools' size and wait, the
decision timeline with each explanation, the incidents with their likely
origin, and -- for a ``perfsdk demo`` directory -- its Table 1 first.
``docs/report.md`` says how to read it.

    from perfsdk.report import write_report
    write_report("perf-data")                      # perf-data/report.html
    write_report("demo-out", out="report.html")
"""

from perfsdk.report.render import judged_winner, write_report

__all__ = ["judged_winner", "write_report"]
