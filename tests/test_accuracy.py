"""The accuracy bench (benches/eval/accuracy.py): its scorer, and a run on a few real series."""

from __future__ import annotations

import numpy as np
import pytest

import accuracy


@pytest.fixture(scope="module")
def series(shared_data):
    return accuracy.load_series("realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv", shared_data / "nab")


def test_windows_are_parsed_to_rows(series):
    assert series.windows and all(0 <= lo <= hi < len(series.values) for lo, hi in series.windows)
    assert series.probation == min(int(0.15 * len(series.values)), 750)


def test_nab_score_bounds(series):
    never = np.zeros(len(series.values), bool)
    perfect = never.copy()
    for lo, _ in series.windows:
        perfect[lo] = True
    n = sum(hi >= series.probation for _, hi in series.windows)
    assert accuracy.nab_raw_score(never, series) == pytest.approx(-n)
    assert accuracy.nab_raw_score(perfect, series) == pytest.approx(n)
    late = never.copy()
    for _, hi in series.windows:
        late[hi] = True  # at the right edge a detection is worth ~0
    assert abs(accuracy.nab_raw_score(late, series)) < 0.1 * n
    first_window = min(lo for lo, _ in series.windows)
    assert first_window > series.probation + 10  # this file's window comes later
    noisy = perfect.copy()
    noisy[series.probation : series.probation + 10] = True  # 10 false alarms before any window
    assert accuracy.nab_raw_score(noisy, series) == pytest.approx(n - 10 * accuracy.FP_WEIGHT)
    noisy[: series.probation] = True  # alarms in the probation period do not count
    assert accuracy.nab_raw_score(noisy, series) == pytest.approx(n - 10 * accuracy.FP_WEIGHT)


def test_hold_off_keeps_one_alarm_per_burst():
    alarms = np.zeros(300, bool)
    alarms[[10, 11, 12, 50, 200]] = True
    assert np.flatnonzero(accuracy.hold_off(alarms, 72)).tolist() == [10, 200]


def test_detectors_run_on_real_series(shared_data):
    names = accuracy.corpus_files(shared_data / "nab")[6:9]
    wanted = {k: v for k, v in accuracy.DETECTORS.items() if k.startswith(("static", "ZScore", "ArimaDetector()"))}
    results = accuracy.evaluate(names, wanted, shared_data / "nab")
    assert len(results) == len(wanted)
    for r in results:
        assert 0.0 <= r.precision <= 1.0 and 0.0 <= r.recall <= 1.0 and np.isfinite(r.nab)
    arima = next(r for r in results if r.detector.startswith("ArimaDetector()"))
    assert arima.recall > 0.5
    assert "| NAB, raw alarms |" in accuracy.markdown(results, len(names))
