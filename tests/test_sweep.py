"""Sweeps: grid parsing and expansion, one run per point, resume after a kill, job lines."""

import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import run_cli

from robustbench_cgn.errors import ConfigError
from robustbench_cgn.sweep import expand, parse_grid


@pytest.fixture(autouse=True)
def _toy(toy_plugin_env):
    return toy_plugin_env


def test_parse_grid_and_expand():
    grid = parse_grid(["generator.n=1e4,1e5", "classifier.epochs=1, 2,3"])
    assert grid == {"generator.n": ["1e4", "1e5"], "classifier.epochs": ["1", "2", "3"]}
    points = expand(["g"], [], ["b1", "b2"], [0, 1], grid)
    assert len(points) == 2 * 3 * 2 * 2
    assert {p.settings["generator.n"] for p in points} == {"1e4", "1e5"}
    assert points[0].benchmark == "b1" and points[1].benchmark == "b2"  # same training adjacent
    assert points[0].overrides({"generator": {"weights": "w"}}) == {
        "generator": {"weights": "w", "n": "1e4"},
        "classifier": {"epochs": "1"},
    }
    assert points[0].command() == (
        "cgnbench run -g g -b b1 -s 0 --set generator.n=1e4 --set classifier.epochs=1"
    )


@pytest.mark.parametrize(
    "bad", ["epochs=1,2", "model.epochs=1", "classifier.epochs=", "classifier.epochs"]
)
def test_malformed_grid_options(bad):
    with pytest.raises(ConfigError):
        parse_grid([bad])


SWEEP = [
    "sweep", "-g", "toy-blobs", "-b", "toy-shift", "-s", "0", "-s", "1",
    "--grid", "classifier.epochs=2,3", "--set", "classifier.seconds_per_epoch=0.3",
    "--device", "cpu",
]  # fmt: skip


def _attempts(database):
    with sqlite3.connect(database) as db:
        return dict(db.execute("SELECT run_id, attempts FROM runs WHERE status = 'complete'"))


def _statuses(database):
    if not database.exists():
        return []
    with sqlite3.connect(database) as db:
        try:
            return [row[0] for row in db.execute("SELECT status FROM runs")]
        except sqlite3.OperationalError:  # created but the schema is not there yet
            return []


def test_sweep_records_one_run_per_point_and_resumes_after_a_kill(_isolated_home):
    database = _isolated_home / "results.sqlite"
    process = subprocess.Popen(
        [sys.executable, "-m", "robustbench_cgn", *SWEEP],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _statuses(database).count("complete") < 1:
        time.sleep(0.05)
    process.kill()
    process.wait()
    before = _statuses(database)
    assert 1 <= before.count("complete") < 4, before
    finished = _attempts(database)
    run_cli(*SWEEP)
    assert sorted(_statuses(database)) == ["complete"] * 4
    after = _attempts(database)
    assert all(after[run_id] == 1 for run_id in finished)  # finished points were skipped
    run_cli(*SWEEP)
    assert _attempts(database) == after  # a finished sweep is a no-op
    board = run_cli("leaderboard", "-b", "toy-shift", "-f", "markdown", "--no-references").stdout
    assert "classifier.epochs" in board.splitlines()[2]  # the swept setting is a column


def test_sweep_checks_every_point_first_and_can_emit_job_lines(_isolated_home, tmp_path):
    bad = run_cli(*SWEEP[:-2], "--grid", "classifier.learning_rat=1", check=False)
    assert bad.returncode == 2 and "learning_rat" in bad.stderr
    assert _statuses(_isolated_home / "results.sqlite") == []
    jobs = tmp_path / "jobs.txt"
    run_cli(*SWEEP, "--emit-jobs", str(jobs))
    lines = jobs.read_text().splitlines()
    assert len(lines) == 4 and all(line.startswith("cgnbench run -g toy-blobs") for line in lines)
    assert "--set classifier.epochs=3" in lines[-1]
    assert _statuses(_isolated_home / "results.sqlite") == []
