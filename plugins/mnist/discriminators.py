"""Conditional discriminators of the MNIST CGN (cgn-reference.md section 1), trained from scratch.

* :class:`DiscLin` (colored, double-colored; also the DCGAN baseline's D): an MLP on
  ``cat[flatten(x), Embedding(10, 10)(y)]``; 2,104,421 parameters with ``ndf=512``.
* :class:`DiscConv` (wildlife): a small conv net whose 4th input channel is the constant
  ``Embedding(10, 1)(y)``; 413,642 parameters with ``ndf=32``.

Both return raw scores ``[B, 1]`` (LSGAN: MSE against 1/0; the DCGAN baseline: BCE with logits).

Faithful quirk: :class:`DiscConv` uses padding 0, so the 32x32 input shrinks 32->30->28->13->5
and ``AvgPool2d(3)`` on the 5x5 map averages only its top-left 3x3 window.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["DiscConv", "DiscLin"]


class DiscLin(nn.Module):
    """Linear(3082->ndf) -> LReLU -> [Linear(ndf->ndf) -> Dropout(0.4) -> LReLU] x 2 ->
    Linear(ndf->1), on ``cat[flatten(x), Embedding(n_classes, n_classes)(y)]``."""

    def __init__(
        self, n_classes: int = 10, ndf: int = 512, img_shape: tuple[int, ...] = (3, 32, 32)
    ):
        super().__init__()
        self.label_embedding = nn.Embedding(n_classes, n_classes)
        self.model = nn.Sequential(
            nn.Linear(math.prod(img_shape) + n_classes, ndf),
            nn.LeakyReLU(0.2),
            nn.Linear(ndf, ndf),
            nn.Dropout(0.4),
            nn.LeakyReLU(0.2),
            nn.Linear(ndf, ndf),
            nn.Dropout(0.4),
            nn.LeakyReLU(0.2),
            nn.Linear(ndf, 1),
        )

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        d_in = torch.cat([x.reshape(x.shape[0], -1), self.label_embedding(y)], dim=-1)
        return self.model(d_in)


def _conv_block(cin: int, cout: int, kernel: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=0, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2),
    ]


class DiscConv(nn.Module):
    """Conv3 s1 (4->ndf) -> Conv3 s1 (->2ndf) -> Conv4 s2 (->4ndf) -> Conv4 s2 (->4ndf), each
    without bias + BN + LReLU(0.2), padding 0 -> AvgPool2d(3) -> Conv1x1(4ndf->1, no bias)."""

    def __init__(self, n_classes: int = 10, ndf: int = 32):
        super().__init__()
        self.label_embedding = nn.Embedding(n_classes, 1)
        self.model = nn.Sequential(
            *_conv_block(4, ndf, 3, 1),
            *_conv_block(ndf, 2 * ndf, 3, 1),
            *_conv_block(2 * ndf, 4 * ndf, 4, 2),
            *_conv_block(4 * ndf, 4 * ndf, 4, 2),
            nn.AvgPool2d(3),
            nn.Conv2d(4 * ndf, 1, 1, bias=False),
        )

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        b, _, h, w = x.shape
        label_plane = self.label_embedding(y).view(b, 1, 1, 1).expand(b, 1, h, w)
        return self.model(torch.cat([x, label_plane], dim=1)).flatten(1)  # [B, 1] at 32x32
