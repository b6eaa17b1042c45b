"""The gate inside one pytest run: collect pytest-benchmark's samples, judge, record, report.

Registered by ``perfsdk.perfgate.plugin`` only when ``--perf-gate`` or
``--perf-gate-record`` is given.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from perfsdk.perfgate.gate import Verdict, judge_confirmed
from perfsdk.perfgate.history import prune_history, read_history, run_metadata, write_run
from perfsdk.perfgate.stats import run_samples

__all__ = ["GateSession", "NAMED_SKIPS", "RERUN_PAUSE_S"]

#: Seconds waited before each round of re-runs: a shared machine's slow moments last about a
#: second or two, and a re-run straight after a slow run often shares its moment (measured:
#: false alarms 1.4 % with re-runs timed at once, 0.0-0.6 % with them seconds later).
RERUN_PAUSE_S = 2.0
#: History files skipped that are named one a line; the rest are counted.
NAMED_SKIPS = 10


class GateSession:
    """Checks (``check=True``) or only records this run's benchmarks into ``directory``."""

    PLUGIN_NAME = "perfsdk-perf-gate"

    def __init__(self, config: pytest.Config, directory: Path, check: bool) -> None:
        self.config, self.directory, self.check = config, directory, check
        self.lines: list[str] = []
        self.verdicts: list[Verdict] = []
        self.samples: dict[str, np.ndarray] | None = None
        self.unjudged = False  # checking raised: the run fails (at the session's end, where the status is set)
        self.unusable = False  # a benchmark's samples could not be used: so too

    def _samples(self) -> dict[str, np.ndarray] | None:
        """Seconds per round of each benchmark that ran, or None (with a line saying why) when none can."""
        benchmarks = self.config.pluginmanager.get_plugin("pytest-benchmark")
        if benchmarks is None:
            self.lines.append("perf-gate: pytest-benchmark is not active; nothing checked or recorded")
            return None
        if benchmarks.disabled:
            self.lines.append("perf-gate: benchmarks are disabled (--benchmark-disable); run with "
                              "--benchmark-enable to check or record. Nothing done.")
            return None
        samples = {}
        for bench in benchmarks.benchmarks:
            if not bench:
                continue
            try:
                samples[bench.fullname] = run_samples(bench.stats.data, f"benchmark {bench.fullname!r}")
            except ValueError as exc:  # a timer that ran backwards, or read NaN: named, and the run fails
                self.lines.append(f"perf-gate: FAILED: {exc}; neither checked nor recorded")
                self.unusable = True
        if not samples:
            if not self.unusable:
                self.lines.append("perf-gate: no benchmark ran; nothing checked or recorded")
            return None
        return samples

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Any:
        """Judge once the tests have run, while the session can still run one again: a benchmark
        that regressed is re-run before the verdict stands (pytest-benchmark writes its own
        results later, at the session's end, so the re-runs are taken out of them). A run stopped
        at a failure (``-x``, ``--maxfail``) is judged on what ran; an interrupted one is not."""
        try:
            result = yield
        except session.Failed:
            self._judge(session)
            raise
        except BaseException:
            self.lines.append("perf-gate: the run was interrupted; nothing checked or recorded")
            raise
        self._judge(session)
        return result

    def _judge(self, session: pytest.Session) -> None:
        """This run's samples and, when checking, the verdicts; ``self.samples`` is set last, so a
        run interrupted while its re-runs go on is not recorded."""
        samples = self._samples()
        if samples is None:
            return
        if self.check:
            try:
                self._check(session, samples)
            except Exception as exc:  # a gate that cannot judge says so and fails; pytest itself goes on
                self.verdicts, self.unjudged = [], True
                self.lines.append(f"perf-gate: FAILED to judge this run ({type(exc).__name__}: {exc})")
        self.samples = samples

    def _check(self, session: pytest.Session, samples: dict[str, np.ndarray]) -> None:
        """The verdicts on ``samples`` against the history, re-runs included."""
        metadata = run_metadata(self.config.rootpath)
        runs, skipped = read_history(self.directory)
        self.lines += [f"perf-gate: skipped {path.name}: {reason}" for path, reason in skipped[:NAMED_SKIPS]]
        if len(skipped) > NAMED_SKIPS:
            self.lines.append(f"perf-gate: skipped {len(skipped) - NAMED_SKIPS} more file(s) of {self.directory} "
                              f"(the first {NAMED_SKIPS} named above)")
        comparable = [run.samples for run in runs if run.comparable_key == metadata["comparable"]]
        if len(comparable) < len(runs):
            self.lines.append(f"perf-gate: {len(runs) - len(comparable)} of {len(runs)} runs in the history "
                              f"are from another kind of machine or Python ({metadata['comparable']}); ignored")
        alpha = self.config.getoption("perf_gate_alpha")
        reruns = self.config.getoption("perf_gate_reruns")
        broken: set[str] = set()  # a test whose re-run failed is not run again: judged on what it has

        def rerun(_: int, names: list[str]) -> dict[str, np.ndarray]:
            return self._rerun(session, [name for name in names if name not in broken], broken)

        self.verdicts = judge_confirmed(samples, comparable, rerun, reruns=reruns, alpha=alpha,
                                        min_change=self.config.getoption("perf_gate_min_change"))
        self.lines += [f"perf-gate: {verdict.line()}" for verdict in self.verdicts]

    def _rerun(self, session: pytest.Session, names: list[str], broken: set[str]) -> dict[str, np.ndarray]:
        """After ``RERUN_PAUSE_S``, run these benchmarks' tests once more (pytest's runner, fixtures set up afresh; other
        plugins' per-test wrappers, such as timeouts, do not apply); their new samples. A test
        that fails or times nothing is named, with why, and added to ``broken``."""
        from _pytest.runner import runtestprotocol

        if not names:
            return {}
        time.sleep(RERUN_PAUSE_S)  # let a slow moment that covered the run pass
        benchmarks: Any = self.config.pluginmanager.get_plugin("pytest-benchmark")  # there: it timed the run
        items = {item.nodeid: item for item in session.items}
        again = {}
        for name in names:
            item = items.get(name)
            if item is None:
                self.lines.append(f"perf-gate: cannot re-run {name} (not collected as a test); "
                                  "judged on its first run alone")
                broken.add(name)
                continue
            before = len(benchmarks.benchmarks)
            reports = runtestprotocol(item, nextitem=None, log=False)
            added = benchmarks.benchmarks[before:]
            del benchmarks.benchmarks[before:]  # reported and saved once, by the first run
            found = [bench for bench in added if bench and bench.fullname == name]
            failed = [report for report in reports if report.failed]
            if failed or not found:
                if failed:
                    self.lines.append(f"perf-gate: re-running {name} failed ({failed[0].when}: {_first_line(failed[0])})")
                else:
                    self.lines.append(f"perf-gate: re-running {name} gave no samples (it timed nothing)")
                self.lines.append(f"perf-gate: {name}: judged on the runs it has")
                broken.add(name)
                continue
            try:
                again[name] = run_samples(found[-1].stats.data, f"benchmark {name!r} on its re-run")
            except ValueError as exc:  # a time it cannot use: this benchmark alone, as a failed re-run
                self.lines.append(f"perf-gate: re-running {name} gave times it cannot use ({exc}); "
                                  "judged on the runs it has")
                broken.add(name)
        return again

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.unusable:
            self._fail(session)
        if self.samples is None:
            return
        samples, metadata = self.samples, run_metadata(self.config.rootpath)
        keep = self.config.getoption("perf_gate_keep")
        try:
            run = write_run(self.directory, samples, metadata=metadata)
        except (OSError, ValueError) as exc:
            self.lines.append(f"perf-gate: FAILED to record this run in {self.directory}: {exc}")
            self._fail(session)
            return
        self.lines.append(f"perf-gate: recorded run {run.run_id} ({len(samples)} benchmarks) in {self.directory}")
        try:
            removed = prune_history(self.directory, keep)
        except OSError as exc:  # the run is recorded and judged: the history is only not bounded this time
            self.lines.append(f"perf-gate: could not remove the oldest runs beyond the newest {keep} "
                              f"(--perf-gate-keep) from {self.directory}: {exc}")
            removed = []
        if removed:
            span = removed[0].name if len(removed) == 1 else f"{removed[0].name} ... {removed[-1].name}"
            self.lines.append(f"perf-gate: removed the {len(removed)} oldest run(s), beyond the newest {keep} kept "
                              f"(--perf-gate-keep): {span}")
        regressed = [verdict.benchmark for verdict in self.verdicts if verdict.verdict == "regressed"]
        if self.unjudged:
            self._fail(session)
        if regressed:
            self.lines.append(f"perf-gate: FAILED: {len(regressed)} benchmark(s) regressed: {', '.join(regressed)}")
            self._fail(session)

    @staticmethod
    def _fail(session: pytest.Session) -> None:
        """Fail a run that would otherwise pass; a worse exit status (interrupted, usage error) stays."""
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.lines:
            return
        terminalreporter.section("perf gate")
        for line in self.lines:
            failed = "FAILED" in line or line.startswith("perf-gate: regressed")
            terminalreporter.write_line(line, red=failed, bold=failed)


def _first_line(report: pytest.TestReport) -> str:
    """What failed, in a line: the exception's message where pytest kept it, else the report's last line."""
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None and crash.message:
        return str(crash.message).strip().splitlines()[0]
    return (report.longreprtext.strip().splitlines() or ["no detail"])[-1]
