"""The regression gate's numbers, each in one place: its defaults and the history's bounds.

``plugin`` (the pytest11 entry point, which must load nothing heavy) shows them in its help and
checks options against them; ``history``, ``gate`` and ``session`` use them. So this module imports
nothing: a copy kept in the plugin to spare it pyarrow is a copy that drifts.
"""

from __future__ import annotations

__all__ = ["ALPHA", "HISTORY_RUNS", "KEEP_RUNS", "MIN_CHANGE", "RERUNS"]

#: The newest run files a check reads: the baseline is the last 10 runs, the drift test wants a
#: segment of 20, so 50 leave room for a change point, runs of other machines and bad files.
HISTORY_RUNS = 50
#: The run files kept by default (``prune_history``, ``--perf-gate-keep``): more than a check
#: reads, so a run that prunes never removes a file another run is reading.
KEEP_RUNS = 200
#: The false-alarm rate a check aims at: a benchmark's run and its re-runs together (``gate.stage_alpha``).
ALPHA = 0.01
#: The smallest slowdown that fails the gate (a fraction: 0.05 is 5 %): a real but tiny one does not.
MIN_CHANGE = 0.05
#: Times a benchmark that regressed is run again, each re-run having to regress too (``gate.confirm``).
RERUNS = 2
