"""The mask-collapse indicator of a CGN's masks (a task-level metric helper: the generators'
training and the gen-quality benchmarks both use it). The thresholds and what they mean are
described in :mod:`robustbench_cgn_plugins.mnist.sample_grids`."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["BORDER_PX", "COLLAPSE_HIGH", "COLLAPSE_LOW", "CONSTANT_STD", "INVERTED_BORDER",
           "collapse_from_masks"]

COLLAPSE_LOW = 0.05
COLLAPSE_HIGH = 0.95
CONSTANT_STD = 0.05
INVERTED_BORDER = 0.5
BORDER_PX = 3


def collapse_from_masks(masks: Tensor, labels: Tensor, n_classes: int = 10) -> dict[str, Any]:
    """The collapse indicator (module docstring) from masks ``[B, 1 or 3, H, W]`` and labels.

    Returns ``{"per_class": [{"class", "n", "mean", "spatial_std", "collapsed", "reason"}],
    "collapsed_classes": [...], "any_collapsed": bool, "thresholds": {...}}``.
    """
    m = masks[:, :1].float()
    per_image_mean = m.mean(dim=(1, 2, 3))
    per_image_std = m.flatten(1).std(dim=1, unbiased=False)
    inner = torch.zeros_like(m[0, 0], dtype=torch.bool)
    inner[BORDER_PX:-BORDER_PX, BORDER_PX:-BORDER_PX] = True
    per_image_border = m[:, 0][:, ~inner].mean(dim=1)
    rows = []
    for c in range(n_classes):
        sel = labels == c
        n = int(sel.sum())
        if n == 0:
            rows.append(
                {
                    "class": c,
                    "n": 0,
                    "mean": None,
                    "spatial_std": None,
                    "border_mean": None,
                    "collapsed": False,
                    "reason": "no samples",
                }
            )
            continue
        mean, std = float(per_image_mean[sel].mean()), float(per_image_std[sel].mean())
        border = float(per_image_border[sel].mean())
        reasons = []
        if mean < COLLAPSE_LOW:
            reasons.append(f"mean {mean:.3f} < {COLLAPSE_LOW} (all background)")
        if mean > COLLAPSE_HIGH:
            reasons.append(f"mean {mean:.3f} > {COLLAPSE_HIGH} (all foreground)")
        if std < CONSTANT_STD:
            reasons.append(f"spatial std {std:.3f} < {CONSTANT_STD} (nearly constant)")
        elif border > INVERTED_BORDER and mean <= COLLAPSE_HIGH:
            reasons.append(f"border mean {border:.3f} > {INVERTED_BORDER} (inverted mask)")
        rows.append(
            {
                "class": c,
                "n": n,
                "mean": round(mean, 5),
                "spatial_std": round(std, 5),
                "border_mean": round(border, 5),
                "collapsed": bool(reasons),
                "reason": "; ".join(reasons),
            }
        )
    collapsed = [r["class"] for r in rows if r["collapsed"]]
    return {
        "per_class": rows,
        "collapsed_classes": collapsed,
        "any_collapsed": bool(collapsed),
        "thresholds": {
            "low": COLLAPSE_LOW,
            "high": COLLAPSE_HIGH,
            "constant_std": CONSTANT_STD,
            "inverted_border": INVERTED_BORDER,
        },
    }
