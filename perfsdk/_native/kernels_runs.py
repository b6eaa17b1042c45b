"""Numba kernel of the run-confirmation rule over a batch (``perfsdk.detect.RunRule``).

The live bank applies ``RunRule.step`` point by point; ``perfsdk analyze``
applies this kernel to a whole series' scores. Same comparisons, same
floating-point operations: a property test (``tests/test_runs.py``) checks the
two agree run for run.
"""

from __future__ import annotations

import numpy as np

from perfsdk._native.config import kernel
from perfsdk._native.layout import MAX_MAGNITUDE

__all__ = ["confirmed_runs"]


@kernel
def confirmed_runs(values, scores, expected, std, threshold, confirm, min_delta, min_ratio):
    """``(onsets, lengths, ends)`` of the runs of at least ``confirm`` points.

    A point starts a run when ``|score| > threshold`` and it is a material change
    (``|value - expected| >= max(min_delta, min_ratio * |expected|)``); the run goes
    on while each next value stays beyond the band the onset broke, on its side,
    materially; the point that breaks it may start the next run. A value every detector
    refuses (NaN, inf, beyond ``MAX_MAGNITUDE``) neither extends nor breaks a run, as live:
    a run's length counts its points, its end is its last.
    """
    n = values.shape[0]
    size = 0
    found = np.empty((64, 3), dtype=np.int64)
    i = 0
    while i < n:
        z = scores[i]
        if not abs(z) > threshold:  # NaN (warming up) is never flagged
            i += 1
            continue
        e = expected[i]
        floor = max(min_delta, min_ratio * abs(e))
        if not abs(values[i] - e) >= floor:
            i += 1
            continue
        band = threshold * std[i]
        length = 1
        last = i
        j = i + 1
        while j < n:
            if not abs(values[j]) <= MAX_MAGNITUDE:  # refused: no point of the run
                j += 1
                continue
            deviation = values[j] - e
            if not (deviation * z > 0.0 and abs(deviation) > band and abs(deviation) >= floor):
                break
            length += 1
            last = j
            j += 1
        if length >= confirm:
            if size == found.shape[0]:
                grown = np.empty((2 * size, 3), dtype=np.int64)
                grown[:size] = found
                found = grown
            found[size, 0] = i
            found[size, 1] = length
            found[size, 2] = last
            size += 1
        i = j
    return found[:size, 0].copy(), found[:size, 1].copy(), found[:size, 2].copy()
