"""The test-data rule of ``conftest.py``, checked in both modes on a throwaway test session.

Without the shared data a fresh clone's suite passes, skipping what needs it with one line; when
the data is required (``CGNBENCH_REQUIRE_TEST_DATA=1`` or ``CI=true``) a missing folder stops
the session before any test, and a test skipped for missing data fails it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import MISSING_DATA, REPO_ROOT

PROBE_TESTS = '''
import os

import pytest
from conftest import MISSING_DATA, skip_without_data


def test_needs_the_folder(shared_data):
    assert (shared_data / "README.md").is_file()


def test_needs_no_data():
    pass


def test_needs_a_file_in_it(shared_data):
    if not (shared_data / "MNIST" / "raw").is_dir():
        skip_without_data("MNIST/raw")


def test_skips_by_hand():
    if os.environ.get("PROBE_SKIP_BY_HAND"):
        pytest.skip(f"{MISSING_DATA}: skipped by hand")
'''


def _session(tmp_path, data, report="-ra", **env_changes):
    """Run pytest on the probe tests with this repository's conftest; (returncode, output)."""
    (tmp_path / "conftest.py").write_text((REPO_ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_probe.py").write_text(PROBE_TESTS)
    env = {
        k: v for k, v in os.environ.items()
        if k not in {"CI", "CGNBENCH_REQUIRE_TEST_DATA", "PROBE_SKIP_BY_HAND", "PYTEST_ADDOPTS"}
    }
    env |= {"CGNBENCH_TEST_DATA": str(data), **env_changes}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", report, "--rootdir",
         str(tmp_path), str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    return result.returncode, result.stdout + result.stderr


@pytest.fixture
def partial_data(tmp_path):
    """A data folder with its README but not the files one test needs."""
    folder = tmp_path / "partial"
    folder.mkdir()
    (folder / "README.md").write_text("shared data\n")
    return folder


def test_without_data_a_session_passes_and_says_what_it_skipped(tmp_path):
    rc, out = _session(tmp_path, tmp_path / "absent")
    assert rc == 0, out
    assert "2 passed, 2 skipped" in out, out
    # -ra folds the skips into one line: how many, and what the folder must hold
    summary = [line for line in out.splitlines() if line.startswith("SKIPPED [")]
    assert len(summary) == 1 and summary[0].startswith("SKIPPED [2] "), out
    assert f"{MISSING_DATA}: CGNBENCH_TEST_DATA" in summary[0] and "MNIST/raw" in summary[0]
    assert str(tmp_path / "absent") in summary[0]
    # without -ra a line of its own says it
    rc, out = _session(tmp_path, tmp_path / "absent", report="-rN")
    assert rc == 0 and "2 tests skipped for missing test data: CGNBENCH_TEST_DATA" in out, out


@pytest.mark.parametrize("switch", [{"CI": "true"}, {"CGNBENCH_REQUIRE_TEST_DATA": "1"}])
def test_required_data_that_is_missing_stops_the_session_at_once(tmp_path, switch):
    rc, out = _session(tmp_path, tmp_path / "absent", **switch)
    assert rc != 0 and "passed" not in out, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and "required" in lines[0] and "CGNBENCH_TEST_DATA" in lines[0], out


def test_the_require_switch_overrides_ci(tmp_path):
    rc, out = _session(tmp_path, tmp_path / "absent", CI="true", CGNBENCH_REQUIRE_TEST_DATA="0")
    assert rc == 0 and "2 passed, 2 skipped" in out, out


def test_required_data_fails_the_test_that_misses_a_file(tmp_path, partial_data):
    rc, out = _session(tmp_path, partial_data, CI="true")
    assert rc == 1, out
    assert "1 failed, 3 passed" in out and f"{MISSING_DATA}:" in out, out
    assert "this test needs MNIST/raw" in out


def test_required_data_fails_a_session_with_a_hand_made_data_skip(tmp_path, partial_data):
    (partial_data / "MNIST" / "raw").mkdir(parents=True)
    rc, out = _session(tmp_path, partial_data, PROBE_SKIP_BY_HAND="1")
    assert rc == 0 and "3 passed, 1 skipped" in out, out  # not required: a skip is fine
    rc, out = _session(tmp_path, partial_data, PROBE_SKIP_BY_HAND="1", CI="true")
    assert rc == 1 and "3 passed, 1 skipped" in out and "not allowed where the data is" in out, out
