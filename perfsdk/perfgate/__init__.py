"""The pytest-benchmark regression gate (issue 15): a history of benchmark samples
kept as Arrow files, and a statistical verdict on each new run.

``pytest --perf-gate DIR`` checks this run against the history in ``DIR`` and adds
it; ``pytest --perf-gate-record DIR`` only adds it. docs/perf-gate.md tells how.

This package stays light: ``plugin`` (the pytest11 entry point) imports nothing
heavy, ``stats`` and ``gate`` are pure (numpy, scipy), ``history`` reads and writes
the Arrow files, ``session`` joins them up inside a pytest run.
"""
