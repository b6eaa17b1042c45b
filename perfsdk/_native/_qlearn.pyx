# cython: language_level=3
"""Per-event engine of the tabular Q-learner.

``QCore`` acts and learns on the learner's float64 state array (header, then
the Q table, then the visit counts) one step at a time. Its arithmetic and its
random numbers (xorshift64*, state kept in the array) mirror
``kernels.ql_act`` / ``kernels.ql_learn`` exactly, so per-event and batch
training can be mixed and give the same table.
"""

from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_CheckExact
from cpython.long cimport PyLong_CheckExact
from cpython.exc cimport PyErr_Clear
from cpython.number cimport PyIndex_Check
from libc.stdint cimport uint64_t

from perfsdk._native._state cimport StateOwner

cdef extern from "Python.h":
    Py_ssize_t _long_as_ssize "PyLong_AsSsize_t" (object value) noexcept  # the caller checks
    # with a NULL exception, an integer beyond Py_ssize_t is clipped to its bounds
    Py_ssize_t _index_clipped "PyNumber_AsSsize_t" (object value, void* exc) except? -1

include "_layout.pxi"  # the state's slots, generated from layout.py (one definition)


cdef double _reward_slow(object reward) except? -1.0:
    """A reward that is not a float, as one, or an error naming it (a string is not parsed, a
    boolean is refused, as ``learn_many`` refuses them)."""
    if isinstance(reward, bool):
        raise TypeError(f"reward must be a number, got {reward!r}")
    try:
        return reward
    except TypeError:
        raise TypeError(f"reward must be a number, got {reward!r}") from None
    except OverflowError:  # an integer beyond the floats
        raise ValueError(f"reward must be a finite number, got {reward!r}") from None


cdef class QCore(StateOwner):
    """act/learn on a Q-learner's state array (header, Q table, visit counts)."""

    cdef Py_ssize_t _n_states, _n_actions

    def _bind(self, state):
        cdef double[::1] view = state
        if view.shape[0] < QL_HEADER:
            raise ValueError("state array is too short for a Q-learner")
        self._n_states = <Py_ssize_t> view[QL_STATES]
        self._n_actions = <Py_ssize_t> view[QL_ACTIONS]
        if view.shape[0] != QL_HEADER + 2 * self._n_states * self._n_actions:
            raise ValueError("state array size does not match its Q-learner layout")
        self._adopt(state, QL_HEADER, "a Q-learner")

    cdef inline double _random(self) noexcept:
        cdef double* s = self._s
        cdef uint64_t x = ((<uint64_t> s[QL_RNG_HI]) << 32) | (<uint64_t> s[QL_RNG_LO])
        x ^= x >> 12
        x ^= x << 25
        x ^= x >> 27
        s[QL_RNG_HI] = <double> (x >> 32)
        s[QL_RNG_LO] = <double> (x & 0xFFFFFFFFULL)
        return <double> ((x * 0x2545F4914F6CDD1DULL) >> 11) * (1.0 / 9007199254740992.0)

    cdef inline Py_ssize_t _greedy(self, Py_ssize_t s) noexcept:
        cdef double* q = self._s + QL_HEADER + s * self._n_actions
        cdef Py_ssize_t a, best = 0
        for a in range(1, self._n_actions):
            if q[a] > q[best]:
                best = a
        return best

    cdef inline Py_ssize_t _index(self, object value, str name, Py_ssize_t n) except -1:
        """``value`` as an index in 0..n-1, or an error naming ``name``; kept small to be inlined:
        the rest is ``_index_slow``'s."""
        cdef Py_ssize_t i
        if PyLong_CheckExact(value):
            i = _long_as_ssize(value)  # -1, with an error set, beyond Py_ssize_t: the slow path says
            if 0 <= i < n:
                return i
        return self._index_slow(value, name, n)

    cdef Py_ssize_t _index_slow(self, object value, str name, Py_ssize_t n) except -1:
        cdef Py_ssize_t i
        PyErr_Clear()  # the fast path's overflow, if any
        if self._s == NULL:
            raise RuntimeError("learner is not initialised (use its constructor)")
        if isinstance(value, bool) or not PyIndex_Check(value):  # (learn_many refuses booleans too)
            raise TypeError(f"{name} must be an integer, got {value!r}")
        i = _index_clipped(value, NULL)  # numpy's integers; clipped beyond Py_ssize_t
        if i < 0 or i >= n:
            raise ValueError(f"{name} must be in 0..{n - 1}, got {value}")
        return i

    def act(self, state):
        """Epsilon-greedy action for ``state``; epsilon then decays toward its floor."""
        cdef double* s
        cdef double eps, floor
        cdef Py_ssize_t a, st = self._index(state, "state", self._n_states)
        s = self._s
        eps = s[QL_EPSILON]
        if self._random() < eps:
            a = <Py_ssize_t> (self._random() * s[QL_ACTIONS])
        else:
            a = self._greedy(st)
        # the floor never lifts an epsilon already below it (epsilon=0 never explores)
        floor = s[QL_EPSILON_MIN] if s[QL_EPSILON_MIN] < eps else eps
        eps *= s[QL_EPSILON_DECAY]
        s[QL_EPSILON] = eps if eps > floor else floor
        return a

    def greedy(self, state):
        """The best known action for ``state`` (no exploration, no decay)."""
        return self._greedy(self._index(state, "state", self._n_states))

    def learn(self, state, action, reward, next_state, bint done=False):
        """Q(s,a) += alpha * (reward + gamma * max Q(next_state, .) - Q(s,a)); a step whose
        result would not be finite is refused (ValueError) and leaves the table as it was."""
        cdef double* s
        cdef Py_ssize_t i, st = self._index(state, "state", self._n_states)
        cdef Py_ssize_t ac = self._index(action, "action", self._n_actions)
        cdef Py_ssize_t s2 = self._index(next_state, "next_state", self._n_states)
        cdef double r, target, learned
        r = PyFloat_AS_DOUBLE(reward) if PyFloat_CheckExact(reward) else _reward_slow(reward)
        if r != r or r - r != 0.0:
            raise ValueError(f"reward must be a finite number, got {reward!r}")
        s = self._s
        i = QL_HEADER + st * self._n_actions + ac
        target = r
        if not done:
            target += s[QL_GAMMA] * s[QL_HEADER + s2 * self._n_actions + self._greedy(s2)]
        learned = s[i] + s[QL_ALPHA] * (target - s[i])
        if learned - learned != 0.0:  # inf or NaN: one such value poisons every state leading here
            raise ValueError(f"reward {r} would take Q({st}, {ac}) beyond the finite numbers; "
                             "the step was refused")
        s[i] = learned
        s[i + self._n_states * self._n_actions] += 1.0
        s[QL_STEPS] += 1.0
