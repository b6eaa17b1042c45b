"""AdaptiveCache: a dict-like LRU cache that learns its size and admission policy.

The compiled core (``perfsdk._native._cache.CacheCore``, W-TinyLFU with a
movable window in front of a segmented-LRU main area) does the per-access
work. Every ``interval`` operations a ``CacheController`` looks at what the
interval looked like -- hit ratio, how often recently evicted keys were asked
for again (ghost hits: what a larger cache would have hit), where the
capacity sits between its limits -- and a tabular Q-learner picks keep,
shrink or grow; the reward trades misses against memory. The policy -- the
recency window's share, from 1 % (frequency-filtered, W-TinyLFU) to 100 %
(plain LRU) -- moves by ARC's rule: requests for keys recently evicted from
the window argue for a larger window, those for keys evicted from main for
a smaller one. Limits and a cooldown bound what the controller
may do; in advisory mode it only recommends. Every decision is recorded with
its state, Q-values, reward, window move and any guardrail that changed it.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
import threading
from collections import deque, namedtuple
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, TypeVar

from perfsdk._native._cache import CacheCore, CachedFunction
from perfsdk._worker import BackgroundWorker
from perfsdk.instrument.decorator import ACTIVE
from perfsdk.adapt.qlearner import Discretizer, QLearner

_MISSING = object()
CacheInfo = namedtuple("CacheInfo", ["hits", "misses", "maxsize", "currsize"])  # functools' fields
log = logging.getLogger("perfsdk.cache")
#: on_decision callbacks run here, off the application's path (1,024 may wait; more are dropped, counted).
CALLBACKS = BackgroundWorker("perfsdk-cache-decisions", max_pending=1024)
F = TypeVar("F", bound=Callable[..., Any])

ACTIONS = ("keep", "shrink", "grow")  # keep first: ties go to keep
MIN_WINDOW = 0.01  # W-TinyLFU's window
MAX_WINDOW = 0.8  # the controller's other end: main keeps a fifth, so evidence for a smaller window
# still comes in (main's evictions); at 1.0 (plain LRU) it would stop and the window stay put
GHOST_BANDS = 16  # the core counts ghost hits by age in sixteenths of the capacity


@dataclass(frozen=True)
class Decision:
    """One controller decision, explained."""

    timestamp: datetime
    controller: str
    mode: str
    state: int
    features: dict[str, float]
    action: str
    q_values: tuple[float, ...]
    reward: float
    capacity_before: int
    capacity_after: int
    applied: bool
    guardrail: str | None
    window_before: float = 1.0
    window_after: float = 1.0
    window_reason: str | None = None

    def __str__(self) -> str:
        f = self.features
        text = (
            f"{self.controller}: {self.action} (capacity {self.capacity_before} -> {self.capacity_after}"
            f"{'' if self.applied or self.mode == 'auto' else ', not applied: ' + self.mode}) after an "
            f"interval with hit ratio {f['hit_ratio']:.3f}, ghost hits {f['ghost_ratio']:.3f} (growing would "
            f"have hit {f.get('grow_gain', 0.0):+.3f}, shrinking {-f.get('shrink_loss', 0.0):+.3f}); reward "
            f"{self.reward:.4f}; Q = {dict(zip(ACTIONS, (round(q, 4) for q in self.q_values)))}"
        )
        if self.guardrail:
            text += f"; limited by {self.guardrail}"
        if self.window_reason:
            text += f"; window {self.window_before:.1%} -> {self.window_after:.1%}: {self.window_reason}"
        return text

    def as_row(self, service: str) -> dict[str, Any]:
        """A row of the Arrow decisions table (the window's move: ``window_share`` and
        ``window_share_after`` among the state features, its reason in ``explanation``)."""
        features = dict(self.features)
        features["window_share_after"] = self.window_after
        return {
            "explanation": str(self),
            "timestamp": self.timestamp, "service.name": service, "controller": self.controller,
            "mode": self.mode, "state": self.state, "state_features": list(features.items()),
            "action": self.action, "q_values": list(self.q_values), "reward": self.reward,
            "value_before": float(self.capacity_before), "value_after": float(self.capacity_after),
            "applied": self.applied, "guardrail": self.guardrail,
        }


def tune_window(window: int, capacity: int, hits_window: int, hits_main: int,
                ghosts_window: int, ghosts_main: int) -> tuple[int, str] | None:
    """ARC's rule for the recency window: the new window size, and why (None: no evidence).

    A request for a key just evicted from the window (turned away by the
    frequency filter) is one a slightly larger window would have hit; one for
    a key just evicted from main, one a larger main area would have. "Just":
    within the last capacity / 16 evictions, the margin a move can change (a
    loop longer than the cache brings every key back, but no small move would
    catch it). Each such request moves the boundary by one entry, weighted as
    ARC weights it by how many ghosts of each kind there are. Both counts come
    from the same requests, so the workload's own ups and downs do not steer
    the policy.

    >>> tune_window(10, 1000, hits_window=50, hits_main=10, ghosts_window=600, ghosts_main=400)
    (45, '50 requests for keys the window had evicted, 10 for keys main had: a larger window')
    """
    if not hits_window and not hits_main:
        return None
    step = hits_window * _ghost_weight(ghosts_main, ghosts_window) \
        - hits_main * _ghost_weight(ghosts_window, ghosts_main)
    lowest = max(1, math.ceil(MIN_WINDOW * capacity))
    highest = max(lowest, math.floor(MAX_WINDOW * capacity))
    wanted = round(window + step)
    moved = int(min(highest, max(lowest, wanted)))
    way = "a larger window" if moved > window else "a smaller window" if moved < window else "stays"
    if moved != wanted:
        way += f" (limited by the window's {'ceiling, 80 %' if wanted > highest else 'floor, 1 %'})"
    return moved, (f"{hits_window} requests for keys the window had evicted, {hits_main} for keys "
                   f"main had: {way}")


def _ghost_weight(others: int, these: int) -> float:
    # ARC's delta: a hit among the scarcer kind of ghost counts for more -- but at most 32,
    # so one stray request cannot undo a long run of evidence the other way.
    return min(32.0, max(others / max(these, 1), 1.0))


class CacheController:
    """Sizes an AdaptiveCache with a Q-learner and tunes its admission policy by ARC's rule.

    Parameters
    ----------
    interval
        Operations (gets) per decision.
    interval_seconds
        Also decide once this many seconds have passed since the last decision
        (the clock is read every 64 gets, so an idle cache is left alone: it has
        nothing to learn from).
    miss_cost, memory_cost
        The reward per interval is ``-(miss_ratio * miss_cost + capacity *
        memory_cost)``: what a miss costs, and what holding one entry costs,
        per operation, in the same unit.
    target_hit_ratio
        Instead of costs: reward ``-(10 * shortfall below the target +
        capacity / max_capacity)``, i.e. the smallest cache that meets the target.
    step
        Grow multiplies the capacity by ``step``, shrink divides by it.
    cooldown
        Intervals after a capacity change during which it may not change again.
    learner
        A ``QLearner`` to start from (e.g. one loaded or merged from a fleet).
    adapt_window
        Move the window (the policy) by ARC's rule (``tune_window``); False keeps it.
    """

    discretizer = Discretizer({
        "hit_ratio": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
        "ghost_ratio": [0.005, 0.02, 0.05, 0.1],
        "capacity_position": [0.25, 0.5, 0.75],
    })

    def __init__(
        self, *, interval: int = 10_000, interval_seconds: float | None = None, miss_cost: float = 1.0, memory_cost: float = 1e-5,
        target_hit_ratio: float | None = None, step: float = 1.25, cooldown: int = 1,
        learner: QLearner | None = None, epsilon: float = 0.05, seed: int = 0, max_decisions: int = 1000,
        adapt_window: bool = True,
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 10:
            raise ValueError(f"interval must be an integer >= 10, got {interval!r}")
        if interval_seconds is not None and not (
                isinstance(interval_seconds, (int, float)) and 0 < interval_seconds < math.inf):
            raise ValueError(f"interval_seconds must be a number > 0 or None, got {interval_seconds!r}")
        for name, value in (("miss_cost", miss_cost), ("memory_cost", memory_cost)):
            if not (isinstance(value, (int, float)) and 0 <= value <= 1e12):
                raise ValueError(f"{name} must be a number in [0, 1e12], got {value!r}")
        if target_hit_ratio is not None and not (0 < target_hit_ratio < 1):
            raise ValueError(f"target_hit_ratio must be in (0, 1), got {target_hit_ratio!r}")
        if not (isinstance(step, (int, float)) and 1 < step <= 16):
            raise ValueError(f"step must be a number in (1, 16], got {step!r}")
        if isinstance(cooldown, bool) or not isinstance(cooldown, int) or cooldown < 0:
            raise ValueError(f"cooldown must be an integer >= 0, got {cooldown!r}")
        n_states = self.discretizer.n_states
        if learner is not None and (learner.n_states, learner.n_actions) != (n_states, len(ACTIONS)):
            raise ValueError(f"learner must have {n_states} states and {len(ACTIONS)} actions")
        if learner is not None and not learner.gamma < 1:
            raise ValueError(f"learner must discount the future (gamma < 1), got gamma={learner.gamma}")
        self.interval = interval
        self.interval_seconds = interval_seconds
        self.miss_cost, self.memory_cost = float(miss_cost), float(memory_cost)
        self.target_hit_ratio = target_hit_ratio
        self.step = float(step)
        self.cooldown = cooldown
        self.learner = learner or QLearner(n_states, len(ACTIONS), alpha=0.2, gamma=0.5,
                                           epsilon=epsilon, epsilon_min=epsilon, seed=seed)
        self.adapt_window = adapt_window
        self.decisions: deque[Decision] = deque(maxlen=max_decisions)
        self._last: tuple[int, int] | None = None  # (state, action) awaiting its reward
        self._seen: tuple[int, ...] = ()  # the core's counters at the last decision
        self._started: set[int] = set()  # states whose Q row has its starting value
        self._cooling = 0
        self.bound = False  # set by the AdaptiveCache it drives (one cache per controller)

    def features(self, core: CacheCore, min_capacity: int, max_capacity: int) -> dict[str, float]:
        """What the interval that just ended looked like, and what the ghost list says of the others."""
        grown = self.step - 1.0  # growing adds this share of the capacity
        now = (core.hits, core.misses, core.ghost_hits, core.probation_hits,
               *core.ghost_hits_within(1), *core.ghost_hits_within(round(grown * GHOST_BANDS)))
        hits, misses, ghost, probation, margin_window, margin_main, near_window, near_main = (
            (a - b for a, b in zip(now, self._seen)) if self._seen else now)
        self._seen = now
        ops = max(hits + misses, 1)
        span = math.log(max_capacity / min_capacity) if max_capacity > min_capacity else 1.0
        # Growing: the ghost hits within the added share of evictions, or that share of all
        # ghost hits (an even spread), whichever is more; both err low.
        grow_gain = max(near_window + near_main, grown * ghost) / ops
        # Shrinking drops the entries beyond the smaller capacity -- none if the cache is not
        # that full. They are the least valuable: probation's (a fifth of main), so its hits,
        # scaled to the share removed, are the estimate. With main (nearly) empty -- plain LRU,
        # only with adapt_window=False -- nothing ranks the entries; assume the hit density just
        # inside the capacity is the one just outside (the ghost's), right for a concave hit
        # curve, low for a loop (docs/benchmarks.md: sizing alone).
        smaller = core.capacity / self.step
        dropped = max(0.0, core.size - smaller)
        main_share = 1.0 - core.window_share
        if main_share > 0.05:
            shrink_loss = probation / ops * (dropped / core.capacity) / (0.2 * main_share)
        else:
            shrink_loss = grow_gain * dropped / (core.capacity - smaller)
        return {
            "hit_ratio": hits / ops,
            "ghost_ratio": ghost / ops,
            "capacity_position": math.log(core.capacity / min_capacity) / span if span else 0.0,
            "capacity": float(core.capacity),
            "window_share": float(core.window_share),
            "grow_gain": grow_gain,
            "shrink_loss": min(shrink_loss, hits / ops),
            "ghost_hits_window_margin": float(margin_window),
            "ghost_hits_main_margin": float(margin_main),
        }

    def reward(self, hit_ratio: float, capacity: float, max_capacity: int) -> float:
        """The reward of an interval with this hit ratio at this capacity."""
        if self.target_hit_ratio is not None:
            shortfall = max(0.0, self.target_hit_ratio - hit_ratio)
            return -(10.0 * shortfall + capacity / max_capacity)
        return -((1.0 - hit_ratio) * self.miss_cost + capacity * self.memory_cost)

    def decide(self, core: CacheCore, min_capacity: int, max_capacity: int, mode: str, name: str) -> Decision:
        """Learn from the interval that just ended; choose (and maybe apply) the next action.

        Besides the action taken, the learner is taught what growing and shrinking
        would have earned in this state, estimated from the ghost list and the
        probation hits: each interval teaches all three actions, so the cache
        reacts within a few intervals instead of waiting for exploration to try a move.
        """
        features = self.features(core, min_capacity, max_capacity)
        state = self.discretizer(features)
        hit_ratio, capacity = features["hit_ratio"], features["capacity"]
        reward = self.reward(hit_ratio, capacity, max_capacity)
        if not math.isfinite(reward):
            raise ValueError(f"the reward overflowed ({reward}): miss_cost or memory_cost is too large")
        if not hit_ratio and not features["ghost_ratio"]:
            # Nothing came back yet (a cold cache): no evidence for or against any move.
            self._last = None
            self._cooling = max(0, self._cooling - 1)
            return self._record(features, state, reward, "keep", name, mode, core.capacity, core.capacity,
                                False, "no evidence yet", core.window_share, core.window_share, None)
        if state not in self._started and not self.learner.visits[state].any():
            # Costs make every reward negative: zeros would make each untried action
            # look best. A new state starts at the value of staying as the cache is.
            self.learner.q[state] = reward / (1.0 - self.learner.gamma)
        self._started.add(state)
        if self._last is not None:
            self.learner.learn(self._last[0], self._last[1], reward, state)
        self.learner.learn(state, 0, reward, state)
        before = core.capacity
        grown, shrunk = self.stepped(before, "grow"), self.stepped(before, "shrink")
        if grown <= max_capacity:
            self.learner.learn(state, 2, self.reward(hit_ratio + features["grow_gain"], grown, max_capacity), state)
        if min_capacity <= shrunk:
            self.learner.learn(state, 1, self.reward(hit_ratio - features["shrink_loss"], shrunk, max_capacity),
                               state)
        action = self.learner.act(state)
        after = before
        guardrail = None
        chosen = ACTIONS[action]
        if chosen != "keep":
            if self._cooling > 0:
                guardrail = "cooldown"
            else:
                wanted = grown if chosen == "grow" else shrunk
                after = min(max(wanted, min_capacity), max_capacity)
                if after != wanted:
                    guardrail = "max_capacity" if wanted > max_capacity else "min_capacity"
        share = core.window_share
        window, window_reason = share, None
        if self.adapt_window:
            moved = tune_window(core.window_capacity, core.capacity, int(features["ghost_hits_window_margin"]),
                                int(features["ghost_hits_main_margin"]), *core.ghost_origins())
            if moved is not None:
                window, window_reason = moved[0] / core.capacity, moved[1]
                if guardrail is None and "(limited by" in window_reason:
                    guardrail = "window limit"
        applied = mode == "auto" and (after != before or window != share)
        if applied:
            core.resize(after, window)
            if after != before:
                self._cooling = self.cooldown + 1
        self._cooling = max(0, self._cooling - 1)
        # what the next reward follows from: in advisory mode the cache stayed as it was
        self._last = (state, action if mode == "auto" else 0)
        return self._record(features, state, reward, chosen, name, mode, before, after, applied, guardrail,
                            share, window, window_reason)

    def stepped(self, capacity: int, action: str) -> int:
        """The capacity one grow or shrink step from ``capacity`` (always at least one entry away)."""
        if action == "grow":
            return max(capacity + 1, round(capacity * self.step))
        return max(1, min(capacity - 1, round(capacity / self.step)))

    def _record(self, features: dict[str, float], state: int, reward: float, action: str, name: str,
                mode: str, before: int, after: int, applied: bool, guardrail: str | None,
                window_before: float, window_after: float, window_reason: str | None) -> Decision:
        decision = Decision(
            timestamp=datetime.now(timezone.utc), controller=name, mode=mode, state=state,
            features=features, action=action, q_values=tuple(self.learner.q[state].tolist()),
            reward=reward, capacity_before=before, capacity_after=after, applied=applied,
            guardrail=guardrail, window_before=window_before, window_after=window_after,
            window_reason=window_reason,
        )
        self.decisions.append(decision)
        return decision


class AdaptiveCache(MutableMapping):
    """A thread-safe, dict-like LRU cache that sizes itself within limits a person sets.

    Parameters
    ----------
    capacity
        Starting capacity (entries).
    min_capacity, max_capacity
        Hard limits for the controller (default: capacity / 4 and capacity * 4).
    controller
        A ``CacheController``, ``"default"`` for one with default settings, or
        ``None`` for a plain, fixed-size LRU cache.
    mode
        ``"auto"`` applies decisions within the limits; ``"advisory"`` only
        records them (the cache never changes by itself).
    window
        The recency window's share of the capacity, in (0, 1]: 1.0 is plain
        LRU, 0.01 is W-TinyLFU (frequency admission behind a small window).
        Default: 1.0 without a controller, 0.01 with one (it moves it).
    name
        Names the cache in decisions.
    on_decision
        Called with every ``Decision``, on a background thread: a slow
        callback never holds up a get. (While ``perfsdk.init(export_dir=...)``
        runs, decisions also go to its Arrow ``decisions`` table.)

    Examples
    --------
    >>> cache = AdaptiveCache(capacity=2, controller=None)
    >>> cache["a"] = 1; cache["b"] = 2
    >>> cache.get("a"), cache.get("zzz", "default")
    (1, 'default')
    >>> cache["c"] = 3          # evicts "b", the least recently used
    >>> sorted(cache), cache.stats()["evictions"]
    (['a', 'c'], 1)
    >>> cache.get_or_load("d", lambda key: key.upper())
    'D'
    """

    def __init__(
        self, capacity: int = 1024, *, min_capacity: int | None = None, max_capacity: int | None = None,
        controller: CacheController | str | None = "default", mode: str = "auto",
        window: float | None = None, name: str = "cache",
        on_decision: Callable[[Decision], Any] | None = None,
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an integer >= 1, got {capacity!r}")
        min_capacity = max(1, capacity // 4) if min_capacity is None else min_capacity
        max_capacity = capacity * 4 if max_capacity is None else max_capacity
        if isinstance(min_capacity, bool) or not isinstance(min_capacity, int) or not 1 <= min_capacity <= capacity:
            raise ValueError(f"min_capacity must be an integer in 1..capacity, got {min_capacity!r}")
        if isinstance(max_capacity, bool) or not isinstance(max_capacity, int) or max_capacity < capacity:
            raise ValueError(f"max_capacity must be an integer >= capacity, got {max_capacity!r}")
        if mode not in ("auto", "advisory"):
            raise ValueError(f"mode must be 'auto' or 'advisory', got {mode!r}")
        if controller == "default":
            controller = CacheController()
        if controller is not None and not isinstance(controller, CacheController):
            raise ValueError(f"controller must be a CacheController, 'default' or None, got {controller!r}")
        if controller is not None:
            if controller.bound:
                raise ValueError("controller already drives another cache: give each cache its own "
                                 "(share what they learn with QLearner.merge)")
            controller.bound = True
        if window is None:
            window = 1.0 if controller is None else MIN_WINDOW
        if isinstance(window, bool) or not isinstance(window, (int, float)) or not 0 < window <= 1:
            raise ValueError(f"window must be a number in (0, 1], got {window!r}")
        self.min_capacity, self.max_capacity = min_capacity, max_capacity
        self.mode = mode
        self.name = name
        self.controller = controller
        self.on_decision = on_decision
        self.decision_faults = 0
        self.callbacks_dropped = 0  # decisions not handed to on_decision: its queue was full
        self._core = CacheCore(capacity, max_capacity)
        self._core.resize(capacity, float(window))
        self.get = self._core.get  # type: ignore[method-assign]  # no Python layer on the hit path
        if controller is not None:
            self._core.count_frequencies = True  # the window may move back from LRU: keep counting
            self._core.on_interval = self._on_interval
            self._schedule_decision()
        self._decide_lock = threading.Lock()

    # -- the controller hook (runs every `interval` operations, outside the core's lock) --
    def _on_interval(self) -> None:
        # Runs inside the get that closed the interval: bounded work only (~20-40 us);
        # the on_decision callback, which may do anything, runs on a background thread.
        try:
            controller = self.controller
            if controller is None:
                return  # the controller was taken away: the hook stops
            with self._decide_lock:
                decision = controller.decide(self._core, self.min_capacity, self.max_capacity, self.mode, self.name)
            for callback in (self.on_decision, ACTIVE.decisions):  # yours; perfsdk's Arrow export
                if callback is not None and not CALLBACKS.submit(functools.partial(self._deliver, callback, decision)):
                    self.callbacks_dropped += 1
            self._schedule_decision()
        except Exception:
            self._fault("the cache controller failed")  # a controller fault must not break a cache read
            try:
                self._schedule_decision()
            except Exception:
                pass

    def _deliver(self, callback: Callable[[Decision], Any], decision: Decision) -> None:
        try:
            callback(decision)
        except Exception:
            self._fault("an on_decision callback failed")

    def _fault(self, what: str) -> None:
        self.decision_faults += 1
        if self.decision_faults == 1:
            log.exception("perfsdk: %s (counted in stats()['decision_faults']; logged once)", what)

    def _schedule_decision(self) -> None:
        controller = self.controller
        if controller is None:
            return
        self._core.next_interval_at = self._core.ops + controller.interval
        if controller.interval_seconds:
            self._core.next_interval_time = CacheCore.monotonic() + controller.interval_seconds

    # -- access ---------------------------------------------------------------------------
    def get(self, key: Any, default: Any = None) -> Any:
        """The value for ``key`` (it becomes most recent), or ``default``."""
        return self._core.get(key, default)  # instances call the compiled core directly

    def put(self, key: Any, value: Any) -> None:
        """Store ``value`` (a new key enters the recency window)."""
        self._core.put(key, value)

    def get_or_load(self, key: Any, loader: Callable[[Any], Any]) -> Any:
        """The cached value, or ``loader(key)`` -- called outside any lock -- stored and returned."""
        value = self._core.get(key, _MISSING)
        if value is _MISSING:
            value = loader(key)
            self._core.put(key, value)
        return value

    def __getitem__(self, key: Any) -> Any:
        value = self._core.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        self._core.put(key, value)

    def __delitem__(self, key: Any) -> None:
        if self._core.pop(key, _MISSING) is _MISSING:
            raise KeyError(key)

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        value = self._core.pop(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return value

    def __contains__(self, key: object) -> bool:
        return bool(self._core.contains(key))  # no effect on recency or statistics

    def __iter__(self) -> Iterator[Any]:
        return iter(self._core.keys_by_recency())

    # Bulk reads are snapshots: they must not count as traffic, promote keys or reorder them.
    def items(self) -> list[tuple[Any, Any]]:  # type: ignore[override]
        """(key, value) pairs, a snapshot in iteration order (no effect on recency or stats)."""
        return self._core.items_by_recency()

    def values(self) -> list[Any]:  # type: ignore[override]
        """Values, a snapshot in iteration order (no effect on recency or stats)."""
        return [value for _, value in self._core.items_by_recency()]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return dict(self.items()) == dict(other.items())

    __hash__ = None  # type: ignore[assignment]  # mutable, like dict

    def __len__(self) -> int:
        return int(self._core.size)

    def clear(self) -> None:
        self._core.clear()

    # -- state ------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return int(self._core.capacity)

    def resize(self, capacity: int) -> None:
        """Set the capacity by hand (within min/max); evicts to fit."""
        if not self.min_capacity <= capacity <= self.max_capacity:
            raise ValueError(f"capacity must be in {self.min_capacity}..{self.max_capacity}, got {capacity}")
        self._core.resize(capacity)

    def decisions(self) -> list[Decision]:
        return list(self.controller.decisions) if self.controller else []

    def stats(self) -> dict[str, Any]:
        """Hits, misses, evictions, capacity, an approximate size in bytes, and more."""
        core = self._core
        ops = core.hits + core.misses
        return {
            "hits": core.hits, "misses": core.misses,
            "hit_ratio": core.hits / ops if ops else 0.0,
            "evictions": core.evictions, "ghost_hits": core.ghost_hits,
            "admission_rejections": core.rejected, "window_share": core.window_share,
            "size": core.size, "capacity": core.capacity,
            "min_capacity": self.min_capacity, "max_capacity": self.max_capacity,
            "approx_bytes": self._approx_bytes(), "mode": self.mode,
            "decisions": len(self.controller.decisions) if self.controller else 0,
            "decision_faults": self.decision_faults, "callbacks_dropped": self.callbacks_dropped,
        }

    def _approx_bytes(self) -> int:
        sample = self._core.items_by_recency(64)  # a few entries, not a copy of the cache
        if not sample:
            return 0
        per_entry = sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in sample) / len(sample)
        return int(self._core.size * (per_entry + 100))  # + dict slot, list slots, links

    def __repr__(self) -> str:
        return (f"AdaptiveCache(capacity={self.capacity}, min_capacity={self.min_capacity}, "
                f"max_capacity={self.max_capacity}, mode={self.mode!r}, size={len(self)})")


def cached(maxsize: int | Callable[..., Any] = 128, typed: bool = False, **cache_options: Any) -> Any:
    """Memoize a function in an ``AdaptiveCache``, as ``functools.lru_cache`` does.

    ``@cached`` or ``@cached(maxsize=...)``: ``maxsize`` is the starting
    capacity (the controller may move it within ``min_capacity`` /
    ``max_capacity``); other options go to ``AdaptiveCache``. Keys as
    lru_cache makes them (``typed=True`` is not supported). The wrapper has
    ``cache_info()`` (lru_cache's named tuple: hits, misses, maxsize — the
    current capacity — and currsize), ``cache_clear()``, and ``cache`` (the
    AdaptiveCache: ``cache.stats()``, ``cache.decisions()``).

    >>> @cached(maxsize=256, controller=None)
    ... def square(x):
    ...     return x * x
    >>> square(4), square(4), square.cache_info()
    (16, 16, CacheInfo(hits=1, misses=1, maxsize=256, currsize=1))
    """
    if callable(maxsize):  # bare @cached
        return cached()(maxsize)
    if maxsize is None or isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
        raise ValueError(f"maxsize must be an integer >= 1 (a cache perfsdk sizes needs a bound; "
                         f"functools.cache is the unbounded one), got {maxsize!r}")
    if typed:
        raise ValueError("typed=True is not supported: wrap the function in functools.lru_cache for that")

    def decorate(fn: F) -> F:
        cache = AdaptiveCache(maxsize, **cache_options)
        wrapper = CachedFunction(fn, cache._core)  # compiled: a hit never runs Python code
        functools.update_wrapper(wrapper, fn)

        def cache_info() -> Any:
            stats = cache.stats()
            return CacheInfo(stats["hits"], stats["misses"], stats["capacity"], stats["size"])

        wrapper.cache = cache  # type: ignore[attr-defined]
        wrapper.cache_info = cache_info  # type: ignore[attr-defined]
        wrapper.cache_clear = cache.clear  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
