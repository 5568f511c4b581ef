"""Shared fixtures.

Real data comes from one place: ``CGNBENCH_TEST_DATA`` (default ``<repo>/../shared/data``).
When it is missing the data-dependent tests *fail* (never skip): CI must notice.
Everything the tests write goes to pytest's tmp dirs, never next to the data.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_PLUGIN_DIR = REPO_ROOT / "examples" / "cgnbench-toy-plugin"
# The example third-party plugin is importable as a fixture plugin in every test.
sys.path.insert(0, str(EXAMPLE_PLUGIN_DIR))


def _shared_data_dir() -> Path:
    return Path(os.environ.get("CGNBENCH_TEST_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real offline data (MNIST, checkpoints, stimuli...)."""
    root = _shared_data_dir()
    if not (root / "README.md").is_file():
        pytest.fail(
            f"test data not found at {root}: set CGNBENCH_TEST_DATA to the shared data folder",
            pytrace=False,
        )
    return root


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep every test's results store and caches out of the user's real data dir."""
    home = tmp_path_factory.mktemp("cgnbench_home")
    monkeypatch.setenv("CGNBENCH_HOME", str(home))
    monkeypatch.delenv("CGNBENCH_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    return home


@pytest.fixture
def mnist_runner(tmp_path, shared_data):
    """A runner with the installed plugins, a fresh store and the shared data as data dir."""
    from robustbench_cgn.plugin_manager import load_plugins
    from robustbench_cgn.runner import Runner
    from robustbench_cgn.settings import resolve_paths
    from robustbench_cgn.store import ResultsStore

    store = ResultsStore(tmp_path / "results.sqlite")
    yield Runner(load_plugins(), store, resolve_paths(tmp_path, data_dir=shared_data))
    store.close()


@pytest.fixture
def toy_plugin_env(monkeypatch):
    """Load the example plugin through ``CGNBENCH_PLUGINS`` (also in subprocesses)."""
    monkeypatch.setenv("CGNBENCH_PLUGINS", "cgnbench_toy")
    python_path = [str(EXAMPLE_PLUGIN_DIR), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in python_path if p))


def run_cli(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m robustbench_cgn ARGS`` in a subprocess with the current environment."""
    result = subprocess.run(
        [sys.executable, "-m", "robustbench_cgn", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        command = " ".join(args)
        raise AssertionError(
            f"cgnbench {command} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result
