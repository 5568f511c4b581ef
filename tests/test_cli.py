"""The command line as a user drives it, in subprocesses, with the example plugin loaded."""

import csv
import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import run_cli

TOY_RUN = ["run", "-g", "toy-blobs", "-b", "toy-shift", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _toy(toy_plugin_env):
    return toy_plugin_env


def test_help_explains_commands():
    out = run_cli("--help").stdout
    for command in ("run", "list", "plugins", "leaderboard", "export", "show"):
        assert command in out
    assert "--seed" in run_cli("run", "--help").stdout


def test_list_and_plugins(_isolated_home):
    out = run_cli("list").stdout
    assert "toy-blobs" in out and "toy-linear" in out and "toy-shift" in out
    assert "toy-shift" not in run_cli("list", "generators").stdout
    assert "toy-blobs" in run_cli("list", "generators", "toy*").stdout
    data = json.loads(run_cli("plugins", "--json").stdout)
    names = {p["name"]: p for p in data["plugins"]}
    assert "cgnbench_toy" in names and "builtin-generators" in names
    assert "register_generators" in names["cgnbench_toy"]["hooks"]
    blocked = json.loads(run_cli("--block", "cgnbench_toy", "plugins", "--json").stdout)
    assert "cgnbench_toy" not in {p["name"] for p in blocked["plugins"]}


def test_run_store_leaderboard_rerun_force(tmp_path, _isolated_home):
    first = run_cli(*TOY_RUN, "-s", "0", "-s", "1", "--set", "classifier.epochs=2")
    assert first.stdout.count("complete") == 2
    database = _isolated_home / "results.sqlite"
    rows = sqlite3.connect(database).execute("SELECT status FROM runs").fetchall()
    assert rows == [("complete",), ("complete",)]

    output = tmp_path / "lb.csv"
    run_cli("leaderboard", "--format", "csv", "-o", str(output))
    with output.open() as handle:
        board = list(csv.DictReader(handle))
    measured = [row for row in board if row["kind"] == "measured"]
    assert len(measured) == 1 and measured[0]["seeds"] == "2"
    assert float(measured[0]["iid_acc"]) > 90

    again = run_cli(*TOY_RUN, "-s", "0", "--set", "classifier.epochs=2")
    assert "already complete" in again.stdout
    attempts = sqlite3.connect(database).execute("SELECT sum(attempts) FROM runs").fetchone()[0]
    assert attempts == 2
    run_cli(*TOY_RUN, "-s", "0", "--set", "classifier.epochs=2", "--force")
    attempts = sqlite3.connect(database).execute("SELECT sum(attempts) FROM runs").fetchone()[0]
    assert attempts == 3

    for fmt in ("markdown", "json", "table"):
        assert "toy-blobs" in run_cli("leaderboard", "-b", "toy-shift", "-f", fmt).stdout
    exported = run_cli("export").stdout
    assert exported.splitlines()[0].startswith("run_id,")
    assert len(exported.splitlines()) == 1 + 2 * 2  # two runs x two metrics
    run_id = sqlite3.connect(database).execute("SELECT run_id FROM runs").fetchone()[0]
    shown = run_cli("show", run_id[:6]).stdout
    assert "ood_acc" in shown and "checkpoints/toy-linear.pt" in shown
    assert json.loads(run_cli("show", run_id, "--json").stdout)["status"] == "complete"


@pytest.mark.parametrize(
    "args,message",
    [
        (["run", "-g", "toy-blob", "-b", "toy-shift"], "did you mean 'toy-blobs'"),
        (
            ["run", "-g", "toy-blobs", "-b", "toy-shift", "--set", "classifier.epoch=2"],
            "did you mean epochs",
        ),
        (
            ["run", "-g", "toy-blobs", "-b", "toy-shift", "--set", "generator.n=-1"],
            "n must be positive",
        ),
        (
            ["run", "-g", "toy-blobs", "-b", "toy-shift", "--config", "missing.toml"],
            "config file not found",
        ),
        (["show", "nope"], "no run with id"),
        (["leaderboard", "-b", "toy-shfit"], "did you mean 'toy-shift'"),
    ],
)
def test_bad_input_is_one_clear_line(args, message):
    result = run_cli(*args, check=False)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_config_file(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(
        '[run]\ngenerator = "toy-blobs"\nbenchmark = "toy-shift"\nseeds = [4]\n'
        'device = "cpu"\n[classifier]\nepochs = 1\n[generator]\nspurious = 0.0\n'
    )
    out = run_cli("run", "--config", str(config), "-q").stdout
    assert "complete" in out and " 4 " in out


def test_sigkill_mid_training_then_rerun_resumes(_isolated_home):
    """Kill the process hard in the middle of training; the rerun continues from the last
    checkpoint (no epoch is trained twice) and the run completes."""
    args = [
        *TOY_RUN,
        "-q",
        "--set",
        "classifier.epochs=12",
        "--set",
        "classifier.seconds_per_epoch=0.4",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "robustbench_cgn", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    runs = _isolated_home / "runs"
    deadline = time.monotonic() + 120
    epochs_log = None
    while time.monotonic() < deadline:
        logs = list(runs.glob("*/epochs.log")) if runs.exists() else []
        if logs and len(logs[0].read_text().split()) >= 3:
            epochs_log = logs[0]
            break
        time.sleep(0.05)
    assert epochs_log is not None, process.communicate()
    process.send_signal(signal.SIGKILL)
    process.wait()
    database = _isolated_home / "results.sqlite"
    status = sqlite3.connect(database).execute("SELECT status FROM runs").fetchone()[0]
    assert status == "running"  # the killed process could not close it: it is stale

    trained_before = [int(e) for e in epochs_log.read_text().split()]
    rerun = run_cli(*args[:-1], "classifier.seconds_per_epoch=0.4")
    assert "complete (resumed)" in rerun.stdout
    trained = [int(e) for e in epochs_log.read_text().split()]
    assert trained == list(range(1, 13)), trained
    assert len(trained_before) >= 3
    row = sqlite3.connect(database).execute("SELECT status, attempts FROM runs").fetchone()
    assert row == ("complete", 2)


def test_autoload_switch(monkeypatch):
    monkeypatch.setenv("CGNBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    data = json.loads(run_cli("plugins", "--json").stdout)
    assert data["autoload"] is False
    assert [p["name"] for p in data["plugins"]] == ["cgnbench_toy"]
    monkeypatch.delenv("CGNBENCH_PLUGINS")
    out = run_cli("list", "generators").stdout
    assert "toy-blobs" not in out


def test_broken_plugin_warns_and_cli_keeps_working(monkeypatch):
    monkeypatch.setenv("CGNBENCH_PLUGINS", "cgnbench_toy,module_that_does_not_exist")
    result = run_cli("list", "generators")
    assert "module_that_does_not_exist" in result.stderr and "warning" in result.stderr
    assert "toy-blobs" in result.stdout
