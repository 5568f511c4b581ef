"""The CGN invariant ensemble as a module, and its two losses (cgn-reference.md section 5).

A ResNet-50 backbone feeds three 1000-way linear heads, one per factor a CGN controls (shape,
texture, background). Outputs: each head, ``"shape+texture"`` (their mean, the paper's IN-9
head) and ``""`` (the mean of all three, the main output).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

HEADS = ("shape", "texture", "background")
OUTPUTS = ("", "shape", "texture", "background", "shape+texture")
FEATURE_DIM = 2048


class InvariantEnsemble(nn.Module):
    """torchvision ResNet-50 (``fc`` replaced by ``Identity``) + three linear heads."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        import torchvision  # lazy: importing torchvision costs ~1 s at start-up

        backbone = torchvision.models.resnet50(weights=None)
        backbone.fc = nn.Identity()
        self.backbone = backbone
        self.heads = nn.ModuleDict({head: nn.Linear(FEATURE_DIM, num_classes) for head in HEADS})

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The pooled 2048-d backbone features."""
        return self.backbone(images)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.features(images)
        shape, texture, background = (self.heads[head](features) for head in HEADS)
        return {
            "": (shape + texture + background) / 3,
            "shape": shape,
            "texture": texture,
            "background": background,
            "shape+texture": (shape + texture) / 2,
        }


class HeadLogits(nn.Module):
    """One output of the ensemble as a plain ``images -> logits`` module (for GradCAM)."""

    def __init__(self, model: InvariantEnsemble, head: str):
        super().__init__()
        self.model = model
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)[self.head]


def freeze_batchnorm(module: nn.Module) -> None:
    """Put every BatchNorm layer in eval mode: normalise with the stored running statistics
    and never update them (the affine weights still train)."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()


def real_loss(outputs: Mapping[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """Real images: cross-entropy of the mean of the three heads' logits on the true class."""
    return F.cross_entropy(outputs[""].float(), labels)


def cf_loss(outputs: Mapping[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """Counterfactual images: each head against its own factor's class; ``labels`` is
    ``[B, 3]`` = (shape, texture, background) as in ``labels.csv``."""
    losses = [
        F.cross_entropy(outputs[head].float(), labels[:, column])
        for column, head in enumerate(HEADS)
    ]
    return losses[0] + losses[1] + losses[2]
