"""``cgnbench train-mnist-generator`` (a command added through the register_commands hook)."""

import json

from conftest import run_cli


def test_listed_in_help():
    assert "train-mnist-generator" in run_cli("--help").stdout


def test_train_resume_and_export(tmp_path, shared_data):
    out = tmp_path / "dcgan"
    base = [
        "train-mnist-generator",
        "--model",
        "dcgan",
        "--variant",
        "colored",
        "--data-dir",
        str(shared_data),
        "--out",
        str(out),
        "--checkpoint-every",
        "2",
        "--sample-every",
        "2",
        "--threads",
        "1",
    ]
    first = run_cli(*base, "--iterations", "2")
    assert "done: 2 iterations" in first.stderr
    second = run_cli(*base, "--iterations", "4")
    assert "resuming from" in second.stderr and "done: 4 iterations" in second.stderr
    sidecar = json.loads((out / "generator.json").read_text())
    assert (out / "generator.pth").stat().st_size > 0
    assert sidecar["iterations"] == 4
    assert sidecar["command"].startswith("cgnbench train-mnist-generator --model dcgan")


def test_bad_input_is_one_line(tmp_path):
    result = run_cli(
        "train-mnist-generator",
        "--model",
        "cgn",
        "--variant",
        "colored",
        "--data-dir",
        str(tmp_path / "missing"),
        "--out",
        str(tmp_path / "o"),
        check=False,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
