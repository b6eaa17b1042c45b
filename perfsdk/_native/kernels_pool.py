"""Numba kernels of the connection-pool simulator (``benches/eval/pool_eval.py``, issue 12).

A discrete-event simulation of an open system in front of a database:

- **arrivals**: Poisson, at a rate that may change every simulated second (``rates[k]``
  holds during second ``k``; at each second the next arrival is drawn afresh, which
  memorylessness allows), each with its work drawn at arrival (1 unit, constant,
  exponential or lognormal with mean 1), so every policy run with one seed sees the same
  requests (common random numbers: policy differences are not noise);
- **the pool**: a request takes a connection when fewer than the limit are in use, else
  waits first come first served and gives up (a timeout, counted) once it has waited
  ``timeout`` seconds;
- **the database**: processor sharing under the Universal Scalability Law. With ``n``
  requests in service each progresses at ``1 / (s (1 + sigma (n-1) + kappa n (n-1)))``
  units of work per second, ``n`` being the concurrency *now* (a request slows when
  others join, speeds up when they leave), ``s = costs[k]`` the seconds a unit of work
  takes alone. At a constant ``n`` a request holds its connection ``hold(n) = s (1 +
  sigma (n-1) + kappa n (n-1))`` times its work, so throughput ``n / hold(n)`` peaks at
  ``N* = sqrt((1 - sigma) / kappa)``. A virtual clock (the work every request in
  service has done) makes each event O(log n): the requests in service are a heap on
  the virtual time they finish at.

The limit on connections in use is the pool's size. It is one of: fixed (set between
calls, as a controller does between intervals); moved after every completed request,
inside the kernel, by a port of Netflix concurrency-limits' ``AIMDLimit``,
``VegasLimit`` or ``Gradient2Limit`` (``pool_limit_sample``: the samples they see are
the ones the Java ``AbstractLimiter`` gives them, rtt = the hold in integer
nanoseconds, inflight = connections in use when it was taken, including itself; a
waiter that times out never held a token, so it gives no sample, as in
``BlockingLimiter``); or SQLAlchemy ``QueuePool``'s overflow (``pool_size`` kept,
up to ``max_overflow`` more made on demand and closed on return when ``pool_size``
are already idle).

Each state is one float64 array (as the detectors' are): the simulator's
``PS_*`` slots, the limit's ``PL_*`` slots. Both keep an xorshift64* generator in the
slots ``ql_random`` reads (``QL_RNG_HI``/``QL_RNG_LO``), so there is one generator.
"""

from __future__ import annotations

import math

import numpy as np

from perfsdk._native.config import kernel
from perfsdk._native.kernels_qlearn import ql_random
from perfsdk._native.layout import QL_RNG_HI, QL_RNG_LO

__all__ = [
    "pool_limit_aimd", "pool_limit_fixed", "pool_limit_gradient2", "pool_limit_queuepool", "pool_limit_sample",
    "pool_limit_vegas", "pool_sim_advance", "pool_sim_counts", "pool_sim_state",
]

# --- simulator state (float64) ------------------------------------------------------
PS_NOW = 0  # simulated seconds
PS_VIRTUAL = 1  # the work each request in service has done since the start (the PS virtual clock)
PS_NEXT_ARRIVAL = 2  # < 0: drawn at the next call
PS_IN_SERVICE = 3
PS_SERVICE_CAP = 4  # room in the heap: no limit may let more in
PS_QUEUE_HEAD = 5
PS_QUEUE_LEN = 6
PS_RNG_HI = QL_RNG_HI  # 7, 8: where ql_random keeps its generator
PS_RNG_LO = QL_RNG_LO
PS_QUEUE_CAP = 9  # a full waiting ring refuses arrivals (counted in PS_REJECTED)
PS_ARRIVED = 10
PS_COMPLETED = 11
PS_TIMED_OUT = 12
PS_REJECTED = 13
PS_SIGMA = 14
PS_KAPPA = 15
PS_WORK = 16  # WORK_*: the distribution of a request's work
PS_LOG_SD = 17  # lognormal work: standard deviation of its log
PS_TIMEOUT = 18  # seconds a waiter waits before giving up
PS_HEADER = 20  # then the heap (PS_REC a request), then the waiting ring (PS_WAITER a request)
PS_REC = 5  # in service: finishes at (virtual), taken at, arrived at, level, id
PS_WAITER = 3  # waiting: arrived at, id, work

WORK_CONSTANT, WORK_EXPONENTIAL, WORK_LOGNORMAL = 0.0, 1.0, 2.0

# --- limit state (float64) --------------------------------------------------------------
PL_KIND = 0  # LIMIT_*
PL_LIMIT = 1  # connections that may be in use (an integer: AbstractLimit's limit)
PL_MIN = 2
PL_MAX = 3
PL_ESTIMATE = 4  # Vegas's and Gradient2's estimatedLimit (a double)
PL_RNG_HI = QL_RNG_HI  # Vegas's probe jitter (Java: ThreadLocalRandom), apart from the arrivals'
PL_RNG_LO = QL_RNG_LO
PL_AIMD_BACKOFF = 10
PL_AIMD_TIMEOUT_NS = 11
PL_VEGAS_SMOOTHING = 10
PL_VEGAS_PROBE_MULTIPLIER = 11
PL_VEGAS_RTT_NOLOAD = 12
PL_VEGAS_PROBE_COUNT = 13
PL_VEGAS_PROBE_JITTER = 14
PL_G2_SMOOTHING = 10
PL_G2_QUEUE_SIZE = 11
PL_G2_TOLERANCE = 12
PL_G2_LONG_WINDOW = 13
PL_G2_LONG_WARMUP = 14
PL_G2_LONG_VALUE = 15  # ExpAvgMeasurement: value, sum, count
PL_G2_LONG_SUM = 16
PL_G2_LONG_COUNT = 17
PL_QP_POOL_SIZE = 10
PL_QP_OPEN = 11
PL_QP_IDLE = 12
PL_QP_CONNECT = 13  # seconds a new connection takes to open: a waiter gets one only after that long
PL_QP_RETIRE = 14  # 1: a connection returned beyond pool_size is closed (AdaptivePool), not kept idle
PL_SIZE = 18

LIMIT_FIXED, LIMIT_AIMD, LIMIT_VEGAS, LIMIT_GRADIENT2, LIMIT_QUEUEPOOL = 0.0, 1.0, 2.0, 3.0, 4.0


# --- building states (Python) ---------------------------------------------------------------

def _seed(state: np.ndarray, seed: int) -> None:
    """A nonzero xorshift64* state in the generator's slots, from ``seed``."""
    hi, lo = (int(w) for w in np.random.SeedSequence(seed).generate_state(2))
    state[QL_RNG_HI], state[QL_RNG_LO] = hi, lo or 1


def pool_sim_state(*, sigma: float, kappa: float, timeout: float, capacity: int, work: str = "lognormal",
                   log_sd: float = 1.0, seed: int = 0, queue_capacity: int = 1 << 16) -> np.ndarray:
    """A simulator at time 0, empty. ``capacity`` bounds the requests in service (the largest
    limit the run may have); ``work`` is ``"constant"``, ``"exponential"`` or ``"lognormal"``."""
    kinds = {"constant": WORK_CONSTANT, "exponential": WORK_EXPONENTIAL, "lognormal": WORK_LOGNORMAL}
    if work not in kinds:
        raise ValueError(f"work must be one of {sorted(kinds)}, got {work!r}")
    if capacity < 1 or queue_capacity < 1:
        raise ValueError("capacity and queue_capacity must be at least 1")
    sim = np.zeros(PS_HEADER + capacity * PS_REC + queue_capacity * PS_WAITER)
    sim[PS_NEXT_ARRIVAL] = -1.0
    sim[PS_SERVICE_CAP], sim[PS_QUEUE_CAP] = capacity, queue_capacity
    sim[PS_SIGMA], sim[PS_KAPPA], sim[PS_TIMEOUT] = sigma, kappa, timeout
    sim[PS_WORK], sim[PS_LOG_SD] = kinds[work], log_sd
    _seed(sim, seed)
    return sim


def pool_sim_counts(sim: np.ndarray) -> dict[str, int]:
    """Requests so far: arrived = completed + timed_out + rejected + in_service + waiting."""
    names = {"arrived": PS_ARRIVED, "completed": PS_COMPLETED, "timed_out": PS_TIMED_OUT,
             "rejected": PS_REJECTED, "in_service": PS_IN_SERVICE, "waiting": PS_QUEUE_LEN}
    return {name: int(sim[slot]) for name, slot in names.items()}


def _limit(kind: float, limit: int, min_limit: int, max_limit: int) -> np.ndarray:
    state = np.zeros(PL_SIZE)
    state[PL_KIND], state[PL_LIMIT], state[PL_MIN], state[PL_MAX] = kind, limit, min_limit, max_limit
    state[PL_ESTIMATE] = limit
    return state


def pool_limit_fixed(size: int) -> np.ndarray:
    """A pool of ``size`` connections, changed only from outside (by a controller)."""
    return _limit(LIMIT_FIXED, size, size, size)


def pool_limit_aimd(initial_limit: int = 20, min_limit: int = 20, max_limit: int = 200, backoff_ratio: float = 0.9,
                    timeout_s: float = 5.0) -> np.ndarray:
    """``AIMDLimit`` with its builder's defaults."""
    state = _limit(LIMIT_AIMD, initial_limit, min_limit, max_limit)
    state[PL_AIMD_BACKOFF], state[PL_AIMD_TIMEOUT_NS] = backoff_ratio, float(int(timeout_s * 1e9))
    return state


def pool_limit_vegas(initial_limit: int = 20, max_concurrency: int = 1000, smoothing: float = 1.0,
                     probe_multiplier: int = 30, seed: int = 0) -> np.ndarray:
    """``VegasLimit`` with its builder's defaults (alpha 3, beta 6, threshold 1, increase and
    decrease by 1: ``3 * log10``, ``6 * log10`` ... of limits below 100); ``seed`` is its jitter's."""
    state = _limit(LIMIT_VEGAS, initial_limit, 1, max_concurrency)
    state[PL_VEGAS_SMOOTHING], state[PL_VEGAS_PROBE_MULTIPLIER] = smoothing, probe_multiplier
    _seed(state, seed)
    state[PL_VEGAS_PROBE_JITTER] = _jitter(state)  # the constructor's resetProbeJitter()
    return state


def pool_limit_gradient2(initial_limit: int = 20, min_limit: int = 20, max_concurrency: int = 200,
                         smoothing: float = 0.2, queue_size: int = 4, long_window: int = 600,
                         rtt_tolerance: float = 1.5) -> np.ndarray:
    """``Gradient2Limit`` with its builder's defaults (the long RTT an ``ExpAvgMeasurement(600, 10)``)."""
    state = _limit(LIMIT_GRADIENT2, initial_limit, min_limit, max_concurrency)
    state[PL_G2_SMOOTHING], state[PL_G2_QUEUE_SIZE], state[PL_G2_TOLERANCE] = smoothing, queue_size, rtt_tolerance
    state[PL_G2_LONG_WINDOW], state[PL_G2_LONG_WARMUP] = long_window, 10
    return state


def pool_limit_queuepool(pool_size: int = 5, max_overflow: int = 10, connect: float = 0.0,
                         retire_surplus: bool = False) -> np.ndarray:
    """SQLAlchemy ``QueuePool``'s defaults: ``pool_size`` kept, up to ``max_overflow`` more on
    demand; connections are made when first needed (none open at the start). ``connect``: the
    seconds opening one takes -- a caller with no idle connection to take waits that long for a
    new one, unless a connection comes back first. ``retire_surplus``: a connection that comes
    back while more than ``pool_size`` are open is closed, as ``AdaptivePool`` retires a burst's
    (a ``QueuePool`` keeps it idle while fewer than ``pool_size`` are idle)."""
    state = _limit(LIMIT_QUEUEPOOL, pool_size + max_overflow, 0, pool_size + max_overflow)
    state[PL_QP_POOL_SIZE] = pool_size
    state[PL_QP_CONNECT] = connect
    state[PL_QP_RETIRE] = 1.0 if retire_surplus else 0.0
    return state


# --- the limit algorithms (one completed request at a time) --------------------------------

@kernel
def _jitter(limit):
    """Vegas's ``resetProbeJitter``: ``nextDouble(0.5, 1)``."""
    return 0.5 + 0.5 * ql_random(limit)


@kernel
def _log10_root(t):
    """concurrency-limits' ``Log10RootFunction.create(0)``: ``max(1, (int) log10(t))`` below 1000
    (a lookup table there), ``(int) sqrt(t)`` from 1000 on."""
    if t < 1000:
        return 2 if t >= 100 else 1
    return int(math.sqrt(t))


@kernel
def _aimd(limit, rtt, inflight, did_drop):
    current = int(limit[PL_LIMIT])
    if did_drop or rtt > limit[PL_AIMD_TIMEOUT_NS]:
        current = int(current * limit[PL_AIMD_BACKOFF])
    elif inflight * 2 >= current:
        current = current + 1
    return min(int(limit[PL_MAX]), max(int(limit[PL_MIN]), current))


@kernel
def _vegas(limit, rtt, inflight, did_drop):
    estimated = limit[PL_ESTIMATE]
    probe_count = limit[PL_VEGAS_PROBE_COUNT] + 1.0
    limit[PL_VEGAS_PROBE_COUNT] = probe_count
    if limit[PL_VEGAS_PROBE_JITTER] * limit[PL_VEGAS_PROBE_MULTIPLIER] * estimated <= probe_count:  # shouldProbe
        limit[PL_VEGAS_PROBE_JITTER] = _jitter(limit)
        limit[PL_VEGAS_PROBE_COUNT] = 0.0
        limit[PL_VEGAS_RTT_NOLOAD] = rtt
        return int(estimated)
    rtt_noload = limit[PL_VEGAS_RTT_NOLOAD]
    if rtt_noload == 0 or rtt < rtt_noload:
        limit[PL_VEGAS_RTT_NOLOAD] = rtt
        return int(estimated)
    # updateEstimatedLimit
    queue_size = int(math.ceil(estimated * (1 - rtt_noload / rtt)))
    e = int(estimated)
    if did_drop:
        new_limit = estimated - _log10_root(e)
    elif inflight * 2 < estimated:
        return int(estimated)
    else:
        alpha = 3 * _log10_root(e)
        beta = 6 * _log10_root(e)
        threshold = _log10_root(e)
        if queue_size <= threshold:
            new_limit = estimated + beta
        elif queue_size < alpha:
            new_limit = estimated + _log10_root(e)
        elif queue_size > beta:
            new_limit = estimated - _log10_root(e)
        else:
            return int(estimated)
    new_limit = max(1.0, min(limit[PL_MAX], new_limit))
    smoothing = limit[PL_VEGAS_SMOOTHING]
    new_limit = (1 - smoothing) * estimated + smoothing * new_limit
    limit[PL_ESTIMATE] = new_limit
    return int(new_limit)


@kernel
def _gradient2(limit, rtt, inflight, did_drop):
    estimated = limit[PL_ESTIMATE]
    queue_size = limit[PL_G2_QUEUE_SIZE]
    short_rtt = rtt
    # ExpAvgMeasurement.add
    count = limit[PL_G2_LONG_COUNT]
    if count < limit[PL_G2_LONG_WARMUP]:
        count += 1.0
        limit[PL_G2_LONG_COUNT] = count
        limit[PL_G2_LONG_SUM] += rtt
        limit[PL_G2_LONG_VALUE] = limit[PL_G2_LONG_SUM] / count
    else:
        factor = 2.0 / (limit[PL_G2_LONG_WINDOW] + 1)
        limit[PL_G2_LONG_VALUE] = limit[PL_G2_LONG_VALUE] * (1 - factor) + rtt * factor
    long_rtt = limit[PL_G2_LONG_VALUE]
    if long_rtt / short_rtt > 2:  # back to normal after a long overload: bring the long RTT down faster
        limit[PL_G2_LONG_VALUE] = long_rtt * 0.95
    if inflight < estimated / 2:  # app limited: don't grow
        return int(estimated)
    gradient = max(0.5, min(1.0, limit[PL_G2_TOLERANCE] * long_rtt / short_rtt))
    new_limit = estimated * gradient + queue_size
    smoothing = limit[PL_G2_SMOOTHING]
    new_limit = estimated * (1 - smoothing) + new_limit * smoothing
    new_limit = max(limit[PL_MIN], min(limit[PL_MAX], new_limit))
    limit[PL_ESTIMATE] = new_limit
    return int(new_limit)


@kernel
def pool_limit_sample(limit, rtt_ns, inflight, did_drop):
    """One sample into the limit (``AbstractLimit.onSample``): ``rtt_ns`` the request's time
    holding its token (integer nanoseconds, > 0), ``inflight`` the tokens out when it took
    its own (itself included). Returns the new limit; a fixed pool or a QueuePool ignores it."""
    kind = limit[PL_KIND]
    rtt = float(rtt_ns)
    if kind == LIMIT_AIMD:
        new_limit = _aimd(limit, rtt, inflight, did_drop)
    elif kind == LIMIT_VEGAS:
        new_limit = _vegas(limit, rtt, inflight, did_drop)
    elif kind == LIMIT_GRADIENT2:
        new_limit = _gradient2(limit, rtt, inflight, did_drop)
    else:
        return int(limit[PL_LIMIT])
    limit[PL_LIMIT] = new_limit
    return new_limit


# --- the simulator --------------------------------------------------------------------------

@kernel
def _exponential(sim, rate):
    if rate <= 0.0:
        return np.inf
    return -math.log(1.0 - ql_random(sim)) / rate


@kernel
def _work(sim):
    """A request's work: 1 unit on average."""
    kind = sim[PS_WORK]
    if kind == WORK_CONSTANT:
        return 1.0
    if kind == WORK_EXPONENTIAL:
        return _exponential(sim, 1.0)
    u = ql_random(sim)  # Box-Muller: one normal from two uniforms
    v = ql_random(sim)
    z = math.sqrt(-2.0 * math.log(1.0 - u)) * math.cos(2.0 * math.pi * v)
    sd = sim[PS_LOG_SD]
    return math.exp(sd * z - 0.5 * sd * sd)


@kernel
def _slowdown(sim, n):
    """``hold(n) / s``: the USL's time per request with ``n`` in service over its time alone."""
    return 1.0 + sim[PS_SIGMA] * (n - 1) + sim[PS_KAPPA] * n * (n - 1)


@kernel
def _swap(sim, i, j):
    a = PS_HEADER + i * PS_REC
    b = PS_HEADER + j * PS_REC
    for k in range(PS_REC):
        x = sim[a + k]
        sim[a + k] = sim[b + k]
        sim[b + k] = x


@kernel
def _take(sim, limit, now, arrived, rid, work, acquired, pos):
    """The request gets a connection now: into the heap (on its finishing virtual time)."""
    n = np.int64(sim[PS_IN_SERVICE])
    base = PS_HEADER + n * PS_REC
    sim[base] = sim[PS_VIRTUAL] + work
    sim[base + 1] = now
    sim[base + 2] = arrived
    sim[base + 3] = n + 1
    sim[base + 4] = rid
    sim[PS_IN_SERVICE] = n + 1
    i = n
    while i > 0:
        parent = (i - 1) // 2
        if sim[PS_HEADER + parent * PS_REC] <= sim[PS_HEADER + i * PS_REC]:
            break
        _swap(sim, i, parent)
        i = parent
    j = pos[1]
    acquired[j, 0] = now - arrived
    acquired[j, 1] = rid
    pos[1] = j + 1
    if limit[PL_KIND] == LIMIT_QUEUEPOOL:
        if limit[PL_QP_IDLE] > 0:
            limit[PL_QP_IDLE] -= 1.0
        else:
            limit[PL_QP_OPEN] += 1.0  # an overflow connection (or one of the first pool_size)


@kernel
def _pop(sim):
    """Take the first to finish out of the heap; its record is left just past the heap's end."""
    n = np.int64(sim[PS_IN_SERVICE]) - 1
    _swap(sim, 0, n)
    sim[PS_IN_SERVICE] = n
    i = 0
    while True:
        left = 2 * i + 1
        if left >= n:
            break
        child = left
        if left + 1 < n and sim[PS_HEADER + (left + 1) * PS_REC] < sim[PS_HEADER + left * PS_REC]:
            child = left + 1
        if sim[PS_HEADER + i * PS_REC] <= sim[PS_HEADER + child * PS_REC]:
            break
        _swap(sim, i, child)
        i = child
    return PS_HEADER + n * PS_REC


@kernel
def _admit(sim, limit, now, acquired, pos):
    """Waiters, oldest first, take the connections the limit allows."""
    allowed = min(np.int64(limit[PL_LIMIT]), np.int64(sim[PS_SERVICE_CAP]))
    qcap = np.int64(sim[PS_QUEUE_CAP])
    ring = PS_HEADER + np.int64(sim[PS_SERVICE_CAP]) * PS_REC
    while sim[PS_QUEUE_LEN] > 0 and sim[PS_IN_SERVICE] < allowed:
        head = np.int64(sim[PS_QUEUE_HEAD])
        w = ring + head * PS_WAITER
        if not _may_take(limit, now, sim[w]):
            break
        sim[PS_QUEUE_HEAD] = (head + 1) % qcap
        sim[PS_QUEUE_LEN] -= 1.0
        _take(sim, limit, now, sim[w], sim[w + 1], sim[w + 2], acquired, pos)


@kernel
def _may_take(limit, now, since):
    """Whether a caller waiting since ``since`` may take, at ``now``, a connection the limit
    allows: an idle one at once; a new one once opening it took its time (the same sum as the
    event's, ``since + connect``, so rounding cannot keep the event from admitting it)."""
    if limit[PL_KIND] != LIMIT_QUEUEPOOL or limit[PL_QP_IDLE] > 0:
        return True
    return now >= since + limit[PL_QP_CONNECT]


@kernel
def _connections(limit, in_service):
    """Connections open: a QueuePool's count; else the size, or more while connections a
    shrink made surplus are still in use (a pool never closes one in use)."""
    if limit[PL_KIND] == LIMIT_QUEUEPOOL:
        return limit[PL_QP_OPEN]
    return max(limit[PL_LIMIT], in_service)


@kernel
def pool_sim_advance(sim, limit, rates, costs, t_end, done, acquired, pos, areas):
    """Simulate from ``sim``'s time to ``t_end`` (seconds); returns 0, or 1 when the output
    buffers are nearly full (``sim`` is consistent: grow them and call again).

    ``rates[k]`` (requests/s) and ``costs[k]`` (``s``: seconds a unit of work takes alone)
    hold during second ``k`` (the last ones after the arrays' end). Each request that
    completes appends ``(wait, hold, level)`` to ``done`` at ``pos[0]``: seconds waited for
    a connection, seconds it held one, connections in use when it took it (itself
    included). Each acquisition appends ``(wait, id)`` to ``acquired`` at ``pos[1]`` (ids
    count arrivals from 0: FIFO serves them in order). ``areas`` accumulates the time
    integrals of connections in use, of waiters and of connections open, and (``areas[3]``,
    kept as a maximum) the most requests present at once: in use plus waiting.
    Timeouts and refusals are counted in ``sim`` (``pool_sim_counts``).
    """
    if areas.shape[0] < 4:
        raise ValueError("areas must hold 4 values: in use, waiting and open connection-seconds, and the peak")
    cap = np.int64(sim[PS_SERVICE_CAP])
    qcap = np.int64(sim[PS_QUEUE_CAP])
    ring = PS_HEADER + cap * PS_REC
    timeout = sim[PS_TIMEOUT]
    last = rates.shape[0] - 1
    room = cap + 2
    now = sim[PS_NOW]
    if sim[PS_NEXT_ARRIVAL] < 0.0:
        sim[PS_NEXT_ARRIVAL] = now + _exponential(sim, rates[min(np.int64(now), last)])
    if pos[0] + room > done.shape[0] or pos[1] + room > acquired.shape[0]:
        return 1
    _admit(sim, limit, now, acquired, pos)  # a limit raised between calls lets waiters in at once
    while now < t_end:
        if pos[0] + room > done.shape[0] or pos[1] + room > acquired.shape[0]:
            sim[PS_NOW] = now
            return 1
        second = np.int64(math.floor(now))
        k = min(second, last)
        boundary = float(second + 1)
        stop = min(boundary, t_end)
        n = np.int64(sim[PS_IN_SERVICE])
        waiting = np.int64(sim[PS_QUEUE_LEN])
        speed = 0.0
        t_done = np.inf
        if n > 0:
            speed = 1.0 / (costs[k] * _slowdown(sim, n))  # work units a second, each request in service
            t_done = now + (sim[PS_HEADER] - sim[PS_VIRTUAL]) / speed
        t_out = np.inf
        if waiting > 0:
            t_out = sim[ring + np.int64(sim[PS_QUEUE_HEAD]) * PS_WAITER] + timeout
        t_arrival = sim[PS_NEXT_ARRIVAL]
        t_open = np.inf  # a connection being opened for the oldest waiter is ready
        if limit[PL_KIND] == LIMIT_QUEUEPOOL and waiting > 0 and n < min(np.int64(limit[PL_LIMIT]), cap):
            t_open = sim[ring + np.int64(sim[PS_QUEUE_HEAD]) * PS_WAITER] + limit[PL_QP_CONNECT]
        t = max(now, min(min(min(t_done, t_out), min(t_arrival, stop)), t_open))
        dt = t - now
        if dt > 0.0:
            areas[0] += n * dt
            areas[1] += waiting * dt
            areas[2] += _connections(limit, n) * dt
            if n + waiting > areas[3]:
                areas[3] = n + waiting
            sim[PS_VIRTUAL] += dt * speed
        now = t
        if n > 0 and t_done <= t:  # a completion (on a tie, before anything else)
            rec = _pop(sim)
            if sim[rec] > sim[PS_VIRTUAL]:
                sim[PS_VIRTUAL] = sim[rec]  # it did all its work: no rounding left over
            taken = sim[rec + 1]
            hold = now - taken
            level = sim[rec + 3]
            j = pos[0]
            done[j, 0] = taken - sim[rec + 2]
            done[j, 1] = hold
            done[j, 2] = level
            pos[0] = j + 1
            sim[PS_COMPLETED] += 1.0
            if limit[PL_KIND] == LIMIT_QUEUEPOOL:
                limit[PL_QP_IDLE] += 1.0
            else:
                pool_limit_sample(limit, max(np.int64(1), np.int64(hold * 1e9)), np.int64(level), False)
            _admit(sim, limit, now, acquired, pos)
            if limit[PL_KIND] == LIMIT_QUEUEPOOL:
                if limit[PL_QP_RETIRE] > 0.0:  # AdaptivePool: one back beyond the size is closed
                    surplus = min(limit[PL_QP_IDLE], limit[PL_QP_OPEN] - limit[PL_QP_POOL_SIZE])
                    if surplus > 0.0:
                        limit[PL_QP_OPEN] -= surplus
                        limit[PL_QP_IDLE] -= surplus
                elif limit[PL_QP_IDLE] > limit[PL_QP_POOL_SIZE]:
                    limit[PL_QP_OPEN] -= limit[PL_QP_IDLE] - limit[PL_QP_POOL_SIZE]  # the queue is full: closed
                    limit[PL_QP_IDLE] = limit[PL_QP_POOL_SIZE]
        elif waiting > 0 and t_out <= t:
            sim[PS_QUEUE_HEAD] = (np.int64(sim[PS_QUEUE_HEAD]) + 1) % qcap
            sim[PS_QUEUE_LEN] -= 1.0
            sim[PS_TIMED_OUT] += 1.0
        elif t_arrival <= t:
            rid = sim[PS_ARRIVED]
            sim[PS_ARRIVED] = rid + 1.0
            work = _work(sim)
            sim[PS_NEXT_ARRIVAL] = now + _exponential(sim, rates[k])
            if waiting == 0 and n < min(np.int64(limit[PL_LIMIT]), cap) and _may_take(limit, now, now):
                _take(sim, limit, now, now, rid, work, acquired, pos)
            elif waiting < qcap:
                w = ring + ((np.int64(sim[PS_QUEUE_HEAD]) + waiting) % qcap) * PS_WAITER
                sim[w] = now
                sim[w + 1] = rid
                sim[w + 2] = work
                sim[PS_QUEUE_LEN] = waiting + 1
            else:
                sim[PS_REJECTED] += 1.0
        elif t_open <= t:  # the oldest waiter's new connection is open
            _admit(sim, limit, now, acquired, pos)
        elif t == boundary:  # a new second: its rate (memoryless, so drawing afresh is exact)
            sim[PS_NEXT_ARRIVAL] = now + _exponential(sim, rates[min(second + 1, last)])
    sim[PS_NOW] = now
    return 0
