"""The reference MNIST classifier ``CNN`` (cgn-reference.md section 3), 67,760 parameters.

BN(3) -> Conv5x5(3->32, p2) -> ReLU -> MaxPool(3, s2, p1) -> Conv3x3(32->32, p1) -> ReLU ->
Conv3x3(32->64, s2, p1) -> ReLU -> Conv3x3(64->64, p1) -> ReLU -> AvgPool2d(7) -> Linear(64->10)
-> log-softmax. Trained with NLL, Adadelta lr 1.0, StepLR(1, 0.7), 10 epochs, batch 64.

Faithful quirk: the last feature map is 8x8, and ``AvgPool2d(7)`` (stride 7, no padding) averages
only its top-left 7x7 window; the last row and column never reach the classifier (so GradCAM
gradients there are zero). Kept, because the published numbers come from this network.

The module layout (``model`` Sequential + ``cls``) matches the reference, so its state dicts load.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CNN", "CNNLogits"]


class CNN(nn.Module):
    """``forward(x) -> log-probabilities [B, 10]``; ``features(x) -> [B, 64]`` (penultimate)."""

    def __init__(self, n_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.model = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, 32, kernel_size=5, stride=1, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            nn.Conv2d(32, 32, kernel_size=3, stride=1, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1, padding=1),
            nn.ReLU(),
            nn.AvgPool2d(7),
        )
        self.cls = nn.Linear(64, n_classes)

    @property
    def last_conv(self) -> nn.Conv2d:
        """The last convolution (8x8 output for 32x32 input): the GradCAM target layer."""
        return self.model[8]

    def feature_map(self, x: Tensor) -> Tensor:
        """The last conv block's activation ``[B, 64, 8, 8]`` (after its ReLU)."""
        return self.model[:10](x)

    def features(self, x: Tensor) -> Tensor:
        """The 64-d penultimate features (after the quirky AvgPool2d(7)), ``[B, 64]``."""
        return self.model(x).flatten(1)

    def logits(self, x: Tensor) -> Tensor:
        """Unnormalised class scores ``[B, n_classes]``."""
        return self.cls(self.features(x))

    def forward(self, x: Tensor) -> Tensor:
        return F.log_softmax(self.logits(x), dim=1)


class CNNLogits(nn.Module):
    """The same network returning logits (GradCAM explains pre-softmax class scores)."""

    def __init__(self, cnn: CNN):
        super().__init__()
        self.cnn = cnn

    def forward(self, x: Tensor) -> Tensor:
        return self.cnn.logits(x)
