"""`perfsdk detect`: the shipped demo and the errors a user can hit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from perfsdk.cli import main, read_series

SAMPLE = Path(__file__).resolve().parents[1] / "perfsdk" / "data" / "sample_latency.csv"


def test_demo_finds_the_spikes_and_the_deploy(capsys):
    assert main(["detect", str(SAMPLE), "--window", "120", "--threshold", "4"]) == 0
    out = capsys.readouterr().out
    for minute in ["2026-11-26T06:40:00Z", "2026-11-26T22:13:00Z", "2026-11-27T07:40:00Z",
                   "2026-11-27T12:50:00Z", "2026-11-27T21:50:00Z",  # the spikes
                   "2026-11-27T16:00:00Z"]:  # the deploy's level shift
        assert minute in out
    assert "std above the expected" in out
    assert out.strip().splitlines()[-1].startswith("17 anomalies in 2880 points")


def test_console_script_is_installed():
    out = subprocess.run(
        [sys.executable, "-m", "perfsdk.cli", "detect", str(SAMPLE), "--json", "--threshold", "6"],
        capture_output=True, text=True, check=True,
    ).stdout
    records = [json.loads(line) for line in out.splitlines()]
    assert records and all(abs(r["score"]) > 6 and r["timestamp"] for r in records)


def test_nan_rows_are_counted_not_fatal(tmp_path, capsys):
    f = tmp_path / "s.csv"
    f.write_text("timestamp,value\n" + "".join(f"{i},{10 + i % 3}\n" for i in range(40)) + "40,\n41,nan\n42,99\n")
    assert main(["detect", str(f), "--window", "10"]) == 0
    assert "2 rejected as NaN/inf" in capsys.readouterr().out


@pytest.mark.parametrize(
    "content,message",
    [
        ("timestamp,value\n1,2\n2,oops\n", ":3: value 'oops' is not a number"),
        ("timestamp,value\n", "no data rows"),
        ("1\n", ":1: expected 'timestamp,value'"),
    ],
)
def test_bad_files_name_the_problem(tmp_path, capsys, content, message):
    f = tmp_path / "bad.csv"
    f.write_text(content)
    assert main(["detect", str(f)]) == 2
    assert message in capsys.readouterr().err


def test_json_output_is_valid_json_for_a_constant_series_infinite_score(tmp_path, capsys):
    """A constant series' change scores +inf, which ``--json`` wrote as ``Infinity`` (not JSON):
    non-finite numbers are null."""
    f = tmp_path / "const.csv"
    f.write_text("1,5\n2,5\n3,5\n4,9\n")
    assert main(["detect", str(f), "--window", "2", "--warmup", "2", "--json"]) == 0
    line = capsys.readouterr().out.strip()
    record = json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert record["score"] is None and record["value"] == 9.0 and record["expected"] == 5.0


@pytest.mark.parametrize(
    "content,stamps",
    [
        ("\ufeff1,5\n2,6\n3,5\n", ["1", "2", "3"]),  # a byte-order mark, no header
        ("\ufefft,v\r\n1,5\r\n2,6\r\n", ["1", "2"]),  # Excel's: a mark and a header
        ("\nts,value\n1,5\n2,6\n", ["1", "2"]),  # a header after a blank line
        (" , \nts,value\n1,5\n", ["1"]),
    ],
)
def test_a_header_is_the_first_non_blank_row_and_a_bom_is_not_data(tmp_path, content, stamps):
    f = tmp_path / "s.csv"
    f.write_text(content, encoding="utf-8")
    timestamps, values = read_series(f)
    assert timestamps == stamps and len(values) == len(stamps)


@pytest.mark.parametrize("first", ["2024-01-01,12ms", "1,-5 ms", "1,.5s"])
def test_a_first_row_whose_value_looks_numeric_is_data_not_a_header(tmp_path, capsys, first):
    """It was skipped as a header: the row lost, every anomaly's index one off."""
    f = tmp_path / "s.csv"
    f.write_text(first + "\n2,5\n3,6\n")
    assert main(["detect", str(f)]) == 2
    assert ":1: value " in capsys.readouterr().err


def test_only_the_first_row_may_be_a_header(tmp_path, capsys):
    f = tmp_path / "s.csv"
    f.write_text("ts,value\nts,value\n1,5\n")
    assert main(["detect", str(f)]) == 2
    assert ":2: value 'value' is not a number" in capsys.readouterr().err


def test_missing_file_and_bad_option(tmp_path, capsys):
    assert main(["detect", str(tmp_path / "nope.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["detect", str(SAMPLE), "--window", "1"]) == 2
    assert "window must be an integer" in capsys.readouterr().err


def _export_with_one_route(root: Path, service: str = "shop") -> Path:
    """An export directory of ten GET /cart server spans (of ``service``)."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    from perfsdk.export.schema import SPANS

    rows = [{"trace_id": f"{i:032x}", "span_id": f"{i:016x}", "name": "GET /cart", "kind": "SERVER",
             "start_time": i * 10**9, "end_time": i * 10**9 + 10**6, "duration_ms": 1.0, "status_code": "UNSET",
             "service.name": service, "attributes": [("http.method", "GET"), ("http.target", "/cart")]}
            for i in range(10)]
    folder = root / "spans" / f"service={service}" / "date=2026-01-01"
    folder.mkdir(parents=True)
    with ipc.new_file(str(folder / "part-1.arrow"), SPANS) as f:
        f.write_table(pa.Table.from_pylist(rows, schema=SPANS))
    return root


def test_testgen_with_spans_of_two_services_asks_for_one(tmp_path, capsys):
    """A frontend's and its backend's server spans made one user chain of both."""
    source = _export_with_one_route(tmp_path / "export")
    _export_with_one_route(source, service="stock")
    out = tmp_path / "s.json"
    assert main(["testgen", "--from", str(source), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "2 services (shop (10 requests), stock (10 requests))" in err and "--service NAME" in err
    assert not out.exists()
    assert main(["testgen", "--from", str(source), "--out", str(out), "--service", "stock"]) == 0
    assert json.loads(out.read_text())["metadata"]["source_requests"] == 10


def test_testgen_service_must_be_one_there_and_goes_with_out(tmp_path, capsys):
    source = _export_with_one_route(tmp_path / "export")
    _export_with_one_route(source, service="stock")
    out = tmp_path / "s.json"
    assert main(["testgen", "--from", str(source), "--out", str(out), "--service", "stok"]) == 2
    assert "no HTTP server spans of service 'stok' to learn from: the server spans are of 'shop', 'stock'" in \
        capsys.readouterr().err
    assert main(["testgen", "--from", str(source), "--bench-out", str(tmp_path / "b.py"), "--service", "shop"]) == 2
    assert "--service goes with --out" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "b.py").exists()


@pytest.mark.parametrize("options,message", [
    (["--duration", "-5"], "--duration must be a finite number in [1, 3600], got -5.0"),
    (["--duration", "0.5"], "--duration must be a finite number in [1, 3600], got 0.5"),  # a stage lasts 1 s at least
    (["--duration", "inf"], "--duration must be a finite number in [1, 3600], got inf"),  # was: float NaN to integer
    (["--duration", "7200"], "--duration must be a finite number in [1, 3600], got 7200.0"),  # was: 2 lines, unnamed
    (["--goal", "spike", "--duration", "0.5"], "--duration must be a finite number in [1, 3600], got 0.5"),
    (["--goal", "  "], "goal must say what the test is for"),
    (["--goal", "spike", "--duration", "-5"], "--duration must be a finite number in [1, 3600], got -5.0"),
    (["--goal", "spike", "--llm-url", "http://127.0.0.1:9/v1", "--llm-model", "m", "--llm-timeout", "0"],
     "timeout_s must be a finite number > 0, got 0.0"),
    (["--goal", "spike", "--llm-url", "http://127.0.0.1:9/v1", "--llm-model", "m", "--llm-timeout", "nan"],
     "timeout_s must be a finite number > 0, got nan"),
    (["--goal", "spike", "--llm-url", "ftp://h/v1", "--llm-model", "m"], "base_url must be an http:// or https://"),
])
def test_testgen_says_in_one_line_which_option_value_is_wrong(tmp_path, capsys, options, message):
    source = _export_with_one_route(tmp_path / "export")
    out = tmp_path / "s.json"
    assert main(["testgen", "--from", str(source), "--out", str(out), *options]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("perfsdk testgen: error: ") and message in err
    assert not out.exists()


@pytest.mark.parametrize("options,message", [
    (["--host", "ftp://x"], "host must be a base URL like http://127.0.0.1:8000"),
    # the pattern passed these, and Locust's traceback was the message
    (["--host", "http://127.0.0.1:99999"], "got 'http://127.0.0.1:99999': port out of range 0-65535"),
    (["--host", "http://[::1"], "got 'http://[::1': invalid IPv6 URL"),
    (["--host", "http://127.0.0.1:abc"], "got 'http://127.0.0.1:abc': port could not be cast to integer"),
    (["--host", "http://127.0.0.1:9", "--duration", "-1"], "--duration must be a finite number > 0, got -1.0"),
])
@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])  # a dry run passed them all, and the real run failed
def test_loadtest_says_in_one_line_which_option_value_is_wrong(tmp_path, capsys, options, message, dry_run):
    source = _export_with_one_route(tmp_path / "export")
    scenario = tmp_path / "s.json"
    assert main(["testgen", "--from", str(source), "--out", str(scenario)]) == 0
    capsys.readouterr()
    assert main(["loadtest", str(scenario), *options, *dry_run]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("perfsdk loadtest: error: ") and message in err


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "perfsdk.cli", *args], input=stdin, capture_output=True,
                          text=True, timeout=120)


def one_line_error(done: subprocess.CompletedProcess[str], command: str) -> str:
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"perfsdk {command}: error: "), done.stderr
    return done.stderr


def test_loadtest_keeps_its_files_in_workdir_and_names_one_it_cannot_make(tmp_path):
    """The generated code's failure advised ``pass workdir=``, which the command had no option for."""
    source = _export_with_one_route(tmp_path / "export")
    scenario = tmp_path / "s.json"
    assert run_cli("testgen", "--from", str(source), "--out", str(scenario)).returncode == 0
    err = one_line_error(run_cli("loadtest", str(scenario), "--host", "http://127.0.0.1:9",
                                 "--workdir", str(scenario)), "loadtest")
    assert f"--workdir {scenario}: " in err


def test_detect_names_a_cell_over_the_csv_size_limit(tmp_path):
    f = tmp_path / "big.csv"
    f.write_text('timestamp,value\n1,"' + "x" * 200_000 + '"\n')
    err = one_line_error(run_cli("detect", str(f)), "detect")
    assert f"{f}:2: not a timestamp,value CSV row: field larger than field limit" in err


def test_detect_says_a_directory_is_one_and_reads_standard_input(tmp_path):
    assert f"{tmp_path}: is a directory" in one_line_error(run_cli("detect", str(tmp_path)), "detect")
    done = run_cli("detect", "-", stdin="t,v\n1,2\n2,3\n")  # was: "-: no such file"
    assert done.returncode == 0 and "2 points" in done.stdout
    assert "<stdin>:2: value 'x' is not a number" in one_line_error(run_cli("detect", "-", stdin="1,2\n2,x\n"),
                                                                    "detect")


def test_detect_piped_into_a_reader_that_leaves_ends_quietly(tmp_path):
    """``perfsdk detect big.csv | head -1`` ended in a BrokenPipeError traceback."""
    f = tmp_path / "s.csv"
    f.write_text("".join(f"{i},{i % 7}\n" for i in range(20_000)))
    command = [sys.executable, "-m", "perfsdk.cli", "detect", str(f), "--window", "2", "--warmup", "2",
               "--threshold", "0.001", "--json"]  # an anomaly a point: megabytes, far beyond a pipe's buffer
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        assert json.loads(process.stdout.readline())
        process.stdout.close()
        err = process.stderr.read()
        process.wait(timeout=120)
    assert process.returncode == 141 and err == b""


@pytest.mark.parametrize("value", ["1_000", "\u0661\u0662", "\uff11"])
def test_detect_refuses_what_float_takes_but_no_csv_number_is(tmp_path, capsys, value):
    """float() reads 1_000, Arabic-Indic and full-width digits: a metric CSV with them is malformed."""
    f = tmp_path / "s.csv"
    f.write_text(f"t,v\n1,5\n2,{value}\n", encoding="utf-8")
    assert main(["detect", str(f)]) == 2
    assert f":3: value {value!r} is not a number" in capsys.readouterr().err


def test_detect_counts_nan_and_inf_spelled_out_as_rejected(tmp_path, capsys):
    f = tmp_path / "s.csv"
    f.write_text("t,v\n" + "".join(f"{i},{10 + i % 3}\n" for i in range(20)) + "a,infinity\nb,-Inf\nc,NaN\nd,1e1\n")
    assert main(["detect", str(f), "--window", "5"]) == 0
    assert "in 24 points (5 used to warm up, 3 rejected as NaN/inf)" in capsys.readouterr().out


def test_detect_alpha_is_in_the_open_interval(capsys):
    """--alpha 1 keeps the EWMA variance at 0: every change of plain noise an infinite anomaly."""
    assert "smoothing factor in (0, 1)," in " ".join(run_cli("detect", "--help").stdout.split())
    assert main(["detect", str(SAMPLE), "--alpha", "1"]) == 2
    assert "alpha must be a finite number in (0, 1), got 1.0" in capsys.readouterr().err


def test_analyze_refuses_an_absurd_confirm_in_one_line(tmp_path):
    """It ended in numba's TypingError traceback (RunRule bounds it now)."""
    source = _export_with_one_route(tmp_path / "export")
    err = one_line_error(run_cli("analyze", str(source), "--quiet", "--confirm", "99999999999999999999"), "analyze")
    assert "confirm must be an integer" in err and "got 99999999999999999999" in err


def test_testgen_writes_no_file_when_one_cannot_be_written(tmp_path):
    """The benchmarks were written first and stayed behind when the scenario could not be."""
    source = _export_with_one_route(tmp_path / "export")
    _trace_one_function(source)
    bench, directory = tmp_path / "b.py", tmp_path / "adir"
    directory.mkdir()
    err = one_line_error(run_cli("testgen", "--from", str(source), "--bench-out", str(bench), "--out",
                                 str(directory)), "testgen")
    assert f"cannot write {directory}: " in err and not bench.exists()
    err = one_line_error(run_cli("testgen", "--from", str(source), "--bench-out", str(bench), "--out",
                                 str(tmp_path / "s.json"), "--duration", "7200"), "testgen")
    assert "--duration must be" in err and not bench.exists() and not (tmp_path / "s.json").exists()
    done = run_cli("testgen", "--from", str(source), "--bench-out", str(bench), "--out", str(tmp_path / "s.json"))
    assert done.returncode == 0 and bench.exists() and (tmp_path / "s.json").exists()
    bench.write_text("# edited by hand\n")  # a failure puts back what was there, never deletes it
    one_line_error(run_cli("testgen", "--from", str(source), "--bench-out", str(bench), "--out", str(directory)),
                   "testgen")
    assert bench.read_text() == "# edited by hand\n"


def test_testgen_names_and_skips_a_cut_short_span_file(tmp_path):
    """It refused the whole directory with pyarrow's "Could not open IPC input source"."""
    source = _export_with_one_route(tmp_path / "export")
    _trace_one_function(source)
    whole = next((source / "spans").rglob("part-1.arrow"))
    cut = whole.with_name("part-2.arrow")
    cut.write_bytes(whole.read_bytes()[:300])
    done = run_cli("testgen", "--from", str(source), "--out", str(tmp_path / "s.json"), "--bench-out",
                   str(tmp_path / "b.py"))
    assert done.returncode == 0, done.stderr
    assert f"skipped (unreadable): {cut}: not a complete Arrow IPC or Parquet file" in done.stdout
    assert "from 10 requests" in done.stdout and "hot: 3 calls" in done.stdout
    for f in whole.parent.iterdir():
        f.write_bytes(f.read_bytes()[:300])
    err = one_line_error(run_cli("testgen", "--from", str(source), "--out", str(tmp_path / "t.json")), "testgen")
    assert "no spans file under" in err and "could be read" in err and str(cut) in err and str(whole) in err


def _trace_one_function(root: Path) -> None:
    """A second span file in ``root``'s partition: three calls of a function @monitor traced."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    from perfsdk.export.schema import FUNCTIONS_KEY, SPANS

    rows = [{"trace_id": f"{i:032x}", "span_id": f"{i + 100:016x}", "name": "hot", "kind": "INTERNAL",
             "start_time": i * 10**9, "end_time": i * 10**9 + 10**5, "duration_ms": 0.1, "status_code": "UNSET",
             "service.name": "shop", "attributes": []} for i in range(3)]
    schema = SPANS.with_metadata({FUNCTIONS_KEY: json.dumps({"hot": ["shop.work:hot"]})})
    folder = next((root / "spans").glob("service=*/date=*"))
    with ipc.new_file(str(folder / "part-0.arrow"), schema) as f:
        f.write_table(pa.Table.from_pylist(rows, schema=schema))


# -- Ctrl-C: one line, status 130 -------------------------------------------------------------------


def test_the_interrupted_line_names_the_command_and_what_was_left() -> None:
    from perfsdk.cli import Interrupted, interrupted_line

    assert interrupted_line("demo", KeyboardInterrupt()) == "perfsdk demo: interrupted"
    assert interrupted_line("demo", Interrupted("out/ holds an incomplete run")) == (
        "perfsdk demo: interrupted; out/ holds an incomplete run")
    assert interrupted_line("loadtest", Interrupted("")) == "perfsdk loadtest: interrupted"


def test_an_interrupted_command_says_so_in_one_line_with_status_130(tmp_path, monkeypatch, capsys) -> None:
    """It was a raw traceback ending in KeyboardInterrupt, and Python's status 1 (or -2)."""
    from perfsdk import cli

    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "read_series", interrupted)
    assert main(["detect", str(SAMPLE)]) == 130
    captured = capsys.readouterr()
    assert captured.err == "perfsdk detect: interrupted\n" and captured.out == ""


@pytest.mark.parametrize("started", [True, False])
def test_an_interrupted_demo_says_so_and_whether_it_left_an_incomplete_run(tmp_path, monkeypatch, capsys,
                                                                           started) -> None:
    """A Ctrl-C was reported as the shop failing (status -2), as 'cannot write', or as a traceback."""
    from perfsdk import cli
    from perfsdk.demo import run

    out = tmp_path / "d"

    def run_demo(path, **kwargs):
        if started:  # as run_demo does first
            Path(path).mkdir()
            (Path(path) / run.MARK).write_text("")
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "DEMO_NEEDS", ())
    monkeypatch.setattr(run, "run_demo", run_demo)
    assert main(["demo", "--quick", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    if started:
        assert err == (f"perfsdk demo: interrupted; {out}/ holds an incomplete run, "
                       "which the next demo there replaces\n")
    else:
        assert err == "perfsdk demo: interrupted\n" and not out.exists()


def test_a_demo_piped_into_head_ends_quietly(tmp_path) -> None:
    """``perfsdk demo | head -1`` said "cannot write OUT: Broken pipe" (status 2): the demo's OSError
    clause took the closed pipe for its output directory. It ends as every command does: 141, silent."""
    code = ("import sys; from perfsdk import cli; from perfsdk.demo import run; cli.DEMO_NEEDS = ()\n"
            "def run_demo(path, **kwargs):\n    raise BrokenPipeError(32, 'Broken pipe')\n"
            f"run.run_demo = run_demo; sys.exit(cli.main(['demo', '--quick', '--out', {str(tmp_path / 'd')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 141 and done.stderr == ""
