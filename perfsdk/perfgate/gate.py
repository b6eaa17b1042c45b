"""The verdict on one run's benchmarks against their history, pure (no files, no pytest).

For each benchmark:

1. the levels of its history's runs (each run's fastest sample, log) are cut into
   segments where their level changed (``stats.change_points``): a baseline that
   already moved (a change that was accepted, a new machine image) starts a new
   segment, and only the latest segment is the baseline;
2. *step*: this run against the last ``baseline_runs`` runs of that segment;
3. *drift*: when the segment is long enough, this run against its first
   ``baseline_runs`` runs, so a slow creep that no single step shows is caught;
4. each comparison asks two questions, and both must say "different" (an
   intersection-union test: its p is the larger of the two):

   * are this run's samples from another distribution than the baseline runs'
     pooled samples? (Mann-Whitney U; the change is the Hodges-Lehmann ratio);
   * is this run's level further from the baseline runs' mean level than runs
     of unchanged code stray? (a t prediction test; the run-to-run spread comes
     from the smallest four fifths of the successive differences within the
     history's segments, so a drift does not pass for noise nor a few slow runs
     for the usual spread; from all of them on a short history, ``_RunNoise``).
     On a shared machine whole runs are
     slower or faster together, which the samples of one run cannot show;

   a run of 1 or 2 samples (a costly benchmark's ``pedantic(rounds=1)``) is asked
   the second question alone, against earlier runs of as many samples (``_kind``);

5. the gate asks "is it slower?" (one-sided; "is it faster?" is asked apart, and
   only reports an improvement). A benchmark's p is the smallest of its
   comparisons', Bonferroni-corrected for their number, then adjusted across
   benchmarks (Benjamini-Hochberg). It regressed if that adjusted p is at most
   ``alpha`` *and* the ratio of the comparison that gave it is at least
   ``1 + min_change``: a real but tiny slowdown does not fail a build;
6. *confirmation* (``confirm``): a benchmark that regressed is run again and the
   new samples are judged the same way, against the same history. A real
   regression is there the second time; a shared machine's slow moment (tens of
   milliseconds, which can cover a whole run of a small benchmark) rarely is.
   A check's false-alarm rate ``alpha`` is then shared among its judgments
   (``stage_alpha``): each is made at ``alpha ** (1 / (1 + reruns))``, so that
   the first run and every re-run would together say "regressed" with chance
   ``alpha`` were the judgments independent; they share the baseline and its
   spread, so somewhat more, the more so the shorter the history. Each judgment
   at ``alpha`` itself would give unchanged code far fewer false alarms than
   asked for, and a real slowdown three strict lines to clear instead of three
   lax ones. A verdict's p is its check's: the largest p
   of its judgments to the power of their number (``_as_a_check``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from perfsdk.perfgate.defaults import ALPHA, MIN_CHANGE, RERUNS
from perfsdk.perfgate.stats import Shift, benjamini_hochberg, change_points, mann_whitney_p, run_samples, shift_ratio

__all__ = ["ALPHA", "MIN_SAMPLES", "Verdict", "confirm", "judge", "judge_confirmed", "stage_alpha"]

#: Fewer samples than this in a run and its samples are not tested, only its level (``_kind``).
MIN_SAMPLES = 3
#: The share of a history's successive differences, the smallest, its run-to-run spread is taken from.
TRIMMED_SHARE = 0.8
#: Fewer successive differences than this and all of them are used: trimming so few gave a spread
#: too small (``_RunNoise.of``).
MIN_TRIMMED = 5
#: Fewer degrees of freedom (successive differences) than this and the run-to-run spread is unknown.
MIN_SPREAD_DF = 2


def stage_alpha(alpha: float, reruns: int) -> float:
    """The alpha of each judgment in a check of one run and ``reruns`` re-runs whose false-alarm
    rate is ``alpha`` (on independent noise every judgment must say "regressed").

    >>> round(stage_alpha(0.01, 2), 3), stage_alpha(0.01, 0)
    (0.215, 0.01)
    """
    return alpha ** (1.0 / (1 + reruns))


def _normal_trimmed_second_moment(share: float) -> float:
    """E[z^2] over the ``share`` of a standard normal z nearest 0: what the trimmed mean square is
    divided by to estimate the variance of normal noise."""
    from statistics import NormalDist

    normal = NormalDist()
    c = normal.inv_cdf(0.5 + share / 2)
    return 1.0 - 2.0 * c * normal.pdf(c) / share

Samples = Sequence[float] | np.ndarray


@dataclass(frozen=True)
class Verdict:
    """One benchmark's verdict, with what it rests on.

    ``verdict`` is ``"regressed"``, ``"improved"``, ``"unchanged"`` or ``"new"``;
    ``shift`` is this run against the baseline (None when new), ``p_adjusted`` the
    Benjamini-Hochberg p across benchmarks (after ``judge_confirmed``, a regression's or an
    improvement's is its whole check's), ``basis`` which runs it was compared with.
    """

    benchmark: str
    verdict: str
    shift: Shift | None
    p_value: float
    p_adjusted: float
    basis: str

    def line(self) -> str:
        """One line for the terminal."""
        change = str(self.shift) if self.shift is not None else "-"
        confidence = f"p_adj={self.p_adjusted:.2g}" if not math.isnan(self.p_adjusted) else ""
        return f"{self.verdict:<10} {self.benchmark}  {change}  {confidence}  ({self.basis})"


@dataclass(frozen=True)
class _Test:
    """One comparison: one-sided p that this run is slower, and that it is faster, and the change."""

    p_slower: float
    p_faster: float
    shift: Shift
    basis: str


def _level(samples: np.ndarray) -> float:
    """A run's level: its fastest sample (log). On a shared machine contention only adds time, so the
    fastest round is the least disturbed; measured, it strays less from run to run than the median."""
    return float(np.log(np.min(samples)))


def _levels(runs: Sequence[np.ndarray]) -> np.ndarray:
    return np.array([_level(run) for run in runs])


def _kind(run: np.ndarray) -> int:
    """Runs compared with each other: of ``MIN_SAMPLES`` samples or more, or of as many. The fastest
    of 1 or 2 samples is no level to set beside the fastest of 10 (it is slower by chance alone)."""
    return min(run.size, MIN_SAMPLES)


@dataclass(frozen=True)
class _RunNoise:
    """How far the levels of runs of unchanged code stray: a pooled standard deviation and its degrees of freedom."""

    sd: float
    df: int

    @classmethod
    def of(cls, levels: np.ndarray, cuts: Sequence[int]) -> _RunNoise:
        """From successive differences within segments, so a drift does not pass for noise. From
        ``MIN_TRIMMED`` differences on, the smallest ``TRIMMED_SHARE`` of them, scaled to what all
        of them give for normal noise (for the share actually kept), so the few runs a shared
        machine slows as a whole do not widen the spread every later run is judged with (those are
        what the re-runs are for). Fewer, or where the smallest are all equal (a coarse timer): all
        of them. On normal noise the t test at 0.01 then fails unchanged code 1.1-1.4 % of the
        time on 3 to 51 runs, trimmed no more often than with all the differences; trimmed on 3
        or 4 differences, or scaled for four fifths whatever share was kept, it failed 1.4-2.7 %.

        >>> round(_RunNoise.of(np.array([0.0, 0.01, 0.0, 0.01, 0.0, 0.01, 0.0, 0.01, 0.0, 0.01, 0.3]), []).sd, 4)
        0.0107
        """
        steps = np.concatenate([np.diff(segment) for segment in np.split(levels, list(cuts))])
        if not steps.size:
            return cls(math.nan, 0)
        every = float(np.sqrt(np.mean(steps ** 2) / 2))
        kept = round(TRIMMED_SHARE * steps.size)
        if steps.size < MIN_TRIMMED or kept == steps.size:
            return cls(every, int(steps.size))
        smallest = np.sort(np.abs(steps))[:kept]
        trimmed = float(np.sqrt(np.mean(smallest ** 2) / _normal_trimmed_second_moment(kept / steps.size) / 2))
        return cls(trimmed if trimmed > 0 else every, int(steps.size))

    def p_values(self, level: float, baseline_levels: np.ndarray) -> tuple[float, float]:
        """One-sided p that a run of unchanged code lands this far above, and this far below, the baseline runs' mean."""
        from scipy.stats import t

        spread = max(self.sd, 1e-12) * math.sqrt(1 + 1 / baseline_levels.size)
        score = (level - baseline_levels.mean()) / spread
        return float(t.sf(score, self.df)), float(t.cdf(score, self.df))


def _compare(current: np.ndarray, runs: Sequence[np.ndarray], noise: _RunNoise, basis: str) -> _Test | None:
    """This run against ``runs`` by the questions that can be asked: the samples' (``MIN_SAMPLES``
    a side), the run level's (a known run-to-run spread); both where both can (the larger p).
    None where neither can."""
    baseline = np.concatenate(runs)
    found: list[tuple[float, float]] = []
    if current.size >= MIN_SAMPLES and baseline.size >= MIN_SAMPLES:
        found.append((mann_whitney_p(current, baseline, "greater"), mann_whitney_p(current, baseline, "less")))
    else:
        basis += f"; run levels only: {current.size} sample(s) a run"
    if noise.df >= MIN_SPREAD_DF:
        found.append(noise.p_values(_level(current), _levels(runs)))
    elif found:
        basis += "; run-to-run spread unknown yet, samples only"
    if not found:
        return None
    return _Test(max(p for p, _ in found), max(p for _, p in found), shift_ratio(current, baseline), basis)


def _tests(current: np.ndarray, history: Sequence[np.ndarray], baseline_runs: int, seed: int) -> list[_Test]:
    """The comparisons that can be made (step, and drift on a long segment); none, where too few samples."""
    levels = _levels(history)
    cuts = change_points(levels, seed=seed)
    noise = _RunNoise.of(levels, cuts)
    start = cuts[-1] if cuts else 0
    segment = history[start:]
    since = f"since a change {len(history) - start} runs ago" if cuts else f"of {len(history)}"
    recent = min(baseline_runs, len(segment))
    tests = [_compare(current, segment[-baseline_runs:], noise, f"step: vs last {recent} runs {since}")]
    if len(segment) >= 2 * baseline_runs:
        tests.append(_compare(current, segment[:baseline_runs], noise,
                              f"drift: vs first {baseline_runs} of the last {len(segment)} runs"))
    return [test for test in tests if test is not None]


def judge(current: Mapping[str, Samples], history: Sequence[Mapping[str, Samples]], *,
          min_change: float = MIN_CHANGE, alpha: float = ALPHA, baseline_runs: int = 10,
          seed: int = 0) -> list[Verdict]:
    """Verdicts for this run's benchmarks (``current``: name -> seconds per round) against
    ``history`` (earlier runs, oldest first, each name -> seconds), in ``current``'s order.

    >>> rng = np.random.default_rng(1)
    >>> history = [{"sort": rng.lognormal(0, 0.02, 10)} for _ in range(5)]
    >>> [v.verdict for v in judge({"sort": rng.lognormal(0, 0.02, 10)}, history)]
    ['unchanged']
    >>> [v.verdict for v in judge({"sort": 1.25 * rng.lognormal(0, 0.02, 10), "json": [1, 2, 3]}, history)]
    ['regressed', 'new']

    ``alpha`` is this one judgment's; where re-runs confirm it (``judge_confirmed``) each judgment
    takes a share of the check's (``stage_alpha``). A shared machine's slow moments make false
    alarms that no alpha accounts for: the re-runs are what takes them out (docs/perf-gate.md).
    """
    if not 0 < min_change < 1:
        raise ValueError(f"min_change must be in (0, 1), got {min_change!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if baseline_runs < 1:
        raise ValueError(f"baseline_runs must be >= 1, got {baseline_runs!r}")
    tests: dict[str, list[_Test]] = {}
    notes: dict[str, str] = {}
    for name, samples in current.items():
        now = run_samples(samples, f"benchmark {name!r}")
        earlier = [run_samples(run[name], f"benchmark {name!r} in the history") for run in history if name in run]
        alike = [run for run in earlier if _kind(run) == _kind(now)]
        found = _tests(now, alike, baseline_runs, seed) if alike else []
        if found:
            tests[name] = found
        elif not earlier:
            notes[name] = "no history"
        elif now.size < MIN_SAMPLES:
            notes[name] = (f"too few samples ({now.size}) to judge: {MIN_SAMPLES} a run needed, or "
                           f"{MIN_SPREAD_DF + 1} earlier runs of {now.size} to judge its level alone "
                           f"(has {len(alike)})")
        else:
            notes[name] = (f"no earlier run of {MIN_SAMPLES} samples or more to compare with "
                           f"({len(earlier)} of fewer)")
    slower, p_slower, adjusted_slower = _strongest(tests, "p_slower")
    faster, p_faster, adjusted_faster = _strongest(tests, "p_faster")
    verdicts = []
    for name in current:
        if name not in tests:
            verdict = "new" if notes[name] == "no history" else "unchanged"
            verdicts.append(Verdict(name, verdict, None, math.nan, math.nan, notes[name]))
        elif adjusted_slower[name] <= alpha and slower[name].shift.ratio >= 1 + min_change:
            verdicts.append(Verdict(name, "regressed", slower[name].shift, p_slower[name], adjusted_slower[name],
                                    slower[name].basis))
        elif adjusted_faster[name] <= alpha and faster[name].shift.ratio <= 1 / (1 + min_change):
            verdicts.append(Verdict(name, "improved", faster[name].shift, p_faster[name], adjusted_faster[name],
                                    faster[name].basis))
        elif adjusted_slower[name] <= adjusted_faster[name]:
            verdicts.append(Verdict(name, "unchanged", slower[name].shift, p_slower[name], adjusted_slower[name],
                                    slower[name].basis))
        else:
            verdicts.append(Verdict(name, "unchanged", faster[name].shift, p_faster[name], adjusted_faster[name],
                                    faster[name].basis))
    return verdicts


def confirm(first: Sequence[Verdict], again: Mapping[str, Samples], history: Sequence[Mapping[str, Samples]],
            *, rerun: int = 1, **settings: Any) -> list[Verdict]:
    """``first`` (``judge``'s verdicts) with each "regressed" kept only where the samples of a
    re-run (``again``: name -> seconds, for the benchmarks that regressed; ``rerun``: which re-run,
    for the verdict's text) regress too, judged by ``judge(again, history, **settings)``. One that
    does not is "unchanged", and says so; one with no re-run samples, or too few to judge, stays
    as it was. A confirmed verdict's p is the larger of the two. ``judge_confirmed`` runs the
    whole check, each judgment at its ``stage_alpha``; called by hand, pass that alpha to both.

    >>> rng = np.random.default_rng(1)
    >>> history = [{"sort": rng.lognormal(0, 0.02, 10)} for _ in range(5)]
    >>> first = judge({"sort": 1.25 * rng.lognormal(0, 0.02, 10)}, history)
    >>> [v.verdict for v in confirm(first, {"sort": 1.25 * rng.lognormal(0, 0.02, 10)}, history)]
    ['regressed']
    >>> verdict = confirm(first, {"sort": rng.lognormal(0, 0.02, 10)}, history, rerun=2)[0]
    >>> verdict.verdict, "not on re-run 2" in verdict.basis
    ('unchanged', True)
    """
    rerun_samples = {v.benchmark: again[v.benchmark] for v in first
                     if v.verdict == "regressed" and v.benchmark in again}
    second = {v.benchmark: v for v in judge(rerun_samples, history, **settings)} if rerun_samples else {}
    verdicts = []
    for verdict in first:
        repeat = second.get(verdict.benchmark)
        if repeat is None or repeat.shift is None:  # not re-run, or too few samples to tell
            verdicts.append(verdict)
        elif repeat.verdict == "regressed":
            verdicts.append(Verdict(verdict.benchmark, "regressed", verdict.shift, max(verdict.p_value, repeat.p_value),
                                    max(verdict.p_adjusted, repeat.p_adjusted),
                                    f"{verdict.basis}; re-run {rerun} too: {repeat.shift}"))
        else:
            verdicts.append(Verdict(verdict.benchmark, "unchanged", verdict.shift, verdict.p_value, verdict.p_adjusted,
                                    f"{verdict.basis}; not on re-run {rerun}: {repeat.shift}"))
    return verdicts


def judge_confirmed(current: Mapping[str, Samples], history: Sequence[Mapping[str, Samples]],
                    rerun: Callable[[int, list[str]], Mapping[str, Samples]], *, reruns: int = RERUNS,
                    alpha: float = ALPHA, **settings: Any) -> list[Verdict]:
    """``judge``, then up to ``reruns`` rounds of ``confirm``: round ``k`` asks ``rerun(k, names)``
    for new samples of the benchmarks still regressed (a name it leaves out keeps its verdict).
    ``alpha`` is the whole check's false-alarm rate: each judgment is made at its
    ``stage_alpha``, and a verdict's ``p_adjusted`` is its check's (``_as_a_check``).

    >>> rng = np.random.default_rng(1)
    >>> history = [{"sort": rng.lognormal(0, 0.02, 10)} for _ in range(5)]
    >>> slow_once = lambda k, names: {name: rng.lognormal(0, 0.02, 10) for name in names}
    >>> [v.verdict for v in judge_confirmed({"sort": 1.25 * rng.lognormal(0, 0.02, 10)}, history, slow_once)]
    ['unchanged']
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if reruns < 0:
        raise ValueError(f"reruns must be >= 0, got {reruns!r}")
    settings["alpha"] = stage_alpha(alpha, reruns)
    verdicts = judge(current, history, **settings)
    judgments = dict.fromkeys(current, 1)  # how many judgments each verdict rests on
    for k in range(1, reruns + 1):
        suspects = [verdict.benchmark for verdict in verdicts if verdict.verdict == "regressed"]
        if not suspects:
            break
        judged, verdicts = verdicts, confirm(verdicts, rerun(k, suspects), history, rerun=k, **settings)
        for before, after in zip(judged, verdicts):
            if after is not before:  # ``confirm`` keeps a verdict it could not judge as it was
                judgments[after.benchmark] += 1
    return [_as_a_check(verdict, judgments[verdict.benchmark], alpha) for verdict in verdicts]


def _as_a_check(verdict: Verdict, judgments: int, alpha: float) -> Verdict:
    """A "regressed" or "improved" verdict with its check's p: the largest p of the ``judgments``
    it rests on, to the power of their number (on independent noise, the chance that all of them
    go that far), standing only within the check's ``alpha``. So a regression a missing re-run left
    unconfirmed must be that much stronger alone, and an improvement, never re-run, is judged at
    ``alpha`` itself.

    >>> shift = shift_ratio([1.2, 1.3, 1.25], [1.0, 1.05, 0.98])
    >>> _as_a_check(Verdict("b", "regressed", shift, 0.1, 0.2, "step"), 3, 0.01).p_adjusted
    0.008000000000000002
    >>> _as_a_check(Verdict("b", "regressed", shift, 0.1, 0.2, "step"), 1, 0.01).verdict
    'unchanged'
    """
    if verdict.verdict not in ("regressed", "improved"):
        return verdict
    p = verdict.p_adjusted ** judgments
    if p <= alpha * (1 + 1e-9):  # (a judgment at exactly its stage alpha, up to rounding)
        return replace(verdict, p_adjusted=p)
    way = "slower" if verdict.verdict == "regressed" else "faster"
    return replace(verdict, verdict="unchanged", p_adjusted=p,
                   basis=f"{verdict.basis}; {way}, but not surely enough on {judgments} judgment(s): "
                         f"p {p:.2g} > alpha {alpha:g}")


def _strongest(tests: Mapping[str, list[_Test]], direction: str
               ) -> tuple[dict[str, _Test], dict[str, float], dict[str, float]]:
    """Per benchmark, in one direction: the comparison with the smallest p, that p Bonferroni-corrected
    for the comparisons made, and the same adjusted across benchmarks (Benjamini-Hochberg)."""
    best = {name: min(found, key=lambda test: getattr(test, direction)) for name, found in tests.items()}
    p_values = {name: min(1.0, len(tests[name]) * getattr(best[name], direction)) for name in tests}
    adjusted = dict(zip(p_values, (float(p) for p in benjamini_hochberg(list(p_values.values())))))
    return best, p_values, adjusted
