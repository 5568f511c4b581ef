"""Shape bias: hand-computed cases, the 16-way decision, and the human observers' 0.959."""

import json
import math

import pytest
import torch

from robustbench_cgn_plugins.imagenet.tasks.shape_bias import (
    decide_16,
    parse_stimulus,
    read_raw_data,
    score_raw_data,
    shape_bias,
    write_raw_data,
)


def test_parse_stimulus_names():
    assert parse_stimulus("airplane1-bicycle2.png") == ("airplane", "bicycle")
    assert parse_stimulus("cue/clock10-dog3.jpg") == ("clock", "dog")
    assert parse_stimulus("0001_s5n_s01_0_bird_00_bird3-bird2.png") == ("bird", "bird")
    with pytest.raises(ValueError, match="not a cue-conflict stimulus"):
        parse_stimulus("cat.png")


def test_hand_computed_shape_bias():
    # 5 trials, one with shape == texture (dropped): 2 shape hits, 1 texture hit, 1 neither
    result = shape_bias(
        ["cat", "dog", "car", "boat", "cat"],
        ["cat", "dog", "cat", "bird", "cat"],
        ["dog", "cat", "car", "cat", "cat"],
    )
    assert result.n == 4
    assert result.shape_bias == pytest.approx(2 / 3)
    assert result.shape_fraction == pytest.approx(2 / 4)
    assert result.texture_fraction == pytest.approx(1 / 4)
    # per category by the *shape* label (model-vs-human): cat trials are (cat|dog -> cat) and
    # (cat|car -> car): one shape and one texture decision
    cat = result.per_category["cat"]
    assert (cat["trials"], cat["shape_hits"], cat["texture_hits"]) == (2, 1, 1)
    assert cat["shape_bias"] == cat["shape_fraction"] == cat["texture_fraction"] == 0.5
    assert result.per_category["dog"]["shape_bias"] == 1.0
    assert math.isnan(result.per_category["bird"]["shape_bias"])  # decided neither way
    assert "car" not in result.per_category  # a texture only, never a shape here


def test_decision_is_the_mean_probability_over_category_indices():
    indices = {"a": [0, 1, 2], "b": [3]}
    # a's indices: 0.3, 0.0, 0.0 -> mean 0.1; b: 0.2 -> b wins although a has the top logit
    probs = torch.tensor([[0.3, 0.0, 0.0, 0.2, 0.5], [0.0, 0.9, 0.0, 0.1, 0.0]])
    assert decide_16(probs, indices) == ["b", "a"]


def test_human_observers_pooled_shape_bias_is_0959(shared_data):
    data = read_raw_data(sorted((shared_data / "human_cue_conflict").glob("*.csv")))
    assert data["subj"].nunique() == 10 and len(data) == 12_800
    result = score_raw_data(data)
    assert round(result.shape_bias, 3) == 0.959
    assert result.n == 12_000  # 10 observers x 1,200 conflict stimuli


def test_human_per_category_shape_bias_is_model_vs_humans(shared_data):
    """Issue 21: within the trials of each shape category; the old code divided shape hits
    of one trial set by texture hits of another (airplane 0.989, chair 0.916)."""
    data = read_raw_data(sorted((shared_data / "human_cue_conflict").glob("*.csv")))
    per_category = score_raw_data(data).per_category
    assert len(per_category) == 16
    for category, shape_hits, decided, bias in (("airplane", 443, 496, 0.893),
                                                ("chair", 680, 686, 0.991)):  # fmt: skip
        values = per_category[category]
        assert values["shape_hits"] == shape_hits
        assert values["shape_hits"] + values["texture_hits"] == decided
        assert round(values["shape_bias"], 3) == bias
        assert values["trials"] == 750  # 75 conflict stimuli x 10 observers
        assert values["shape_fraction"] == pytest.approx(shape_hits / 750)


def test_decisions_round_trip_through_the_raw_data_format(tmp_path, shared_data):
    stimuli = sorted(p.name for p in (shared_data / "cue_conflict_jpg95").rglob("*.jpg"))
    assert len(stimuli) == 1280
    indices = json.loads(
        (shared_data / "class_maps" / "cue_conflict_16class_imagenet_indices.json").read_text()
    )
    assert len(indices) == 16 and sum(len(v) for v in indices.values()) == 207
    decisions = [parse_stimulus(name)[1] for name in stimuli]  # a pure texture observer
    path = write_raw_data(tmp_path / "texture-model.csv", "texture-model", stimuli, decisions)
    result = score_raw_data(read_raw_data([path]))
    assert result.shape_bias == 0.0 and result.texture_fraction == 1.0 and result.n == 1200
    with pytest.raises(ValueError, match="missing"):
        (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
        read_raw_data([tmp_path / "bad.csv"])
