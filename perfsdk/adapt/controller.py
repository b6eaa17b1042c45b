"""The generic sizing loop: a Q-learner that decides, targets that supply evidence and apply.

As in Caffeine, deciding and applying are apart. A ``Controller`` owns the
schedule (every ``interval`` operations or ``interval_seconds``), the
learner and the starting values of new states, learning from what-ifs, the
cooldown, min/max clamping with the guardrail recorded, auto/advisory mode,
a bounded log of explained decisions, and delivering them on background workers
(to the Arrow export on perfsdk's, to the target's ``on_decision`` on the user
callbacks' own). A target (``AdaptiveCache``, ``AdaptivePool``) implements ``Target``:
``evidence()`` says what the interval looked like, what it earned and what
each other size would have earned; ``apply()`` resizes (``apply_if()``, where the
target has it, only if no one resized it meanwhile). The target decides nothing; the
controller touches nothing but those methods.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from perfsdk._runtime import (
    DECISION_DELIVERY, FAULTS, HOOKS, USER_CALLBACKS, Faults, at_fork, call_guarded, check_int, check_number,
)
from perfsdk.adapt.decision import Action, Decision, SettingMove
from perfsdk.adapt.fleet import Fleet
from perfsdk.adapt.qlearner import Discretizer, QLearner

__all__ = ["DECISION_DELIVERY", "HAND_RESIZE", "MAX_INTERVAL", "USER_CALLBACKS", "Controller", "Evidence", "Target"]

#: A shrink the model says costs at most this share of the reward is worth trying once (where it
#: frees something: ``Evidence.shrink_frees``).
SHRINK_TOLERANCE = 0.05
#: Exploration tries a move the evidence measured only if it measured it within this share of
#: the best reward in reach (see ``Controller._act``).
EXPLORE_TOLERANCE = 0.25



@dataclass(frozen=True)
class Evidence:
    """What a target saw over the interval that just ended.

    ``what_if`` holds, for the actions the controller asked about, the reward
    the interval would have earned at that size (an estimate: ghost hits for a
    larger cache, queueing for a larger pool). ``cold`` means nothing came back
    yet: no evidence for or against any move, so nothing is learned. A what-if
    is *measured* unless ``modelled`` (and the action is not in ``measured``):
    a measured move is never tried just to see, and exploration skips it where
    it was measured far below the best (``EXPLORE_TOLERANCE``).
    """

    features: Mapping[str, float]
    reward: float
    what_if: Mapping[Action, float] = field(default_factory=dict)
    summary: str = ""
    cold: bool = False
    setting: SettingMove | None = None
    modelled: bool = False  # the what-ifs come from a model, not from evidence (a cache's ghosts)
    measured: frozenset[Action] = frozenset()  # ... but these actions' what-ifs were measured (no trial needed)
    floor: int | None = None  # the least value the target needs next (a forecast surge; the summary says why)
    ceiling: int | None = None  # the most it should hold (beyond it the target serves less; the summary says why)
    #: Whether a shrink frees what nobody waits for: only then is one tried on a model's word that it does
    #: nearly as well (``SHRINK_TOLERANCE``). A pool most of whose callers waited is not one.
    shrink_frees: bool = True

    def measured_what_if(self, action: Action) -> bool:
        """Whether ``action``'s what-if is evidence, not a model's guess (see the class docstring)."""
        return action in self.what_if and (not self.modelled or action in self.measured)


class Target(Protocol):
    """What a controller sizes (see the module docstring).

    A target a person may also resize (``AdaptivePool.resize``) implements, besides ``apply``,
    ``apply_if(value, setting, before) -> bool``: apply only if its value is still ``before``,
    the value the decision was made at, checked under the lock its own resizes take. False: it
    was resized by hand while the controller decided; the person's size stands, and the
    decision is recorded as not applied (guardrail ``HAND_RESIZE``).
    """

    name: str
    mode: str  # "auto" or "advisory"
    value_name: str  # what the value is called: "capacity"; its limits are "min_<it>", "max_<it>"

    @property
    def value(self) -> int: ...
    @property
    def min_value(self) -> int: ...
    @property
    def max_value(self) -> int: ...
    def evidence(self, candidates: Mapping[Action, int]) -> Evidence: ...
    def apply(self, value: int, setting: SettingMove | None) -> None: ...


#: The guardrail of a decision not applied because the target was resized by hand meanwhile.
HAND_RESIZE = "hand resize"
SETTLED_STRETCH = 16  # a settled target's count interval grows up to this many times (see Controller)
#: The longest ``interval``, in operations: stretched while settled, it stays far inside the target's
#: 64-bit operation counter (2**63 is 9.2e18).
MAX_INTERVAL = 10**12
#: The longest ``interval_seconds``: a week (a thread cannot wait much past 10**9 s at all).
MAX_INTERVAL_SECONDS = 604_800.0
SETTLED_CHANGE = 0.01  # ... while an interval moves the state's values by less than this share


class Controller:
    """Decides keep, shrink or grow for one target with a tabular Q-learner.

    Parameters
    ----------
    discretizer
        Turns the evidence's features into the learner's state.
    interval
        Operations per decision (``MAX_INTERVAL`` at most) -- while the target is settled, up to
        ``settled_stretch`` times more: each decision that changes nothing, finds the same state,
        and learns little there (its values move by less than ``SETTLED_CHANGE``; or there was no
        evidence to judge, e.g. a cache still filling) doubles the next interval; any other sets
        it back. A settled cache
        pays for fewer decisions on its hot path; the time limit, ``interval_seconds``, stays as it is.
    interval_seconds
        Also decide once this many seconds have passed since the last decision (a week at most).
    step
        Grow multiplies the value by ``step``, shrink divides by it (always one unit at least).
        Where ``narrows`` (a class attribute; the pool's), a move that reverses the last one
        halves the step taken (down to an eighth of it), and a move the same way as the last
        widens it back by half: a target that turns round is near its best, where a whole step
        swings it from one side to the other (a pool moving between 11 and 14 connections, the
        best 12), and one that keeps going soon travels far again.
    cooldown
        Intervals after a change of the value during which it may not change again.
    learner
        A ``QLearner`` to start from (one loaded or merged from a fleet); else a fresh one
        with ``alpha``, ``gamma`` (below 1: a new state starts at ``reward / (1 - gamma)``),
        ``epsilon``, ``seed``. Given with ``fleet``, its visits count as the fleet's: this
        instance publishes only what it learns on top of them.
    max_decisions
        Decisions kept in ``decisions`` (the newest).
    fleet
        A directory (or a ``Fleet``) shared by the service's instances: this controller
        publishes what it learns there and starts from what the others learned.
    """

    #: A settled target's interval grows up to this many times (``interval``).
    settled_stretch = SETTLED_STRETCH
    #: Whether a reversal narrows the step (see ``step``): off here, where the target's what-ifs
    #: price a whole step (the cache's).
    narrows = False

    def __init__(
        self, discretizer: Discretizer, *, interval: int = 10_000, interval_seconds: float | None = None,
        step: float = 1.25, cooldown: int = 1, learner: QLearner | None = None, alpha: float = 0.2,
        gamma: float = 0.5, epsilon: float = 0.05, seed: int = 0, max_decisions: int = 1000,
        fleet: Fleet | str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(discretizer, Discretizer):
            raise TypeError(f"discretizer must be a Discretizer, got {discretizer!r}")
        check_int("interval", interval, minimum=10, maximum=MAX_INTERVAL)
        if interval_seconds is not None:
            check_number("interval_seconds", interval_seconds, low=0.0, low_open=True, high=MAX_INTERVAL_SECONDS)
        check_number("step", step, low=1.0, high=16.0, low_open=True)
        check_int("cooldown", cooldown, minimum=0)
        check_int("max_decisions", max_decisions, minimum=1)
        n_actions = len(Action)
        if learner is not None:
            if not isinstance(learner, QLearner):
                raise TypeError(f"learner must be a QLearner, got {learner!r}")
            if (learner.n_states, learner.n_actions) != (discretizer.n_states, n_actions):
                raise ValueError(f"learner must have {discretizer.n_states} states and {n_actions} actions")
            if not learner.gamma < 1:
                raise ValueError(f"learner must discount the future (gamma < 1), got gamma={learner.gamma}")
        else:
            check_number("gamma", gamma, low=0.0, high=1.0, high_open=True)
        self.discretizer = discretizer
        self.interval = int(interval)
        self.interval_seconds = None if interval_seconds is None else float(interval_seconds)
        self.step = float(step)
        self._pace = self.step  # the step now taken: narrowed by reversals (see ``step``)
        self._direction = 0  # the last change's: +1 grew, -1 shrank, 0 none yet
        self.cooldown = int(cooldown)
        self.learner = learner or QLearner(discretizer.n_states, n_actions, alpha=alpha, gamma=gamma,
                                           epsilon=epsilon, epsilon_min=epsilon, seed=seed)
        self.decisions: deque[Decision] = deque(maxlen=max_decisions)
        self.fleet = fleet if isinstance(fleet, Fleet) or fleet is None else Fleet(fleet)
        # the visits taken from the fleet (see ``adopt``); a table given with a fleet is the fleet's
        # (merged or loaded from it, as ``learner`` says), not this instance's own evidence
        self._adopted = (self.learner.visits.copy() if learner is not None and self.fleet is not None
                         else np.zeros_like(self.learner.visits))
        self._decided = 0
        self.bound = False  # set by the target it drives: one target per controller
        self._last: tuple[int, Action] | None = None  # (state, action) awaiting its reward
        self._last_trial = False  # that action was a trial: the next interval measures it
        self._started: set[int] = set()  # states whose Q row has its starting value
        self._taken: set[tuple[int, Action]] = set()  # (state, action) moves really made
        self._cooling = 0
        self._stretch = 1  # the next interval, in intervals: doubled while settled (see ``interval``)
        self._due_stretch = 1  # the stretch of the interval now running (a target that schedules none: 1)
        self._deadline: float | None = None  # the unstretched time limit of the count interval now running
        self._last_state: int | None = None
        self._faults = FAULTS  # the bound target's (see ``bind``)
        self._lock = threading.Lock()
        at_fork(self._after_fork)

    def _after_fork(self) -> None:
        # In a forked child: a thread of the parent deciding (or reading the learner under
        # ``locked()``) held the lock, and does not exist here to let it go. What the child
        # inherited is the parent's evidence, which the parent publishes: the child's is what it
        # learns from here on (else the fleet counted the parent's twice).
        self._lock = threading.Lock()
        self._adopted = self.learner.visits.copy()

    @property
    def decided(self) -> int:
        """Decisions made so far (``decisions`` keeps the newest ``max_decisions``)."""
        return self._decided

    # -- schedule -------------------------------------------------------------------
    def next_due(self, ops: int, now: float) -> tuple[int, float | None]:
        """When the next decision is due, given the target's operation count and ``now``
        (``time.monotonic()``): at this count, or at this time (None: by count only), whichever
        comes first."""
        self._due_stretch = self._stretch
        self._deadline = now + self.interval_seconds if self.interval_seconds else None
        return ops + self.interval * self._stretch, self._deadline

    def next_due_at(self, now: float) -> float:
        """When a target that decides by time alone (a pool) is next due: ``interval_seconds``
        after ``now``, stretched while the target is settled as ``interval`` is."""
        self._due_stretch = self._stretch
        self._deadline = None  # the time is the stretched interval itself
        return now + (self.interval_seconds or 0.0) * self._stretch

    def bind(self, target_name: str, faults: Faults = FAULTS) -> None:
        """Drive the target named ``target_name``; background work for it (the fleet's files)
        counts its faults in ``faults`` (the target's own)."""
        if self.bound:
            raise ValueError(f"controller already drives another target (not {target_name!r}): give each "
                             "its own (share what they learn with QLearner.merge)")
        if self.fleet is not None:
            self.fleet.attach(target_name)
        self.bound = True
        self._faults = faults
        if self.fleet is not None:
            DECISION_DELIVERY.submit(functools.partial(self._sync_fleet, False))  # start from the fleet's

    # -- deciding ---------------------------------------------------------------------
    def stepped(self, value: int, action: Action) -> int:
        """The value one grow or shrink step from ``value`` (always at least one unit away; the
        step narrowed by reversals, see ``step``).

        >>> from perfsdk.adapt.qlearner import Discretizer
        >>> class Narrowing(Controller):
        ...     narrows = True
        >>> controller = Narrowing(Discretizer({"x": [0.5]}), step=1.25)
        >>> controller.stepped(16, Action.GROW), controller.stepped(16, Action.SHRINK)
        (20, 13)
        >>> controller.moved(16, 20); controller.moved(20, 16)  # grew, then turned round
        >>> controller.stepped(16, Action.GROW), controller.stepped(16, Action.SHRINK)
        (18, 14)
        """
        if not isinstance(action, Action):
            raise TypeError(f"action must be an Action, got {action!r}")
        if action is Action.GROW:
            return max(value + 1, round(value * self._pace))
        if action is Action.SHRINK:
            return max(1, min(value - 1, round(value / self._pace)))
        return value

    def moved(self, before: int, after: int) -> None:
        """Note a change of the value the controller applied: a reversal halves the step taken
        next, a move the same way widens it back by half (see ``step``)."""
        direction = (after > before) - (after < before)
        if not direction or not self.narrows:
            return
        if direction == -self._direction:
            self._pace = max(1.0 + (self.step - 1.0) / 8, 1.0 + (self._pace - 1.0) / 2)
        elif direction == self._direction:
            self._pace = min(self.step, 1.0 + (self._pace - 1.0) * 1.5)
        self._direction = direction

    def decide(self, target: Target) -> Decision:
        """Learn from the interval that just ended; choose (and in auto mode apply) the next move.

        Besides the action taken, the learner is taught what the other actions
        would have earned in this state (the target's what-ifs), so each
        interval teaches every action within the limits and the target reacts
        within a few intervals instead of waiting for exploration to try a move.
        """
        with self._lock:
            decision = self._decide(target)
            self._decided += 1
        if self.fleet is not None and self.fleet.due(self._decided):
            DECISION_DELIVERY.submit(self._sync_fleet)  # files off the application's path
        return decision

    # -- the fleet ---------------------------------------------------------------------
    def locked(self) -> threading.Lock:
        """The lock ``decide`` holds (to read the learner between decisions)."""
        return self._lock

    def adopt(self, fleet: QLearner) -> int:
        """Take the fleet's learned values in the states this controller has not learned in
        itself: those it has not been in, and those it adopted before (they follow the fleet as
        it learns on). Its own evidence stays its own: once it learns in an adopted state, that
        state is its own, starting from the fleet's values. Returns how many states it adopted anew.

        A move the fleet never learned in an adopted state is not taken as tried (its trial is
        still due here), and takes this instance's starting value when it first gets there (see
        ``_decide``): a peer's starting value is the worth of staying at the peer's size."""
        with self._lock:
            learner, adopted = self.learner, self._adopted
            own = (learner.visits > adopted).any(axis=1)
            states = np.flatnonzero(~own & fleet.visits.any(axis=1))
            new = states[~adopted[states].any(axis=1)].tolist()
            learner.q[states] = fleet.q[states]
            learner.visits[states] = adopted[states] = fleet.visits[states]
            self._started.difference_update(states.tolist())
            rows, actions = np.nonzero(fleet.visits[states])  # the moves the fleet made there
            self._taken.update(zip(states[rows].tolist(), map(Action, actions.tolist())))
            return len(new)

    def own_table(self) -> QLearner:
        """A copy of the learner with only what this instance learned itself -- what it publishes
        to the fleet: its own visits, and nothing in the states it only adopted (a copy of the
        fleet's values published as evidence would be counted again by every instance)."""
        with self._lock:
            mine = self.learner.copy()
            mine.visits[:] -= self._adopted
        mine.q[~mine.visits.any(axis=1)] = 0.0  # as a learner that was never there
        return mine

    def _sync_fleet(self, publish: bool = True) -> None:
        assert self.fleet is not None
        with self._faults.guard("fleet table sync"):
            self.fleet.sync(self, publish)

    def _decide(self, target: Target) -> Decision:
        before = target.value
        low, high = target.min_value, target.max_value
        stepped = {a: self.stepped(before, a) for a in (Action.GROW, Action.SHRINK)}
        candidates = {a: v for a, v in stepped.items() if low <= v <= high and v != before}
        evidence = target.evidence(candidates)
        features = dict(evidence.features)
        state = self.discretizer(features)
        reward = evidence.reward
        for what, value in (("reward", reward), *((f"what-if of {a}", v) for a, v in evidence.what_if.items())):
            if not math.isfinite(value):
                raise ValueError(f"the {what} is {value}: the target's costs are too large or undefined")
        learner = self.learner
        if evidence.cold:
            self._last = None
            self._cooling = max(0, self._cooling - 1)
            return self._record(target, evidence, state, Action.KEEP, before, before, False, "no evidence yet")
        unlearned = learner.visits[state] == 0
        if state not in self._started and unlearned.any():
            # Costs make every reward negative: zeros would make each untried action look best.
            # A new state's actions -- and those the fleet never learned in a state adopted from
            # it -- start at the value of staying as it is.
            start = reward / (1.0 - learner.gamma)
            if not math.isfinite(start):
                raise ValueError(f"the reward {reward} makes a new state's value {start}: the target's costs "
                                 "are too large")
            learner.q[state, unlearned] = start
        self._started.add(state)
        values = learner.q[state].copy()
        # The next interval's reward, credited to the move that led to it. Where the what-ifs come
        # from a model, only a trial's: every other move already learns the model's estimate for
        # it in the same interval's terms, where one noisy interval would swamp the differences.
        if self._last is not None and (self._last_trial or not evidence.modelled):
            learner.learn(self._last[0], int(self._last[1]), reward, state)
        learner.learn(state, int(Action.KEEP), reward, state)
        for action in (Action.GROW, Action.SHRINK):  # what the others would have earned
            if action in candidates and action in evidence.what_if:
                learner.learn(state, int(action), evidence.what_if[action], state)
        # An action never taken in this state whose outcome nothing measured is tried once: an
        # unknown outcome is not that of staying put, and a model's estimate is no substitute for
        # one interval's evidence (a model sees means, not the tails that too much concurrency
        # brings). A grow is tried where the model says it does better; a shrink, which frees
        # resources, also where it says it does nearly as well (within SHRINK_TOLERANCE).
        learned = float(np.abs(learner.q[state] - values).max() / max(np.abs(values).max(), 1e-12))
        untried = [a for a in (Action.SHRINK, Action.GROW)
                   if a in candidates and (state, a) not in self._taken and _worth_a_trial(a, evidence)]
        greedy = Action(learner.greedy(state))
        action = untried[0] if untried else self._act(state, greedy, evidence, candidates)
        explored = not untried and action is not greedy  # said in the explanation
        reach = {a: min(max(v, low), high) for a, v in stepped.items()}  # where each move lands, within the limits
        if action is not Action.KEEP and reach[action] == before:
            # A move the limits leave nowhere to go; its value, learned in this state at other
            # sizes, must not hide a possible move that beats staying put (a pool at one
            # connection whose best-valued action is still "shrink" would never grow back).
            q = learner.q[state]
            possible = max((a for a in reach if reach[a] != before), key=lambda a: q[int(a)], default=None)
            if possible is not None and q[int(possible)] > q[int(Action.KEEP)]:
                action, explored = possible, False
        summary = evidence.summary + (f"; trying {action} once: only a model estimates it here" if untried else "")
        if explored:
            summary += f"; exploring: {action}, where the learned values favour {greedy}"
        after, guardrail = before, None
        if action is not Action.KEEP:
            if self._cooling > 0:
                guardrail = "cooldown"
            else:
                wanted, after = stepped[action], reach[action]
                if after != wanted or after == before:
                    guardrail = f"{'max' if action is Action.GROW else 'min'}_{target.value_name}"
                if self._pace < self.step:
                    summary += f"; a step of {self._pace:.3g}x, narrowed after turning round (whole: {self.step:g}x)"
        if evidence.floor is not None and after < min(evidence.floor, high):  # falling behind, or a surge ahead
            after, action, guardrail = min(evidence.floor, high), Action.GROW, "demand"
        if evidence.ceiling is not None and after > max(before, evidence.ceiling):
            after, guardrail = max(before, evidence.ceiling), "ceiling"
        elif evidence.ceiling is not None and min(after, before) > max(evidence.ceiling, low):
            after, action, guardrail = max(evidence.ceiling, low), Action.SHRINK, "ceiling"  # beyond it: down at once
        setting = evidence.setting
        if setting is not None and guardrail is None and setting.limited:
            guardrail = f"{setting.label} limit"
        moved = setting is not None and setting.after != setting.before
        applied = target.mode == "auto" and (after != before or moved)
        by_hand = applied and not _apply(target, after, setting, before)
        if by_hand:  # a person's size stands
            applied, guardrail = False, HAND_RESIZE
            summary += f"; not applied: the {target.value_name} was set to {target.value} by hand meanwhile"
        if applied and after != before:
            self._cooling = self.cooldown + 1
            self._taken.add((state, action))
            self.moved(before, after)
        self._cooling = max(0, self._cooling - 1)
        # what the next reward follows from: what really happened (a move held by the cooldown or
        # a limit, or only advised, left the value as it was: that interval teaches "keep"; a
        # resize by hand is no move of the learner's)
        self._last = None if by_hand else (state, action if applied and after != before else Action.KEEP)
        self._last_trial = bool(untried) and applied and after != before
        return self._record(target, evidence, state, action, before, after, applied, guardrail, summary, learned)

    def _act(self, state: int, greedy: Action, evidence: Evidence, candidates: Mapping[Action, int]) -> Action:
        """The learner's epsilon-greedy choice -- for a stretched interval, as often exploring as
        the intervals it stands for would have together (a settled target still explores at the
        same rate per operation, and finds what only a trial shows: a loop just beyond the size).
        A count interval the time limit closed (the limit is not stretched) stands for one: it held
        fewer operations (drawn as many times as its stretch, a quiet cache at 500 gets in 30 s
        explored 40 % of its decisions at epsilon 5 %). A move the interval's evidence measured far
        below the best in reach is not explored: the what-ifs teach it every interval, and trying
        it only pays its price (a plain LRU cache holding a loop that just fits, told by its own
        hits that a shrink loses all of them, shrank anyway on three of eight seeds, up to three
        times a run, missing everything for three intervals each time). Nor is a move the limits cut short (not among ``candidates``): the
        evidence was not asked what it would earn."""
        timed_out = self._deadline is not None and time.monotonic() >= self._deadline
        for _ in range(1 if timed_out else self._due_stretch):
            action = Action(self.learner.act(state))
            asked = action is Action.KEEP or action in candidates
            if action is not greedy and asked and _worth_exploring(action, evidence):
                return action
        return greedy

    def _record(self, target: Target, evidence: Evidence, state: int, action: Action, before: int,
                after: int, applied: bool, guardrail: str | None, summary: str | None = None,
                learned: float = 0.0) -> Decision:
        # ``learned``: how much this interval moved its state's values, as a share of them
        setting = evidence.setting
        settled = (after == before and state == self._last_state
                   and (setting is None or setting.after == setting.before)
                   and (evidence.cold or learned < SETTLED_CHANGE))
        self._stretch = min(2 * self._stretch, self.settled_stretch) if settled else 1
        self._last_state = state
        decision = Decision(
            timestamp=datetime.now(timezone.utc), target=target.name, unit=target.value_name, mode=target.mode,
            state=state, features=dict(evidence.features), evidence=evidence.summary if summary is None else summary,
            action=action,
            q_values=tuple(self.learner.q[state].tolist()), reward=evidence.reward, value_before=before,
            value_after=after, applied=applied, guardrail=guardrail, setting=evidence.setting,
        )
        self.decisions.append(decision)
        return decision

    # -- delivering ---------------------------------------------------------------------
    def deliver(self, decision: Decision, on_decision: Callable[[Decision], Any] | None,
                faults: Faults = FAULTS) -> int:
        """Hand ``decision`` to perfsdk's export and to ``on_decision``, each on its own worker (a
        callback that blocks holds up neither the export nor the fleet); returns how many could
        not be queued (the queue was full)."""
        dropped = 0
        for callback, worker in ((HOOKS.decisions, DECISION_DELIVERY), (on_decision, USER_CALLBACKS)):
            if callback is not None and not worker.submit(
                    functools.partial(call_guarded, callback, decision, faults, "an on_decision callback")):
                dropped += 1
        return dropped


def _apply(target: Target, value: int, setting: SettingMove | None, before: int) -> bool:
    """Apply a decision made at ``before``; False where the target was resized by hand meanwhile
    (a target with ``apply_if`` checks it atomically with its own resizes; see ``Target``)."""
    apply_if = getattr(target, "apply_if", None)
    if apply_if is None:
        target.apply(value, setting)
        return True
    return bool(apply_if(value, setting, before))


def _worth_a_trial(action: Action, evidence: Evidence) -> bool:
    """Whether one interval of ``action`` is worth measuring (see ``Controller._decide``)."""
    if action not in evidence.what_if:
        return True  # nothing estimates it: unknown is not "as staying put"
    if evidence.measured_what_if(action):
        return False  # evidence already says what it would earn
    slack = SHRINK_TOLERANCE * abs(evidence.reward) if action is Action.SHRINK and evidence.shrink_frees else 0.0
    return evidence.what_if[action] > evidence.reward - slack


def _worth_exploring(action: Action, evidence: Evidence) -> bool:
    """Whether exploring ``action`` can teach what the evidence did not (see ``Controller._act``)."""
    if not evidence.measured_what_if(action):
        return True
    best = max(evidence.reward, *evidence.what_if.values())
    return evidence.what_if[action] >= best - EXPLORE_TOLERANCE * abs(best)

