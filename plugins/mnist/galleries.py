"""Counterfactual galleries of a CGN, as PNG figures for a run's artifacts.

* :func:`save_mechanism_gallery`: one column per class, rows masks / foregrounds / backgrounds
  / composites (a normal forward: all mechanisms share the label).
* :func:`save_independence_grid`: the counterfactual view. Panel rows vary one mechanism's
  label while the others stay fixed (same noise everywhere), so one sees that shape, texture
  and background respond to their own label only.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import torch

from robustbench_cgn.figures import save_image_rows, to_unit

from .cgn_model import CGN
from .sample_grids import cgn_samples

CLASS_TITLES = [str(c) for c in range(10)]


def save_mechanism_gallery(cgn: CGN, path: str | PathLike[str], seed: int = 0) -> Path:
    samples = cgn_samples(cgn, n_per_class=1, seed=seed)
    rows = [
        ("mask", samples["mask"].clamp(0, 1)),
        ("foreground", to_unit(samples["foreground"])),
        ("background", to_unit(samples["background"])),
        ("composite", to_unit(samples["composite"])),
    ]
    return save_image_rows(path, rows, CLASS_TITLES, "CGN mechanisms per class (label = column)")


@torch.no_grad()
def save_independence_grid(
    cgn: CGN, path: str | PathLike[str], seed: int = 0, fixed: int = 0
) -> Path:
    """Rows: shape label varies (texture and background fixed to class ``fixed``); texture
    label varies; background label varies. Columns: the varying label 0..9."""
    was_training = cgn.training
    cgn.eval()
    try:
        dev = cgn.label_emb.weight.device
        g = torch.Generator().manual_seed(seed)
        u = {k: torch.randn(1, cgn.latent_dim, generator=g).repeat(10, 1).to(dev) for k in "msb"}
        shifts = torch.zeros(10, 2, dtype=torch.long)
        varying = torch.arange(10, device=dev)
        constant = torch.full((10,), fixed, device=dev)

        def compose(y_shape, y_fg, y_bg):
            m = cgn.mask(u["m"], y_shape)
            fg = cgn.foreground(u["s"], y_fg, shifts)
            bg = cgn.background(u["b"], y_bg, shifts)
            return to_unit(m * fg + (1 - m) * bg)

        rows = [
            ("shape varies", compose(varying, constant, constant)),
            ("texture varies", compose(constant, varying, constant)),
            ("background varies", compose(constant, constant, varying)),
        ]
    finally:
        cgn.train(was_training)
    return save_image_rows(
        path, rows, CLASS_TITLES, f"one mechanism's label = column, the others fixed to {fixed}"
    )
