"""The six losses of the ImageNet CGN (cgn-reference.md section 5), each switchable.

With ``m`` the mask, ``x_gen = m * fg + (1 - m) * bg`` and ``x_gt`` BigGAN's image for the same
noise and class (the reference's ``imagenet/losses.py``, ``train_cgn.py``):

* ``reconstruction``: ``lambda * L1(x_gen, x_gt)``; reference weight 100;
* ``perceptual``: ``sum_l w_l^2 * 5000 * L1(G_l(x_gen), G_l(x_gt))``; weights [4, 4, 4, 4];
* ``binary``: ``lambda * mean(H2(m))`` with ``H2(p) = -p log2 p - (1-p) log2(1-p)``; 300;
* ``mask``: ``lambda * mean_b(max(0, 0.1 - mean(m_b)) + max(0, mean(m_b) - 0.9))``; 500;
* ``texture``: Gram loss of ``fg`` against the patch grid of ``x_gt``; weights [0, 5, 5, 0];
* ``background``: ``lambda * mean(U2Net(bg))``; 2000.

The paper states 5 for the perceptual weights; the reference's config has 4 (see the ``paper``
and ``faithful`` presets in :mod:`.training`). ``G_l`` are Gram matrices of VGG16's relu1_2,
relu2_2, relu3_3, relu4_3 outputs: the project's :class:`~robustbench_cgn_plugins.mnist.
style_loss.VGGStyleLoss` (same formula as the reference's ``PerceptualLoss``, content weights
0), with the VGG16 file found like for the MNIST CGN (``vgg_weights`` /
``$CGNBENCH_VGG16_WEIGHTS`` / ``<data_dir>/vgg16/vgg16_imagenet_caffe_features23.pth``).
``vgg_mode="faithful"`` feeds the [-1, 1] images as if ImageNet-normalised, as the reference
does; see that module for the Caffe-weights scaling. The perceptual and texture losses share
one VGG (the texture loss's layers are a prefix). The patch grid target is
:func:`~.patch_grid.patch_grid`.

Gradient paths: ``reconstruction`` and ``perceptual`` reach all three mechanisms (through the
mask, the foreground and the background); ``binary`` and ``mask`` reach only the shape
mechanism; ``texture`` only the texture mechanism; ``background`` only the background mechanism
(through the frozen U2-Net). ``x_gt`` and the patch grid are constants. The three mechanisms
start as copies, so with one class ``fg == bg`` at first and the mask gets no reconstruction or
perceptual gradient (``d x_gen / d m = fg - bg``) until texture and background diverge.

Paper loss groups (for the ablation, Table 2 of the paper): ``shape`` = binary + mask,
``texture``, ``background``, ``reconstruction`` = reconstruction + perceptual
(:data:`LOSS_GROUPS`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustbench_cgn.errors import ConfigError
from robustbench_cgn_plugins.shared.style_loss import VGGStyleLoss, vgg16_features23

from .patch_grid import GRID_SIDE, PATCH_SIZE, SAMPLE_SIZE, WORK_SIZE, patch_grid

__all__ = [
    "LOSS_GROUPS",
    "LOSS_TERMS",
    "CGNLoss",
    "LossWeights",
    "background_loss",
    "binary_entropy_loss",
    "mask_interval_loss",
    "random_vgg16_file",
    "reconstruction_loss",
    "resolve_loss_terms",
]

LOSS_TERMS = ("reconstruction", "perceptual", "binary", "mask", "texture", "background")
#: The paper's loss names -> the terms they consist of.
LOSS_GROUPS: dict[str, tuple[str, ...]] = {
    "shape": ("binary", "mask"),
    "texture": ("texture",),
    "background": ("background",),
    "reconstruction": ("reconstruction", "perceptual"),
}


@dataclass(frozen=True)
class LossWeights:
    """Loss weights; defaults are the reference's (``imagenet/config.py``)."""

    reconstruction: float = 100.0
    perceptual: tuple[float, float, float, float] = (4.0, 4.0, 4.0, 4.0)
    binary: float = 300.0
    mask: float = 500.0
    mask_interval: tuple[float, float] = (0.1, 0.9)
    texture: tuple[float, float, float, float] = (0.0, 5.0, 5.0, 0.0)
    background: float = 2000.0

    def __post_init__(self) -> None:
        for name in ("perceptual", "texture"):
            values = tuple(float(v) for v in getattr(self, name))
            if len(values) != 4:
                raise ConfigError(f"{name} weights need 4 values (relu1_2, 2_2, 3_3, 4_3)")
            object.__setattr__(self, name, values)
        interval = tuple(float(v) for v in self.mask_interval)
        if len(interval) != 2 or not 0.0 <= interval[0] <= interval[1] <= 1.0:
            raise ConfigError("mask_interval must be (low, high) with 0 <= low <= high <= 1")
        object.__setattr__(self, "mask_interval", interval)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_loss_terms(names: Iterable[str]) -> tuple[str, ...]:
    """Loss terms and/or paper groups (:data:`LOSS_GROUPS`) -> terms, in :data:`LOSS_TERMS`
    order. Unknown names are a :class:`ConfigError`."""
    wanted: set[str] = set()
    for name in names:
        if name in LOSS_GROUPS:
            wanted.update(LOSS_GROUPS[name])
        elif name in LOSS_TERMS:
            wanted.add(name)
        else:
            known = ", ".join((*LOSS_TERMS, *(f"{g} (group)" for g in LOSS_GROUPS)))
            raise ConfigError(f"unknown CGN loss {name!r}; use one of {known}")
    return tuple(t for t in LOSS_TERMS if t in wanted)


# ------------------------------------------------------------------------- the plain terms


def reconstruction_loss(x_gen: Tensor, x_gt: Tensor, weight: float) -> Tensor:
    """``weight * L1(x_gen, x_gt)`` (mean absolute difference)."""
    return weight * F.l1_loss(x_gen.float(), x_gt.float())


def binary_entropy_loss(mask: Tensor, weight: float) -> Tensor:
    """``weight * mean(-m log2 m - (1 - m) log2(1 - m))``; the mask must already be clamped
    away from 0 and 1 (the composer clamps to [1e-4, 0.9999])."""
    m = mask.float()
    return weight * (-m * torch.log2(m) - (1 - m) * torch.log2(1 - m)).mean()


def mask_interval_loss(
    mask: Tensor, weight: float, interval: Sequence[float] = (0.1, 0.9)
) -> Tensor:
    """``weight * mean_b(max(0, lo - mean(m_b)) + max(0, mean(m_b) - hi))``: zero while the
    mean mask of every image lies in ``[lo, hi]``."""
    lo, hi = interval
    means = mask.float().flatten(1).mean(1)
    return weight * (F.relu(lo - means) + F.relu(means - hi)).mean()


def background_loss(background_mask: Tensor, weight: float) -> Tensor:
    """``weight * mean(U2Net(bg))``: the background mechanism is penalised for anything the
    saliency network finds salient (the mean over pixels per image, then over the batch)."""
    return weight * background_mask.float().flatten(1).mean(1).mean()


# ------------------------------------------------------------------------------------ VGG


def random_vgg16_file(path: str | PathLike[str], seed: int = 0) -> Path:
    """Write a randomly initialised ``vgg16().features[:23]`` state dict (torchvision's
    default init, seeded) to ``path`` (kept if it already exists), for tests and smoke runs
    without the real VGG16 weights. Load it with ``input_convention="torchvision"``."""
    path = Path(path)
    if path.is_file():
        return path
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = {k: v.clone() for k, v in vgg16_features23().state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


class _Output(Protocol):  # what the losses read from the composer's output
    x_gen: Tensor
    x_gt: Tensor
    mask: Tensor
    foreground: Tensor
    background_mask: Tensor | None


class CGNLoss(nn.Module):
    """The ImageNet CGN's generator objective: ``forward(out, generator) -> {term: loss}``.

    Args:
        weights: :class:`LossWeights`.
        enabled: the terms to compute (default all; see :func:`resolve_loss_terms`); a term
            that is disabled or has weight 0 is neither computed nor returned.
        vgg_weights: the VGG16 file (needed only when ``perceptual`` or ``texture`` is on).
        vgg_mode, vgg_input_convention: passed to :class:`VGGStyleLoss`.
        patch_size, top_k, grid_side, work_size: the texture target (:func:`patch_grid`).

    ``out`` has ``x_gen``, ``x_gt``, ``mask``, ``foreground`` and, when the background term is
    on, ``background_mask`` (= ``U2Net(bg)``); ``generator`` (CPU) draws the patch grid.
    """

    def __init__(
        self,
        weights: LossWeights | None = None,
        *,
        enabled: Iterable[str] = LOSS_TERMS,
        vgg_weights: str | PathLike[str] | None = None,
        vgg_mode: str = "faithful",
        vgg_input_convention: str = "auto",
        patch_size: int = PATCH_SIZE,
        top_k: int = SAMPLE_SIZE,
        grid_side: int = GRID_SIDE,
        work_size: int = WORK_SIZE,
    ):
        super().__init__()
        self.weights = weights or LossWeights()
        w = self.weights
        nonzero = {
            "reconstruction": w.reconstruction != 0,
            "perceptual": any(v != 0 for v in w.perceptual),
            "binary": w.binary != 0,
            "mask": w.mask != 0,
            "texture": any(v != 0 for v in w.texture),
            "background": w.background != 0,
        }
        self.terms = tuple(t for t in resolve_loss_terms(enabled) if nonzero[t])
        self.patch = {
            "patch_size": patch_size,
            "top_k": top_k,
            "n_side": grid_side,
            "work_size": work_size,
        }
        self.perceptual: VGGStyleLoss | None = None
        self.texture: VGGStyleLoss | None = None
        self.vgg_sha256: str | None = None
        options = {"mode": vgg_mode, "input_convention": vgg_input_convention}
        if "perceptual" in self.terms:
            self.perceptual = VGGStyleLoss(w.perceptual, vgg_weights, **options)  # type: ignore[arg-type]
        if "texture" in self.terms:
            self.texture = VGGStyleLoss(w.texture, vgg_weights, **options)  # type: ignore[arg-type]
        if self.perceptual is not None and self.texture is not None:
            # one VGG in memory: the shorter network is a prefix of the longer one
            longer, shorter = sorted((self.perceptual, self.texture), key=lambda s: -len(s.vgg))
            shorter.vgg = longer.vgg[: len(shorter.vgg)]
        for style in (self.perceptual, self.texture):
            if style is not None:
                self.vgg_sha256 = style.weights_sha256

    @property
    def needs_background_mask(self) -> bool:
        return "background" in self.terms

    @property
    def needs_vgg(self) -> bool:
        return self.perceptual is not None or self.texture is not None

    def vgg_info(self) -> dict[str, Any] | None:
        style = self.perceptual or self.texture
        if style is None:
            return None
        return {
            "file": Path(style.weights_path).name,
            "sha256": style.weights_sha256,
            "input_convention": style.input_convention,
            "mode": style.mode,
            "feature_scale": style.feature_scale,
        }

    def forward(self, out: _Output, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        w, losses = self.weights, {}
        if "reconstruction" in self.terms:
            losses["reconstruction"] = reconstruction_loss(out.x_gen, out.x_gt, w.reconstruction)
        if self.perceptual is not None:
            losses["perceptual"] = self.perceptual(out.x_gen, out.x_gt.detach())
        if "binary" in self.terms:
            losses["binary"] = binary_entropy_loss(out.mask, w.binary)
        if "mask" in self.terms:
            losses["mask"] = mask_interval_loss(out.mask, w.mask, w.mask_interval)
        if self.texture is not None:
            target = patch_grid(
                out.x_gt.detach(),
                out.mask.detach(),
                generator=generator,
                out_size=tuple(out.foreground.shape[-2:]),
                **self.patch,
            )
            losses["texture"] = self.texture(out.foreground, target)
        if "background" in self.terms:
            if out.background_mask is None:
                raise ValueError("the background loss needs U2Net(background): none was computed")
            losses["background"] = background_loss(out.background_mask, w.background)
        return losses
