"""The ``perfsdk`` command.

    perfsdk detect FILE.csv|- [--window N | --alpha A] [--threshold T] [--warmup W] [--json]
    perfsdk analyze PATH [--out DIR] [--detector default|zscore|arima] [--threshold T] [--scheduler ADDRESS]
    perfsdk testgen --from DATA_DIR --out FILE.json [--service NAME] [--variant V] [--duration S]
                    [--goal TEXT [--llm-url BASE_URL --llm-model NAME [--llm-timeout S] [--allow-host HOST ...]]]
    perfsdk testgen --from DATA_DIR --bench-out FILE.py [--top N]
    perfsdk loadtest FILE.json --host URL [--duration S] [--json-out RESULTS.json] [--dry-run] [--workdir DIR]
    perfsdk report DIR [--out FILE.html]
    perfsdk demo [--out DIR] [--quick] [--db URL] [--seed N]

``detect`` streams a ``timestamp,value`` CSV through a ZScoreDetector and
prints every anomaly with its explanation, then a summary (``--json``: one JSON
object per line, a non-finite number -- a constant series' infinite score -- as
null). Only the first non-blank row may be a header, and only if its value does
not start like a number. ``analyze`` runs
the batch detectors over exported spans (see ``perfsdk.export.analyze``).
``testgen`` learns a traffic model from exported spans and writes a load-test
scenario (the replay, a variant, or what an LLM wrote for a goal, validated), or
with ``--bench-out`` a pytest-benchmark module for the hottest traced functions;
``loadtest`` runs a scenario with Locust and checks its assertions. ``report``
writes one self-contained HTML page from an export directory or a demo's output
(see ``perfsdk.report``). On any
failure: a message on stderr, a non-zero status, and no output file. Ctrl-C: one line,
``perfsdk COMMAND: interrupted`` (and what was left behind), and status 130.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Sequence, TextIO

import numpy as np

from perfsdk._runtime import check_number, write_atomically
from perfsdk.detect import DEFAULT_CONFIRM, DETECTOR_KINDS, ZScoreDetector

__all__ = ["build_parser", "main", "read_series"]


class InputError(Exception):
    """A problem with the user's input file, reported without a traceback."""


class Interrupted(Exception):
    """The user's Ctrl-C, and what the command leaves behind (the message; may be empty)."""


def interrupted_line(command: str, exc: BaseException) -> str:
    """The one line a command ended by Ctrl-C prints: ``perfsdk COMMAND: interrupted``, and what
    it left behind when the command said (an ``Interrupted``'s message)."""
    kept = str(exc) if isinstance(exc, Interrupted) else ""
    return f"perfsdk {command}: interrupted" + (f"; {kept}" if kept else "")


def read_series(path: Path) -> tuple[list[str], np.ndarray]:
    """Read a ``timestamp,value`` CSV (header optional; ``-`` is standard input) into timestamps and values.

    Empty values, ``nan`` and ``inf`` are kept so the detector counts them as rejected;
    anything else that is not a plain number is an error naming the line.
    """
    stdin = str(path) == "-"
    name = "<stdin>" if stdin else str(path)
    try:
        # utf-8-sig: a byte-order mark (Excel's CSVs) is not part of the first timestamp
        with open(sys.stdin.fileno() if stdin else path, newline="", encoding="utf-8-sig", closefd=not stdin) as f:
            return _read_rows(name, f)
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a directory, not a CSV file") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not a UTF-8 text file (byte {exc.start} is {exc.object[exc.start]:#04x}); "
                         f"expected timestamp,value CSV") from None


#: A value cell that starts like a number ("12ms", "-3,5", ".5s"): a data row that does not parse,
#: never a header -- skipping it as one would shift every anomaly's index by one.
_NUMERIC_LOOKING = re.compile(r"[+-]?\.?\d")
#: A number as a CSV holds one, or nan/inf spelled out; float() takes more ("1_000", other
#: scripts' digits), which in a CSV is a malformed cell, not a number.
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?|[+-]?(nan|inf|infinity)", re.ASCII | re.IGNORECASE)


def _read_rows(name: str, f: TextIO) -> tuple[list[str], np.ndarray]:
    timestamps: list[str] = []
    values: list[float] = []
    first = True
    rows = csv.reader(f)
    try:
        for line_no, row in enumerate(rows, start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) < 2:
                raise InputError(f"{name}:{line_no}: expected 'timestamp,value', got {','.join(row)!r}")
            stamp, raw = row[0].strip(), row[1].strip()
            header_allowed, first = first, False  # only the first non-blank row may be a header
            if raw and not _NUMBER.fullmatch(raw):
                if header_allowed and not _NUMERIC_LOOKING.match(raw):
                    continue  # a header row
                raise InputError(f"{name}:{line_no}: value {raw!r} is not a number")
            timestamps.append(stamp)
            values.append(float(raw) if raw else math.nan)
    except csv.Error as exc:  # a cell over csv's size limit, a broken quote
        raise InputError(f"{name}:{rows.line_num}: not a timestamp,value CSV row: {exc}") from None
    if not values:
        raise InputError(f"{name}: no data rows")
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
            print(json.dumps(_json_safe(a.as_dict()), allow_nan=False))
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


def _json_safe(record: dict) -> dict:
    """``record`` with its non-finite numbers as null: ``Infinity`` is not JSON, and a strict
    parser (jq, JavaScript's JSON.parse) refuses the line. A constant series' change scores
    +-inf; its sign stays readable in ``value - expected``."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}


def _analyze(args: argparse.Namespace) -> int:
    from perfsdk.export.analyze import analyze, export_root

    try:
        # anomalies go beside the spans table, never inside it (analyze refuses an --out there)
        result = analyze(args.path, out=args.out or export_root(args.path), detector=args.detector,
                         threshold=args.threshold, scheduler=args.scheduler, progress=not args.quiet,
                         confirm=args.confirm)
    except (OSError, ValueError, ImportError) as exc:  # OSError: a missing input, an unwritable --out
        raise InputError(str(exc)) from None
    print(result.summary())
    return 0


def _testgen(args: argparse.Namespace) -> int:
    """Everything is checked and made before a file is written: a failure leaves no file behind."""
    from perfsdk.testgen import Limits
    from perfsdk.testgen.model import COLUMNS, MIN_STAGE_S, VARIANTS, TrafficModel
    from perfsdk.export import read_readable

    if args.out is None and args.bench_out is None:
        raise InputError("say what to write: --out FILE.json (a load-test scenario) "
                         "and/or --bench-out FILE.py (benchmarks of the hottest traced functions)")
    if args.top is not None and args.bench_out is None:
        raise InputError("--top goes with --bench-out (how many functions to benchmark)")
    if args.service is not None and args.out is None:
        raise InputError("--service goes with --out (the service whose traffic the scenario models)")
    if args.top is not None and args.top < 1:
        raise InputError(f"--top must be at least 1, got {args.top}")
    if args.out is not None and args.bench_out is not None and Path(args.out).resolve() == Path(
            args.bench_out).resolve():
        raise InputError("--out and --bench-out name the same file")
    if args.variant not in VARIANTS:
        raise InputError(f"--variant must be one of {', '.join(VARIANTS)}")
    if args.llm_url and args.goal is None:
        raise InputError("--llm-url needs --goal (what the load test should do, in plain words)")
    if args.llm_url and not args.llm_model:
        raise InputError("--llm-url needs --llm-model (the model name the endpoint serves)")
    if args.duration is not None:
        _check_option("--duration", args.duration, low=MIN_STAGE_S, high=Limits.max_duration_s)
    try:
        spans, skipped = read_readable(args.source, columns=COLUMNS)
    except (FileNotFoundError, ValueError) as exc:
        raise _source_error(args.source, exc) from None
    outputs: list[tuple[str, str]] = []  # (path, text), written once all are made
    if args.bench_out is not None:
        bench_text, functions = _bench(args, spans)
        outputs.append((args.bench_out, bench_text))
    if args.out is not None:
        try:
            model = TrafficModel.from_table(spans, service=args.service)
        except ValueError as exc:
            raise _source_error(args.source, exc) from None
        scenario = _scenario(args, model)
        outputs.append((args.out, scenario.to_json()))
    written: list[tuple[Path, bytes | None]] = []  # each file written, and what it held before
    for path, text in outputs:
        try:
            before = Path(path).read_bytes() if Path(path).is_file() else None
            written.append((write_atomically(path, text), before))
        except OSError as exc:
            for done, held in written:  # all or nothing: what was there before is put back
                if held is None:
                    done.unlink(missing_ok=True)
                else:
                    write_atomically(done, held)
            raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    if args.bench_out is not None:
        _print_bench(args.bench_out, functions)
    if args.out is not None:
        print(f"{args.out}: {scenario!r} from {model.requests} requests in {model.sessions} sessions")
        for note in scenario.metadata.get("notes", []):
            print(f"  note: {note}")
    for why in skipped:  # as perfsdk analyze names them
        print(f"skipped (unreadable): {why}")
    return 0


def _check_option(option: str, value: float, **bounds: Any) -> None:
    """``check_number`` for a command-line option: its error is the command's one line."""
    try:
        check_number(option, value, **bounds)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _scenario(args: argparse.Namespace, model: Any) -> Any:
    """The scenario ``args`` ask for, from ``model``: a variant, or what a generator wrote for the goal."""
    from perfsdk.testgen import Limits

    try:
        if args.goal is None:
            return model.generate(args.variant, duration_s=args.duration)
        if args.llm_url:
            from perfsdk.testgen import LLMError, LLMScenarioGenerator

            hosts = tuple(args.allow_host or ("127.0.0.1", "localhost"))
            limits = Limits(allowed_hosts=hosts) if args.duration is None else Limits(
                allowed_hosts=hosts, max_duration_s=args.duration)  # the model is told it, and held to it
            generator = LLMScenarioGenerator(args.llm_url, args.llm_model, timeout_s=args.llm_timeout,
                                             limits=limits)
            try:
                return generator.generate(model, args.goal)
            except LLMError as exc:
                raise InputError(str(exc)) from None
        from perfsdk.testgen import ModelScenarioGenerator

        return ModelScenarioGenerator(duration_s=args.duration).generate(model, args.goal)
    except ValueError as exc:  # a bad option's value, or a scenario that does not hold (ScenarioError)
        raise InputError(str(exc)) from None


def _source_error(source: str, exc: Exception) -> InputError:
    """What was wrong with the spans under ``source``, naming it once."""
    message = str(exc)
    return InputError(message if source in message else f"{source}: {message}")


def _bench(args: argparse.Namespace, spans: Any) -> tuple[str, list[Any]]:
    """The benchmark module's source and the functions in it."""
    from perfsdk.testgen.bench import bench_module

    try:
        return bench_module(spans, top=10 if args.top is None else args.top, source=args.source)
    except ValueError as exc:
        raise _source_error(args.source, exc) from None


def _print_bench(path: str, functions: list[Any]) -> None:
    print(f"{path}: benchmarks of the {len(functions)} hottest traced functions")
    for f in functions:
        where = f.target or f"skipped: {f.skip_reason}"
        print(f"  {f.span_name}: {f.calls} calls, {f.total_s:.3f} s in all, "
              f"p50 {f.p50_s * 1e3:.3f} ms, p95 {f.p95_s * 1e3:.3f} ms ({where})")


def _loadtest(args: argparse.Namespace) -> int:
    from perfsdk.testgen import LoadTestError, Scenario, ScenarioError
    from perfsdk.testgen.locust_runner import dry_run_plan, run_locust
    from perfsdk.testgen.scenario import host_problem

    try:
        scenario = Scenario.load(args.scenario)
    except ScenarioError as exc:
        raise InputError(f"{args.scenario}: {exc}") from None
    if args.host:  # checked in a dry run too: a command line it passes must not fail for real
        problem = host_problem(args.host.rstrip("/"))
        if problem:
            raise InputError(f"--host: {problem}")
    if args.duration is not None:
        _check_option("--duration", args.duration, low=0.0, low_open=True)
    if args.dry_run:
        print(dry_run_plan(scenario))
        return 0
    if not args.host:
        raise InputError("--host is required (where to send the requests), unless --dry-run")
    try:
        result = run_locust(scenario, args.host, duration_s=args.duration, workdir=args.workdir)
    except (LoadTestError, ValueError) as exc:  # ValueError: --host or --duration
        raise InputError(str(exc)) from None
    except OSError as exc:  # a --workdir that cannot be made or written
        raise InputError(f"--workdir {args.workdir}: {exc.strerror or exc}") from None
    outcomes = result.check(scenario)
    if args.json_out:
        try:
            write_atomically(args.json_out, result.to_json())
        except OSError as exc:
            raise InputError(f"cannot write {args.json_out}: {exc.strerror or exc}") from None
    print(result.summary())
    for outcome in outcomes:
        print(f"  {outcome}")
    return 0 if all(o.passed for o in outcomes) else 1


DEMO_NEEDS = ("flask", "sqlalchemy", "locust", "opentelemetry.instrumentation.flask")


def _demo(args: argparse.Namespace) -> int:
    missing = _missing(DEMO_NEEDS)
    if missing:
        raise InputError(f"the demo needs {', '.join(missing)}: pip install 'perfsdk[demo]'")
    from perfsdk.demo.run import MARK, run_demo

    try:
        demo = run_demo(args.out, quick=args.quick, database_url=args.db, seed=args.seed,
                        progress=lambda line: print(line, flush=True))
    except KeyboardInterrupt:  # the demo has stopped its shop and load generators by now
        out = Path(args.out)
        raise Interrupted(f"{out}/ holds an incomplete run, which the next demo there replaces"
                          if (out / MARK).exists() else "") from None
    except (ValueError, RuntimeError) as exc:  # RuntimeError: a shop that did not start or failed
        raise InputError(str(exc)) from None
    except BrokenPipeError:  # `perfsdk demo | head`: main() ends it quietly, as for every command
        raise
    except OSError as exc:  # an --out that cannot be made or written
        raise InputError(f"cannot write {exc.filename or args.out}: {exc.strerror or exc}") from None
    print()
    print(demo.table())
    print(f"\n{demo.seconds:.0f} s; Arrow files, the table and the report in {demo.out}/")
    return 0


def _report(args: argparse.Namespace) -> int:
    from perfsdk.report import write_report

    target = Path(args.out) if args.out else Path(args.dir) / "report.html"
    try:
        page = write_report(args.dir, out=target)
    except OSError as exc:
        if exc.filename is not None and Path(exc.filename).parent == target.parent:
            raise InputError(f"cannot write {target}: {exc.strerror or exc}") from None
        raise InputError(str(exc)) from None
    except ValueError as exc:
        raise InputError(str(exc)) from None
    print(f"{page}: {page.stat().st_size / 1e6:.2f} MB")
    return 0


def _missing(modules: Sequence[str]) -> list[str]:
    """The modules not installed -- found, never imported (importing Locust patches this process)."""
    import importlib.util

    missing = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module)
        except ModuleNotFoundError:  # its parent package is missing
            found = None
        if found is None:
            missing.append(module)
    return missing


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perfsdk", description="perfsdk command-line tools")
    commands = parser.add_subparsers(dest="command", required=True)
    detect = commands.add_parser(
        "detect", help="stream a timestamp,value CSV through the Z-score detector"
    )
    detect.add_argument("file", help="CSV with timestamp,value rows, - for standard input (a first row whose "
                        "value does not start like a number is a header)")
    mode = detect.add_mutually_exclusive_group()
    mode.add_argument("--window", type=int, default=None, help="rolling window length (default 256)")
    mode.add_argument("--alpha", type=float, default=None,
                      help="EWMA smoothing factor in (0, 1), instead of a window")
    detect.add_argument("--threshold", type=float, default=3.0, help="|z| above this is an anomaly (default 3)")
    detect.add_argument("--warmup", type=int, default=None, help="points before the first score")
    detect.add_argument("--json", action="store_true",
                        help="one JSON object per anomaly; a non-finite number (a constant series' "
                        "infinite score) is null")
    detect.set_defaults(run=_detect)
    analyze = commands.add_parser("analyze", help="run the batch detectors over exported spans")
    analyze.add_argument("path", help="an export directory, a spans directory or one file")
    analyze.add_argument("--out", help="export directory for the anomalies table (default: PATH's)")
    analyze.add_argument("--detector", choices=list(DETECTOR_KINDS), default="default",
                         help="default: perfsdk.default_detector(), as perfsdk.init() uses live")
    analyze.add_argument("--threshold", type=float, default=None, help="score threshold")
    analyze.add_argument("--confirm", type=int, default=DEFAULT_CONFIRM,
                         help=f"flagged spans in a row per anomaly (default {DEFAULT_CONFIRM}, as live)")
    analyze.add_argument("--scheduler", help="Dask scheduler address: one task per partition")
    analyze.add_argument("--quiet", action="store_true", help="no progress bar")
    analyze.set_defaults(run=_analyze)
    testgen = commands.add_parser("testgen", help="write a load-test scenario learned from exported spans")
    testgen.add_argument("--from", dest="source", required=True, help="an export directory (its spans)")
    testgen.add_argument("--out", help="the scenario file to write (JSON)")
    testgen.add_argument("--bench-out", help="a pytest-benchmark module to write, for the hottest functions "
                         "traced with @perfsdk.monitor")
    testgen.add_argument("--top", type=int, default=None, help="how many functions --bench-out benchmarks "
                         "(default 10)")
    testgen.add_argument("--service", help="the service whose traffic to model, when the spans hold more than one")
    testgen.add_argument("--variant", default="replay",
                         help="replay, flash_sale, cold_cache, long_sessions or error_paths (default replay)")
    testgen.add_argument("--duration", type=float, default=None,
                         help="seconds the scenario lasts (with --llm-url: the most it may last)")
    testgen.add_argument("--goal", help="what the load test should do, in plain words")
    testgen.add_argument("--llm-url", help="an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 "
                                           "(the key comes from PERFSDK_LLM_API_KEY)")
    testgen.add_argument("--llm-model", help="the model name the endpoint serves")
    testgen.add_argument("--llm-timeout", type=float, default=60.0, help="seconds for the whole exchange")
    testgen.add_argument("--allow-host", action="append",
                         help="a host the scenario may target (repeatable; default 127.0.0.1 and localhost)")
    testgen.set_defaults(run=_testgen)
    loadtest = commands.add_parser("loadtest", help="run a scenario with Locust and check its assertions")
    loadtest.add_argument("scenario", help="a scenario file (JSON)")
    loadtest.add_argument("--host", help="the service's base URL, e.g. http://127.0.0.1:8000")
    loadtest.add_argument("--duration", type=float, default=None, help="cap the run at this many seconds")
    loadtest.add_argument("--json-out", help="write the results here (JSON)")
    loadtest.add_argument("--dry-run", action="store_true", help="print the plan, send nothing")
    loadtest.add_argument("--workdir", help="keep the locustfile, Locust's log and the results here "
                                            "(default: a temporary directory, removed)")
    loadtest.set_defaults(run=_loadtest)
    report = commands.add_parser("report", help="write a self-contained HTML report from exported tables")
    report.add_argument("dir", help="an export directory, or the output directory of perfsdk demo")
    report.add_argument("--out", help="the HTML file to write (default: DIR/report.html)")
    report.set_defaults(run=_report)
    demo = commands.add_parser("demo", help="the demo shop run the traditional way and with perfsdk, compared")
    demo.add_argument("--out", default="perfsdk-demo", help="where the runs, the table and the report go "
                                                           "(default perfsdk-demo; an earlier demo there is replaced)")
    demo.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    demo.add_argument("--db", default="sqlite://",
                      help="SQLAlchemy URL of the shop's database, SQLite or PostgreSQL (default: an embedded "
                           "SQLite file)")
    demo.add_argument("--seed", type=int, default=0, help="seeds the shoppers and the load test")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.run(args)
        sys.stdout.flush()  # a reader gone away (| head) shows here, not at exit with a traceback
        return status
    except InputError as exc:
        print(f"perfsdk {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Interrupted) as exc:
        print(interrupted_line(args.command, exc), file=sys.stderr)
        return 130  # 128 + SIGINT: what a shell reports for a command Ctrl-C ended
    except BrokenPipeError:
        # as the Python docs advise: no more output (nor an error flushing it at exit)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE: what a shell reports for a command a closed pipe ended


if __name__ == "__main__":
    sys.exit(main())
