"""Sample grids and the mask-collapse indicator for MNIST generator training.

Everything here runs the generator in **eval mode** under ``torch.no_grad`` with its own
``torch.Generator`` (seeded by the caller), so it never touches the training RNG streams or the
BatchNorm running statistics: sampling does not change a training run (unlike the reference,
whose ``sample_image`` runs the CGN in train mode and updates BN statistics). Eval mode is also
what counterfactual generation uses, so the grids show what an export would produce.

Grids (``torchvision.utils.save_image``, one row per class, ``n_per_class`` columns):

* CGN: ``{prefix}_masks.png``, ``_foregrounds.png``, ``_backgrounds.png``, ``_composites.png``;
* DCGAN: ``{prefix}_samples.png``.

Mask-collapse indicator (:func:`mask_collapse_indicators`). For every class ``c`` the CGN draws
the masks of a fixed batch (``n_per_class`` noise vectors from ``seed``) and we report

* ``mean``: the mean mask value (fraction of the image given to the foreground);
* ``spatial_std``: the per-image standard deviation over pixels, averaged over the batch.

A class is flagged ``collapsed`` when ``mean < 0.05`` (the mask is background everywhere: the
foreground mechanism is ignored), ``mean > 0.95`` (foreground everywhere: the background is
ignored), ``spatial_std < 0.05`` (nearly constant mask: no shape at all) or ``border_mean >
0.5`` (the mean mask within 3 px of the image border, the reproduction's edge-loss region:
an *inverted* mask, foreground all around a background blob where the digit should be).
For reference, a binary mask covering a typical MNIST digit (~15-20 % of the pixels) has a
mean of ~0.15-0.2, a spatial std of ~0.36-0.4 and a border mean near 0, so a healthy mask is
far from every threshold; the thresholds are :data:`COLLAPSE_LOW`, :data:`COLLAPSE_HIGH`,
:data:`CONSTANT_STD` and :data:`INVERTED_BORDER`.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .tasks.mask_collapse import (
    COLLAPSE_HIGH,
    COLLAPSE_LOW,
    CONSTANT_STD,
    INVERTED_BORDER,
    collapse_from_masks,
)

__all__ = [
    "COLLAPSE_HIGH",
    "COLLAPSE_LOW",
    "CONSTANT_STD",
    "INVERTED_BORDER",
    "cgn_samples",
    "collapse_from_masks",
    "mask_collapse_indicators",
    "save_cgn_grids",
    "save_dcgan_grid",
]



class _EvalMode:
    """Context: the module in eval mode (restored afterwards) and no autograd."""

    def __init__(self, module: nn.Module):
        self.module, self.was_training = module, module.training
        self._no_grad = torch.no_grad()

    def __enter__(self) -> nn.Module:
        self._no_grad.__enter__()
        return self.module.eval()

    def __exit__(self, *exc: object) -> None:
        self.module.train(self.was_training)
        self._no_grad.__exit__(*exc)


def _grid_labels(n_classes: int, n_per_class: int, device: torch.device) -> Tensor:
    """``[0]*n, [1]*n, ...``: one grid row per class."""
    return torch.arange(n_classes, device=device).repeat_interleave(n_per_class)


def cgn_samples(cgn: nn.Module, n_per_class: int = 8, seed: int = 0) -> dict[str, Tensor]:
    """Eval-mode CGN samples, ``n_per_class`` per class (class-major), all in [-1, 1] except
    ``mask`` (``[B, 1, H, W]`` in [0, 1]). Deterministic given the weights and ``seed``."""
    dev = cgn.label_emb.weight.device
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    with _EvalMode(cgn):
        out = cgn(_grid_labels(cgn.n_classes, n_per_class, dev), generator=gen)
    return {
        "mask": out.mask[:, :1],
        "foreground": out.foreground,
        "background": out.background,
        "composite": out.x,
    }


def save_cgn_grids(
    cgn: nn.Module,
    out_dir: str | PathLike[str],
    prefix: str,
    n_per_class: int = 8,
    seed: int = 0,
) -> list[Path]:
    """Write the four CGN grids (masks, foregrounds, backgrounds, composites); return paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples = cgn_samples(cgn, n_per_class, seed)
    paths = []
    for key, name in (
        ("mask", "masks"),
        ("foreground", "foregrounds"),
        ("background", "backgrounds"),
        ("composite", "composites"),
    ):
        img = samples[key] if key == "mask" else (samples[key] + 1) / 2
        path = out / f"{prefix}_{name}.png"
        save_image(img.clamp(0, 1).cpu(), path, nrow=n_per_class, padding=2)
        paths.append(path)
    return paths


def save_image(tensor: Tensor, path: Path, **kwargs: Any) -> None:
    """``torchvision.utils.save_image``, imported on first use (torchvision costs ~1 s)."""
    from torchvision.utils import save_image as torchvision_save_image

    torchvision_save_image(tensor, path, **kwargs)


def save_dcgan_grid(
    generator: nn.Module,
    out_dir: str | PathLike[str],
    prefix: str,
    n_per_class: int = 8,
    seed: int = 0,
) -> list[Path]:
    """Write one grid of eval-mode DCGAN samples (a row per class); return ``[path]``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = generator.label_emb.weight.device
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    with _EvalMode(generator):
        x = generator(_grid_labels(generator.n_classes, n_per_class, dev), generator=gen)
    path = out / f"{prefix}_samples.png"
    save_image(((x + 1) / 2).clamp(0, 1).cpu(), path, nrow=n_per_class, padding=2)
    return [path]


def mask_collapse_indicators(cgn: nn.Module, n_per_class: int = 32, seed: int = 0) -> dict:
    """Per-class collapse indicator of a CGN on a fixed batch (``n_per_class`` per class)."""
    dev = cgn.label_emb.weight.device
    labels = _grid_labels(cgn.n_classes, n_per_class, dev)
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    with _EvalMode(cgn):
        masks = cgn.mask(cgn.sample_noise(labels.shape[0], gen), labels)
    return collapse_from_masks(masks, labels, cgn.n_classes)
