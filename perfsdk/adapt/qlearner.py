"""QLearner: tabular Q-learning small enough to live inside a cache, and its Discretizer."""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from bisect import bisect_right
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from perfsdk._native import QCore, kernels as K
from perfsdk._runtime import check_int, check_number, write_atomically

__all__ = ["Discretizer", "QLearner"]

FILE_MAGIC = b"PERFSDKQ"
FILE_VERSION = 1


class QLearner(QCore):
    """Tabular Q-learning with epsilon-greedy exploration.

    ``Q(s,a) <- Q(s,a) + alpha [r + gamma max_a' Q(s',a') - Q(s,a)]``. The
    whole learner -- parameters, exploration rate, random generator, Q table,
    visit counts -- is one float64 array, updated per step in Cython
    (``act``, ``learn``) and over batches in Numba (``learn_many``,
    ``run_episodes``), with identical results.

    Parameters
    ----------
    n_states, n_actions
        Table size.
    alpha
        Learning rate in (0, 1].
    gamma
        Discount in [0, 1].
    epsilon, epsilon_min, epsilon_decay
        Exploration: start rate, floor, multiplicative decay per ``act``.
    seed
        Seed of the generator behind exploration (runs are reproducible).

    Examples
    --------
    >>> q = QLearner(n_states=2, n_actions=2, alpha=0.5, epsilon=0.0, seed=1)
    >>> q.learn(0, 1, reward=1.0, next_state=1, done=True)
    >>> q.act(0), q.explain(0)["q_values"]
    (1, [0.0, 0.5])
    """

    def __init__(
        self, n_states: int, n_actions: int, *, alpha: float = 0.1, gamma: float = 0.9,
        epsilon: float = 0.1, epsilon_min: float = 0.01, epsilon_decay: float = 1.0, seed: int = 0,
    ) -> None:
        check_int("n_states", n_states, minimum=1)
        check_int("n_actions", n_actions, minimum=1)
        if n_states * n_actions > 10_000_000:
            raise ValueError(f"n_states * n_actions must be at most 10,000,000, got {n_states * n_actions}")
        _check_unit("alpha", alpha, low_open=True)
        _check_unit("gamma", gamma)
        _check_unit("epsilon", epsilon)
        _check_unit("epsilon_min", epsilon_min)
        _check_unit("epsilon_decay", epsilon_decay, low_open=True)
        check_int("seed", seed, minimum=0)
        self.n_states, self.n_actions = int(n_states), int(n_actions)
        self.alpha, self.gamma = float(alpha), float(gamma)
        self.epsilon_start, self.epsilon_min, self.epsilon_decay = float(epsilon), float(epsilon_min), float(epsilon_decay)
        self.seed = int(seed)
        self._bind(self._fresh_state())

    def _fresh_state(self) -> np.ndarray:
        size = self.n_states * self.n_actions
        state = np.zeros(K.QL_HEADER + 2 * size)
        state[K.QL_STATES], state[K.QL_ACTIONS] = self.n_states, self.n_actions
        state[K.QL_ALPHA], state[K.QL_GAMMA] = self.alpha, self.gamma
        state[K.QL_EPSILON], state[K.QL_EPSILON_MIN] = self.epsilon_start, self.epsilon_min
        state[K.QL_EPSILON_DECAY] = self.epsilon_decay
        # splitmix64 of the seed: a nonzero, well-mixed xorshift state
        z = (self.seed + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        z = (z ^ (z >> 31)) or 1
        state[K.QL_RNG_HI], state[K.QL_RNG_LO] = z >> 32, z & 0xFFFFFFFF
        return state

    # -- views -----------------------------------------------------------------
    @property
    def q(self) -> np.ndarray:
        """The Q table, ``(n_states, n_actions)`` (a view: read it, don't write it)."""
        size = self.n_states * self.n_actions
        return self.state[K.QL_HEADER : K.QL_HEADER + size].reshape(self.n_states, self.n_actions)

    @property
    def visits(self) -> np.ndarray:
        """How often each (state, action) was learned, ``(n_states, n_actions)``."""
        size = self.n_states * self.n_actions
        return self.state[K.QL_HEADER + size :].reshape(self.n_states, self.n_actions)

    @property
    def epsilon(self) -> float:
        return float(self.state[K.QL_EPSILON])

    @property
    def steps(self) -> int:
        return int(self.state[K.QL_STEPS])

    def explain(self, state: int) -> dict[str, Any]:
        """Why the learner would act as it does in ``state``: Q-values and visit counts."""
        greedy = self.greedy(state)
        return {
            "state": int(state),
            "q_values": self.q[state].tolist(),
            "visits": [int(v) for v in self.visits[state]],
            "greedy_action": greedy,
            "epsilon": self.epsilon,
        }

    # -- batches -----------------------------------------------------------------
    def learn_many(self, states: Sequence[int], actions: Sequence[int], rewards: Sequence[float],
                   next_states: Sequence[int], dones: Sequence[bool] | None = None) -> None:
        """``learn`` over arrays of transitions, in compiled code."""
        s = np.asarray(states, dtype=np.int64)
        a = np.asarray(actions, dtype=np.int64)
        r = np.asarray(rewards, dtype=np.float64)
        s2 = np.asarray(next_states, dtype=np.int64)
        d = np.zeros(len(s), dtype=np.bool_) if dones is None else np.asarray(dones, dtype=np.bool_)
        if not (len(s) == len(a) == len(r) == len(s2) == len(d)):
            raise ValueError("states, actions, rewards, next_states and dones must have one length")
        for name, values, high in (("state", s, self.n_states), ("action", a, self.n_actions),
                                   ("next_state", s2, self.n_states)):
            if len(values) and (np.min(values) < 0 or np.max(values) >= high):
                raise ValueError(f"every {name} must be in 0..{high - 1}")
        if not np.isfinite(r).all():
            raise ValueError("rewards must be finite")
        K.ql_learn_many(self.state, s, a, r, s2, d)

    def run_episodes(self, transitions: np.ndarray, rewards: np.ndarray, terminal: np.ndarray,
                     start: int = 0, episodes: int = 100, max_steps: int = 1000) -> np.ndarray:
        """Train on a known tabular MDP in compiled code; returns each episode's total reward.

        ``transitions[s, a]`` is the next state, ``rewards[s, a]`` the reward,
        ``terminal[s]`` marks states that end an episode.
        """
        t = np.ascontiguousarray(transitions, dtype=np.int64)
        r = np.ascontiguousarray(rewards, dtype=np.float64)
        term = np.ascontiguousarray(terminal, dtype=np.bool_)
        shape = (self.n_states, self.n_actions)
        if not 0 <= start < self.n_states:
            raise ValueError(f"start must be a state in 0..{self.n_states - 1}, got {start!r}")
        if episodes < 0 or max_steps < 0:
            raise ValueError(f"episodes and max_steps must be >= 0, got {episodes!r} and {max_steps!r}")
        if t.shape != shape or r.shape != shape or term.shape != (self.n_states,):
            raise ValueError(f"transitions and rewards must be {shape} and terminal ({self.n_states},)")
        if np.min(t) < 0 or np.max(t) >= self.n_states:
            raise ValueError("transitions must name states in range")
        return K.ql_run_episodes(self.state, t, r, term, int(start), int(episodes), int(max_steps))

    # -- sharing -------------------------------------------------------------------
    def merge(self, others: Iterable["QLearner"]) -> "QLearner":
        """A learner whose Q-values are the visit-weighted average of these learners'.

        A fleet can pool what each instance learned without sharing raw data:
        each (state, action) takes the average of the instances' estimates,
        weighted by how often each instance learned it; visits add up.
        """
        learners = [self, *others]
        for other in learners[1:]:
            if not isinstance(other, QLearner) or (other.n_states, other.n_actions) != (self.n_states, self.n_actions):
                raise ValueError("merge needs QLearners with the same n_states and n_actions")
        visits = np.stack([lr.visits for lr in learners])
        qs = np.stack([lr.q for lr in learners])
        total = visits.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            merged_q = np.where(total > 0, (visits * qs).sum(axis=0) / total, qs.mean(axis=0))
        merged = QLearner(self.n_states, self.n_actions, **self._params_no_size())
        merged.q[:] = merged_q
        merged.visits[:] = total
        return merged

    def copy(self) -> "QLearner":
        """An independent learner with the same parameters and table."""
        return _rebuild(self.n_states, self.n_actions, self._params_no_size(), self.state.copy())

    def _params_no_size(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "gamma": self.gamma, "epsilon": self.epsilon_start,
                "epsilon_min": self.epsilon_min, "epsilon_decay": self.epsilon_decay, "seed": self.seed}

    # -- files -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a versioned file with a SHA-256 checksum (atomically: temp file, rename)."""
        header = json.dumps({"n_states": self.n_states, "n_actions": self.n_actions,
                             **self._params_no_size()}).encode()
        body = FILE_MAGIC + struct.pack("<II", FILE_VERSION, len(header)) + header + self.state.tobytes()
        write_atomically(path, body + hashlib.sha256(body).digest())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "QLearner":
        """Read a file written by ``save``; a corrupt or foreign file raises ValueError."""
        data = Path(path).read_bytes()
        if len(data) < len(FILE_MAGIC) + 8 + 32 or not data.startswith(FILE_MAGIC):
            raise ValueError(f"{path}: not a perfsdk Q-learner file")
        body, checksum = data[:-32], data[-32:]
        if hashlib.sha256(body).digest() != checksum:
            raise ValueError(f"{path}: checksum mismatch (the file is corrupt or truncated)")
        version, header_len = struct.unpack_from("<II", body, len(FILE_MAGIC))
        if version != FILE_VERSION:
            raise ValueError(f"{path}: file version {version}, this perfsdk reads version {FILE_VERSION}")
        start = len(FILE_MAGIC) + 8
        try:
            params = json.loads(body[start : start + header_len])
            learner = cls(**params)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: unreadable parameters ({exc})") from None
        payload = body[start + header_len :]
        if len(payload) != learner.state.nbytes:
            raise ValueError(f"{path}: the table has {len(payload)} bytes, its header says {learner.state.nbytes}")
        table = np.frombuffer(payload, dtype=np.float64)
        fixed = [K.QL_STATES, K.QL_ACTIONS, K.QL_ALPHA, K.QL_GAMMA, K.QL_EPSILON_MIN, K.QL_EPSILON_DECAY]
        if not np.array_equal(table[fixed], learner.state[fixed]):
            raise ValueError(f"{path}: the table's parameters do not match its header")
        learner.state[:] = table  # only now, with everything checked
        return learner

    def __reduce__(self):
        return (_rebuild, (self.n_states, self.n_actions, self._params_no_size(), self.state.copy()))

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self._params_no_size().items())
        return f"QLearner(n_states={self.n_states}, n_actions={self.n_actions}, {params})"


def _rebuild(n_states: int, n_actions: int, params: dict[str, Any], state: np.ndarray) -> QLearner:
    learner = QLearner(n_states, n_actions, **params)
    learner.state[:] = state
    return learner


def _check_unit(name: str, value: Any, low_open: bool = False) -> None:
    check_number(name, value, low=0.0, high=1.0, low_open=low_open)


class Discretizer:
    """Turns continuous signals into one state index (mixed radix over features).

    Each feature has increasing bucket edges; ``n`` edges make ``n + 1``
    buckets. NaN goes to the lowest bucket.

    >>> d = Discretizer({"hit_ratio": [0.25, 0.5, 0.75], "ghost_ratio": [0.05, 0.2]})
    >>> d.n_states, d({"hit_ratio": 0.6, "ghost_ratio": 0.1}), d.describe(7)
    (12, 7, {'hit_ratio': '[0.5, 0.75)', 'ghost_ratio': '[0.05, 0.2)'})
    """

    def __init__(self, features: dict[str, Sequence[float]]) -> None:
        if not features:
            raise ValueError("features must name at least one feature")
        self.features = {}
        for name, edges in features.items():
            edges = [float(e) for e in edges]
            if any(b <= a for a, b in zip(edges, edges[1:])) or not all(map(math.isfinite, edges)):
                raise ValueError(f"edges of {name!r} must be finite and strictly increasing, got {edges}")
            self.features[name] = edges
        self.n_states = math.prod(len(e) + 1 for e in self.features.values())

    def __call__(self, values: dict[str, float]) -> int:
        index = 0
        for name, edges in self.features.items():
            if name not in values:
                raise ValueError(f"missing feature {name!r}")
            v = values[name]
            bucket = 0 if v != v else bisect_right(edges, v)
            index = index * (len(edges) + 1) + bucket
        return index

    def describe(self, state: int) -> dict[str, str]:
        """The bucket of each feature that ``state`` stands for."""
        out = {}
        for name, edges in reversed(list(self.features.items())):
            state, bucket = divmod(state, len(edges) + 1)
            low = "-inf" if bucket == 0 else f"{edges[bucket - 1]:g}"
            high = "inf" if bucket == len(edges) else f"{edges[bucket]:g}"
            out[name] = f"[{low}, {high})"
        return dict(reversed(list(out.items())))
