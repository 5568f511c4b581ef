"""The MNIST model zoo: shipped weights are listed with their record, verified and resolved."""

import json

import pytest
import torch

from robustbench_cgn import ChecksumError, DataNotFoundError
from robustbench_cgn_plugins.mnist import zoo
from robustbench_cgn_plugins.mnist.cgn_model import CGN, load_cgn_checkpoint
from robustbench_cgn_plugins.mnist.training import export_generator_weights


@pytest.fixture
def zoo_dir(monkeypatch, tmp_path):
    """A zoo folder holding one exported entry, ``cgn.c-mnist``."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setattr(zoo, "_weights_file", lambda name: folder / f"{name}.pth")
    torch.manual_seed(0)
    checkpoint = {
        "model": "cgn",
        "generator": CGN().state_dict(),
        "config": {"variant": "colored", "mode": "faithful"},
        "mode": "faithful",
        "mask_activation": "clamp",
        "iteration": 123,
        "data": {"mnist_source": "mnist-full"},  # as load_train_data records it
        "vgg": {"sha256": "ab" * 32},
        "command": "cgnbench train-mnist-generator --model cgn --variant colored ...",
    }
    export_generator_weights(checkpoint, folder / "cgn.c-mnist.pth")
    return folder


def test_only_shipped_entries_are_listed_with_their_record(zoo_dir):
    (spec,) = zoo.shipped_weights()
    assert spec.name == "cgn.c-mnist" and spec.component == "cgn" and spec.tag == "c-mnist"
    record = json.loads((zoo_dir / "cgn.c-mnist.json").read_text())
    assert spec.sha256 == record["weights_sha256"]
    assert spec.provenance["iterations"] == 123
    assert spec.provenance["data_source"] == "mnist-full"
    assert spec.provenance["command"].startswith("cgnbench train-mnist-generator")
    assert spec.config == {"mask_activation": "clamp"}
    assert spec.preprocessing["range"] == [-1, 1]


def test_auto_resolves_to_the_task_entry_and_loads_strictly(zoo_dir):
    resolved = zoo.resolve_weights("auto", "cgn", "colored-mnist")
    label, path = resolved.label, resolved.path
    assert label == "cgn.c-mnist" and path == zoo_dir / "cgn.c-mnist.pth"
    load_cgn_checkpoint(path)  # strict, weights_only
    with pytest.raises(DataNotFoundError, match="'cgn.w-mnist' are not trained yet"):
        zoo.resolve_weights("auto", "cgn", "wildlife-mnist")


def test_a_damaged_zoo_file_is_refused(zoo_dir):
    path = zoo_dir / "cgn.c-mnist.pth"
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ChecksumError, match="cgn.c-mnist.pth"):
        zoo.resolve_weights("cgn.c-mnist", "cgn", "colored-mnist")


def _shipped_names():
    return [spec.name for spec in zoo.shipped_weights()] or [
        pytest.param(None, marks=pytest.mark.skip(reason="no zoo weights shipped yet"))
    ]


@pytest.mark.parametrize("name", _shipped_names())
def test_every_shipped_entry_verifies_loads_and_records_how_it_was_made(name):
    from robustbench_cgn_plugins.mnist.training import load_dcgan_generator

    component, tag = name.split(".")
    task = {v: k for k, v in zoo.ZOO_TAG_OF_TASK.items()}[tag]
    resolved = zoo.resolve_weights("auto", component, task)  # checksum verified
    label, path = resolved.label, resolved.path
    assert label == name
    (load_cgn_checkpoint if component == "cgn" else load_dcgan_generator)(path)  # strict
    (spec,) = [s for s in zoo.shipped_weights() if s.name == name]
    command = spec.provenance["command"]
    assert command.startswith(f"cgnbench train-mnist-generator --model {component}")
    assert spec.provenance["data_source"] == "mnist-full"  # the full real MNIST
    # trained well past any warm-up (the quality itself is gated in test_mnist_cf_quality.py)
    assert spec.provenance["iterations"] >= 5_000
    facts = zoo.training_record(path)
    warmup = facts.get("mechanism_prior_iterations", 0) if facts.get("mechanism_prior") else 0
    assert spec.provenance["iterations"] >= 3 * warmup
    assert path.stat().st_size < 5 * 2**20


def test_named_weights_of_another_task_are_refused():
    """Issue 20: `--set generator.weights=cgn.c-mnist` on w-mnist ran to the end."""
    with pytest.raises(DataNotFoundError, match="trained for colored-mnist, not wildlife-mnist"):
        zoo.resolve_weights("cgn.c-mnist", "cgn", "wildlife-mnist")


def test_an_anonymous_file_of_another_task_is_accepted_with_a_warning(tmp_path, recwarn):
    shipped = zoo._weights_file("cgn.c-mnist")
    twin = tmp_path / "twin" / "weights.pth"  # the same bytes, no record: known by its sha256
    twin.parent.mkdir()
    twin.write_bytes(shipped.read_bytes())
    with pytest.warns(UserWarning, match=r"trained for colored-mnist, not wildlife-mnist \(it is"):
        zoo.resolve_weights(str(twin), "cgn", "wildlife-mnist")

    retrained = tmp_path / "retrained" / "cgn.pth"  # other bytes, with its training record
    retrained.parent.mkdir()
    retrained.write_bytes(shipped.read_bytes() + b"\0")
    retrained.with_suffix(".json").write_text(shipped.with_suffix(".json").read_text())
    with pytest.warns(UserWarning, match="its record cgn.json says so"):
        zoo.resolve_weights(str(retrained), "cgn", "double-colored-mnist")

    recwarn.clear()
    zoo.resolve_weights(str(twin), "cgn", "colored-mnist")  # the right task: no warning
    assert not [w for w in recwarn if "trained for" in str(w.message)]
