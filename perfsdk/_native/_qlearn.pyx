# cython: language_level=3
"""Per-event engine of the tabular Q-learner.

``QCore`` acts and learns on the learner's float64 state array (header, then
the Q table, then the visit counts) one step at a time. Its arithmetic and its
random numbers (xorshift64*, state kept in the array) mirror
``kernels.ql_act`` / ``kernels.ql_learn`` exactly, so per-event and batch
training can be mixed and give the same table.
"""

from libc.stdint cimport uint64_t

from perfsdk._native._state cimport StateOwner

include "_layout.pxi"  # the state's slots, generated from layout.py (one definition)


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

    cdef inline int _check(self, Py_ssize_t s, Py_ssize_t a) except -1:
        if self._s == NULL:
            raise RuntimeError("learner is not initialised (use its constructor)")
        if s < 0 or s >= self._n_states:
            raise ValueError(f"state must be in 0..{self._n_states - 1}, got {s}")
        if a < 0 or a >= self._n_actions:
            raise ValueError(f"action must be in 0..{self._n_actions - 1}, got {a}")
        return 0

    def act(self, Py_ssize_t state):
        """Epsilon-greedy action for ``state``; epsilon then decays toward its floor."""
        cdef double* s = self._s
        cdef double eps, floor
        cdef Py_ssize_t a
        self._check(state, 0)
        eps = s[QL_EPSILON]
        if self._random() < eps:
            a = <Py_ssize_t> (self._random() * s[QL_ACTIONS])
        else:
            a = self._greedy(state)
        # the floor never lifts an epsilon already below it (epsilon=0 never explores)
        floor = s[QL_EPSILON_MIN] if s[QL_EPSILON_MIN] < eps else eps
        eps *= s[QL_EPSILON_DECAY]
        s[QL_EPSILON] = eps if eps > floor else floor
        return a

    def greedy(self, Py_ssize_t state):
        """The best known action for ``state`` (no exploration, no decay)."""
        self._check(state, 0)
        return self._greedy(state)

    def learn(self, Py_ssize_t state, Py_ssize_t action, double reward, Py_ssize_t next_state,
              bint done=False):
        """Q(s,a) += alpha * (reward + gamma * max Q(next_state, .) - Q(s,a)); a step whose
        result would not be finite is refused (ValueError) and leaves the table as it was."""
        cdef double* s = self._s
        cdef Py_ssize_t i
        cdef double target, learned
        self._check(state, action)
        self._check(next_state, 0)
        if reward != reward or reward - reward != 0.0:
            raise ValueError(f"reward must be a finite number, got {reward}")
        i = QL_HEADER + state * self._n_actions + action
        target = reward
        if not done:
            target += s[QL_GAMMA] * s[QL_HEADER + next_state * self._n_actions + self._greedy(next_state)]
        learned = s[i] + s[QL_ALPHA] * (target - s[i])
        if learned - learned != 0.0:  # inf or NaN: one such value poisons every state leading here
            raise ValueError(f"reward {reward} would take Q({state}, {action}) beyond the finite numbers; "
                             "the step was refused")
        s[i] = learned
        s[i + self._n_states * self._n_actions] += 1.0
        s[QL_STEPS] += 1.0
