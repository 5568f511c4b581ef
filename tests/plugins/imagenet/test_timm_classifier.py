"""``timm:<name>``: parametrised registry name, data config, weights from a file, clear errors."""

from __future__ import annotations

import time

import pytest
import timm
import torch
from imagenet_fixtures import make_context

from robustbench_cgn.errors import CGNBenchError, DataNotFoundError, IncompatibleError
from robustbench_cgn.plugin_manager import load_plugins
from robustbench_cgn_plugins.imagenet.tasks import IMAGENET_TASK
from robustbench_cgn_plugins.imagenet.timm_classifier import TimmClassifier

TINY = "test_resnet.r160_in1k"  # timm's 0.5 M-parameter test model


def test_timm_name_resolves_to_the_family_with_the_model_set():
    entry = load_plugins().registries.classifiers.get("timm:resnet18")
    assert entry.cls is TimmClassifier
    assert entry.name == "timm:resnet18"
    assert entry.config_overrides() == {"model": "resnet18"}


def test_plain_names_still_fail_with_suggestions():
    from robustbench_cgn.errors import UnknownNameError

    with pytest.raises(UnknownNameError):
        load_plugins().registries.classifiers.get("mobilenet:resnet18")


def test_data_config_comes_from_the_pretrained_config():
    config = TimmClassifier(TimmClassifier.Config(model="resnet50", pretrained_tag="a1_in1k"))
    cfg = timm.models.get_pretrained_cfg("resnet50.a1_in1k").to_dict()
    got = config.input_config()
    assert got.size == cfg.get("test_input_size", cfg["input_size"])[-1]
    assert got.crop_pct == cfg.get("test_crop_pct", cfg["crop_pct"])
    assert got.mean == tuple(cfg["mean"])


def test_weights_from_a_file_are_loaded_strictly(tmp_path):
    model = timm.create_model(TINY.split(".")[0], pretrained=False, num_classes=1000)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    classifier = TimmClassifier(
        TimmClassifier.Config(model=TINY.split(".")[0], weights=str(tmp_path / "w.pth"))
    )
    ctx = make_context(tmp_path)
    classifier.build(IMAGENET_TASK, ctx)
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(
            classifier.predict(classifier.prepare(images))[""],
            model.eval()(classifier.prepare(images)),
        )
    assert len(classifier.identity(IMAGENET_TASK, ctx)["weights_sha256"]) == 64
    other = timm.create_model("resnet18", pretrained=False)
    torch.save(other.state_dict(), tmp_path / "wrong.pth")
    wrong = TimmClassifier(
        TimmClassifier.Config(model=TINY.split(".")[0], weights=str(tmp_path / "wrong.pth"))
    )
    with pytest.raises(IncompatibleError, match="does not fit the model"):
        wrong.build(IMAGENET_TASK, ctx)


@pytest.mark.parametrize("switch", ["HF_HUB_OFFLINE", "CGNBENCH_OFFLINE"])
def test_offline_pretrained_weights_give_an_actionable_error(tmp_path, monkeypatch, switch):
    import huggingface_hub  # noqa: F401 - imported before the variable is set, as in a session

    monkeypatch.delenv("CGNBENCH_OFFLINE")
    monkeypatch.setenv(switch, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    classifier = TimmClassifier(TimmClassifier.Config(model="resnet18"))
    started = time.monotonic()
    with pytest.raises(DataNotFoundError, match=r"huggingface.co/timm/resnet18.*weights=FILE"):
        classifier.build(IMAGENET_TASK, make_context(tmp_path))
    assert time.monotonic() - started < 10  # the cache is asked, not the network


def test_unknown_timm_model_is_a_clear_error():
    with pytest.raises(CGNBenchError, match="timm has no model 'resnet5000'"):
        TimmClassifier(TimmClassifier.Config(model="resnet5000")).input_config()
