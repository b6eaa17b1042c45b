"""Detector accuracy scored by NAB's own rules (issue 14): ../shared/tools/nab_score.py.

Every row is one detector with its defaults, run causally over each file of
the shared NAB corpus (../shared/data/nab: realAWSCloudwatch and
artificialWithAnomaly, 23 files, 36 labelled windows) and scored by the
shared scorer -- imported, not re-implemented: NAB's standard, low-FP and
low-FN profiles, one threshold swept over the whole corpus, the first 15 %
of each file as probation. Nothing is tuned per file and no label is read at
run time. Raw detectors are scored through ``|z| / (|z| + 3)`` (the issue's
squashing); pipelines give their own score in [0, 1].

    .venv/bin/python benches/eval/nab.py                    # the whole table (~5 min on 2 cores)
    .venv/bin/python benches/eval/nab.py --rows default     # rows whose key contains "default"
    .venv/bin/python ../shared/tools/nab_score.py --detector benches/eval/nab.py:default --jobs 2

The published figures on these files (standard profile) are from NAB's
results/final_results.json, restricted to the same 23 files (issue 14).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve()
SHARED = HERE.parents[2].parent / "shared"
SCORER = SHARED / "tools" / "nab_score.py"
NAB = SHARED / "data" / "nab"

#: NAB standard profile on these 23 files, as published (issue 14).
PUBLISHED = {"Numenta HTM": 72.9, "ARTime": 70.0, "NAB windowedGaussian": 26.5}


def load_scorer() -> Any:
    """The shared NAB scorer, as a module."""
    if "nab_score" in sys.modules:
        return sys.modules["nab_score"]
    spec = importlib.util.spec_from_file_location("nab_score", SCORER)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"NAB scorer not found at {SCORER}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["nab_score"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# ---- detectors: (values, timestamps) -> score in [0, 1] per point ----------------

def _quiet() -> None:
    logging.getLogger("perfsdk").setLevel(logging.ERROR)  # fit failures are counted, not news here
    warnings.simplefilter("ignore")


def _squash(z: np.ndarray) -> np.ndarray:
    a = np.abs(np.asarray(z, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        s = a / (a + 3.0)
    return np.where(np.isnan(a), 0.0, np.where(np.isinf(a), 1.0, s))


def default(values: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """``perfsdk.default_detector()``: its per-point score."""
    from perfsdk import default_detector

    return np.nan_to_num(default_detector().update_many(values))


def default_alerts(values: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """``perfsdk.default_detector()``: the alerts ``detect_many`` pages for, as 0/1."""
    from perfsdk import default_detector

    out = np.zeros(len(values))
    out[[a.index for a in default_detector().detect_many(values, timestamps)]] = 1.0
    return out


def zscore(values: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    from perfsdk import ZScoreDetector

    return _squash(ZScoreDetector().update_many(values))


def zscore_pipeline(values: np.ndarray, timestamps: np.ndarray, range_tolerance: Any = 0.05) -> np.ndarray:
    from perfsdk import AlertPipeline, ZScoreDetector

    det = AlertPipeline(ZScoreDetector(window=256, warmup=32), range_tolerance=range_tolerance)
    return np.nan_to_num(det.update_many(values))


def zscore_likelihood(values: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    return zscore_pipeline(values, timestamps, range_tolerance=None)


def arima(values: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    from perfsdk import ArimaDetector

    _quiet()
    return _squash(ArimaDetector(background=False).update_many(values))


def arima_pipeline(values: np.ndarray, timestamps: np.ndarray, range_tolerance: Any = 0.05) -> np.ndarray:
    from perfsdk import AlertPipeline, ArimaDetector

    _quiet()
    det = AlertPipeline(ArimaDetector(background=False), range_tolerance=range_tolerance)
    return np.nan_to_num(det.update_many(values))


def arima_seasonal_pipeline(values: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """``ArimaDetector(season="auto")`` (it looks for a daily or weekly period) through the pipeline."""
    from perfsdk import AlertPipeline, ArimaDetector

    _quiet()
    det = AlertPipeline(ArimaDetector(season="auto", background=False))
    return np.nan_to_num(det.update_many(values), nan=0.0)


def arima_likelihood(values: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    return arima_pipeline(values, timestamps, range_tolerance=None)


def static_threshold(values: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """The traditional rule: value beyond mean +/- 3 std of a training period (NAB's
    15 % probation), fixed for ever; alerts as 0/1."""
    train = values[: max(int(0.15 * len(values)), 2)]
    return (np.abs(values - train.mean()) > 3.0 * train.std()).astype(float)


#: key -> (row label, function name in this file)
ROWS: dict[str, tuple[str, str]] = {
    "default": ("perfsdk.default_detector() (score)", "default"),
    "default-alerts": ("default_detector().detect_many (alerts at 0.5)", "default_alerts"),
    "zscore": ("ZScoreDetector() alone", "zscore"),
    "zscore-pipeline": ("Z-score + pipeline", "zscore_pipeline"),
    "zscore-likelihood": ("Z-score + pipeline, no range rule", "zscore_likelihood"),
    "arima": ("ArimaDetector() alone", "arima"),
    "arima-pipeline": ("ARIMA + pipeline", "arima_pipeline"),
    "arima-likelihood": ("ARIMA + pipeline, no range rule", "arima_likelihood"),
    "arima-seasonal": ("ARIMA(season=\"auto\") + pipeline", "arima_seasonal_pipeline"),
    "static": ("static rule: mean + 3 std of probation", "static_threshold"),
}


def evaluate(keys: list[str], jobs: int = 2, only: list[str] | None = None) -> list[dict[str, Any]]:
    """Score each row with the shared scorer; one dict per row."""
    ns = load_scorer()
    src = ns.NabSource(str(NAB))
    profiles = ns.load_profiles(src)
    files, total = ns.load_corpus(src, only=only)
    corpus = ns.Corpus(files, total)
    rows = []
    for key in keys:
        label, function = ROWS[key]
        started = time.perf_counter()
        scores, _, wall = ns.run_detector(files, f"{HERE}:{function}", {}, jobs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = ns.evaluate(corpus, scores, profiles)
        nab = result["nab"]
        rows.append({
            "key": key, "label": label, "seconds": time.perf_counter() - started,
            **{p: nab[p]["normalized"] for p in ns.PROFILE_ORDER},
            "threshold": nab["standard"]["threshold"],
            "precision": result["event_prf"].get("precision", 0.0),
            "recall": result["event_prf"].get("recall", 0.0),
        })
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| detector | NAB standard | low FP | low FN | best threshold | incidents found (recall) "
             "| alerts in an incident (precision) | seconds |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['standard']:.1f} | {r['reward_low_FP_rate']:.1f} "
                     f"| {r['reward_low_FN_rate']:.1f} | {r['threshold']:.3g} | {100 * r['recall']:.0f} % "
                     f"| {100 * r['precision']:.0f} % | {r['seconds']:.0f} |")
    for name, figure in PUBLISHED.items():
        lines.append(f"| {name} (published) | {figure:.1f} | | | | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="*", help="only rows whose key contains one of these")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    if not SCORER.is_file() or not NAB.is_dir():
        print(f"NAB scorer or data not found under {SHARED}", file=sys.stderr)
        return 2
    keys = [k for k in ROWS if not args.rows or any(s in k for s in args.rows)]
    print(markdown(evaluate(keys, args.jobs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
