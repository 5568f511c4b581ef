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
* :func:`class_priors` and :func:`mechanism_prior_loss`: the *mechanism warm-up* (ours, off
  unless asked for): for the first iterations each mechanism of a class-``y`` sample is pulled
  towards a statistic of the real class-``y`` training images: the mask towards the mean
  binarised digit, the foreground and background towards the mean digit / non-digit colour,
  ``weight * (MSE(m, shape[y]) + MSE(f, fg[y]) + MSE(b, bg[y]))``, with a weight that falls
  linearly to 0. It settles which mechanism draws what (the shape the digit, with the right
  polarity and class; the background a background colour) before the adversarial game can lock
  in an inverted mask or a textured blob (measurements in the training module's docstring).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BinaryLoss",
    "binary_entropy_bits",
    "MechanismPriors",
    "class_priors",
    "edge_loss",
    "lsgan_loss",
    "mechanism_prior_loss",
    "prior_weight",
]

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


@dataclass(frozen=True)
class MechanismPriors:
    """Per-class statistics of the real train split for the warm-up: ``shape [K, H, W]`` (mean
    binarised digit), ``foreground``/``background`` ``[K, 3]`` (mean colour of the digit /
    non-digit pixels, in the images' [-1, 1] scale)."""

    shape: Tensor
    foreground: Tensor
    background: Tensor

    def to(self, device: torch.device | str) -> MechanismPriors:
        return MechanismPriors(
            self.shape.to(device), self.foreground.to(device), self.background.to(device)
        )


def class_priors(
    images: Tensor, masks: Tensor, labels: Tensor, n_classes: int = 10, chunk: int = 8192
) -> MechanismPriors:
    """:class:`MechanismPriors` of uint8 ``images [N, 3, H, W]`` with their binarised digits
    ``masks [N, H, W]`` (0/1) and ``labels``; summed in chunks (no float copy of the split).
    A class without samples raises ``ValueError`` (its prior would be undefined)."""
    labels = labels.to(torch.long)
    counts = torch.bincount(labels, minlength=n_classes)[:n_classes]
    if bool((counts == 0).any()):
        missing = [int(c) for c in torch.nonzero(counts == 0).flatten()]
        raise ValueError(f"no training digits of class(es) {missing} for the mechanism prior")
    shape = torch.zeros(n_classes, *masks.shape[1:], dtype=torch.float64)
    fg_sum = torch.zeros(n_classes, 3, dtype=torch.float64)
    bg_sum = torch.zeros(n_classes, 3, dtype=torch.float64)
    fg_n = torch.zeros(n_classes, dtype=torch.float64)
    for i in range(0, labels.shape[0], chunk):
        y = labels[i : i + chunk]
        m = masks[i : i + chunk].to(torch.float64)
        x = images[i : i + chunk].to(torch.float64) / 127.5 - 1.0
        shape.index_add_(0, y, m)
        fg_sum.index_add_(0, y, (x * m[:, None]).sum((2, 3)))
        bg_sum.index_add_(0, y, (x * (1.0 - m[:, None])).sum((2, 3)))
        fg_n.index_add_(0, y, m.sum((1, 2)))
    pixels = counts.to(torch.float64) * masks.shape[1] * masks.shape[2]
    bg_n = pixels - fg_n
    return MechanismPriors(
        (shape / counts.view(-1, 1, 1)).float(),
        (fg_sum / fg_n.clamp(min=1).view(-1, 1)).float(),
        (bg_sum / bg_n.clamp(min=1).view(-1, 1)).float(),
    )


def prior_weight(weight: float, iteration: int, iterations: int) -> float:
    """``weight`` at iteration 0 falling linearly to 0 at ``iterations`` (0 afterwards)."""
    if weight <= 0.0 or iterations <= 0 or iteration >= iterations:
        return 0.0
    return weight * (1.0 - iteration / iterations)


def mechanism_prior_loss(
    mask: Tensor,
    foreground: Tensor,
    background: Tensor,
    labels: Tensor,
    priors: MechanismPriors,
    weight: float,
) -> Tensor:
    """``weight * (MSE(m, shape[y]) + MSE(f, fg[y]) + MSE(b, bg[y]))`` for mask ``[B, C, H, W]``
    (channel 0 is used) and textures ``[B, 3, H, W]`` (compared with a flat class colour, so the
    shuffler's roll does not matter)."""
    shape = priors.shape.to(mask.device, mask.dtype)[labels]
    fg = priors.foreground.to(mask.device, mask.dtype)[labels][:, :, None, None]
    bg = priors.background.to(mask.device, mask.dtype)[labels][:, :, None, None]
    loss = F.mse_loss(mask[:, 0], shape)
    loss = loss + F.mse_loss(foreground, fg.expand_as(foreground))
    loss = loss + F.mse_loss(background, bg.expand_as(background))
    return weight * loss
