"""Numba kernels of the tabular Q-learner (batch learning, simulated episodes); layout ``layout.QL_*``."""

from __future__ import annotations

import math

import numpy as np

from perfsdk._native.config import kernel
from perfsdk._native.layout import (  # the state's slots: one definition, shared with Cython
    QL_STATES, QL_ACTIONS, QL_ALPHA, QL_GAMMA, QL_EPSILON,
    QL_EPSILON_MIN, QL_EPSILON_DECAY, QL_RNG_HI, QL_RNG_LO, QL_STEPS,
    QL_HEADER,
)

__all__ = ["ql_act", "ql_greedy", "ql_learn", "ql_learn_many", "ql_random", "ql_run_episodes"]

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
    floor = state[QL_EPSILON_MIN] if state[QL_EPSILON_MIN] < eps else eps  # never lifts epsilon
    eps *= state[QL_EPSILON_DECAY]
    state[QL_EPSILON] = eps if eps > floor else floor
    return a


@kernel
def ql_learn(state, s, a, r, s2, done):
    """Q(s,a) += alpha * (r + gamma * max Q(s2, .) - Q(s,a)); counts the visit. False, and the
    state untouched, where the result would not be finite (as the Cython ``learn`` refuses it)."""
    n_states = np.int64(state[QL_STATES])
    n_actions = np.int64(state[QL_ACTIONS])
    i = QL_HEADER + s * n_actions + a
    target = r
    if not done:
        target += state[QL_GAMMA] * state[QL_HEADER + s2 * n_actions + ql_greedy(state, s2)]
    learned = state[i] + state[QL_ALPHA] * (target - state[i])
    if not math.isfinite(learned):
        return False
    state[i] = learned
    state[i + n_states * n_actions] += 1.0
    state[QL_STEPS] += 1.0
    return True


@kernel
def ql_learn_many(state, s, a, r, s2, done):
    """``ql_learn`` over arrays of transitions, in order, up to the first it refuses: returns
    that one's index (-1: none was refused)."""
    for k in range(s.shape[0]):
        if not ql_learn(state, s[k], a[k], r[k], s2[k], done[k]):
            return k
    return -1


@kernel
def ql_run_episodes(state, transitions, rewards, terminal, start, episodes, max_steps):
    """Q-learning on a known tabular MDP (for simulations and tests).

    ``transitions[s, a]`` is the next state, ``rewards[s, a]`` the reward,
    ``terminal[s]`` ends an episode. Returns the total reward per episode, and the episode in
    which a step was refused (``ql_learn``), where training stopped (-1: none was).
    """
    totals = np.zeros(episodes)
    for e in range(episodes):
        s = start
        for _ in range(max_steps):
            a = ql_act(state, s)
            s2 = transitions[s, a]
            r = rewards[s, a]
            done = terminal[s2]
            if not ql_learn(state, s, a, r, s2, done):
                return totals, e
            totals[e] += r
            s = s2
            if done:
                break
    return totals, -1
