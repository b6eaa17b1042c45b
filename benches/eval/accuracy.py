"""Detector accuracy on the NAB corpus in ../shared/data/nab (issue 3).

Runs every detector over the real AWS CloudWatch series (and NAB's synthetic
series with anomalies) and scores its alarms against the labelled anomaly
windows two ways:

* window level: recall = windows with at least one alarm / windows;
  precision = detected windows / (detected windows + false alarm events),
  where a false alarm event is a run of consecutive alarms outside every
  window; F1 from the two.
* NAB standard profile (A_TP = 1, A_FP = 0.11, A_FN = 1): an alarm early in a
  window earns up to 1, late in the window less; alarms outside windows cost
  up to 0.11 each (less just after a window); a missed window costs 1. The
  first min(15 %, 750) rows of each file are a probation period and do not
  count. Normalised over the corpus: 100 is perfect, 0 is never firing.

Every detector runs with its defaults: nothing is tuned per file. Scores
are reported for raw alarms (every point beyond the threshold) and for alert
events with a hold-off: after an alarm, alarms in the next 72 points (6 hours
at NAB's 5-minute steps) belong to the same alert and are not raised again --
what an alerting pipeline (perfsdk's incidents) does with a detector's output.

    .venv/bin/python benches/eval/accuracy.py                 # the whole table
    .venv/bin/python benches/eval/accuracy.py --files 3       # a quick look
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import perfsdk

NAB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nab"
CATEGORIES = ("realAWSCloudwatch", "artificialWithAnomaly")
TP_WEIGHT, FP_WEIGHT, FN_WEIGHT = 1.0, 0.11, 1.0
HOLD_OFF = 72  # points


@dataclass
class Series:
    name: str
    timestamps: np.ndarray  # datetime64[s]
    values: np.ndarray
    windows: list[tuple[int, int]]  # inclusive row ranges

    @property
    def probation(self) -> int:
        return int(min(math.floor(0.15 * len(self.values)), 0.15 * 5000))


def load_series(relative: str, nab: Path = NAB) -> Series:
    """One NAB file and its labelled windows (as row indices)."""
    raw = np.genfromtxt(nab / relative, delimiter=",", skip_header=1, dtype=str)
    stamps = raw[:, 0].astype("datetime64[s]")
    values = raw[:, 1].astype(float)
    labels = json.loads((nab / "windows.json").read_text())[relative]
    windows = []
    for start, end in labels:
        lo = int(np.searchsorted(stamps, np.datetime64(start[:19]), side="left"))
        hi = int(np.searchsorted(stamps, np.datetime64(end[:19]), side="right")) - 1
        windows.append((lo, hi))
    return Series(relative, stamps, values, windows)


def corpus_files(nab: Path = NAB) -> list[str]:
    labels = json.loads((nab / "windows.json").read_text())
    return sorted(name for name in labels if name.split("/")[0] in CATEGORIES)


def _scaled_sigmoid(position: float) -> float:
    return -1.0 if position >= 3.0 else 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def nab_raw_score(alarms: np.ndarray, series: Series) -> float:
    """Raw NAB standard-profile score of boolean ``alarms`` on one series."""
    window_at = np.full(len(alarms), -1)
    for k, (lo, hi) in enumerate(series.windows):
        window_at[lo : hi + 1] = k
    best = {k: -FN_WEIGHT for k, (lo, hi) in enumerate(series.windows) if hi >= series.probation}
    max_tp = _scaled_sigmoid(-1.0)
    false_alarms = 0.0
    prev_right, prev_width = None, None
    for i in range(len(alarms)):
        k = window_at[i]
        if k >= 0:
            lo, hi = series.windows[k]
            width = hi - lo + 1
            if i == hi:
                prev_right, prev_width = hi, width
            if alarms[i] and i >= series.probation:
                score = _scaled_sigmoid(-(hi - i + 1) / width) * TP_WEIGHT / max_tp
                best[k] = max(best[k], score)
        elif alarms[i] and i >= series.probation:
            position = 3.0 if prev_right is None else abs(prev_right - i) / (prev_width - 1)
            false_alarms += _scaled_sigmoid(position) * FP_WEIGHT
    return sum(best.values()) + false_alarms


def window_counts(alarms: np.ndarray, series: Series) -> tuple[int, int, int]:
    """(detected windows, windows, false alarm events) after the probation period."""
    inside = np.zeros(len(alarms), bool)
    windows = [(lo, hi) for lo, hi in series.windows if hi >= series.probation]
    for lo, hi in series.windows:
        inside[lo : hi + 1] = True
    live = alarms.copy()
    live[: series.probation] = False
    detected = sum(bool(live[lo : hi + 1].any()) for lo, hi in windows)
    outside = live & ~inside
    events = int(np.count_nonzero(outside[1:] & ~outside[:-1]) + outside[0])
    return detected, len(windows), events


def hold_off(alarms: np.ndarray, points: int) -> np.ndarray:
    """Keep an alarm only if none was kept in the ``points`` before it."""
    kept = np.zeros_like(alarms)
    last = -points - 1
    for i in np.flatnonzero(alarms):
        if i - last > points:
            kept[i] = True
            last = i
    return kept


# ---- detectors: name -> function(values, probation) -> boolean alarms --------

def static_threshold(values: np.ndarray, probation: int) -> np.ndarray:
    """Baseline: mean +/- 3 std of the probation period, fixed forever."""
    ref = values[:probation]
    return np.abs(values - ref.mean()) > 3.0 * ref.std()


def _flags(detector) -> Callable[[np.ndarray, int], np.ndarray]:
    def run(values: np.ndarray, probation: int) -> np.ndarray:
        det = detector()
        with np.errstate(invalid="ignore"):
            return np.abs(det.update_many(values)) > det.threshold
    return run


def _both(a, b):
    return lambda v, p: a(v, p) & b(v, p)


def _either(a, b):
    return lambda v, p: a(v, p) | b(v, p)


ZSCORE = _flags(lambda: perfsdk.ZScoreDetector())
ARIMA = _flags(lambda: perfsdk.ArimaDetector(background=False))
DETECTORS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "static threshold (baseline)": static_threshold,
    "ZScoreDetector() (window 256, threshold 3)": ZSCORE,
    "ZScoreDetector(alpha=0.05)": _flags(lambda: perfsdk.ZScoreDetector(alpha=0.05)),
    "ArimaDetector() (auto order, threshold 5)": ARIMA,
    "ArimaDetector(order=(1, 1, 1))": _flags(
        lambda: perfsdk.ArimaDetector(order=(1, 1, 1), background=False)
    ),
    "Z-score AND ARIMA (both flag the point)": _both(ZSCORE, ARIMA),
    "Z-score OR ARIMA": _either(ZSCORE, ARIMA),
}


@dataclass
class Result:
    detector: str
    precision: float  # window level, alert events (with hold-off)
    recall: float
    f1: float
    nab_raw: float  # NAB score of raw alarms
    nab: float  # NAB score of alert events (with hold-off)
    seconds: float


def evaluate(names: list[str], detectors: dict[str, Callable] | None = None, nab: Path = NAB) -> list[Result]:
    detectors = detectors or DETECTORS
    series = [load_series(name, nab) for name in names]
    results = []
    for label, detect in detectors.items():
        started = time.perf_counter()
        detected = windows = events = 0
        raw = raw_held = null = perfect = 0.0
        for s in series:
            alarms = detect(s.values, s.probation)
            held = hold_off(alarms, HOLD_OFF)
            d, w, e = window_counts(held, s)
            detected, windows, events = detected + d, windows + w, events + e
            raw += nab_raw_score(alarms, s)
            raw_held += nab_raw_score(held, s)
            null += -FN_WEIGHT * w
            perfect += TP_WEIGHT * w
        precision = detected / (detected + events) if detected + events else 0.0
        recall = detected / windows if windows else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        def normalised(score: float) -> float:
            return 100.0 * (score - null) / (perfect - null) if perfect != null else 0.0

        results.append(Result(label, precision, recall, f1, normalised(raw), normalised(raw_held),
                              time.perf_counter() - started))
    return results


def markdown(results: list[Result], n_files: int) -> str:
    lines = [
        f"| detector ({n_files} NAB files) | precision | recall | F1 | NAB, raw alarms "
        f"| NAB, alerts ({HOLD_OFF}-point hold-off) | seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r.detector} | {r.precision:.2f} | {r.recall:.2f} | {r.f1:.2f} | {r.nab_raw:.1f} "
            f"| {r.nab:.1f} | {r.seconds:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=None, help="only the first N files")
    args = parser.parse_args(argv)
    if not NAB.is_dir():
        print(f"NAB data not found at {NAB}", file=sys.stderr)
        return 2
    names = corpus_files()[: args.files]
    print(markdown(evaluate(names), len(names)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
