"""What an AdaptiveCache tells its controller: the interval's evidence, and the window rule.

``CacheEvidence`` reads the compiled core's counters at the end of each
interval -- hit ratio, ghost hits (requests for recently evicted keys: what
a larger cache would have hit), probation hits (what the least valuable
entries earned) -- and turns them into the learner's features, the reward,
and what growing or shrinking would have earned. ``tune_window`` is ARC's
rule for the recency window's share, the policy knob the cache moves itself.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping

from perfsdk._native import CacheCore, layout
from perfsdk.adapt.controller import Evidence
from perfsdk.adapt.decision import Action, SettingMove

if TYPE_CHECKING:
    from perfsdk.adapt.cache_controller import CacheController

__all__ = ["GHOST_BANDS", "MAX_WINDOW", "MIN_WINDOW", "CacheEvidence", "PopularityWatch", "tune_window"]

MIN_WINDOW = 0.01  # W-TinyLFU's window
MAX_WINDOW = 0.8  # the controller's other end: main keeps a fifth, so evidence for a smaller window
# still comes in (main's evictions); at 1.0 (plain LRU) it would stop and the window stay put
GHOST_BANDS = layout.CACHE_GHOST_BANDS  # the core counts ghost hits by age in sixteenths of the capacity
PROBATION_SHARE = layout.CACHE_PROBATION_SHARE  # of the main area; the rest is protected
SHIFT_DROP = 6.0  # a fall in hit ratio this many times its usual interval-to-interval spread...
SHIFT_STALE = 0.8  # ...while the keys main keeps take less than this share of their usual share of hits
SHIFT_WARMUP = 8  # usual intervals before the usual levels are known (again, after a return)
SHIFT_WEIGHT = 0.2  # the usual levels' weight on each new interval
SHIFT_SETTLED = 2  # intervals without a new best hit ratio before the window goes back...
SHIFT_HOLD = 3  # ...and requests since the change of this many times the capacity (a large cache relearns longer)
FULL = 0.95  # until a cache first holds this share of its capacity it is filling: its size is not judged


def tune_window(window: int, capacity: int, hits_window: int, hits_main: int,
                ghosts_window: int, ghosts_main: int) -> tuple[int, str, bool] | None:
    """ARC's rule for the recency window: the new window size, why, and whether a limit
    held it back (None: no evidence).

    A request for a key just evicted from the window (turned away by the
    frequency filter) is one a slightly larger window would have hit; one for
    a key just evicted from main, one a larger main area would have. "Just":
    within the last capacity / 16 evictions, the margin a move can change (a
    loop longer than the cache brings every key back, but no small move would
    catch it). Each such request moves the boundary by one entry, weighted as
    ARC weights it by how many ghosts of each kind there are. Both counts come
    from the same requests, so the workload's own ups and downs do not steer
    the policy. The window at most doubles or halves an interval: where one
    kind of ghost is scarce its hits weigh up to 32 each, and a handful of them
    used to undo in one interval what many had built.

    >>> tune_window(10, 1000, hits_window=8, hits_main=1, ghosts_window=600, ghosts_main=400)
    (16, '8 requests for keys the window had evicted, 1 for keys main had: a larger window', False)
    >>> tune_window(100, 1000, hits_window=2, hits_main=5, ghosts_window=3200, ghosts_main=100)
    (50, '2 requests for keys the window had evicted, 5 for keys main had: a smaller window (limited: \
at most halved an interval)', True)
    """
    if not hits_window and not hits_main:
        return None
    step = hits_window * _ghost_weight(ghosts_main, ghosts_window) \
        - hits_main * _ghost_weight(ghosts_window, ghosts_main)
    lowest = max(1, math.ceil(MIN_WINDOW * capacity))
    highest = max(lowest, math.floor(MAX_WINDOW * capacity))
    wanted = round(window + step)
    paced = min(max(wanted, (window + 1) // 2), max(2 * window, window + 1))
    moved = int(min(highest, max(lowest, paced)))
    way = "a larger window" if moved > window else "a smaller window" if moved < window else "stays"
    if moved != wanted and moved == paced:
        way += f" (limited: at most {'doubled' if wanted > window else 'halved'} an interval)"
    elif moved != wanted:
        way += f" (limited by the window's {'ceiling, 80 %' if paced > highest else 'floor, 1 %'})"
    return moved, (f"{hits_window} requests for keys the window had evicted, {hits_main} for keys "
                   f"main had: {way}"), moved != wanted


def _ghost_weight(others: int, these: int) -> float:
    # ARC's delta: a hit among the scarcer kind of ghost counts for more -- but at most 32,
    # so one stray request cannot undo a long run of evidence the other way.
    return min(32.0, max(others / max(these, 1), 1.0))


class PopularityWatch:
    """Notices the popular keys changing at once, and answers with a recency window for a while.

    TinyLFU admits a new key only if it was asked for more often than the entry it would
    replace. When the popular keys change, main's protected entries -- the keys the filter
    keeps -- hold stale counts, and the new favourites are turned away until the counts age
    (every 10 x capacity requests): the cache relearns slowly, where plain LRU, which admits
    everything, recovers at once. The sign, both at once: the hit ratio falls ``SHIFT_DROP``
    times its usual interval-to-interval spread (at least its sampling noise) below its
    recent level, and the protected entries' share of the hits falls below ``SHIFT_STALE``
    of its usual share. A scan lowers the hit ratio too, but the hits left still come from
    the keys main keeps (and LRU would let the scan flush them); a workload that only got
    harder, its favourites still in main, keeps that share as well. The answer: the window
    takes the whole cache (LRU), the frequency counts are halved, and once the hit ratio has
    gone ``SHIFT_SETTLED`` intervals without a new best, and ``SHIFT_HOLD`` times the capacity
    in requests have passed since the change, the window goes back to its share.

    >>> def steady_watch():     # 80 % hits, three quarters of them on the keys main protects
    ...     watch = PopularityWatch()
    ...     for _ in range(10):
    ...         watch.observe(0.01, hit_ratio=0.80, ops=10_000, protected_hits=6_000, capacity=1_000)
    ...     return watch
    >>> steady_watch().observe(0.01, hit_ratio=0.55, ops=10_000, protected_hits=5_000, capacity=1_000) is None  # a scan
    True
    >>> print(steady_watch().observe(0.01, hit_ratio=0.55, ops=10_000, protected_hits=500, capacity=1_000)[1])
    the popular keys changed: hit ratio 0.550 against 0.800 lately, 9% of the hits on the keys \
main keeps against 75% usually: the window takes the whole cache (LRU), old counts are halved
    """

    def __init__(self) -> None:
        self.level = 0.0  # the hit ratio lately (an exponentially weighted mean)
        self.spread = 0.0  # its usual distance from one interval to the level
        self.kept = 0.0  # the protected entries' share of the hits, usually
        self.intervals = 0
        self.home: float | None = None  # the window share to go back to (None: no shift in hand)
        self.age_pending = False  # a shift was answered: the sketch is halved when the move is applied
        self._usual = 0  # usual intervals since the start or the last return (SHIFT_WARMUP are needed)
        self._kept_share = 0.0  # the window share ``kept`` was learned at
        self._best = 0.0  # the best hit ratio since the shift
        self._without_best = 0
        self._since = 0  # requests since the shift was answered
        self._hold = 0  # ...before the window may go back (SHIFT_HOLD times the capacity when it was)

    def observe(self, share: float, hit_ratio: float, ops: int, protected_hits: int, *,
                capacity: int) -> tuple[float, str] | None:
        """One judged interval: the window share to set and why (None: no shift in hand)."""
        level, kept = self.level, self.kept
        noise = max(self.spread, math.sqrt(max(level * (1.0 - level), 1e-4) / max(ops, 1)))
        kept_now = protected_hits / max(hit_ratio * ops, 1.0)
        self.age_pending = False
        answer = None
        if self.home is not None:
            self._since += ops
            if hit_ratio > self._best + noise:
                self._best, self._without_best = hit_ratio, 0
            else:
                self._without_best += 1
            if self._without_best >= SHIFT_SETTLED and self._since >= self._hold:
                answer = (self.home, f"the hit ratio stopped climbing after the popular keys changed "
                                     f"({hit_ratio:.3f}): the window goes back")
                self.home, self._usual = None, 0  # main refills: its share of the hits is learned anew
            elif self._without_best >= SHIFT_SETTLED:
                answer = (share, f"the popular keys changed: hit ratio {hit_ratio:.3f}, {self._since:,} requests "
                                 f"since; held until {self._hold:,} ({SHIFT_HOLD}x the capacity then: a large "
                                 "cache relearns its favourites for longer)")
            else:
                answer = (share, f"the popular keys changed: hit ratio {hit_ratio:.3f}, still climbing; held")
        elif (self._usual >= SHIFT_WARMUP and share < 1.0 and level - hit_ratio > SHIFT_DROP * noise
                and kept_now < SHIFT_STALE * kept):
            self.home, self._best, self._without_best, self.age_pending = share, hit_ratio, 0, True
            self._since, self._hold = 0, SHIFT_HOLD * capacity
            answer = (1.0, f"the popular keys changed: hit ratio {hit_ratio:.3f} against {level:.3f} lately, "
                           f"{kept_now:.0%} of the hits on the keys main keeps against {kept:.0%} usually: "
                           "the window takes the whole cache (LRU), old counts are halved")
        if not self.intervals:
            self.level = hit_ratio
        else:
            self.level += SHIFT_WEIGHT * (hit_ratio - level)
        if self.home is None and answer is None:
            # the usual, from usual intervals: an outlier counts at most 3x the noise, and a shift and
            # the climb back after it are not the workload's usual (the next would hide in them)
            if self.intervals:
                self.spread += SHIFT_WEIGHT * (min(abs(hit_ratio - level), 3.0 * noise) - self.spread)
            if not self._usual or not 0.5 <= share / max(self._kept_share, 1e-9) <= 2.0:
                # anew: main's share of the hits follows its share of the cache (the window moved)
                self.kept, self._kept_share = kept_now, share
            else:
                self.kept += SHIFT_WEIGHT * (kept_now - kept)
            self._usual += 1
        self.intervals += 1
        return answer

    def take_ageing(self) -> bool:
        """Whether the move being applied answers a shift (then the sketch is halved, once)."""
        pending, self.age_pending = self.age_pending, False
        return pending


class CacheEvidence:
    """Reads one cache core's counters at the end of each interval (see the module docstring)."""

    def __init__(self, core: CacheCore, reference: int) -> None:
        self.core = core
        self.reference = reference  # the capacity the cache was given (the default objective's reference)
        self.filled = False  # whether the cache has been full once (before: its first fill, not judged)
        self._seen: tuple[int, ...] = ()  # the core's counters at the last decision
        self._seen_ops = 0  # the core's ops then
        self.popularity = PopularityWatch()

    def __call__(self, controller: CacheController, min_capacity: int, max_capacity: int,
                 candidates: Mapping[Action, int]) -> Evidence:
        core = self.core
        grown = controller.step - 1.0  # growing adds this share of the capacity
        ops_now = core.ops
        # gets of the interval just ended through which the deep hits were counted at this step: since
        # it began, or since the marker reached its depth (over a few thousand gets after a resize or
        # a new step)
        followed_gets = ops_now - max(core.deep_since, self._seen_ops) if core.shrink_step == controller.step else 0
        now = (core.hits, core.misses, core.ghost_hits, core.probation_hits, core.window_deep_hits,
               *core.ghost_hits_within(1), *core.ghost_hits_within(round(grown * GHOST_BANDS)), core.protected_hits)
        hits, misses, ghost, probation, deep, margin_window, margin_main, near_window, near_main, protected = (
            (a - b for a, b in zip(now, self._seen)) if self._seen else now)
        ops = max(hits + misses, 1)
        span = math.log(max_capacity / min_capacity) if max_capacity > min_capacity else 1.0
        position = math.log(core.capacity / min_capacity) / span if span else 0.0
        summary = ""
        if hits + misses < controller.min_operations:  # too thin to judge: the gets count toward the next
            summary = (f"{hits + misses} gets: too little evidence to judge the size "
                       f"({controller.min_operations} needed), kept")
        else:
            self._seen, self._seen_ops = now, ops_now
            self.filled = self.filled or core.size >= FULL * core.capacity
            if not self.filled:
                # The first fill: a smaller capacity would drop nothing yet, but it would stop the
                # cache short of the working set it is still taking in; a larger one earns nothing.
                # (After a grow the new room fills too, but then the evidence is what judges it.)
                summary = (f"filling ({core.size} of {core.capacity} entries held, hit ratio {hits / ops:.3f}): "
                           "the size is judged once the cache is full, kept")
        if summary:
            features = {"hit_ratio": hits / ops, "ghost_ratio": ghost / ops, "capacity_position": position,
                        "shrink_loss_share": 0.0}
            return Evidence(features, 0.0, {}, summary, cold=True,
                            setting=SettingMove("window_share", "window", core.window_share, core.window_share))
        # Growing: the ghost hits within the added share of evictions, or that share of all
        # ghost hits (an even spread), whichever is more; both err low.
        grow_gain = max(near_window + near_main, grown * ghost) / ops
        # Shrinking drops the entries beyond the smaller capacity -- none if the cache is not
        # that full. They are the least valuable: probation's (a fifth of main), so its hits,
        # scaled to the share removed, are the estimate. With main (nearly) empty -- plain LRU,
        # only with adapt_window=False -- the core follows the hits at or beyond the smaller
        # capacity's position in the window (``window_deep_hits``): by LRU's stack property,
        # exactly what the smaller cache would have missed, a loop that just fits included, at
        # the rate measured since its marker reached its depth (after a resize or a new step: a
        # few thousand gets). Where that is under half the interval: the hit density just outside
        # (the ghost's).
        capacity = core.capacity
        smaller = capacity / controller.step
        dropped = max(0.0, core.size - smaller)
        main_share = 1.0 - core.window_share
        if main_share > 0.05:
            shrink_loss = probation / ops * (dropped / capacity) / (PROBATION_SHARE * main_share)
        elif 2 * followed_gets >= ops:
            shrink_loss = deep / followed_gets
        else:
            shrink_loss = grow_gain * dropped / (capacity - smaller)
        follow = controller.step if main_share <= 0.05 else 0.0
        if core.shrink_step != follow:
            core.shrink_step = follow
        hit_ratio = hits / ops
        shrink_loss = min(shrink_loss, hit_ratio)
        features = {
            "hit_ratio": hit_ratio,
            "ghost_ratio": ghost / ops,
            "capacity_position": position,
            "capacity": float(capacity),
            "window_share": float(core.window_share),
            "grow_gain": grow_gain,
            "shrink_loss": shrink_loss,
            "shrink_loss_share": shrink_loss / hit_ratio if hit_ratio else 0.0,
            "ghost_hits_window_margin": float(margin_window),
            "ghost_hits_main_margin": float(margin_main),
        }
        reference = self.reference
        reward = controller.reward(hit_ratio, capacity, max_capacity, reference)
        what_if = {}
        if Action.GROW in candidates:
            what_if[Action.GROW] = controller.reward(hit_ratio + grow_gain, candidates[Action.GROW], max_capacity,
                                                     reference)
        if Action.SHRINK in candidates:
            what_if[Action.SHRINK] = controller.reward(hit_ratio - shrink_loss, candidates[Action.SHRINK],
                                                       max_capacity, reference)
        summary = (f"hit ratio {hit_ratio:.3f}, ghost hits {ghost / ops:.3f} (growing would have hit "
                   f"{grow_gain:+.3f}, shrinking {-shrink_loss:+.3f})")
        cold = not hit_ratio and not features["ghost_ratio"]
        share = core.window_share
        setting = SettingMove("window_share", "window", share, share)
        if controller.adapt_window and not cold:
            # a change of the popular keys in hand overrides ARC's rule (which is not asked then)
            shift = self.popularity.observe(share, hit_ratio, ops, protected, capacity=capacity)
            moved = None if shift is not None else tune_window(
                core.window_capacity, capacity, margin_window, margin_main, *core.ghost_origins())
            if shift is not None:
                setting = SettingMove("window_share", "window", share, *shift)
            elif moved is not None:
                setting = SettingMove("window_share", "window", share, moved[0] / capacity, moved[1], moved[2])
        return Evidence(features, reward, what_if, summary, cold, setting)
