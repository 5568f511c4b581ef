"""gen-quality-* benchmarks: mask statistics and shape agreement, no classifier trained."""

import datetime

import pytest
import torch

from robustbench_cgn import CGNBenchError, ConfigError, DataNotFoundError, IncompatibleError
from robustbench_cgn.runner import RunRequest
from robustbench_cgn_plugins.mnist.dcgan_model import DCGANGenerator


@pytest.fixture
def runner(mnist_runner):
    return mnist_runner


def values_of(outcome):
    return {(m.name, m.key): m for m in outcome.metrics}


def test_real_digits_and_the_authors_cgn(runner, shared_data):
    """Real digit masks are binary, never collapsed and read as their label; the authors'
    wildlife CGN draws readable shapes too (>= 85 %, as the checkpoint quality test)."""
    small = {"benchmark": {"n_samples": "1000"}}
    real = values_of(
        runner.run(
            RunRequest(generator="original", benchmark="gen-quality-w-mnist", overrides=small)
        )
    )
    assert real[("mask_entropy_bits", "")].value < 1e-3
    assert 0.1 < real[("mask_mean", "")].value < 0.3
    assert real[("collapsed_classes", "")].value == 0
    assert real[("shape_agreement", "")].value > 93
    weights = str(shared_data / "cgn_mnist_weights" / "cgn_wildlife_MNIST.pth")
    outcome = runner.run(
        RunRequest(
            generator="cgn",
            benchmark="gen-quality-w-mnist",
            overrides={**small, "generator": {"weights": weights}},
        )
    )
    cgn = values_of(outcome)
    assert cgn[("shape_agreement", "")].value > 85
    assert 0 < cgn[("mask_entropy_bits", "")].value < 1
    assert sum(m.n for (name, key), m in cgn.items() if name == "shape_agreement" and key) == 1000
    record = runner.store.get_run(outcome.run_id)
    assert record.classifier == "-" and record.provenance.get("training_data") is None


def test_generators_without_masks_and_misuse_are_clear_errors(runner, tmp_path):
    weights = tmp_path / "dcgan.pth"
    torch.save(DCGANGenerator().state_dict(), weights)
    with pytest.raises(IncompatibleError, match="no object masks"):
        runner.run(
            RunRequest(
                generator="dcgan",
                benchmark="gen-quality-c-mnist",
                overrides={"generator": {"weights": str(weights)}},
            )
        )
    with pytest.raises(ConfigError, match="trains no classifier"):
        runner.plan(
            RunRequest(
                generator="original", benchmark="gen-quality-c-mnist", classifier="mnist-cnn"
            )
        )
    with pytest.raises(ConfigError, match="--mix does not apply"):
        runner.plan(
            RunRequest(generator="cgn", benchmark="gen-quality-c-mnist", mix="original+generated")
        )


def test_fid_without_local_inception_weights_says_what_to_fetch(runner, monkeypatch, tmp_path):
    monkeypatch.delenv("CGNBENCH_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(DataNotFoundError, match="weights-inception-2015-12-05-6726825d.pth"):
        runner.run(
            RunRequest(
                generator="original",
                benchmark="gen-quality-c-mnist",
                overrides={"benchmark": {"n_samples": "20", "fid": "true"}},
            )
        )


def test_fid_weights_with_pickled_objects_are_refused(tmp_path):
    from robustbench_cgn.explain.fid import frechet_inception_distance

    weights = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    torch.save({"created": datetime.datetime(2026, 1, 1)}, weights)  # not a tensor: refused
    images = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(CGNBenchError, match="not plain tensors"):
        frechet_inception_distance(images, images, weights)
