"""``cgnbench import-decisions``: decision CSVs (humans, published models) scored onto the
leaderboard as imported rows."""

from __future__ import annotations

import csv
import io

import pytest
from conftest import run_cli


def test_human_observers_score_0959_and_appear_as_imported(shared_data):
    files = sorted(str(p) for p in (shared_data / "human_cue_conflict").glob("*.csv"))
    assert len(files) == 10
    out = run_cli("import-decisions", *files, "--label", "humans").stdout
    assert "humans: shape bias 0.959 over 12000 conflict trials (10 subject(s))" in out
    board = run_cli("leaderboard", "-b", "cue-conflict", "-f", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(board)))
    imported = [r for r in rows if r["kind"] == "imported"]
    assert len(imported) == 1 and imported[0]["classifier"] == "humans"
    assert abs(float(imported[0]["shape_bias"]) - 0.959) < 5e-4
    # importing the same files again replaces the row instead of duplicating it
    run_cli("import-decisions", *files, "--label", "humans")
    again = list(
        csv.DictReader(
            io.StringIO(run_cli("leaderboard", "-b", "cue-conflict", "-f", "csv").stdout)
        )
    )
    assert sum(r["kind"] == "imported" for r in again) == 1


def test_a_file_that_is_not_raw_data_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    result = run_cli("import-decisions", str(bad), "--label", "x", check=False)
    assert result.returncode != 0
    assert "not a model-vs-human raw-data CSV" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("label", ["", "   ", "two\nlines", " padded"])
def test_an_empty_or_multiline_label_is_refused_before_anything_is_stored(tmp_path, label):
    bad = tmp_path / "decisions.csv"
    bad.write_text("a,b\n1,2\n")
    result = run_cli("import-decisions", str(bad), "--label", label, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--label" in result.stderr and "non-empty name" in result.stderr
    assert "not a model-vs-human raw-data CSV" not in result.stderr  # refused first
