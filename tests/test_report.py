"""``cgnbench report``: one self-contained HTML file with leaderboard, metrics, figures."""

import base64
import sqlite3
from pathlib import Path

import pytest
from conftest import run_cli

from robustbench_cgn.figures import save_image_rows

TOY_RUN = ["run", "-g", "toy-blobs", "-b", "toy-shift", "--device", "cpu", "-q"]


@pytest.fixture(autouse=True)
def _toy(toy_plugin_env):
    return toy_plugin_env


def test_report_of_two_runs(_isolated_home, tmp_path):
    import torch

    run_cli(*TOY_RUN, "-s", "0")
    run_cli(*TOY_RUN, "-s", "1")
    database = Path(_isolated_home) / "results.sqlite"
    runs = sqlite3.connect(database).execute("SELECT run_id, workdir FROM runs").fetchall()
    for i, (_, workdir) in enumerate(runs):  # a figure both runs have, one only the first has
        picture = torch.full((1, 3, 8, 8), i / 2)
        save_image_rows(Path(workdir) / "artifacts" / "shared.png", [("row", picture)])
    save_image_rows(Path(runs[0][1]) / "artifacts" / "own.png", [("row", picture)])
    out = tmp_path / "report.html"
    run_cli("report", runs[0][0][:6], runs[1][0], "-o", str(out))
    text = out.read_text()
    assert text.startswith("<!doctype html>") and text.rstrip().endswith("</html>")
    assert "toy-shift" in text and "ood_acc" in text and "Side by side" in text
    assert text.count("data:image/png;base64,") == 3  # shared x2, own x1: embedded, no links
    embedded = text.split("data:image/png;base64,")[1].split('"')[0]
    assert base64.b64decode(embedded).startswith(b"\x89PNG")
    assert "provenance" in text and runs[0][0][:8] in text


def test_report_of_an_unknown_run_is_a_clear_error(_isolated_home, tmp_path):
    result = run_cli("report", "deadbeef", "-o", str(tmp_path / "r.html"), check=False)
    assert result.returncode == 2 and "no run matches 'deadbeef'" in result.stderr
    assert not (tmp_path / "r.html").exists()
