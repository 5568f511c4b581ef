"""The runner with the example plugin as a fixture plugin: identity, skip, force, resume."""

from dataclasses import dataclass

import cgnbench_toy
import pytest

from robustbench_cgn import Benchmark, MetricResult, MetricSpec
from robustbench_cgn.errors import CGNBenchError, ConfigError, IncompatibleError, UnknownNameError
from robustbench_cgn.plugin_manager import load_plugins
from robustbench_cgn.runner import Runner, RunRequest
from robustbench_cgn.settings import resolve_paths
from robustbench_cgn.store import ResultsStore


class FlakyBenchmark(Benchmark):
    """Yields one metric, then fails once: models an interruption during evaluation."""

    name = "flaky"
    task = cgnbench_toy.TOY_TASK
    default_classifier = "toy-linear"
    metrics = (MetricSpec("first", main=True), MetricSpec("second"))
    calls: list[set] = []

    @dataclass(frozen=True)
    class Config:
        fail: bool = True

    def evaluate(self, classifier, ctx):
        FlakyBenchmark.calls.append(set(ctx.recorded_metrics))
        if ("first", "") not in ctx.recorded_metrics:
            yield MetricResult("first", 1.0, n=1)
        if len(FlakyBenchmark.calls) == 1:
            raise KeyboardInterrupt
        yield MetricResult("second", 2.0, n=1)


class fixture_plugin:  # noqa: N801 - a plugin namespace, as in pytest's fixture plugins
    @staticmethod
    @cgnbench_toy.hookimpl
    def register_benchmarks(registry):
        registry.add(FlakyBenchmark)


@pytest.fixture
def runner(tmp_path):
    system = load_plugins(
        autoload=False,
        builtins=False,
        extra_plugins=[("toy", cgnbench_toy), ("flaky", fixture_plugin)],
    )
    store = ResultsStore(tmp_path / "results.sqlite")
    yield Runner(system, store, resolve_paths(tmp_path))
    store.close()


def request(**changes):
    base = dict(
        generator="toy-blobs",
        benchmark="toy-shift",
        device="cpu",
        overrides={"classifier": {"epochs": "2"}},
    )
    base.update(changes)
    return RunRequest(**base)


def test_run_records_metrics_and_provenance(runner):
    outcome = runner.run(request())
    assert outcome.status == "complete" and not outcome.resumed
    assert {m.name for m in outcome.metrics} == {"iid_acc", "ood_acc"}
    record = runner.store.get_run(outcome.run_id)
    assert record.status == "complete" and record.wall_time_s > 0
    assert record.provenance["packages"]["torch"]
    assert record.provenance["training_data"]["source"] == "toy-synthetic"
    assert record.spec["classifier"]["config"]["epochs"] == 2
    assert record.data_source == "toy-synthetic"


def test_rerun_is_a_noop_and_force_reruns(runner):
    first = runner.run(request())
    again = runner.run(request())
    assert again.status == "skipped" and again.run_id == first.run_id
    forced = runner.run(request(force=True))
    assert forced.status == "complete" and runner.store.get_run(first.run_id).attempts == 2


def test_same_seed_gives_bitwise_identical_metrics(runner, tmp_path):
    first = runner.run(request(seed=3))
    values = {m.name: m.value for m in first.metrics}
    forced = runner.run(request(seed=3, force=True))
    assert values == {m.name: m.value for m in forced.metrics}


def test_interrupted_run_is_incomplete_then_resumes_without_redoing_metrics(runner):
    FlakyBenchmark.calls.clear()
    with pytest.raises(KeyboardInterrupt):
        runner.run(request(benchmark="flaky"))
    run_id = runner.plan(request(benchmark="flaky")).run_id
    record = runner.store.get_run(run_id)
    assert record.status == "incomplete" and record.error == "interrupted"
    assert runner.store.recorded_metric_keys(run_id) == {("first", "")}
    outcome = runner.run(request(benchmark="flaky"))
    assert outcome.resumed and outcome.status == "complete"
    assert FlakyBenchmark.calls[1] == {("first", "")}
    assert runner.store.recorded_metric_keys(run_id) == {("first", ""), ("second", "")}


def test_unknown_names_and_bad_config(runner):
    with pytest.raises(UnknownNameError, match="toy-blobs"):
        runner.plan(request(generator="toy-blob"))
    with pytest.raises(UnknownNameError, match="toy-shift"):
        runner.plan(request(benchmark="toy-shfit"))
    with pytest.raises(ConfigError, match="no option"):
        runner.plan(request(overrides={"generator": {"nn": "1"}}))
    with pytest.raises(ConfigError, match="mix"):
        runner.plan(request(mix="everything"))


def test_mix_needs_an_original_generator(runner):
    with pytest.raises(UnknownNameError, match="generator 'original'"):
        runner.plan(request(mix="original+generated"))


def test_incompatible_task(runner):
    class OtherTask(cgnbench_toy.ToyBlobs):
        name = "other"
        tasks = ("imagenet",)

    runner.plugins.registries.generators.add(OtherTask, plugin="test")
    with pytest.raises(IncompatibleError, match="does not support task 'toy-shift'"):
        runner.plan(request(generator="other"))


def test_undeclared_metric_is_an_error(runner):
    class Sloppy(FlakyBenchmark):
        name = "sloppy"

        def evaluate(self, classifier, ctx):
            yield MetricResult("undeclared", 1.0, n=1)

    runner.plugins.registries.benchmarks.add(Sloppy, plugin="test")
    with pytest.raises(CGNBenchError, match="undeclared metric"):
        runner.run(request(benchmark="sloppy"))


def test_benchmarks_on_one_task_share_the_trained_classifier(runner):
    """Training is keyed by what determines it (not by the benchmark): a second benchmark on
    the same task and training setup loads the finished checkpoint instead of retraining."""
    shift, flaky = runner.plan(request()), runner.plan(request(benchmark="flaky"))
    assert shift.run_id != flaky.run_id
    assert shift.context.checkpoint_dir == flaky.context.checkpoint_dir
    assert runner.plan(request(seed=1)).context.checkpoint_dir != shift.context.checkpoint_dir
    changed = request(overrides={"classifier": {"epochs": "3"}})
    assert runner.plan(changed).context.checkpoint_dir != shift.context.checkpoint_dir
    runner.run(request())
    checkpoint = shift.context.checkpoint_dir / "toy-linear.pt"
    trained_at = checkpoint.stat().st_mtime_ns
    FlakyBenchmark.calls[:] = [set()]  # not the first call: no simulated interruption
    runner.run(request(benchmark="flaky", overrides={"classifier": {"epochs": "2"}}))
    assert checkpoint.stat().st_mtime_ns == trained_at
    record = runner.store.get_run(flaky.run_id)
    assert record.provenance["checkpoint_dir"] == str(shift.context.checkpoint_dir)


def test_a_generator_name_resolves_to_its_implementation_for_the_task(tmp_path, shared_data):
    """``--generator cgn`` on an ImageNet benchmark plans the ImageNet CGN and the classifier
    its data is for; on MNIST it stays the MNIST CGN."""
    from robustbench_cgn.plugin_manager import load_plugins
    from robustbench_cgn.runner import Runner, RunRequest
    from robustbench_cgn.settings import resolve_paths
    from robustbench_cgn.store import ResultsStore

    with ResultsStore(tmp_path / "r.sqlite") as store:
        runner = Runner(load_plugins(), store, resolve_paths(tmp_path, data_dir=shared_data))
        overrides = {"generator": {"weights": "random"}}
        both = {**overrides, "classifier": {"backbone_weights": "random"}}
        imagenet = runner.plan(
            RunRequest("cgn", "gradcam-iou-imagenet", overrides=both, device="cpu")
        )
        assert imagenet.spec.generator == "cgn-imagenet"
        assert imagenet.spec.classifier == "cgn-ensemble"
        authors = shared_data / "cgn_mnist_weights" / "cgn_colored_MNIST.pth"
        mnist = runner.plan(
            RunRequest("cgn", "c-mnist", overrides={"generator": {"weights": str(authors)}})
        )
        assert mnist.spec.generator == "cgn"
        assert mnist.spec.classifier == "mnist-cnn"
        explicit = runner.plan(
            RunRequest("cgn", "cue-conflict", "timm:resnet18", overrides=overrides, device="cpu")
        )
        assert explicit.spec.classifier == "timm:resnet18"


# ------------------------------------------------------------------------------- precision


@pytest.mark.parametrize(("fast", "resolved"), [(True, "bf16"), (False, "fp32")])
def test_precision_auto_follows_the_hardware_and_is_in_the_identity(
    runner, monkeypatch, fast, resolved
):
    import robustbench_cgn.device as device_module

    monkeypatch.setattr(device_module, "bf16_is_fast", lambda device: fast)
    planned = runner.plan(request(precision="auto"))
    assert planned.context.precision == resolved
    explicit = runner.plan(request(precision=resolved))
    assert planned.spec.run_id == explicit.spec.run_id  # auto is stored as what it chose
    assert planned.spec.as_dict().get("precision") == (None if resolved == "fp32" else "bf16")


def test_a_bf16_run_is_another_run_recorded_as_bf16_with_its_own_leaderboard_row(runner):
    fp32 = runner.run(request())
    bf16 = runner.run(request(precision="bf16"))
    assert bf16.status == "complete" and bf16.run_id != fp32.run_id
    record = runner.store.get_run(bf16.run_id)
    assert record.spec["precision"] == "bf16" and record.provenance["precision"] == "bf16"
    assert "precision" not in runner.store.get_run(fp32.run_id).spec  # fp32 ids unchanged
    from robustbench_cgn.leaderboard import build_leaderboard

    specs = {run_id: runner.store.get_run(run_id).spec for run_id in (fp32.run_id, bf16.run_id)}
    board = build_leaderboard(runner.store.metrics_frame(), specs, None, {})
    assert sorted(board["config"]) == ["precision=bf16", "precision=fp32"]


def test_fp16_on_the_cpu_is_one_clear_error(runner):
    with pytest.raises(ConfigError, match="^precision fp16 needs a CUDA device"):
        runner.plan(request(precision="fp16"))
    with pytest.raises(ConfigError, match="^unknown precision 'fp64'"):
        runner.plan(request(precision="fp64"))
