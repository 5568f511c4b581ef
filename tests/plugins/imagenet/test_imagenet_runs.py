"""ImageNet benchmarks through the command line, with the real offline MobileNetV2."""

from __future__ import annotations

import csv
import io

from conftest import run_cli


def test_in9_original_from_the_samples_end_to_end(shared_data):
    args = ["run", "-g", "pretrained", "-c", "mobilenet_v2-coral", "-b", "in9"]
    args += ["--data-dir", str(shared_data), "--set", "benchmark.source=samples"]
    run_cli(*args, timeout=900)
    rows = list(csv.DictReader(io.StringIO(run_cli("export").stdout)))
    (original,) = [r for r in rows if r["metric"] == "original_acc" and r["key"] == ""]
    assert int(original["n"]) == 370  # the samples of the 370 classes IN-9 maps
    assert 85.0 <= float(original["value"]) <= 100.0  # measured 96.2 with the real weights
    board = run_cli("leaderboard", "-b", "in9", "-f", "csv").stdout
    board_rows = list(csv.DictReader(io.StringIO(board)))
    measured = [r for r in board_rows if r["kind"] == "measured"]
    assert measured[0]["data_source"] == "in9-samples[370 images]"
    assert any(r["kind"] == "reference" for r in board_rows)
    assert "already complete" in run_cli(*args).stdout  # finished runs are not repeated


def test_mnist_generators_do_not_serve_imagenet_benchmarks():
    result = run_cli("run", "-g", "dcgan", "-b", "in9", check=False)
    assert result.returncode != 0
    assert "does not support task 'imagenet'" in result.stderr
    assert "Traceback" not in result.stderr


def test_cgn_on_an_imagenet_benchmark_is_the_imagenet_cgn(tmp_path):
    """`--generator cgn` on in9 plans cgn-imagenet; offline without weights: one clear line."""
    result = run_cli("run", "-g", "cgn", "-b", "in9", "--data-dir", str(tmp_path), check=False)
    assert result.returncode != 0
    assert "cgn-imagenet" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
