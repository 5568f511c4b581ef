"""Mask IoU against hand-computed cases."""

import pytest
import torch

from robustbench_cgn.explain import mask_iou


def square(size=4, rows=slice(None), cols=slice(None)):
    m = torch.zeros(1, size, size)
    m[0, rows, cols] = 1
    return m


def test_perfect_overlap():
    mask = square(rows=slice(1, 3), cols=slice(1, 3))
    iou = mask_iou(mask * 0.9, mask)
    assert iou.foreground.item() == 1.0 and iou.background.item() == 1.0
    assert iou.mean.item() == 1.0


def test_disjoint():
    left, right = square(cols=slice(0, 2)), square(cols=slice(2, 4))
    iou = mask_iou(left, right)
    assert iou.foreground.item() == 0.0 and iou.background.item() == 0.0


def test_half():
    """Attended: the left half (8 px); object: the top-left quarter (4 px).
    fg: 4 / 8 = 0.5; bg: not attended = right half (8), not object = 12 px, overlap 8 -> 8/12."""
    attended, obj = square(cols=slice(0, 2)), square(rows=slice(0, 2), cols=slice(0, 2))
    iou = mask_iou(attended, obj)
    assert iou.foreground.item() == pytest.approx(0.5)
    assert iou.background.item() == pytest.approx(8 / 12)
    assert iou.mean.item() == pytest.approx((0.5 + 8 / 12) / 2)


def test_threshold_is_inclusive_and_stated():
    saliency = torch.tensor([[[0.2, 0.5], [0.7, 0.49]]])
    obj = torch.tensor([[[0, 1], [1, 0]]])
    assert mask_iou(saliency, obj, threshold=0.5).foreground.item() == 1.0
    assert mask_iou(saliency, obj, threshold=0.6).foreground.item() == pytest.approx(0.5)


def test_empty_prediction_and_empty_mask_agree():
    empty = torch.zeros(1, 3, 3)
    iou = mask_iou(empty, empty)
    assert iou.foreground.item() == 1.0 and iou.background.item() == 1.0


def test_batch_is_per_image_and_shapes_are_checked():
    a = torch.cat([square(cols=slice(0, 2)), square(cols=slice(0, 2))])
    b = torch.cat([square(cols=slice(0, 2)), square(cols=slice(2, 4))])
    assert mask_iou(a, b).foreground.tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="must both be"):
        mask_iou(a, b[:1])
