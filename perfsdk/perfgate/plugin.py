"""The pytest11 entry point of the regression gate: options only, until asked.

Importing this module, or running pytest without ``--perf-gate``/``--perf-gate-record``,
loads nothing heavy (no numpy, pyarrow, scipy): the work lives in
``perfsdk.perfgate.session`` and is imported only when an option is given. The numbers it
shows and checks come from ``perfsdk.perfgate.defaults``, which imports nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from perfsdk.perfgate.defaults import ALPHA, HISTORY_RUNS, KEEP_RUNS, MIN_CHANGE, RERUNS

GATE, RECORD = "--perf-gate", "--perf-gate-record"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("perf-gate", "benchmark regression gate (perfsdk; needs --benchmark-enable)")
    group.addoption(GATE, metavar="DIR", dest="perf_gate", default=None,
                    help="check this run's benchmarks against the history in DIR, then add this run to it")
    group.addoption(RECORD, metavar="DIR", dest="perf_gate_record", default=None,
                    help="add this run's benchmarks to the history in DIR without checking")
    # (argparse %-formats help: a literal % is written %%)
    group.addoption("--perf-gate-min-change", metavar="FRACTION", dest="perf_gate_min_change", type=float,
                    default=MIN_CHANGE, help=f"smallest slowdown that fails the gate "
                                             f"(default {MIN_CHANGE:g}: {MIN_CHANGE * 100:g}%%)")
    group.addoption("--perf-gate-alpha", metavar="P", dest="perf_gate_alpha", type=float, default=ALPHA,
                    help="false-alarm rate of a check, its re-runs included: each judgment is made at "
                         f"P ** (1 / (1 + reruns)), a false discovery rate across benchmarks (default {ALPHA:g})")
    group.addoption("--perf-gate-reruns", metavar="N", dest="perf_gate_reruns", type=int, default=RERUNS,
                    help="times a benchmark that regressed is run again, each re-run having to regress "
                         f"too, before it fails the gate (default {RERUNS}; 0: the first verdict stands)")
    group.addoption("--perf-gate-keep", metavar="N", dest="perf_gate_keep", type=int, default=KEEP_RUNS,
                    help="run files DIR keeps: the oldest beyond the newest N are removed after a run is "
                         f"added (default {KEEP_RUNS}; at least {HISTORY_RUNS}, the newest runs a check reads)")


def _history_dir(config: pytest.Config) -> tuple[Path, bool] | None:
    """(DIR, check?) from the options, or None when the gate is off; refuses bad combinations. A
    relative DIR is taken from where pytest was started, once: a test that changes directory
    must not send the run to another history."""
    gate, record = config.getoption("perf_gate"), config.getoption("perf_gate_record")
    if gate is None and record is None:
        return None
    if gate is not None and record is not None:
        raise pytest.UsageError(f"{GATE} and {RECORD} are exclusive: {GATE} DIR already records after checking")
    option, directory = (GATE, gate) if gate is not None else (RECORD, record)
    if config.getoption("dist", "no") != "no" or hasattr(config, "workerinput"):
        # pytest-benchmark turns itself off under pytest-xdist: the gate would check nothing, and pass
        raise pytest.UsageError(f"{option} cannot run under pytest-xdist (-n/--dist): pytest-benchmark times "
                                "nothing in parallel runs, so nothing would be checked; run the benchmarks "
                                "without -n (or with -n 0, or -p no:xdist)")
    if not directory.strip():  # "--perf-gate $DIR" with DIR unset would record into the current directory
        raise pytest.UsageError(f"{option} needs a directory, got {directory!r}")
    path = config.invocation_params.dir / directory
    if path.exists() and not path.is_dir():
        raise pytest.UsageError(f"{option} {directory}: not a directory")
    for name, value in (("--perf-gate-min-change", config.getoption("perf_gate_min_change")),
                        ("--perf-gate-alpha", config.getoption("perf_gate_alpha"))):
        if not 0 < value < 1:
            raise pytest.UsageError(f"{name} must be in (0, 1), got {value}")
    if config.getoption("perf_gate_reruns") < 0:
        raise pytest.UsageError(f"--perf-gate-reruns must be >= 0, got {config.getoption('perf_gate_reruns')}")
    keep = config.getoption("perf_gate_keep")
    if keep < HISTORY_RUNS:
        raise pytest.UsageError(f"--perf-gate-keep must be >= {HISTORY_RUNS} (the runs a check reads), got {keep}")
    return path, gate is not None


def pytest_configure(config: pytest.Config) -> None:
    chosen = _history_dir(config)
    if chosen is None:
        return
    from perfsdk.perfgate.session import GateSession

    config.pluginmanager.register(GateSession(config, *chosen), GateSession.PLUGIN_NAME)


def pytest_report_header(config: pytest.Config) -> Any:
    chosen = _history_dir(config)
    if chosen is not None:
        return f"perfsdk regression gate: {'checking against' if chosen[1] else 'recording into'} {chosen[0]}"
    return None
