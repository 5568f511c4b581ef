"""ImageNet OOD accuracy protocols against hand-computed cases."""

import json

import pytest
import torch

from robustbench_cgn_plugins.imagenet.tasks.metrics import (
    bg_gap,
    in9_correct,
    subset_correct,
    topk_correct,
)


def logits_with_argmax(*winners, classes=1000):
    out = torch.zeros(len(winners), classes)
    for row, winner in enumerate(winners):
        out[row, winner] = 1.0
    return out


def test_topk():
    logits = torch.tensor([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1]])
    targets = torch.tensor([2, 2])
    assert topk_correct(logits, targets, 1) == (0, 2)
    assert topk_correct(logits, targets, 2) == (1, 2)
    assert topk_correct(logits, targets, 5) == (2, 2)


def test_in9_maps_after_the_1000_way_argmax():
    mapping = [-1] * 1000
    mapping[1], mapping[2], mapping[3] = 0, 0, 4
    logits = logits_with_argmax(2, 3, 500)  # class 2 -> IN-9 0; 3 -> 4; 500 unmapped -> wrong
    assert in9_correct(logits, torch.tensor([0, 0, 0]), mapping) == (1, 3)
    assert in9_correct(logits, torch.tensor([0, 4, 0]), mapping) == (2, 3)
    with pytest.raises(ValueError, match="maps 999 classes"):
        in9_correct(logits, torch.tensor([0, 0, 0]), mapping[:-1])


def test_real_in9_mapping_has_370_classes(shared_data):
    mapping = json.loads((shared_data / "in9" / "in_to_in9.json").read_text())
    values = [mapping[str(i)] for i in range(1000)] if isinstance(mapping, dict) else mapping
    assert sum(v != -1 for v in values) == 370 and set(values) - {-1} == set(range(9))


def test_bg_gap_is_mixed_same_minus_mixed_rand():
    assert bg_gap(86.2, 78.9) == pytest.approx(7.3)


def test_imagenet_a_masked_and_full_protocols():
    indices = [6, 11, 13]  # the subset's ImageNet classes
    # image 0 (target 0 = class 6): top-1000 is class 100, but among the subset 6 wins
    logits = torch.zeros(2, 1000)
    logits[0, 100], logits[0, 6] = 5.0, 1.0
    logits[1, 13] = 3.0  # image 1 (target 2 = class 13) right under both protocols
    targets = torch.tensor([0, 2])
    assert subset_correct(logits, targets, indices, "masked") == (2, 2)
    assert subset_correct(logits, targets, indices, "full") == (1, 2)
    with pytest.raises(ValueError, match="unknown protocol"):
        subset_correct(logits, targets, indices, "top5")
