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
    assert "window must be an integer >= 2" in capsys.readouterr().err


def _export_with_one_route(root: Path) -> Path:
    """An export directory of ten GET /cart server spans."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    from perfsdk.export.schema import SPANS

    rows = [{"trace_id": f"{i:032x}", "span_id": f"{i:016x}", "name": "GET /cart", "kind": "SERVER",
             "start_time": i * 10**9, "end_time": i * 10**9 + 10**6, "duration_ms": 1.0, "status_code": "UNSET",
             "service.name": "shop", "attributes": [("http.method", "GET"), ("http.target", "/cart")]}
            for i in range(10)]
    folder = root / "spans" / "service=shop" / "date=2026-01-01"
    folder.mkdir(parents=True)
    with ipc.new_file(str(folder / "part-1.arrow"), SPANS) as f:
        f.write_table(pa.Table.from_pylist(rows, schema=SPANS))
    return root


@pytest.mark.parametrize("options,message", [
    (["--duration", "-5"], "duration_s must be a finite number >= 1, got -5.0"),
    (["--duration", "0.5"], "duration_s must be a finite number >= 1, got 0.5"),  # a stage lasts 1 s at least
    (["--duration", "inf"], "duration_s must be a finite number >= 1, got inf"),  # was: float NaN to integer
    (["--goal", "spike", "--duration", "0.5"], "duration_s must be a finite number >= 1, got 0.5"),
    (["--goal", "  "], "goal must say what the test is for"),
    (["--goal", "spike", "--duration", "-5"], "duration_s must be a finite number > 0"),
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
    (["--host", "http://127.0.0.1:9", "--duration", "-1"], "duration_s must be a finite number > 0, got -1.0"),
])
def test_loadtest_says_in_one_line_which_option_value_is_wrong(tmp_path, capsys, options, message):
    source = _export_with_one_route(tmp_path / "export")
    scenario = tmp_path / "s.json"
    assert main(["testgen", "--from", str(source), "--out", str(scenario)]) == 0
    capsys.readouterr()
    assert main(["loadtest", str(scenario), *options]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("perfsdk loadtest: error: ") and message in err
