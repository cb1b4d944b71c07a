"""claimkit.calibration_table: the table file beside a spec, read back with named errors, and shown."""

from __future__ import annotations

import json
import sys

import pytest

from claimkit.calibration_table import CalibrationError, markdown_table, read_table, table_cells, table_path

ROW = {"claim": "t-1", "profile": "small", "n": 40, "seeds": 3, "parts": 1, "false_support": 0.0412,
       "false_refute": 0.0, "power": 0.876, "power_required": False, "within_bounds": True, "problems": []}


def test_the_table_lies_beside_its_spec_and_reads_back(tmp_path):
    spec = tmp_path / "paper.toml"
    assert table_path(spec) == tmp_path / "paper.calibration.json"
    assert read_table(spec) is None  # none yet: not an error
    document = {"spec": "paper.toml", "spec_hash": "sha256:x", "reps": 100, "rows": [ROW], "points": []}
    table_path(spec).write_text(json.dumps(document))
    assert read_table(spec) == document


def test_rows_are_shown_as_claimkit_calibrate_prints_them():
    broken = {**ROW, "claim": "t-2", "power_required": True, "within_bounds": False,
              "problems": ["false support 0.120 > 0.05", "power 0.50 < 0.8"]}
    assert table_cells(ROW) == ["t-1", "small", "40", "3", "1", "0.041", "0.000", "0.88 (not required)", "-", "met"]
    assert markdown_table([ROW, broken]).splitlines() == [
        "| claim | profile | n | seeds | parts | false support | false refutation | power | refutes a false claim | bounds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        "| t-1 | small | 40 | 3 | 1 | 0.041 | 0.000 | 0.88 (not required) | - | met |",
        "| t-2 | small | 40 | 3 | 1 | 0.041 | 0.000 | 0.88 | - | BROKEN: false support 0.120 > 0.05; power 0.50 < 0.8 |",
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ('{"rows": []}', "not a calibration table (it needs 'spec_hash' and 'rows')"),
        ('{"spec_hash": "sha256:x", "rows": [{"claim": "t-1"}]}', "rows[0] lacks profile, n,"),
        (json.dumps({"spec_hash": "sha256:x", "rows": [{**ROW, "false_support": "low", "problems": "none"}]}),
         "rows[0]: false_support, problems not of the type the table writes"),
    ],
)
def test_a_malformed_table_is_a_named_error(tmp_path, text, message):
    spec = tmp_path / "paper.toml"
    table_path(spec).write_text(text, encoding="utf-8")
    with pytest.raises(CalibrationError) as raised:
        read_table(spec)
    assert str(raised.value).startswith(f"{tmp_path / 'paper.calibration.json'}: ") and message in str(raised.value)
    assert str(raised.value).endswith(f"rerun `claimkit calibrate {spec}`")


def test_reading_a_table_needs_no_statistics_stack():
    """Reports read tables; they must not need numpy or scipy to do it."""
    import subprocess

    code = ("import sys; import claimkit.calibration_table, claimkit.report.error_rates; "
            "print(sorted(m for m in ('numpy', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
