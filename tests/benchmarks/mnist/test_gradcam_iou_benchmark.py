"""The gradcam-iou-* benchmarks through the runner on real MNIST."""

from pathlib import Path

import pytest

from robustbench_cgn.runner import RunRequest


@pytest.fixture
def runner(mnist_runner):
    return mnist_runner


def test_gradcam_iou_reuses_the_trained_classifier_and_reports_per_class(runner):
    common = dict(generator="original", device="cpu")
    training = {"classifier": {"epochs": "1"}}
    accuracy_run = runner.run(RunRequest(benchmark="c-mnist", overrides=training, **common))
    overrides = {
        **training,
        "benchmark": {"n_images": "600", "batch_size": "250", "tsne_n": "300"},
    }
    outcome = runner.run(RunRequest(benchmark="gradcam-iou-c-mnist", overrides=overrides, **common))
    record = runner.store.get_run(outcome.run_id)
    assert (
        record.provenance["checkpoint_dir"]
        == (runner.store.get_run(accuracy_run.run_id).provenance["checkpoint_dir"])
    )
    values = {(m.name, m.key): m for m in outcome.metrics}
    for name in ("fg_iou", "mean_iou"):
        overall = values[(name, "")]
        assert 0 < overall.value < 1 and overall.n == 600 and overall.extra["std"] > 0
        assert "threshold 0.5" in overall.protocol and "predicted class" in overall.protocol
        per_class = [values[(name, f"class{d}")] for d in range(10)]
        assert sum(m.n for m in per_class) == 600
    # same trained network, same first 600 test images: accuracy matches the c-mnist run's
    # direction (colour shortcut -> far below the training accuracy)
    assert values[("test_acc", "")].value < 60
    artifacts = Path(record.workdir) / "artifacts"
    for figure in ("gradcam_overlays.png", "tsne.png", "training_curves.png"):
        assert (artifacts / figure).stat().st_size > 5_000, figure
