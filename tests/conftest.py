"""Shared fixtures.

Real data comes from one place: ``CGNBENCH_TEST_DATA`` (default ``<repo>/../shared/data``).
When it is missing the data-dependent tests *fail* (never skip): CI must notice.
Everything the tests write goes to pytest's tmp dirs, never next to the data.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


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
