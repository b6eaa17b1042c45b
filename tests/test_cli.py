"""`perfsdk detect`: the shipped demo and the errors a user can hit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from perfsdk.cli import main

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


def test_missing_file_and_bad_option(tmp_path, capsys):
    assert main(["detect", str(tmp_path / "nope.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["detect", str(SAMPLE), "--window", "1"]) == 2
    assert "window must be an integer >= 2" in capsys.readouterr().err
