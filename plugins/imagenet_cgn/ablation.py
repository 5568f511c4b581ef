"""The ImageNet CGN loss ablation: mean mask ``mu_mask`` and Inception Score per trained CGN.

Each ablation point trains a CGN with one of the paper's loss groups switched off
(:data:`ABLATIONS`; ``cgnbench train-cgn-imagenet --without <group>``) and scores it with
:func:`ablation_metrics`:

* ``mu_mask``: the mean mask value per image, reported as mean +- std over the images (a
  collapsed mask is ~0 or ~1; the paper's full model has 0.3);
* ``inception_score``: the Inception Score (torchmetrics, torch-fidelity's Inception weights,
  10 splits) of the composite images, through :func:`robustbench_cgn.explain.fid.
  inception_score`; it needs the local weights file ``weights-inception-2015-12-05-6726825d.pth``
  (a clear message, and ``None``, when it is missing).

Images are drawn with ``mode="shared"`` by default (one class for shape, texture and background,
as in training, so the score is comparable with BigGAN's own), ``n=2000`` as in the
reproduction; ``cgnbench ablate-cgn-imagenet`` runs it for several weight files.

Published values (cgn-reference.md section 5; Inception Score | mean mask). They are listed here
rather than in ``references/published.csv`` because no benchmark reports these metrics:

=====================  ================  ======================================
ablation               paper (Table 2)   reproduction (MLRC 2021, IS over 2,000)
=====================  ================  ======================================
without shape loss     85.9 | 0.2        100.8 | 0.3
without texture loss   198.4 | 0.9       186.5 | 0.4
without bg loss        195.6 | 0.1       200.9 | 0.1
without reconstruction 38.4 | 0.3        19.3 | 0.4
full CGN               130.2 | 0.3       156.1 | 0.3
BigGAN (no CGN)        202.9 | -         -
=====================  ================  ======================================
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor

from robustbench_cgn.device import autocast
from robustbench_cgn.errors import CGNBenchError, ConfigError

from .cgn_model import ImageNetCGN
from .generation import counterfactual_inputs, quantize
from .losses import LOSS_GROUPS, LOSS_TERMS

__all__ = ["ABLATIONS", "PUBLISHED", "ablation_losses", "ablation_metrics", "sample_for_metrics"]

#: ablation name -> the paper loss groups switched off
ABLATIONS: dict[str, tuple[str, ...]] = {
    "full": (),
    "no-shape": ("shape",),
    "no-texture": ("texture",),
    "no-background": ("background",),
    "no-reconstruction": ("reconstruction",),
}

#: source -> ablation -> (Inception Score, mean mask); cgn-reference.md section 5.
PUBLISHED: dict[str, dict[str, tuple[float, float | None]]] = {
    "paper": {
        "no-shape": (85.9, 0.2),
        "no-texture": (198.4, 0.9),
        "no-background": (195.6, 0.1),
        "no-reconstruction": (38.4, 0.3),
        "full": (130.2, 0.3),
        "biggan": (202.9, None),
    },
    "reproduction": {
        "no-shape": (100.8, 0.3),
        "no-texture": (186.5, 0.4),
        "no-background": (200.9, 0.1),
        "no-reconstruction": (19.3, 0.4),
        "full": (156.1, 0.3),
    },
}


def ablation_losses(name: str) -> tuple[str, ...]:
    """The loss terms an ablation point trains with."""
    if name not in ABLATIONS:
        raise ConfigError(f"unknown ablation {name!r}; use one of {', '.join(ABLATIONS)}")
    off = {term for group in ABLATIONS[name] for term in LOSS_GROUPS[group]}
    return tuple(t for t in LOSS_TERMS if t not in off)


@torch.no_grad()
def sample_for_metrics(
    cgn: ImageNetCGN,
    n: int,
    *,
    seed: int = 0,
    mode: str = "shared",
    batch_size: int = 16,
    truncation: float | None = None,
    precision: str = "fp32",
) -> tuple[Tensor, Tensor]:
    """``(uint8 composites [n, 3, H, W], mean mask per image [n])`` in eval mode; inputs as
    in :func:`~.generation.counterfactual_inputs` (``mode`` random or shared)."""
    if mode not in ("random", "shared"):
        raise ConfigError("mode must be 'random' or 'shared'")
    t = cgn.truncation if truncation is None else float(truncation)
    device = next(cgn.parameters()).device
    was_training = cgn.training
    cgn.eval()
    images, mask_means = [], []
    try:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            y, u = counterfactual_inputs(
                start, stop, mode=mode, seed=seed, z_dim=cgn.z_dim, truncation=t
            )
            y = y.to(device)
            with autocast(device, precision):
                out = cgn(u.to(device), y[:, 0], y[:, 1], y[:, 2], truncation=t, ground_truth=False)
            images.append(quantize(out.x_gen))
            mask_means.append(out.mask.float().flatten(1).mean(1).cpu())
    finally:
        cgn.train(was_training)
    return torch.cat(images), torch.cat(mask_means)


def ablation_metrics(
    cgn: ImageNetCGN,
    n: int = 2000,
    *,
    seed: int = 0,
    mode: str = "shared",
    batch_size: int = 16,
    truncation: float | None = None,
    precision: str = "fp32",
    inception_weights: str | os.PathLike[str] | None = None,
    inception: bool = True,
) -> dict[str, Any]:
    """``mu_mask`` (mean, std over images) and, when ``inception`` and the Inception weights
    are local, the Inception Score (mean, std over 10 splits) of ``n`` composites. When the
    score cannot be computed, ``inception_score`` is ``None`` and ``inception_error`` says why."""
    if n < 2:
        raise ConfigError("the ablation metrics need n >= 2 images")
    images, mask_means = sample_for_metrics(
        cgn,
        n,
        seed=seed,
        mode=mode,
        batch_size=batch_size,
        truncation=truncation,
        precision=precision,
    )
    result: dict[str, Any] = {
        "n": n,
        "mode": mode,
        "seed": seed,
        "mu_mask": float(mask_means.mean()),
        "mu_mask_std": float(mask_means.std()),
        "inception_score": None,
        "inception_score_std": None,
        "inception_error": None,
    }
    if inception:
        from robustbench_cgn.explain.fid import inception_score

        try:
            mean, std = inception_score(images, weights=inception_weights)
        except CGNBenchError as exc:  # weights missing, extra not installed
            result["inception_error"] = str(exc)
        else:
            result["inception_score"], result["inception_score_std"] = mean, std
    else:
        result["inception_error"] = "not requested"
    return result
