"""The ``perfsdk`` command.

    perfsdk detect FILE.csv [--window N | --alpha A] [--threshold T] [--warmup W] [--json]
    perfsdk analyze PATH [--out DIR] [--detector zscore|arima] [--threshold T] [--scheduler ADDRESS]

``detect`` streams a ``timestamp,value`` CSV through a ZScoreDetector and
prints every anomaly with its explanation, then a summary. ``analyze`` runs
the batch detectors over exported spans (see ``perfsdk.export.analyze``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from perfsdk.detect import DEFAULT_CONFIRM, ZScoreDetector

__all__ = ["build_parser", "main", "read_series"]


class InputError(Exception):
    """A problem with the user's input file, reported without a traceback."""


def read_series(path: Path) -> tuple[list[str], np.ndarray]:
    """Read a ``timestamp,value`` CSV (header optional) into timestamps and values.

    Empty values and ``nan`` are kept as NaN so the detector counts them as
    rejected; anything else that is not a number is an error naming the line.
    """
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return _read_rows(path)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a UTF-8 text file (byte {exc.start} is {exc.object[exc.start]:#04x}); "
                         f"expected timestamp,value CSV") from None


def _read_rows(path: Path) -> tuple[list[str], np.ndarray]:
    timestamps: list[str] = []
    values: list[float] = []
    with path.open(newline="", encoding="utf-8") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) < 2:
                raise InputError(f"{path}:{line_no}: expected 'timestamp,value', got {','.join(row)!r}")
            stamp, raw = row[0].strip(), row[1].strip()
            try:
                value = float(raw) if raw else math.nan
            except ValueError:
                if line_no == 1:
                    continue  # a header row
                raise InputError(f"{path}:{line_no}: value {raw!r} is not a number") from None
            timestamps.append(stamp)
            values.append(value)
    if not values:
        raise InputError(f"{path}: no data rows")
    return timestamps, np.array(values, dtype=np.float64)


def _detect(args: argparse.Namespace) -> int:
    timestamps, values = read_series(Path(args.file))
    try:
        detector = ZScoreDetector(
            window=args.window, alpha=args.alpha, threshold=args.threshold, warmup=args.warmup
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None
    anomalies = detector.detect_many(values, timestamps=timestamps)
    if args.json:
        for a in anomalies:
            print(json.dumps(a.as_dict()))
        return 0
    print(f"{args.file}: {len(values)} points, {detector!r}")
    for a in anomalies:
        print(f"  {a}")
    warm = min(detector.warmup, detector.n_learned)
    print(
        f"{len(anomalies)} anomalies in {len(values)} points "
        f"({warm} used to warm up, {detector.rejected} rejected as NaN/inf)"
    )
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from perfsdk.export.analyze import analyze

    path = Path(args.path)
    # anomalies go beside the spans table, never inside it
    default_out = path.parent if path.name == "spans" else path if path.is_dir() else path.parent
    try:
        result = analyze(args.path, out=args.out or default_out, detector=args.detector,
                         threshold=args.threshold, scheduler=args.scheduler, progress=not args.quiet,
                         confirm=args.confirm)
    except (FileNotFoundError, ValueError, ImportError, ConnectionError) as exc:
        raise InputError(str(exc)) from None
    print(result.summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perfsdk", description="perfsdk command-line tools")
    commands = parser.add_subparsers(dest="command", required=True)
    detect = commands.add_parser(
        "detect", help="stream a timestamp,value CSV through the Z-score detector"
    )
    detect.add_argument("file", help="CSV with timestamp,value rows (a header row is fine)")
    mode = detect.add_mutually_exclusive_group()
    mode.add_argument("--window", type=int, default=None, help="rolling window length (default 256)")
    mode.add_argument("--alpha", type=float, default=None, help="EWMA smoothing factor instead of a window")
    detect.add_argument("--threshold", type=float, default=3.0, help="|z| above this is an anomaly (default 3)")
    detect.add_argument("--warmup", type=int, default=None, help="points before the first score")
    detect.add_argument("--json", action="store_true", help="one JSON object per anomaly")
    detect.set_defaults(run=_detect)
    analyze = commands.add_parser("analyze", help="run the batch detectors over exported spans")
    analyze.add_argument("path", help="an export directory, a spans directory or one file")
    analyze.add_argument("--out", help="export directory for the anomalies table (default: PATH's)")
    analyze.add_argument("--detector", choices=["zscore", "arima"], default="zscore")
    analyze.add_argument("--threshold", type=float, default=None, help="score threshold")
    analyze.add_argument("--confirm", type=int, default=DEFAULT_CONFIRM,
                         help="flagged spans in a row per anomaly (as live)")
    analyze.add_argument("--scheduler", help="Dask scheduler address: one task per partition")
    analyze.add_argument("--quiet", action="store_true", help="no progress bar")
    analyze.set_defaults(run=_analyze)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except InputError as exc:
        print(f"perfsdk {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
