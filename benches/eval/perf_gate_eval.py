"""How well the regression gate judges (issue 15): false alarms on unchanged code,
injected slowdowns caught, side by side with pytest-benchmark's own rules.

Full mode times real workloads on this machine (perfsdk's ZScoreDetector.update_many,
a sort, json.dumps, a regex scan, sha256, a dict build) in ``--runs`` rounds spread
over a few minutes. Each round is one "run" of every workload three ways, in a
shuffled order: as it is (A), and with a busy-wait inside the timed call of 10 % and
25 % of the workload's median time measured at the start (real injected slowdowns,
timed like the rest, not scaled numbers). Each run gives 10 samples a benchmark,
one call each, as pytest-benchmark's rounds do.

Then, for every run after the first ``--history`` runs, the gate judges that run
against the A runs before it, one benchmark slowed at a time (the others A); where
it finds a regression, the re-runs the plugin makes to confirm it
(``perfsdk.perfgate.gate.confirm``) are the same cell timed again after the round, in two
rounds of re-runs each after the plugin's pause (collections saved before re-runs were
timed use the next two runs instead):

* A/A: the unchanged run; any "regressed" is a false alarm;
* +10 % / +25 %: one benchmark's slowed run; "regressed" is a catch.

The anchors judge the same samples: ``--benchmark-compare-fail=min:5%`` and
``mean:10%`` against the previous run (what ``--benchmark-compare`` does with the
last saved run), evaluated with pytest-benchmark's own check objects
(``pytest_benchmark.utils.parse_compare_fail``), not re-implemented.

    .venv/bin/python benches/eval/perf_gate_eval.py                 # real timings (about 5 min on 2 cores)
    .venv/bin/python benches/eval/perf_gate_eval.py --save t.npz    # ... and keep them
    .venv/bin/python benches/eval/perf_gate_eval.py --load t.npz    # judge kept timings again
    .venv/bin/python benches/eval/perf_gate_eval.py --quick         # seeded synthetic samples (the test suite's run)

``--quick`` draws samples from a seeded model of a noisy machine (log-normal
samples, a run-to-run level that wanders, rare slow outliers) instead of timing
anything, so its figures are the same on every machine and every run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from perfsdk.perfgate.gate import judge_confirmed
from perfsdk.perfgate.session import RERUN_PAUSE_S

SAMPLES_PER_RUN = 10
SLOWDOWNS = (0.10, 0.25)
#: (label, judge keyword arguments, times a regression is re-run to confirm it): the gate as
#: shipped; without its re-runs (its one judgment then at the check's alpha, 0.01); strictly 10
#: samples a side.
GATE_SETTINGS = (("perf-gate (as shipped: last 10 runs pooled, a regression re-run twice)", {}, 2),
                 ("perf-gate without re-runs", {}, 0),
                 ("perf-gate, 10 v 10 (last run only, no re-run)", {"baseline_runs": 1}, 0))
RERUNS = max(reruns for _, _, reruns in GATE_SETTINGS)
ANCHOR_RULES = ("min:5%", "mean:10%")


# ---- the workloads and their timing ----------------------------------------------

def workloads(seed: int = 0) -> dict[str, Callable[[], object]]:
    """Small real jobs, each about a millisecond on this machine."""
    from perfsdk import ZScoreDetector

    rng = random.Random(seed)
    stream = np.random.default_rng(seed).normal(100.0, 5.0, 20_000)
    floats = [rng.random() for _ in range(20_000)]
    document = {f"key{i}": {"id": i, "name": f"item {i}", "tags": ["a", "b"], "price": i * 0.5} for i in range(1_500)}
    text = " ".join(f"user{rng.randrange(10_000)}@host{rng.randrange(50)}.example" for _ in range(4_000))
    email = re.compile(r"(\w+)@(\w+)\.example")
    blob = bytes(rng.randrange(256) for _ in range(1 << 19))
    return {
        "zscore.update_many": lambda: ZScoreDetector(window=64).update_many(stream),
        "sorted": lambda: sorted(floats),
        "json.dumps": lambda: json.dumps(document),
        "re.findall": lambda: email.findall(text),
        "sha256": lambda: hashlib.sha256(blob).digest(),
        "dict build": lambda: {i: str(i) for i in range(10_000)},
    }


def _busy_wait(seconds: float) -> None:
    """Burn CPU for ``seconds`` (a slowdown that competes for the core like real work)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _time_calls(job: Callable[[], object], extra_s: float, n: int) -> np.ndarray:
    samples = np.empty(n)
    for i in range(n):
        start = time.perf_counter()
        job()
        if extra_s:
            _busy_wait(extra_s)
        samples[i] = time.perf_counter() - start
    return samples


def probe() -> object:
    """A fixed interpreted job timed just before each workload: does the machine's state show in it?"""
    counts: dict[int, int] = {}
    for i in range(3000):
        counts[i & 255] = counts.get(i & 255, 0) + i * 3
    return sorted(counts.values(), reverse=True)


def rerun_key(variant: str, k: int) -> str:
    """The timings of a variant's ``k``-th re-run (timed after the round, as the plugin re-runs
    after the session's other tests)."""
    return f"{variant} re-run {k}"


def collect(runs: int, pause_s: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Real timings: variant name -> array (workload, run, sample); variants "A", "+10%", "+25%",
    their re-runs (``rerun_key``: once every cell of a round is timed, RERUNS rounds of every cell
    again, each after ``RERUN_PAUSE_S``, as the plugin re-runs a flagged benchmark at the end of
    the session), and
    "probe" (the probe's samples timed just before each workload's unchanged ones)."""
    jobs = workloads(seed)
    medians = {}
    for name, job in jobs.items():  # warm up (numba compiles on first call) and calibrate the injection
        _time_calls(job, 0.0, 5)
        medians[name] = float(np.median(_time_calls(job, 0.0, 31)))
    variants = {"A": 0.0, **{_variant(s): s for s in SLOWDOWNS}}
    keys = [*variants, *(rerun_key(v, k) for v in variants for k in range(1, RERUNS + 1)), "probe"]
    out = {key: np.empty((len(jobs), runs, SAMPLES_PER_RUN)) for key in keys}
    order = random.Random(seed)
    cells = [(w, v) for w in range(len(jobs)) for v in variants]
    for run in range(runs):
        order.shuffle(cells)
        for w, variant in cells:
            name = list(jobs)[w]
            probed = _time_calls(probe, 0.0, SAMPLES_PER_RUN)  # before every cell, so every variant follows one
            if variant == "A":
                out["probe"][w, run] = probed
            out[variant][w, run] = _time_calls(jobs[name], variants[variant] * medians[name], SAMPLES_PER_RUN)
        for k in range(1, RERUNS + 1):  # as the plugin re-runs: a round of re-runs after a pause, twice
            time.sleep(RERUN_PAUSE_S)
            order.shuffle(cells)
            for w, variant in cells:
                name = list(jobs)[w]
                out[rerun_key(variant, k)][w, run] = _time_calls(jobs[name], variants[variant] * medians[name],
                                                                  SAMPLES_PER_RUN)
        print(f"\r  run {run + 1}/{runs}", end="", file=sys.stderr, flush=True)
        time.sleep(pause_s)
    print(file=sys.stderr)
    return out


def synthetic(runs: int, workload_count: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded samples from a model of a noisy machine: per-run level wandering (AR(1), ~3 %),
    log-normal sample noise (~4 %), 3 % of samples slowed 1.5-3x by a neighbour."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(1e-3, 5e-3, workload_count)[:, None]
    level = np.zeros((workload_count, runs))
    for run in range(1, runs):
        level[:, run] = 0.5 * level[:, run - 1] + rng.normal(0, 0.025, workload_count)
    out = {}
    for variant, slowdown in {"A": 0.0, **{_variant(s): s for s in SLOWDOWNS}}.items():
        noise = rng.lognormal(0.0, 0.04, (workload_count, runs, SAMPLES_PER_RUN))
        outliers = np.where(rng.random(noise.shape) < 0.03, rng.uniform(1.5, 3.0, noise.shape), 1.0)
        out[variant] = (base * np.exp(level))[..., None] * noise * outliers + base[..., None] * slowdown
    return out


def _variant(slowdown: float) -> str:
    return f"+{slowdown:.0%}"


# ---- judging --------------------------------------------------------------------

@dataclass
class Tally:
    """How often one rule fired, per case and workload."""

    fired: dict[str, np.ndarray]
    checks: dict[str, np.ndarray]

    def rate(self, case: str, workload: int | None = None) -> str:
        pick = slice(None) if workload is None else slice(workload, workload + 1)
        fired, checks = int(self.fired[case][pick].sum()), int(self.checks[case][pick].sum())
        return f"{fired / checks:.1%} ({fired}/{checks})"


def _anchor_fires(rule: str, current: np.ndarray, previous: np.ndarray) -> bool:
    from pytest_benchmark.utils import parse_compare_fail

    stats = {"min": float(np.min(current)), "mean": float(np.mean(current))}
    compared = {"min": float(np.min(previous)), "mean": float(np.mean(previous))}
    return bool(parse_compare_fail(rule).fails(stats, compared))


def evaluate(timings: dict[str, np.ndarray], history: int) -> dict[str, Tally]:
    """Rule label -> how often it fired on A/A and on each injected slowdown."""
    cases = ["A/A", *(_variant(s) for s in SLOWDOWNS)]
    labels = [label for label, _, _ in GATE_SETTINGS] + [f"pytest-benchmark {rule} (vs previous run)"
                                                      for rule in ANCHOR_RULES]
    plain = timings["A"]
    workload_count, runs, _ = plain.shape
    tallies = {label: Tally({case: np.zeros(workload_count, int) for case in cases},
                            {case: np.zeros(workload_count, int) for case in cases}) for label in labels}
    names = [f"w{w}" for w in range(workload_count)]
    timed = rerun_key("A", 1) in timings  # else the next runs stand for a run's re-runs (older collections)
    for run in range(history, runs - (0 if timed else RERUNS)):
        past = [{names[w]: plain[w, r] for w in range(workload_count)} for r in range(run - history, run)]
        unchanged = {names[w]: plain[w, run] for w in range(workload_count)}
        trials = [("A/A", "", unchanged, list(range(workload_count)))]
        for slowdown in SLOWDOWNS:  # one benchmark slowed at a time, the others as they are
            case = _variant(slowdown)
            for w in range(workload_count):
                trials.append((case, names[w], {**unchanged, names[w]: timings[case][w, run]}, [w]))
        for case, slowed, current, watched in trials:

            def rerun(k: int, suspects: list[str]) -> dict[str, np.ndarray]:
                """The suspects' re-run samples: the slowed one's of its variant, the others' unchanged."""
                out = {}
                for name in suspects:
                    w, key = names.index(name), case if name == slowed else "A"
                    out[name] = timings[rerun_key(key, k)][w, run] if timed else timings[key][w, run + k]
                return out

            for label, settings, reruns in GATE_SETTINGS:
                verdicts = judge_confirmed(current, past, rerun, reruns=reruns, **settings)
                for w in watched:
                    tallies[label].fired[case][w] += verdicts[w].verdict == "regressed"
                    tallies[label].checks[case][w] += 1
            for rule in ANCHOR_RULES:
                label = f"pytest-benchmark {rule} (vs previous run)"
                for w in watched:
                    tallies[label].fired[case][w] += _anchor_fires(rule, current[names[w]], past[-1][names[w]])
                    tallies[label].checks[case][w] += 1
    return tallies


def by_workload(timings: dict[str, np.ndarray], names: list[str], tallies: dict[str, Tally]) -> list[str]:
    """Per workload: its noise, and how the gate (as shipped) and min:5% did on it. With the probe's
    timings: how far each run's level (fastest sample, log) strays as it is and relative to the probe's
    level just before it -- whether dividing by a probe would take the machine's state out."""
    gate, anchor = tallies[GATE_SETTINGS[0][0]], tallies[f"pytest-benchmark {ANCHOR_RULES[0]} (vs previous run)"]
    probed = "probe" in timings
    extra = " | run levels sd: as they are, over the probe's" if probed else ""
    lines = ["| workload | median | within a run (IQR/median) | run-to-run (sd of log run medians) "
             f"| gate: A/A, +10 %, +25 % | min:5%: A/A, +10 %, +25 %{extra} |",
             "| --- | --- | --- | --- | --- | ---" + (" | ---" if probed else "") + " |"]
    for w, name in enumerate(names):
        samples = timings["A"][w]
        q1, q2, q3 = np.percentile(samples, [25, 50, 75], axis=1)
        spread = float(np.std(np.log(np.median(samples, axis=1)), ddof=1))
        rates = [", ".join(t.rate(case, w).split(" ")[0] for case in ("A/A", "+10%", "+25%")) for t in (gate, anchor)]
        row = (f"| {name} | {np.median(samples) * 1e3:.3f} ms | {np.median((q3 - q1) / q2):.1%} | {spread:.1%} "
               f"| {rates[0]} | {rates[1]}")
        if probed:
            level, probe_level = np.log(samples.min(axis=1)), np.log(timings["probe"][w].min(axis=1))
            row += f" | {np.std(level, ddof=1):.1%}, {np.std(level - probe_level, ddof=1):.1%}"
        lines.append(row + " |")
    return lines


def table(tallies: dict[str, Tally]) -> list[str]:
    lines = ["| rule | A/A false alarms (target <= 1 %) | +10 % caught (>= 90 %) | +25 % caught (>= 99 %) |",
             "| --- | --- | --- | --- |"]
    for label, tally in tallies.items():
        lines.append(f"| {label} | {tally.rate('A/A')} | {tally.rate('+10%')} | {tally.rate('+25%')} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="seeded synthetic samples, no timing (the test suite's run)")
    parser.add_argument("--runs", type=int, default=None, help="runs to time (default 80; quick: 30)")
    parser.add_argument("--history", type=int, default=20, help="runs of history each check sees (default 20)")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between runs (spreads them over time)")
    parser.add_argument("--save", help="keep the timings in this .npz file")
    parser.add_argument("--load", help="judge timings kept by --save instead of timing anew")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        runs = args.runs or 40
        timings, names = synthetic(runs, seed=args.seed), [f"synthetic {i}" for i in range(4)]
        source = f"seeded synthetic samples (seed {args.seed}), {runs} runs"
    elif args.load:
        with np.load(args.load) as kept:
            timings = {key: kept[key] for key in kept.files if key != "names"}  # "probe" if it was timed
            names = [str(name) for name in kept["names"]]
        source = f"real timings kept in {args.load}, {timings['A'].shape[1]} runs"
    else:
        runs = args.runs or 80
        names = list(workloads())
        timings = collect(runs, args.pause, seed=args.seed)
        source = f"real timings on this machine, {runs} runs, {args.pause:g} s apart"
    if args.save:
        np.savez(args.save, names=np.array(names), **timings)
    reruns = ("re-runs timed after each round" if rerun_key("A", 1) in timings
              else "the next runs stand for a run's re-runs")
    print(f"Regression gate: {source}; {SAMPLES_PER_RUN} samples a run; history of {args.history} runs; "
          f"one benchmark slowed at a time; {reruns}\n")
    tallies = evaluate(timings, args.history)
    print("\n".join(table(tallies)) + "\n")
    print("\n".join(by_workload(timings, names, tallies)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
