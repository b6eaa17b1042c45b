"""State layouts: the one definition every engine reads its slot offsets from.

Each streaming detector and the Q-learner keep their whole state in one
float64 array; these are the indices of its slots. The Numba kernels import
them from here; the Cython engines get them from ``_layout.pxi``, which
``setup.py`` generates from this file at build time (``write_pxi``), so the
two cannot disagree. ``perfsdk._native`` checks at import that the compiled
modules were built from this file (a stale build fails there, with the
command that fixes it), and that the ARIMA engines place the variable-length
parts of its state at the same offsets.

This module imports nothing: ``setup.py`` runs it before anything is built.
"""

# --- Every streaming detector -------------------------------------------------
MAX_MAGNITUDE = 1e150  # a point beyond +-this is refused as NaN is: its square, a variance's term, would overflow

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
ZS_CLIP = 13  # bounded influence: an isolated point beyond this many std is learned at it (0: off)
ZS_EXTREME = 14  # 1: the last point learned was beyond ZS_CLIP (the next one beyond it is learned as it is)
ZS_HEADER = 16  # the ring buffer starts here
ZS_RESYNC_DROP = 1e-6  # a rolling M2 that falls below this share of itself in one step is recomputed exactly

ZS_MODE_WINDOW = 0.0
ZS_MODE_EWMA = 1.0
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
AR_LAGS = 28  # the installed model's longest differencing lag (<= AR_M): scores need this many points
AR_HEADER = 29  # then: phi[P] theta[Q] tap_lag[T] tap_coef[T] wlag[P] elag[Q] yring[M] history[H]

FIT_IDLE = 0.0
FIT_REQUESTED = 1.0
FIT_IN_FLIGHT = 2.0

# sqrt(pi / 2): turns a mean absolute residual into a Gaussian standard deviation
MEAN_ABS_TO_STD = 1.2533141373155001
# The running residual scale's floor, the larger of two shares. Exact forecasts (a flat or
# deterministic stretch) shrink the scale geometrically, and each new error enters it clipped at a
# few scales: unfloored it reached 0 or a subnormal and could never grow back (every later point
# scored +-inf, or NaN). Of the fitted innovation std: far below where a real series' scale goes
# (sigma2 is a variance, inflated by heavy tails: on NAB's series the scale falls to 1e-4 of its
# root), yet a collapsed scale grows back within ~200 points at the defaults (5.5 % a point). Of the
# forecast level: an error within some thousands of ulps of it is the forecast's own rounding, not
# the series (where a fit has a sigma2 that small: on NAB's ec2_disk_write_bytes_1ef3de the scale
# fell to 3e-16 of the level). Where both are 0 the Z-score's constant-series rule stands: an exact
# forecast scores 0, any other error +-inf.
SCALE_FLOOR_OF_SIGMA = 1e-5
SCALE_FLOOR_OF_LEVEL = 1e-12

# --- Alert pipeline state layout (perfsdk.detect.pipeline) ---------------------
# Parameters (a snapshot must match them):
PL_CHANNELS = 0  # raw-score channels (1: the detector; 2: and its seasonal twin)
PL_AVERAGE = 1  # points in the short moving average of squashed raw scores
PL_ALPHA = 2  # weight of a new average in the long-run mean/variance (1 / memory)
PL_LEARN = 3  # points learned before the first score (per channel, and for the range rule)
PL_SQUASH = 4  # raw score r enters as r / (r + PL_SQUASH), in [0, 1)
PL_MIN_VAR = 5  # floor on the variance of the averaged scores (HTM: 0.0003)
PL_MIN_MEAN = 6  # floor on their mean (HTM: 0.03)
PL_RANGE_TOL = 7  # a value beyond [min, max] by this share of max - min is an alert (<0: off)
PL_THRESHOLD = 8  # alert when the score reaches it
PL_RELEASE = 9  # an incident ends after PL_QUIET points scoring below it; follow-ups show at most this
PL_QUIET = 10
PL_SEASON = 11  # seasonal period in points (0: none)
PL_SEASON_CORR = 12  # the seasonal channel counts while corr(x_t, x_t-season) reaches this
PL_SEASON_ALPHA = 13  # weight of a new pair in that correlation (floor; 1/n before)
PL_N_PARAMS = 14
# Dynamic slots:
PL_COUNT = 16  # valid points learned
PL_REJECTED = 17  # NaN/inf points refused
PL_LO = 18  # smallest and largest value learned
PL_HI = 19
PL_INCIDENT = 20  # 1 while an incident is open (its follow-up alerts are suppressed)
PL_QUIET_RUN = 21  # points in a row below PL_RELEASE during an incident
PL_ALERTS = 22  # alerts raised (incidents opened)
PL_SUPPRESSED = 23  # points of open incidents that scored at or above the threshold
PL_LAST_CHANNEL = 24  # what scored the last point highest: channel index, or PL_RANGE_CHANNEL
PL_LAST_LIKELIHOOD = 25  # that point's combined score before suppression
PL_SEASON_ON = 26  # 1 while the seasonal channel counts
PL_S_POS = 27  # season ring position
PL_S_PAIRS = 28  # (x_t, x_t-season) pairs seen
PL_S_MEAN_A = 29  # running moments of the pairs (EWMA, floor PL_SEASON_ALPHA)
PL_S_MEAN_B = 30
PL_S_VAR_A = 31
PL_S_VAR_B = 32
PL_S_COV = 33
PL_HEADER = 40  # then: channel blocks [PL_CH_HEADER + average] * channels, then the season ring
PL_CH_POS = 0  # channel block: ring position
PL_CH_SUM = 1  # sum of the ring
PL_CH_COUNT = 2  # raw scores learned
PL_CH_MEAN = 3  # long-run mean and variance of the averages
PL_CH_VAR = 4
PL_CH_LAST = 5  # the channel's last score (0 while learning)
PL_CH_HEADER = 8
PL_RANGE_CHANNEL = 9  # PL_LAST_CHANNEL when the range rule fired
TAIL_FLOOR = 1e-10  # a channel's score is log(p + TAIL_FLOOR) / log(TAIL_FLOOR) (HTM's log-likelihood)
LOG_TAIL_FLOOR = -23.025850929940457  # log(1e-10)
INV_LOG_TAIL_FLOOR = 1.0 / LOG_TAIL_FLOOR  # multiply, don't divide, on the hot path

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

# --- Adaptive cache (compiled core and its Python controller) ------------------
CACHE_GHOST_BANDS = 16  # ghost hits are counted by age, in sixteenths of the capacity
CACHE_PROBATION_SHARE = 0.2  # of the main area; the rest is protected (as in Caffeine)


def arima_offsets(p, q, m, ntaps):  # also compiled by Numba: no annotations
    """Where the variable-length parts of an ARIMA state start (``AR_HEADER`` onwards):
    phi[P] theta[Q] tap_lag[T] tap_coef[T] wlag[P] elag[Q] yring[M] history[H].

    Plain Python here; ``kernels_arima`` compiles this same function for its kernels.
    """
    phi = AR_HEADER
    theta = phi + p
    tap_lag = theta + q
    tap_coef = tap_lag + ntaps
    wlag = tap_coef + ntaps
    elag = wlag + p
    yring = elag + q
    return phi, theta, tap_lag, tap_coef, wlag, elag, yring, yring + m


def pipeline_offsets(channels, average):  # also compiled by Numba: no annotations
    """Where the alert pipeline's channel blocks and season ring start, and one block's size."""
    stride = PL_CH_HEADER + average
    return PL_HEADER, stride, PL_HEADER + channels * stride


def arima_layout(p: int, q: int, m: int, ntaps: int, history: int) -> dict[str, int]:
    """Offsets of the variable-length parts of an ARIMA state array, and its size."""
    names = ("phi", "theta", "tap_lag", "tap_coef", "wlag", "elag", "yring", "hist")
    offsets = dict(zip(names, (int(v) for v in arima_offsets(p, q, m, ntaps))))
    offsets["size"] = offsets["hist"] + history
    return offsets


def constants() -> dict[str, int | float]:
    """Every layout constant, by name."""
    return {k: v for k, v in globals().items() if k.isupper() and isinstance(v, (int, float))}


def write_pxi(path: str) -> None:
    """Write the Cython include with these constants (integers as an enum, floats as doubles)."""
    lines = ["# Generated by setup.py from perfsdk/_native/layout.py: edit that file, not this one.", "",
             "cdef enum:"]
    values = constants()
    lines += [f"    {k} = {v}" for k, v in values.items() if isinstance(v, int)]
    lines += [""] + [f"cdef double {k} = {v!r}" for k, v in values.items() if isinstance(v, float)]
    lines += ["", "LAYOUT = {"] + [f"    {k!r}: {k}," for k in values] + ["}", ""]
    text = "\n".join(lines)
    try:
        with open(path) as f:
            if f.read() == text:
                return  # unchanged: keep its time stamp, so nothing is rebuilt for nothing
    except OSError:
        pass
    with open(path, "w") as f:
        f.write(text)
