"""Bring-your-own classifiers (``python:``, ``torchscript:``, ``exported:``): the same network
given three ways scores the same on cue-conflict; bad models and inputs are one line each."""

from __future__ import annotations

import csv
import io
import json
import textwrap

import pytest
import torch
from conftest import run_cli

TINY_NET = textwrap.dedent(
    """
    import torch
    from torch import nn


    class TinyNet(nn.Module):
        def __init__(self, outputs=1000):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 5, stride=4)
            self.head = nn.Linear(8, outputs)

        def forward(self, x):
            h = torch.relu(self.conv(x)).mean(dim=(2, 3))
            return self.head(h)


    def net(outputs=1000):
        torch.manual_seed(0)
        return TinyNet(outputs).eval()


    def build():
        return net(), {"size": 64, "crop_pct": 1.0, "interpolation": "bilinear"}


    def wrong_outputs():
        return net(10)
    """
)
INPUT = {"size": 64, "crop_pct": 1.0, "interpolation": "bilinear"}


@pytest.fixture
def models(tmp_path, monkeypatch):
    """tinynet.py in the working directory, and the same network saved as TorchScript and as
    a torch.export program, each with its preprocessing in a sidecar JSON."""
    (tmp_path / "tinynet.py").write_text(TINY_NET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import tinynet

    model = tinynet.net()
    example = torch.zeros(2, 3, 64, 64)  # batch 2: a batch of 1 would be specialised
    scripted = tmp_path / "tiny.pt"
    torch.jit.trace(model, example).save(str(scripted))
    exported = tmp_path / "tiny.pt2"
    batch = {"x": {0: torch.export.Dim("batch", min=1)}}
    torch.export.save(torch.export.export(model, (example,), dynamic_shapes=batch), str(exported))
    for path in (scripted, exported):
        path.with_name(path.name + ".json").write_text(json.dumps(INPUT))
    return {"python": "python:tinynet:build", "torchscript": f"torchscript:{scripted}",
            "exported": f"exported:{exported}"}  # fmt: skip


def cue_conflict_metrics(classifier, data_dir):
    run_cli("run", "-g", "pretrained", "-c", classifier, "-b", "cue-conflict",
            "--data-dir", str(data_dir), timeout=600)  # fmt: skip
    rows = csv.DictReader(io.StringIO(run_cli("export").stdout))
    return {
        (r["metric"], r["key"]): float(r["value"])
        for r in rows
        if r["classifier"] == classifier
    }


def test_the_same_network_three_ways_scores_the_same(models, shared_data):
    scores = {kind: cue_conflict_metrics(name, shared_data) for kind, name in models.items()}
    python = scores["python"]
    assert ("shape_bias", "") in python and len(python) > 10
    for kind in ("torchscript", "exported"):
        assert scores[kind].keys() == python.keys()
        for key, value in python.items():
            assert scores[kind][key] == pytest.approx(value, abs=1e-6), (kind, key)
    again = run_cli("run", "-g", "pretrained", "-c", models["torchscript"], "-b", "cue-conflict",
                    "--data-dir", str(shared_data))  # fmt: skip
    assert "already complete" in again.stdout


def test_bad_models_and_inputs_are_one_line_each(models, tmp_path, shared_data):
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    (tmp_path / "bad.pt").write_bytes((tmp_path / "tiny.pt").read_bytes())
    (tmp_path / "bad.pt.json").write_text(json.dumps({"size": 64, "colour": "yes"}))
    cases = {
        "python:tinynet:wrong_outputs": "returns (2, 10) for two images",
        "python:tinynet": "is not MODULE:FUNCTION",
        "python:no_such_module:build": "cannot import 'no_such_module'",
        "python:tinynet:missing": "has no function 'missing'",
        f"torchscript:{tmp_path / 'nope.pt'}": "does not exist",
        f"torchscript:{tmp_path / 'junk.pt'}": "is not a TorchScript file",
        f"torchscript:{tmp_path / 'bad.pt'}": "unknown input config fields ['colour']",
    }
    for classifier, message in cases.items():
        result = run_cli("run", "-g", "pretrained", "-c", classifier, "-b", "cue-conflict",
                         "--data-dir", str(shared_data), check=False)  # fmt: skip
        assert result.returncode != 0, classifier
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    small = run_cli("run", "-g", "pretrained", "-c", models["torchscript"], "-b", "cue-conflict",
                    "--data-dir", str(shared_data), "--set", "classifier.size=4",
                    check=False)  # fmt: skip
    assert small.returncode != 0 and "input size must be >= 8" in small.stderr
    assert list(csv.DictReader(io.StringIO(run_cli("export").stdout))) == []  # nothing stored
