"""Numba array kernels: the batch engine of the streaming detectors.

Each detector keeps its whole state in one float64 array (see ``ZS_*`` for the
Z-score layout). The Cython objects in this package advance that array one
event at a time; the kernels here advance the *same* array over a batch, with
the same floating-point operations in the same order, so the two engines can
be interleaved mid-stream and agree bit for bit (``tests/test_zscore.py``).

The layout constants are mirrored by ``_zscore.pyx``; ``perfsdk._native``
checks at import that the compiled module agrees, which is how a stale build
is caught.
"""

from __future__ import annotations

import math

import numpy as np

from perfsdk._native.config import kernel

# --- Z-score state layout (indices into the float64 state array) -----------
ZS_MODE = 0  # 0: exact rolling window, 1: EWMA
ZS_WINDOW = 1  # window length (rolling mode)
ZS_INV_WINDOW = 2  # 1 / window, so the hot path multiplies instead of divides
ZS_ALPHA = 3  # EWMA smoothing factor
ZS_WARMUP = 4  # points learned before the first score
ZS_MIN_STD = 5  # floor on the standard deviation (0 = none)
ZS_COUNT = 6  # valid points learned
ZS_REJECTED = 7  # NaN/inf points refused
ZS_POS = 8  # ring-buffer slot the next point goes to
ZS_MEAN = 9  # mean of (x - shift)
ZS_M2 = 10  # rolling: sum of squared deviations; EWMA: the variance
ZS_SINCE_RESYNC = 11  # replacements since mean/M2 were recomputed exactly
ZS_SHIFT = 12  # rolling: reference level subtracted from every point (see below)
ZS_HEADER = 16  # the ring buffer starts here

ZS_MODE_WINDOW = 0.0
ZS_MODE_EWMA = 1.0


def zscore_new_state(
    window: int, alpha: float, warmup: int, min_std: float, ewma: bool
) -> np.ndarray:
    """A fresh Z-score state array (window mode carries a ring buffer)."""
    size = ZS_HEADER + (0 if ewma else window)
    state = np.zeros(size, dtype=np.float64)
    state[ZS_MODE] = ZS_MODE_EWMA if ewma else ZS_MODE_WINDOW
    state[ZS_WINDOW] = window
    state[ZS_INV_WINDOW] = 1.0 / window
    state[ZS_ALPHA] = alpha
    state[ZS_WARMUP] = warmup
    state[ZS_MIN_STD] = min_std
    return state


@kernel
def _zscore_resync(state, window):
    """Recompute shift, mean and M2 of a full window exactly (two-pass).

    Run every ``window`` replacements, so rounding error from the O(1) rolling
    update never accumulates beyond one window: no drift over 10^7+ points.
    The window's approximate mean becomes the new shift, so the running mean
    is a small number near 0 and a metric at 1e9 +/- 1 keeps all its digits.
    """
    total = 0.0
    for i in range(window):
        total += state[ZS_HEADER + i]
    shift = total / window
    correction = 0.0
    m2 = 0.0
    for i in range(window):
        d = state[ZS_HEADER + i] - shift
        correction += d
        m2 += d * d
    m2 -= correction * correction / window
    if m2 < 0.0:
        m2 = 0.0
    return shift, correction / window, m2


@kernel
def zscore_update_many(state, xs, z_out, expected_out, std_out, details):
    """Score then learn every point of ``xs``, writing z-scores to ``z_out``.

    With ``details`` the expected value and standard deviation each point was
    scored against go to ``expected_out`` / ``std_out`` (for explanations).
    NaN/inf points are rejected: counted, scored NaN, state untouched.
    """
    ewma = state[ZS_MODE] == ZS_MODE_EWMA
    window = np.int64(state[ZS_WINDOW])
    inv_window = state[ZS_INV_WINDOW]
    alpha = state[ZS_ALPHA]
    warmup = state[ZS_WARMUP]
    min_std = state[ZS_MIN_STD]
    count = state[ZS_COUNT]
    rejected = state[ZS_REJECTED]
    pos = np.int64(state[ZS_POS])
    mean = state[ZS_MEAN]
    m2 = state[ZS_M2]
    since = np.int64(state[ZS_SINCE_RESYNC])
    shift = state[ZS_SHIFT]

    for i in range(xs.shape[0]):
        x = xs[i]
        if not math.isfinite(x):
            rejected += 1.0
            z_out[i] = np.nan
            if details:
                expected_out[i] = np.nan
                std_out[i] = np.nan
            continue

        # ---- score x against the state (before learning it)
        if count < warmup:
            z = np.nan
            std = np.nan
        else:
            if ewma:
                var = m2
            elif count < window:
                var = m2 / (count - 1.0)
            else:
                var = m2 / (window - 1.0)
            std = math.sqrt(var)
            if std < min_std:
                std = min_std
            dev = (x - shift) - mean
            if std > 0.0:
                z = dev / std
            elif dev == 0.0:
                z = 0.0
            else:
                z = math.copysign(math.inf, dev)
        z_out[i] = z
        if details:
            expected_out[i] = shift + mean if count >= warmup else np.nan
            std_out[i] = std

        # ---- learn x
        if ewma:
            if count == 0.0:
                mean = x
                m2 = 0.0
            else:
                diff = x - mean
                incr = alpha * diff
                mean = mean + incr
                m2 = (1.0 - alpha) * (m2 + diff * incr)
        elif count < window:
            if count == 0.0:
                shift = x
            state[ZS_HEADER + pos] = x
            pos += 1
            if pos == window:
                pos = 0
            delta = (x - shift) - mean
            mean = mean + delta / (count + 1.0)
            m2 = m2 + delta * ((x - shift) - mean)
        else:
            old = state[ZS_HEADER + pos]
            state[ZS_HEADER + pos] = x
            pos += 1
            if pos == window:
                pos = 0
            new_mean = mean + (x - old) * inv_window
            m2 = m2 + (x - old) * (((x - shift) - new_mean) + ((old - shift) - mean))
            mean = new_mean
            since += 1
            if since == window:
                shift, mean, m2 = _zscore_resync(state, window)
                since = 0
            if m2 < 0.0:
                m2 = 0.0
        count += 1.0

    state[ZS_COUNT] = count
    state[ZS_REJECTED] = rejected
    state[ZS_POS] = pos
    state[ZS_MEAN] = mean
    state[ZS_M2] = m2
    state[ZS_SINCE_RESYNC] = since
    state[ZS_SHIFT] = shift


# --- ARIMA state layout ------------------------------------------------------
# Structural slots (fixed at construction; a snapshot must match them):
AR_P = 0  # AR capacity (coefficients beyond the fitted order are 0)
AR_Q = 1  # MA capacity
AR_M = 2  # span of the differencing polynomial: d + season * D
AR_NTAPS = 3  # nonzero lags of the differencing polynomial (capacity)
AR_WARMUP = 4  # points learned before the first score (and the first fit)
AR_HISTORY = 5  # capacity of the history ring that refits read
AR_REFIT_EVERY = 6  # request a refit after this many points (0: never)
AR_SHIFT_RUN = 7  # request a refit after this many anomalies in a row (0: never)
AR_THRESHOLD = 8
AR_SCALE_BETA = 9  # weight of a new |residual| in the running scale
AR_SCALE_CLIP = 10  # residuals enter the scale clipped at this many scales
AR_N_PARAMS = 12
# Dynamic slots:
AR_COUNT = 12  # valid points learned
AR_REJECTED = 13
AR_FITTED = 14  # 1 once the state holds model coefficients
AR_FIT_STATE = 15  # 0 idle, 1 requested (the caller must act), 2 fit in flight
AR_SINCE_FIT = 16
AR_RUN = 17  # consecutive anomalies
AR_SCALE = 18  # robust running scale of one-step residuals
AR_HIST_POS = 19
AR_YRING_POS = 20
AR_INTERCEPT = 21
AR_SIGMA2 = 22  # innovation variance of the model (for forecast intervals)
AR_D = 23  # fitted differencing order (for explanations)
AR_RETRY_AT = 24  # a fit is due once COUNT reaches this (0: none due)
AR_FIT_P = 25  # fitted AR order (<= AR_P; the unused coefficients are 0)
AR_FIT_Q = 26  # fitted MA order
AR_REGIME_START = 27  # COUNT at the onset of the last level shift (fits read from here)
AR_HEADER = 28  # then: phi[P] theta[Q] tap_lag[T] tap_coef[T] wlag[P] elag[Q] yring[M] history[H]

FIT_IDLE = 0.0
FIT_REQUESTED = 1.0
FIT_IN_FLIGHT = 2.0

# sqrt(pi / 2): turns a mean absolute residual into a Gaussian standard deviation
MEAN_ABS_TO_STD = 1.2533141373155001


def arima_layout(p: int, q: int, m: int, ntaps: int, history: int) -> dict[str, int]:
    """Offsets of the variable-length parts of an ARIMA state array, and its size."""
    names = ("phi", "theta", "tap_lag", "tap_coef", "wlag", "elag", "yring", "hist")
    layout = dict(zip(names, (int(v) for v in _arima_offsets_of(p, q, m, ntaps))))
    layout["size"] = layout["hist"] + history
    return layout


@kernel
def _arima_offsets_of(p, q, m, ntaps):
    phi = AR_HEADER
    theta = phi + p
    tap_lag = theta + q
    tap_coef = tap_lag + ntaps
    wlag = tap_coef + ntaps
    elag = wlag + p
    yring = elag + q
    return phi, theta, tap_lag, tap_coef, wlag, elag, yring, yring + m


@kernel
def _arima_offsets(state):
    p = np.int64(state[AR_P])
    q = np.int64(state[AR_Q])
    ntaps = np.int64(state[AR_NTAPS])
    phi, theta, tap_lag, tap_coef, wlag, elag, yring, hist = _arima_offsets_of(
        p, q, np.int64(state[AR_M]), ntaps
    )
    return p, q, ntaps, phi, theta, tap_lag, tap_coef, wlag, elag, yring, hist


@kernel
def arima_forecast_one(state, x):
    """One-step forecast ``y_hat`` of the next point, and ``w``, the value ``x`` differenced.

    Needs the last M points in the y ring (the caller checks that).
    """
    p, q, ntaps, phi, theta, tap_lag, tap_coef, wlag, elag, yring, hist = _arima_offsets(state)
    m = np.int64(state[AR_M])
    w_hat = state[AR_INTERCEPT]
    for i in range(p):
        w_hat += state[phi + i] * state[wlag + i]
    for j in range(q):
        w_hat += state[theta + j] * state[elag + j]
    integ = 0.0
    pos = np.int64(state[AR_YRING_POS])
    for k in range(ntaps):
        slot = pos - np.int64(state[tap_lag + k])
        if slot < 0:
            slot += m
        integ += state[tap_coef + k] * state[yring + slot]
    return w_hat - integ, x + integ


@kernel
def _arima_push(state, x, w, e, has_lags, record):
    """Shift x into the y ring and, with ``has_lags``, w and e into the lags.

    With ``record`` x also goes into the history ring and counts as learned.
    """
    p, q, ntaps, phi, theta, tap_lag, tap_coef, wlag, elag, yring, hist = _arima_offsets(state)
    m = np.int64(state[AR_M])
    if has_lags:
        for i in range(p - 1, 0, -1):
            state[wlag + i] = state[wlag + i - 1]
        if p > 0:
            state[wlag] = w
        for j in range(q - 1, 0, -1):
            state[elag + j] = state[elag + j - 1]
        if q > 0:
            state[elag] = e
    if m > 0:
        pos = np.int64(state[AR_YRING_POS])
        state[yring + pos] = x
        pos += 1
        if pos == m:
            pos = 0
        state[AR_YRING_POS] = pos
    if record:
        hp = np.int64(state[AR_HIST_POS])
        state[hist + hp] = x
        hp += 1
        if hp == np.int64(state[AR_HISTORY]):
            hp = 0
        state[AR_HIST_POS] = hp
        state[AR_COUNT] += 1.0


@kernel
def _arima_wants_fit(state):
    if state[AR_FIT_STATE] != FIT_IDLE:
        return False
    if state[AR_RETRY_AT] > 0.0 and state[AR_COUNT] >= state[AR_RETRY_AT]:
        return True
    if state[AR_FITTED] == 0.0:
        return False
    if state[AR_REFIT_EVERY] > 0.0 and state[AR_SINCE_FIT] >= state[AR_REFIT_EVERY]:
        return True
    return state[AR_SHIFT_RUN] > 0.0 and state[AR_RUN] >= state[AR_SHIFT_RUN]


@kernel
def arima_update_many(state, xs, start, z_out, expected_out, std_out, details):
    """Score then learn ``xs[start:]``; return the index it stopped at.

    It stops early, right after the point that made the detector request a
    fit (``state[AR_FIT_STATE] == FIT_REQUESTED``), so the caller can fit
    and resume at exactly that stream position, as the per-event path does.
    """
    n = xs.shape[0]
    m = state[AR_M]
    threshold = state[AR_THRESHOLD]
    beta = state[AR_SCALE_BETA]
    clip = state[AR_SCALE_CLIP]
    for i in range(start, n):
        x = xs[i]
        if not math.isfinite(x):
            state[AR_REJECTED] += 1.0
            z_out[i] = np.nan
            if details:
                expected_out[i] = np.nan
                std_out[i] = np.nan
            continue
        z = np.nan
        y_hat = np.nan
        scale = np.nan
        w = np.nan
        e = np.nan
        has_lags = state[AR_FITTED] != 0.0 and state[AR_COUNT] >= m
        if has_lags:
            y_hat, w = arima_forecast_one(state, x)
            e = x - y_hat
            scale = state[AR_SCALE]
            if state[AR_COUNT] >= state[AR_WARMUP]:
                z = e / scale
                if abs(z) > threshold:
                    state[AR_RUN] += 1.0
                else:
                    state[AR_RUN] = 0.0
            a = abs(e)
            if a > clip * scale:
                a = clip * scale
            state[AR_SCALE] = scale + beta * (a * MEAN_ABS_TO_STD - scale)
        if state[AR_FITTED] != 0.0:
            state[AR_SINCE_FIT] += 1.0
        z_out[i] = z
        if details:
            expected_out[i] = y_hat
            std_out[i] = scale
        _arima_push(state, x, w, e, has_lags, True)
        if _arima_wants_fit(state):
            state[AR_FIT_STATE] = FIT_REQUESTED
            return i + 1
    return n


@kernel
def arima_replay(state, ys):
    """Rebuild the lags from ``ys`` (the history, oldest first) under the current model.

    Run after new coefficients are installed: the lagged differences and
    residuals are recomputed by running the model over the recent past, so
    the stream goes on at the same position with consistent state. Counters,
    scale and history are left as they are.
    """
    p, q, ntaps, phi, theta, tap_lag, tap_coef, wlag, elag, yring, hist = _arima_offsets(state)
    m = np.int64(state[AR_M])
    for i in range(p):
        state[wlag + i] = 0.0
    for j in range(q):
        state[elag + j] = 0.0
    for k in range(m):
        state[yring + k] = 0.0
    state[AR_YRING_POS] = 0.0
    for i in range(ys.shape[0]):
        has_lags = i >= m
        y_hat = np.nan
        w = np.nan
        if has_lags:
            y_hat, w = arima_forecast_one(state, ys[i])
        _arima_push(state, ys[i], w, ys[i] - y_hat, has_lags, False)


# --- Q-learner state layout ----------------------------------------------------
QL_STATES = 0
QL_ACTIONS = 1
QL_ALPHA = 2
QL_GAMMA = 3
QL_EPSILON = 4  # current exploration rate (decays per act)
QL_EPSILON_MIN = 5
QL_EPSILON_DECAY = 6
QL_RNG_HI = 7  # xorshift64* state, as two exact 32-bit halves
QL_RNG_LO = 8
QL_STEPS = 9  # learn() calls
QL_N_PARAMS = 7  # slots 0..6 are parameters (a snapshot must match them, bar epsilon)
QL_HEADER = 16  # then Q[S*A], then visits[S*A]

_MASK32 = 0xFFFFFFFF


@kernel
def ql_random(state):
    """Uniform [0, 1) from the xorshift64* generator kept in the state array."""
    x = (np.uint64(state[QL_RNG_HI]) << np.uint64(32)) | np.uint64(state[QL_RNG_LO])
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    state[QL_RNG_HI] = np.float64(x >> np.uint64(32))
    state[QL_RNG_LO] = np.float64(x & np.uint64(_MASK32))
    out = x * np.uint64(0x2545F4914F6CDD1D)
    return np.float64(out >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@kernel
def ql_greedy(state, s):
    """The action with the highest Q-value in state ``s`` (lowest index on ties)."""
    n_actions = np.int64(state[QL_ACTIONS])
    base = QL_HEADER + s * n_actions
    best = 0
    for a in range(1, n_actions):
        if state[base + a] > state[base + best]:
            best = a
    return best


@kernel
def ql_act(state, s):
    """Epsilon-greedy action in ``s``; epsilon then decays toward its floor."""
    eps = state[QL_EPSILON]
    if ql_random(state) < eps:
        a = np.int64(ql_random(state) * state[QL_ACTIONS])
    else:
        a = ql_greedy(state, s)
    eps *= state[QL_EPSILON_DECAY]
    state[QL_EPSILON] = eps if eps > state[QL_EPSILON_MIN] else state[QL_EPSILON_MIN]
    return a


@kernel
def ql_learn(state, s, a, r, s2, done):
    """Q(s,a) += alpha * (r + gamma * max Q(s2, .) - Q(s,a)); counts the visit."""
    n_states = np.int64(state[QL_STATES])
    n_actions = np.int64(state[QL_ACTIONS])
    i = QL_HEADER + s * n_actions + a
    target = r
    if not done:
        target += state[QL_GAMMA] * state[QL_HEADER + s2 * n_actions + ql_greedy(state, s2)]
    state[i] += state[QL_ALPHA] * (target - state[i])
    state[i + n_states * n_actions] += 1.0
    state[QL_STEPS] += 1.0


@kernel
def ql_learn_many(state, s, a, r, s2, done):
    """``ql_learn`` over arrays of transitions, in order."""
    for k in range(s.shape[0]):
        ql_learn(state, s[k], a[k], r[k], s2[k], done[k])


@kernel
def ql_run_episodes(state, transitions, rewards, terminal, start, episodes, max_steps):
    """Q-learning on a known tabular MDP (for simulations and tests).

    ``transitions[s, a]`` is the next state, ``rewards[s, a]`` the reward,
    ``terminal[s]`` ends an episode. Returns the total reward per episode.
    """
    totals = np.zeros(episodes)
    for e in range(episodes):
        s = start
        for _ in range(max_steps):
            a = ql_act(state, s)
            s2 = transitions[s, a]
            r = rewards[s, a]
            done = terminal[s2]
            ql_learn(state, s, a, r, s2, done)
            totals[e] += r
            s = s2
            if done:
                break
    return totals
