"""Accuracy protocols of the ImageNet OOD benchmarks (../docs: metrics.md), as pure functions.

* IN-9 (MadryLab Backgrounds Challenge): top-1 over all 1000 logits, then mapped to the nine
  superclasses; a prediction among the 630 unmapped classes (-1) is wrong. BG-gap =
  acc(mixed_same) - acc(mixed_rand).
* ImageNet-A / -R: ``masked`` (default) keeps the logits of the dataset's 200 classes and takes
  the argmax among them; ``full`` takes the argmax over all 1000, which must be the true class.
* ImageNet-Sketch / Stylized-ImageNet: plain 1000-way top-k.

Each function returns ``(correct, n)`` counts, so accuracies over several batches or shards
are exact sums (no batch-size-times-batches denominators).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

IN_A_PROTOCOLS = ("masked", "full")


def topk_correct(logits: Tensor, targets: Tensor, k: int = 1) -> tuple[int, int]:
    """Images whose target is among the ``k`` highest logits."""
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return int((top == targets[:, None]).any(dim=1).sum()), len(targets)


def in9_correct(logits: Tensor, targets: Tensor, in_to_in9: Sequence[int]) -> tuple[int, int]:
    """IN-9 accuracy counts of a 1000-class model (MadryLab protocol).

    ``targets`` are IN-9 class indices (0..8); ``in_to_in9[i]`` the superclass of ImageNet class
    ``i`` or -1.
    """
    mapping = torch.as_tensor(list(in_to_in9), device=logits.device)
    if mapping.numel() != logits.shape[1]:
        raise ValueError(
            f"in_to_in9 maps {mapping.numel()} classes, the logits have {logits.shape[1]}"
        )
    predicted = mapping[logits.argmax(dim=1)]
    return int((predicted == targets).sum()), len(targets)


def bg_gap(mixed_same_acc: float, mixed_rand_acc: float) -> float:
    """Background gap: how much accuracy drops when the background is another class's."""
    return mixed_same_acc - mixed_rand_acc


def subset_correct(
    logits: Tensor, targets: Tensor, class_indices: Sequence[int], protocol: str = "masked"
) -> tuple[int, int]:
    """ImageNet-A/-R counts. ``targets`` index the subset (0..len(class_indices)-1);
    ``class_indices`` are their ImageNet indices (timm's ``imagenet_a_indices.txt``)."""
    if protocol not in IN_A_PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; use one of {', '.join(IN_A_PROTOCOLS)}")
    indices = torch.as_tensor(list(class_indices), device=logits.device)
    if protocol == "masked":
        predicted = logits[:, indices].argmax(dim=1)
        return int((predicted == targets).sum()), len(targets)
    return int((logits.argmax(dim=1) == indices[targets]).sum()), len(targets)
