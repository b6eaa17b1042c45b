"""Numba kernels of the alert pipeline (its batch engine); the layout is ``layout.PL_*``.

The pipeline turns raw detector scores into alert scores in [0, 1] (see
``perfsdk.detect.pipeline``). Its per-event engine, ``_pipeline.pyx``, does
the same floating-point operations in the same order on the same state array.
"""

from __future__ import annotations

import math

import numpy as np

from perfsdk._native.config import kernel
from perfsdk._native.layout import (  # the state's slots: one definition, shared with Cython
    PL_CHANNELS, PL_AVERAGE, PL_ALPHA, PL_LEARN, PL_SQUASH, PL_MIN_VAR, PL_MIN_MEAN,
    PL_RANGE_TOL, PL_THRESHOLD, PL_RELEASE, PL_QUIET, PL_SEASON, PL_SEASON_CORR,
    PL_SEASON_ALPHA, PL_COUNT, PL_LO, PL_HI, PL_INCIDENT, PL_QUIET_RUN, PL_ALERTS,
    PL_SUPPRESSED, PL_LAST_CHANNEL, PL_LAST_LIKELIHOOD, PL_SEASON_ON, PL_S_POS, PL_S_PAIRS,
    PL_S_MEAN_A, PL_S_MEAN_B, PL_S_VAR_A, PL_S_VAR_B, PL_S_COV, PL_CH_POS, PL_CH_SUM,
    PL_CH_COUNT, PL_CH_MEAN, PL_CH_VAR, PL_CH_LAST, PL_CH_HEADER, PL_RANGE_CHANNEL,
    TAIL_FLOOR, INV_LOG_TAIL_FLOOR, pipeline_offsets,
)

__all__ = ["pipeline_season_many", "pipeline_step_many"]

_pipeline_offsets = kernel(pipeline_offsets)  # the one definition, in layout.py, compiled


@kernel
def _channel_score(state, ring, average, pos, total, n, mean, var, r, inv_average, learn, squash, alpha, min_var,
                   min_mean):
    """Learn raw score ``r`` (not NaN) into one channel; return its score (0 while learning) and the
    channel's new ``(pos, total, n, mean, var)``.

    The score is HTM's log-likelihood: the Gaussian tail probability of the
    short average of squashed scores against their long-run mean and
    variance, mapped by log(p) / log(1e-10) into [0, 1]. The channel's
    figures travel in locals (the ring of squashed scores stays in ``state``):
    kept in registers across a batch, not stored and reloaded at every point.
    """
    r = abs(r)
    if math.isinf(r):
        u = 1.0
    else:
        u = r / (r + squash)
    total = total + (u - state[ring + pos])
    state[ring + pos] = u
    pos += 1
    if pos == average:
        pos = 0
        total = 0.0
        for k in range(average):  # exact once a lap: rounding never accumulates
            total += state[ring + k]
    if n + 1.0 >= average:
        avg = total * inv_average
    else:
        avg = total / (n + 1.0)
    score = 0.0
    if n >= learn:
        v = var
        if v < min_var:
            v = min_var
        m = mean
        if m < min_mean:
            m = min_mean
        zz = (avg - m) / math.sqrt(v)
        if zz > 0.0:
            p = 0.5 * math.erfc(zz * 0.7071067811865476)
            score = math.log(p + TAIL_FLOOR) * INV_LOG_TAIL_FLOOR
            if score > 1.0:
                score = 1.0
            elif score < 0.0:
                score = 0.0
    if n == 0.0:
        mean = avg
        var = 0.0
    else:
        a = alpha
        if n * alpha < 1.0:  # 1 / (n + 1) until the memory is full
            a = 1.0 / (n + 1.0)
            if a < alpha:
                a = alpha
        d = avg - mean
        mean = mean + a * d
        var = (1.0 - a) * (var + a * d * d)
        if var < 1e-200:  # a flat series decays it towards subnormals, which are ~50x slower
            var = 0.0
    return score, pos, total, n + 1.0, mean, var


@kernel
def pipeline_season_many(state, xs, d_out, base_out, gate_out):
    """The seasonal stage over valid points ``xs``: differences and the gate.

    ``d_out[i] = xs[i] - base_out[i]``, ``base_out[i] = x(t - season)`` (NaN until a
    season has been seen);
    ``gate_out[i]`` is 1 while x_t and x_t-season correlate at least
    ``PL_SEASON_CORR`` (the seasonal-naive forecast then beats the mean),
    after at least a season of pairs. Reads ``PL_COUNT`` but leaves it to
    ``pipeline_step_many``, which runs next over the same points.
    """
    period = np.int64(state[PL_SEASON])
    _, _, ring = _pipeline_offsets(np.int64(state[PL_CHANNELS]), np.int64(state[PL_AVERAGE]))
    corr = state[PL_SEASON_CORR]
    floor = state[PL_SEASON_ALPHA]
    count = state[PL_COUNT]
    for i in range(xs.shape[0]):
        x = xs[i]
        pos = np.int64(state[PL_S_POS])
        on = 0.0
        if count >= period:
            b = state[ring + pos]
            base_out[i] = b
            d_out[i] = x - b
            n = state[PL_S_PAIRS] + 1.0
            a = 1.0 / n
            if a < floor:
                a = floor
            da = x - state[PL_S_MEAN_A]
            db = b - state[PL_S_MEAN_B]
            state[PL_S_MEAN_A] += a * da
            state[PL_S_MEAN_B] += a * db
            state[PL_S_VAR_A] = (1.0 - a) * (state[PL_S_VAR_A] + a * da * da)
            state[PL_S_VAR_B] = (1.0 - a) * (state[PL_S_VAR_B] + a * db * db)
            state[PL_S_COV] = (1.0 - a) * (state[PL_S_COV] + a * da * db)
            state[PL_S_PAIRS] = n
            va = state[PL_S_VAR_A]
            vb = state[PL_S_VAR_B]
            if n >= period and va > 0.0 and vb > 0.0 and state[PL_S_COV] >= corr * math.sqrt(va * vb):
                on = 1.0
        else:
            base_out[i] = np.nan
            d_out[i] = np.nan
        state[ring + pos] = x
        pos += 1
        if pos == period:
            pos = 0
        state[PL_S_POS] = pos
        state[PL_SEASON_ON] = on
        gate_out[i] = on
        count += 1.0


@kernel
def pipeline_step_many(state, xs, r0, r1, gate, out, channel_out, lo_hi_out):
    """Score valid points ``xs`` from their raw scores (``r0``; ``r1`` seasonal) and learn.

    ``out[i]`` is the alert score in [0, 1]: the highest channel score (the
    seasonal one only while ``gate[i]``), or 1 if the value left the range
    seen so far by more than the tolerance; within an open incident it is
    capped at the release level, so only an incident's first point alerts.
    ``channel_out[i]``: the channel that scored highest (``PL_RANGE_CHANNEL``:
    the range rule). If ``lo_hi_out`` has rows, row i gets the range point i broke
    (written only for the range rule's points: explanations read no other rows).
    """
    channels = np.int64(state[PL_CHANNELS])
    average = np.int64(state[PL_AVERAGE])
    first, stride, _ = _pipeline_offsets(channels, average)
    inv_average = 1.0 / state[PL_AVERAGE]
    learn = state[PL_LEARN]
    squash = state[PL_SQUASH]
    alpha = state[PL_ALPHA]
    min_var = state[PL_MIN_VAR]
    min_mean = state[PL_MIN_MEAN]
    tol = state[PL_RANGE_TOL]
    threshold = state[PL_THRESHOLD]
    release = state[PL_RELEASE]
    quiet = state[PL_QUIET]
    # the state's scalars live in locals for the batch (written back once, below): the same
    # operations in the same order as the per-event engine, without a store and reload a point
    second = first + stride
    ring0, ring1 = first + PL_CH_HEADER, second + PL_CH_HEADER
    pos0, total0, n0 = np.int64(state[first + PL_CH_POS]), state[first + PL_CH_SUM], state[first + PL_CH_COUNT]
    mean0, var0, last0 = state[first + PL_CH_MEAN], state[first + PL_CH_VAR], state[first + PL_CH_LAST]
    pos1, total1, n1, mean1, var1, last1 = pos0, total0, n0, mean0, var0, last0
    if channels > 1:
        pos1, total1, n1 = np.int64(state[second + PL_CH_POS]), state[second + PL_CH_SUM], state[second + PL_CH_COUNT]
        mean1, var1, last1 = state[second + PL_CH_MEAN], state[second + PL_CH_VAR], state[second + PL_CH_LAST]
    count = state[PL_COUNT]
    lo = state[PL_LO]
    hi = state[PL_HI]
    incident = state[PL_INCIDENT]
    quiet_run = state[PL_QUIET_RUN]
    suppressed = state[PL_SUPPRESSED]
    alerts = state[PL_ALERTS]
    channel = state[PL_LAST_CHANNEL]
    best = state[PL_LAST_LIKELIHOOD]
    for i in range(xs.shape[0]):
        x = xs[i]
        best = 0.0
        if not math.isnan(r0[i]):  # NaN: the detector is still warming up, nothing to learn
            best, pos0, total0, n0, mean0, var0 = _channel_score(
                state, ring0, average, pos0, total0, n0, mean0, var0, r0[i], inv_average, learn, squash, alpha,
                min_var, min_mean)
            last0 = best
        channel = 0.0
        if channels > 1 and not math.isnan(r1[i]):
            s1, pos1, total1, n1, mean1, var1 = _channel_score(
                state, ring1, average, pos1, total1, n1, mean1, var1, r1[i], inv_average, learn, squash, alpha,
                min_var, min_mean)
            last1 = s1
            if gate[i] != 0.0 and s1 > best:
                best = s1
                channel = 1.0
        if tol >= 0.0 and count >= learn:
            span = hi - lo
            if span > 0.0 and (x > hi + tol * span or x < lo - tol * span):
                best = 1.0
                channel = PL_RANGE_CHANNEL
                if lo_hi_out.shape[0] > 0:
                    lo_hi_out[i, 0] = lo
                    lo_hi_out[i, 1] = hi
        score = best
        if incident != 0.0:
            if best >= threshold:
                suppressed += 1.0
            if score > release:
                score = release
            if best < release:
                quiet_run += 1.0
                if quiet_run >= quiet:
                    incident = 0.0
            else:
                quiet_run = 0.0
        elif best >= threshold:
            incident = 1.0
            quiet_run = 0.0
            alerts += 1.0
        if count == 0.0:
            lo = x
            hi = x
        else:
            if x < lo:
                lo = x
            if x > hi:
                hi = x
        count += 1.0
        out[i] = score
        channel_out[i] = channel
    state[first + PL_CH_POS], state[first + PL_CH_SUM], state[first + PL_CH_COUNT] = pos0, total0, n0
    state[first + PL_CH_MEAN], state[first + PL_CH_VAR], state[first + PL_CH_LAST] = mean0, var0, last0
    if channels > 1:
        state[second + PL_CH_POS], state[second + PL_CH_SUM], state[second + PL_CH_COUNT] = pos1, total1, n1
        state[second + PL_CH_MEAN], state[second + PL_CH_VAR], state[second + PL_CH_LAST] = mean1, var1, last1
    state[PL_COUNT] = count
    state[PL_LO] = lo
    state[PL_HI] = hi
    state[PL_INCIDENT] = incident
    state[PL_QUIET_RUN] = quiet_run
    state[PL_SUPPRESSED] = suppressed
    state[PL_ALERTS] = alerts
    if xs.shape[0]:
        state[PL_LAST_CHANNEL] = channel
        state[PL_LAST_LIKELIHOOD] = best
