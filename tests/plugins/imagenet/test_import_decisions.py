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


def _rewrite(source, target, change):
    """Copy a raw-data CSV, applying ``change(row_index, row)`` to each data row."""
    with open(source, newline="") as handle:
        rows = list(csv.DictReader(handle))
    with open(target, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for index, row in enumerate(rows):
            change(index, row)
            writer.writerow(row)
    return target


def _capitalised(index, row):
    row["object_response"] = row["object_response"].capitalize()


def _plural(index, row):
    row["object_response"] = row["object_response"] + "s"


def _zebra(index, row):
    if index == 3:
        row["imagename"] = "zebra1-horse2.png"
        row["category"] = "zebra"


def _contradicting(index, row):
    if index in (5, 9):
        row["category"] = "knife" if row["category"] != "knife" else "dog"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_capitalised, "lines 2, 3, 4, 5, 6 and 1275 more: responses that are none of the 16"),
        (_plural, "lines 2, 3, 4, 5, 6 and 1275 more: responses that are none of the 16"),
        (_zebra, "line 5: stimulus categories outside the 16 cue-conflict categories"),
        (_contradicting, "lines 7, 11: category"),
        ("empty", "the file is empty"),
        ("header", "no trials (only the header line)"),
    ],
    ids=["capitalised", "plural", "unknown-stimulus", "contradicting-category", "empty", "header"],
)
def test_malformed_decision_files_are_one_line_and_store_nothing(
    shared_data, tmp_path, _isolated_home, change, message
):
    """Issue 21: such files printed `shape bias nan`, exited 0 and stored a complete row, or
    failed without naming the file."""
    source = sorted((shared_data / "human_cue_conflict").glob("*.csv"))[0]
    bad = tmp_path / "decisions.csv"
    if change == "empty":
        bad.write_text("")
    elif change == "header":
        bad.write_text(source.read_text().splitlines()[0] + "\n")
    else:
        _rewrite(source, bad, change)
    result = run_cli("import-decisions", str(bad), "--label", "model", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    text = " ".join(result.stderr.split())
    assert len(lines) == 1 or text.startswith("error:"), result.stderr
    assert str(bad) in text and message in text, text
    listed = run_cli("export").stdout.strip().splitlines()
    assert len(listed) <= 1  # the header, no metric rows: nothing was stored
