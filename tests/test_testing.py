"""``robustbench_cgn.testing``: plugin authors run their components through the real runner."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import cgnbench_toy
import pytest

from robustbench_cgn import hookimpl
from robustbench_cgn.plugin_manager import PluginError
from robustbench_cgn.testing import PluginTester

TOY_TRAINING = {"classifier": {"epochs": "2"}}


def test_a_plugin_runs_end_to_end_in_its_own_home(tmp_path):
    tester = PluginTester(tmp_path / "home", (cgnbench_toy,))
    try:
        outcome = tester.run("toy-blobs", "toy-shift", overrides=TOY_TRAINING)
        assert outcome.status == "complete"
        metrics = tester.metrics(outcome)
        assert set(metrics) == {"iid_acc", "ood_acc"} and metrics["iid_acc"] > 90
        assert (tmp_path / "home" / "results.sqlite").is_file()
        assert (tmp_path / "home" / "runs" / outcome.run_id).is_dir()
        again = tester.run("toy-blobs", "toy-shift", overrides=TOY_TRAINING)
        assert again.status == "skipped" and again.run_id == outcome.run_id  # finished: no-op
        assert "cgn" in tester.system.registries.generators  # the built-ins are there too
    finally:
        tester.close()


def test_plugin_problems_are_errors_by_default(tmp_path):
    broken = types.ModuleType("broken_plugin")

    @hookimpl
    def register_generators(registry):
        raise RuntimeError("boom in my plugin")

    broken.register_generators = register_generators
    tester = PluginTester(tmp_path, (broken,), builtins=False)
    with pytest.raises(PluginError, match="broken_plugin.*boom in my plugin"):
        tester.run("toy-blobs", "toy-shift")


def test_the_fixture_in_a_plugin_authors_test_session(tmp_path, toy_plugin_env):
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["robustbench_cgn.testing"]\n')
    (tmp_path / "test_my_plugin.py").write_text(
        "import cgnbench_toy\n\n\n"
        "def test_toy(cgnbench):\n"
        "    cgnbench.load(cgnbench_toy)\n"
        "    outcome = cgnbench.run('toy-blobs', 'toy-shift', "
        "overrides={'classifier': {'epochs': 2}})\n"
        "    assert outcome.status == 'complete'\n"
        "    assert cgnbench.metrics(outcome)['ood_acc'] >= 0\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
         str(tmp_path), str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout + result.stderr
