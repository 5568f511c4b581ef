"""IoU between a binarised saliency map and an object mask (metrics.md, GradCAM-vs-mask IoU)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class MaskIoU:
    """Per-image IoUs ``[N]``: foreground (object pixels), background, and their mean."""

    foreground: Tensor
    background: Tensor

    @property
    def mean(self) -> Tensor:
        return (self.foreground + self.background) / 2


def _iou(a: Tensor, b: Tensor) -> Tensor:
    inter = (a & b).flatten(1).sum(1)
    union = (a | b).flatten(1).sum(1)
    # both empty: the two agree perfectly on this class
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter, dtype=float))


def mask_iou(saliency: Tensor, masks: Tensor, threshold: float = 0.5) -> MaskIoU:
    """IoUs of ``saliency >= threshold`` with ``masks`` (nonzero = object), per image.

    Args:
        saliency: ``[N, H, W]`` maps in [0, 1] (GradCAM, min-max normalised per image).
        masks: ``[N, H, W]`` object masks of the same images (any dtype; nonzero = object).
        threshold: pixels with saliency at or above it count as "attended".

    An image whose prediction and mask are both empty for a class scores 1 for that class.
    """
    if saliency.shape != masks.shape or saliency.dim() != 3:
        raise ValueError(
            f"saliency {tuple(saliency.shape)} and masks {tuple(masks.shape)} must both be "
            "[N, H, W]"
        )
    attended, obj = saliency >= threshold, masks != 0
    return MaskIoU(
        _iou(attended, obj).float(),
        _iou(~attended, ~obj).float(),
    )
