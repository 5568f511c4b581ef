"""Mask losses of the MNIST CGN (cgn-reference.md section 1) and the LSGAN objective.

* :func:`binary_entropy_bits`: ``mean(H2(m))``, ``H2(p) = -p log2 p - (1-p) log2 (1-p)``; the
  generator loss adds ``lambda_binary`` times it (:class:`BinaryLoss`). Well defined because the
  mask is clamped to ``[1e-4, 0.9999]``; we clamp again defensively.
* :func:`edge_loss`: the reproduction's fix against mask collapse (off in faithful mode),
  ``lambda_edge * (sum(m) - 2 * sum(center(m))) / (W * H * B)`` with ``center`` the inner region
  ``[W//5 : -W//5]`` on both spatial axes, i.e. (border mass - centre mass) per pixel. Channels
  are summed as in the formula, so a mask repeated to 3 channels (what the CGN returns, and what
  the reproduction passed) gives 3x the single-channel value. The reproduction's *text* defines
  it instead as the mean mask value within 3 pixels of the border; that variant is
  ``edge_loss(..., border=3)`` (mean over the border band, channels averaged).
* :func:`lsgan_loss`: ``MSE(D(.), target)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BinaryLoss", "binary_entropy_bits", "edge_loss", "lsgan_loss"]

_EPS = 1e-7


def binary_entropy_bits(mask: Tensor) -> Tensor:
    """Mean binary entropy of the mask values, in bits (0 for a binary mask, 1 at 0.5)."""
    p = mask.clamp(_EPS, 1.0 - _EPS)
    return -(p * torch.log2(p) + (1.0 - p) * torch.log2(1.0 - p)).mean()


class BinaryLoss(nn.Module):
    """``lambda_binary * mean(H2(mask))`` (the reference's ``BinaryLoss``)."""

    def __init__(self, lambda_binary: float):
        super().__init__()
        self.lambda_binary = float(lambda_binary)

    def forward(self, mask: Tensor) -> Tensor:
        return self.lambda_binary * binary_entropy_bits(mask)


def edge_loss(mask: Tensor, lambda_edge: float = 0.1, *, border: int | None = None) -> Tensor:
    """Edge loss on a mask ``[B, C, W, H]`` (see module docstring).

    ``border=None``: the code's formula ``lambda * (sum(m) - 2 sum(center(m))) / (W H B)``.
    ``border=s``: the text's definition, ``lambda * mean(m over the s-pixel border band)``.
    """
    b, _, w, h = mask.shape
    if border is not None:
        band = torch.ones(w, h, dtype=torch.bool, device=mask.device)
        band[border : w - border, border : h - border] = False
        return lambda_edge * mask[..., band].mean()
    cw, ch = w // 5, h // 5
    center = mask[:, :, cw : w - cw, ch : h - ch]
    return lambda_edge * (mask.sum() - 2.0 * center.sum()) / (w * h * b)


def lsgan_loss(pred: Tensor, target: float) -> Tensor:
    """Least-squares GAN loss ``MSE(pred, target)``."""
    return F.mse_loss(pred, torch.full_like(pred, target))
