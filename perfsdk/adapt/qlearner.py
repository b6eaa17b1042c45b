"""QLearner: tabular Q-learning small enough to live inside a cache, and its Discretizer."""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import stat
import struct
from bisect import bisect_right
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from perfsdk._native import QCore, kernels as K
from perfsdk._runtime import check_int, check_number, write_atomically

__all__ = ["Discretizer", "QLearner"]

FILE_MAGIC = b"PERFSDKQ"
FILE_VERSION = 1
#: A saved learner's parameters take some 200 bytes; a longer header is not one of ours.
MAX_HEADER_BYTES = 4096
MAX_CELLS = 10_000_000  # n_states * n_actions: a table of at most 160 MB (values and visits)
#: ``run_episodes``' longest episode: the compiled loop counts in 64 bits (2**63 wrapped to no step at all).
MAX_STEPS = 2**63 - 1
#: The most a visit or step count reaches: float64 counts whole numbers exactly up to 2**53, and
#: learning's ``+ 1`` rounds back to it there. A file holding more (inf, 1e308) is not a learner's,
#: and a merge's sum is capped here (peers' 1e308 + 1e308 made inf, inf / inf NaN Q-values).
MAX_VISITS = 2**53


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
        Exploration: start rate, floor, multiplicative decay per ``act``. The floor never
        lifts a start rate below it (``epsilon=0`` never explores).
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
        n_states = check_int("n_states", n_states, minimum=1)  # Python ints: numpy's overflow
        n_actions = check_int("n_actions", n_actions, minimum=1)
        if n_states * n_actions > MAX_CELLS:
            raise ValueError(f"n_states * n_actions must be at most {MAX_CELLS:,}, got {n_states * n_actions}")
        _check_unit("alpha", alpha, low_open=True)
        _check_unit("gamma", gamma)
        _check_unit("epsilon", epsilon)
        _check_unit("epsilon_min", epsilon_min)
        _check_unit("epsilon_decay", epsilon_decay, low_open=True)
        check_int("seed", seed, minimum=0)
        self.n_states, self.n_actions = n_states, n_actions
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
        """``learn`` over arrays of transitions, in compiled code, in order: a step ``learn``
        would refuse (its Q-value would overflow) stops the batch there, with a ValueError
        that says which (the steps before it are learned, as a loop of ``learn`` would)."""
        s = _array("states", states, np.int64)
        a = _array("actions", actions, np.int64)
        r = _array("rewards", rewards, np.float64)
        s2 = _array("next_states", next_states, np.int64)
        d = np.zeros(len(s), dtype=np.bool_) if dones is None else _array("dones", dones, np.bool_)
        if not (len(s) == len(a) == len(r) == len(s2) == len(d)):
            raise ValueError("states, actions, rewards, next_states and dones must have one length")
        for name, values, high in (("state", s, self.n_states), ("action", a, self.n_actions),
                                   ("next_state", s2, self.n_states)):
            if len(values) and (np.min(values) < 0 or np.max(values) >= high):
                raise ValueError(f"every {name} must be in 0..{high - 1}")
        if not np.isfinite(r).all():
            raise ValueError("rewards must be finite")
        refused = K.ql_learn_many(self.state, s, a, r, s2, d)
        if refused >= 0:
            raise ValueError(f"rewards[{refused}] = {float(r[refused])!r} would take Q({s[refused]}, {a[refused]}) "
                             "beyond the finite numbers: the transitions before it were learned, it and those "
                             "after it were not")

    def run_episodes(self, transitions: np.ndarray, rewards: np.ndarray, terminal: np.ndarray,
                     start: int = 0, episodes: int = 100, max_steps: int = 1000) -> np.ndarray:
        """Train on a known tabular MDP in compiled code; returns each episode's total reward.

        ``transitions[s, a]`` is the next state, ``rewards[s, a]`` the reward,
        ``terminal[s]`` marks states that end an episode.
        """
        shape = (self.n_states, self.n_actions)
        t = _array("transitions", transitions, np.int64, shape)
        r = _array("rewards", rewards, np.float64, shape)
        term = _array("terminal", terminal, np.bool_, (self.n_states,))
        start = check_int("start", start, minimum=0, maximum=self.n_states - 1)
        episodes = check_int("episodes", episodes, minimum=0, maximum=100_000_000)  # each one's total is kept
        max_steps = check_int("max_steps", max_steps, minimum=0, maximum=MAX_STEPS)
        if np.min(t) < 0 or np.max(t) >= self.n_states:
            raise ValueError("transitions must name states in range")
        if not np.isfinite(r).all():
            raise ValueError("rewards must be finite")
        totals, refused = K.ql_run_episodes(self.state, t, r, term, start, episodes, max_steps)
        if refused >= 0:
            raise ValueError(f"a step of episode {refused} would take a Q-value beyond the finite numbers "
                             "(rewards too large for this gamma): training stopped there")
        return totals

    # -- sharing -------------------------------------------------------------------
    def merge(self, others: Iterable["QLearner"]) -> "QLearner":
        """A learner whose Q-values are the visit-weighted average of these learners'.

        A fleet can pool what each instance learned without sharing raw data:
        each (state, action) takes the average of the instances' estimates,
        weighted by how often each instance learned it; visits add up. A pair no learner
        learned takes the plain average of the learners that learned in its state (their
        starting values there), not of all: a learner never in the state holds zeros there,
        which would make a move nobody tried look best where rewards are costs. Only learners with
        the same ``gamma`` merge: Q-values scale like ``reward / (1 - gamma)``, so another
        gamma's are in other units (``alpha`` and exploration may differ: they change how a
        learner learns, not what its values mean). A learner holding what ``load`` refuses (a
        Q-value not finite, a count beyond ``MAX_VISITS``) raises ValueError; summed visits stop
        at ``MAX_VISITS``.
        """
        if isinstance(others, QLearner) or not isinstance(others, Iterable):
            raise TypeError(f"others must be an iterable of QLearners, got {others!r}")
        learners = [self, *others]
        for i, other in enumerate(learners):
            if not isinstance(other, QLearner):
                raise TypeError(f"merge needs QLearners, got {other!r}")
            if (other.n_states, other.n_actions) != (self.n_states, self.n_actions):
                raise ValueError("merge needs QLearners with the same n_states and n_actions")
            if other.gamma != self.gamma:
                raise ValueError(f"merge needs QLearners with the same gamma, got {other.gamma} and {self.gamma}")
            problem = _impossible(other.state, other)  # a table written in place: inf visits made NaN weights
            if problem:
                raise ValueError(f"merge refused: learner {i} (0 is self) holds {problem}")
        visits = np.stack([lr.visits for lr in learners])
        qs = np.stack([lr.q for lr in learners])
        total = visits.sum(axis=0)
        # Each learner's weight in each cell: its visits; a cell none visited, 1 for the learners
        # that were in its state; a state none was in, 1 for all. Weights, not a sum of visits * Q
        # (which overflows for Q near the float limit); a weighted mean lies within its values:
        # the clip only undoes rounding.
        in_state = np.broadcast_to(visits.any(axis=2, keepdims=True), visits.shape)
        counted = np.where(total > 0, visits, np.where(in_state.any(axis=0), in_state, 1.0))
        weights = counted / counted.sum(axis=0)
        merged_q = np.clip((weights * qs).sum(axis=0), qs.min(axis=0), qs.max(axis=0))
        merged = QLearner(self.n_states, self.n_actions, **self._params_no_size())
        merged.q[:] = merged_q
        merged.visits[:] = np.minimum(total, MAX_VISITS)  # what one learner could hold (and load)
        return merged  # (finite: finite inputs, weights summing to 1, each value clipped between theirs)

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

    def max_file_bytes(self) -> int:
        """The most bytes a saved learner of this size takes (``load``'s ``max_bytes`` for a peer's)."""
        return _file_bytes(self.state.nbytes)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, max_bytes: int | None = None) -> "QLearner":
        """Read a file written by ``save``; a corrupt or foreign file, or a table no learner
        could hold (a Q-value not finite, a visit count not a whole number in 0..``MAX_VISITS``:
        a peer's inf visits poisoned a fleet's merge), raises ValueError naming it. So does
        anything but a regular file (a FIFO would block the read) and a file over
        ``max_bytes`` (default: what the largest learner takes), both before reading a byte."""
        largest = _file_bytes(8 * (K.QL_HEADER + 2 * MAX_CELLS))
        data = _read_regular(path, largest if max_bytes is None else check_int("max_bytes", max_bytes, minimum=0))
        if len(data) < len(FILE_MAGIC) + 8 + 32 or not data.startswith(FILE_MAGIC):
            raise ValueError(f"{path}: not a perfsdk Q-learner file")
        body, checksum = data[:-32], data[-32:]
        if hashlib.sha256(body).digest() != checksum:
            raise ValueError(f"{path}: checksum mismatch (the file is corrupt or truncated)")
        version, header_len = struct.unpack_from("<II", body, len(FILE_MAGIC))
        if version != FILE_VERSION:
            raise ValueError(f"{path}: file version {version}, this perfsdk reads version {FILE_VERSION}")
        if header_len > MAX_HEADER_BYTES:
            raise ValueError(f"{path}: a {header_len}-byte header, longer than a Q-learner file's")
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
        problem = _impossible(table, learner)
        if problem:
            raise ValueError(f"{path}: {problem}, which no learner holds")
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


#: numpy's kinds of items each array dtype takes without losing anything, and their name
_KINDS = {"i": ("iu", "integers"), "f": ("iuf", "real numbers"), "b": ("biu", "booleans")}


def _array(name: str, values: Any, dtype: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``values`` as a contiguous array of ``dtype``: refused, naming ``name``, where numpy would
    convert them silently (float states truncated, reward strings parsed) or the shape
    differs from ``shape`` (default: any one-dimensional)."""
    array = np.asarray(values)
    kinds, what = _KINDS[np.dtype(dtype).kind]
    if array.size and array.dtype.kind not in kinds:
        raise TypeError(f"{name} must hold {what}, got an array of {array.dtype}")
    if (array.ndim != 1) if shape is None else (array.shape != shape):
        raise ValueError(f"{name} must have shape {shape or '(n,)'}, got {array.shape}")
    return np.ascontiguousarray(array, dtype=dtype)


def _file_bytes(state_bytes: int) -> int:
    """The most bytes ``save`` writes for a state of ``state_bytes``: magic, version and header
    length, the longest header, the state, the checksum."""
    return len(FILE_MAGIC) + 8 + MAX_HEADER_BYTES + state_bytes + 32


def _read_regular(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The bytes of the regular file at ``path``; anything else, or over ``max_bytes``, is refused
    before reading (a FIFO opens without waiting for a writer: O_NONBLOCK)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path}: not a regular file")
        if info.st_size > max_bytes:
            raise ValueError(f"{path}: {info.st_size} bytes, more than the {max_bytes} its table would take")
        with open(fd, "rb", closefd=False) as file:
            return file.read(max_bytes + 1)  # a file growing meanwhile: bounded
    finally:
        os.close(fd)


def _impossible(table: np.ndarray, learner: QLearner) -> str | None:
    """What in a loaded state array no learner could hold (None: nothing)."""
    size = learner.n_states * learner.n_actions
    counts = np.append(table[K.QL_HEADER + size :], table[K.QL_STEPS])
    words = table[[K.QL_RNG_HI, K.QL_RNG_LO]]
    low = min(learner.epsilon_min, learner.epsilon_start)
    high = max(learner.epsilon_min, learner.epsilon_start)
    q = table[K.QL_HEADER : K.QL_HEADER + size]
    if not np.isfinite(q).all():
        return f"a Q-value that is not finite ({float(q[~np.isfinite(q)][0])!r})"
    bad = counts[~((counts >= 0) & (counts <= MAX_VISITS) & (counts == np.floor(counts)))]  # NaN: all False
    if bad.size:
        return f"a visit or step count of {float(bad[0])!r}, not a whole number in 0..2**53"
    if not low <= table[K.QL_EPSILON] <= high:
        return f"epsilon {table[K.QL_EPSILON]} outside [{low}, {high}]"
    if not ((words >= 0) & (words < 2**32) & (words == np.floor(words))).all() or not words.any():
        return f"a generator state {words.tolist()} that is not two 32-bit words, not both zero"
    return None


class Discretizer:
    """Turns continuous signals into one state index (mixed radix over features).

    Each feature has increasing bucket edges; ``n`` edges make ``n + 1``
    buckets. NaN goes to the lowest bucket.

    >>> d = Discretizer({"hit_ratio": [0.25, 0.5, 0.75], "ghost_ratio": [0.05, 0.2]})
    >>> d.n_states, d({"hit_ratio": 0.6, "ghost_ratio": 0.1}), d.describe(7)
    (12, 7, {'hit_ratio': '[0.5, 0.75)', 'ghost_ratio': '[0.05, 0.2)'})
    """

    def __init__(self, features: Mapping[str, Sequence[float]]) -> None:
        if not isinstance(features, Mapping):
            raise TypeError(f"features must map each feature's name to its edges, got {features!r}")
        if not features:
            raise ValueError("features must name at least one feature")
        self.features: dict[str, list[float]] = {}
        for name, edges in features.items():
            if not isinstance(name, str):
                raise TypeError(f"feature names must be strings, got {name!r}")
            self.features[name] = _edges(name, edges)
        self.n_states = math.prod(len(e) + 1 for e in self.features.values())

    def __call__(self, values: Mapping[str, float]) -> int:
        """The state of these feature values (features it does not know are ignored)."""
        if not isinstance(values, Mapping):
            raise TypeError(f"values must map each feature's name to its value, got {values!r}")
        index = 0
        for name, edges in self.features.items():
            if name not in values:
                raise ValueError(f"missing feature {name!r}")
            v = values[name]
            if not isinstance(v, numbers.Real):
                raise TypeError(f"feature {name!r} must be a number, got {v!r}")
            bucket = 0 if v != v else bisect_right(edges, v)
            index = index * (len(edges) + 1) + bucket
        return index

    def describe(self, state: int) -> dict[str, str]:
        """The bucket of each feature that ``state`` stands for."""
        check_int("state", state, minimum=0, maximum=self.n_states - 1)
        out = {}
        for name, edges in reversed(list(self.features.items())):
            state, bucket = divmod(state, len(edges) + 1)
            low = "-inf" if bucket == 0 else f"{edges[bucket - 1]:g}"
            high = "inf" if bucket == len(edges) else f"{edges[bucket]:g}"
            out[name] = f"[{low}, {high})"
        return dict(reversed(list(out.items())))


def _edges(name: str, edges: Any) -> list[float]:
    """Feature ``name``'s bucket edges, checked: one or more finite numbers, strictly increasing."""
    if isinstance(edges, (str, bytes, Mapping)) or not isinstance(edges, Iterable):
        raise TypeError(f"edges of {name!r} must be a sequence of numbers, got {edges!r}")
    given = list(edges)
    if not all(isinstance(e, numbers.Real) and not isinstance(e, bool) for e in given):
        raise TypeError(f"edges of {name!r} must be numbers, got {given!r}")
    values = [float(e) for e in given]
    if not values:
        raise ValueError(f"edges of {name!r} must hold one edge at least: without one the feature never "
                         "changes the state")
    if any(b <= a for a, b in zip(values, values[1:])) or not all(map(math.isfinite, values)):
        raise ValueError(f"edges of {name!r} must be finite and strictly increasing, got {values}")
    return values
