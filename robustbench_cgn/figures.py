"""PNG figures of runs (matplotlib, Agg): image grids, GradCAM overlays, t-SNE, training curves.

Every function takes tensors already in memory, writes one PNG and returns its path; callers
put them in ``ctx.artifacts_dir`` so ``cgnbench show`` and ``cgnbench report`` find them.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import torch
from torch import Tensor


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, imported on first use (it costs ~0.25 s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _hwc(image: Tensor) -> np.ndarray:
    """``[3, H, W]`` or ``[H, W]`` in [0, 1] -> array for imshow."""
    array = image.detach().float().cpu().clamp(0, 1)
    return array.permute(1, 2, 0).numpy() if array.dim() == 3 else array.numpy()


def _save(fig, path: str | PathLike[str]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    return out


def save_image_rows(
    path: str | PathLike[str],
    rows: Sequence[tuple[str, Tensor]],
    column_titles: Sequence[str] | None = None,
    title: str = "",
) -> Path:
    """A grid with one titled row per ``(name, images [n, 3 or 1, H, W] in [0, 1])``."""
    n_cols = max(len(images) for _, images in rows)
    fig, axes = pyplot().subplots(
        len(rows), n_cols, figsize=(1.1 * n_cols, 1.2 * len(rows)), squeeze=False
    )
    for r, (name, images) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                image = images[c]
                ax.imshow(_hwc(image[0] if image.shape[0] == 1 else image), cmap="gray")
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0 and column_titles is not None and c < len(column_titles):
                ax.set_title(column_titles[c], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def save_cam_overlays(
    path: str | PathLike[str],
    images: Tensor,
    cams: Tensor,
    masks: Tensor,
    captions: Sequence[str],
    title: str = "",
) -> Path:
    """Three rows per image column: the image, its CAM over it (jet, alpha 0.5), the mask."""
    n = len(images)
    fig, axes = pyplot().subplots(3, n, figsize=(1.1 * n, 3.6), squeeze=False)
    for c in range(n):
        picture = _hwc(images[c])
        axes[0][c].imshow(picture)
        axes[1][c].imshow(picture)
        axes[1][c].imshow(cams[c].cpu().numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
        axes[2][c].imshow(masks[c].cpu().numpy(), cmap="gray")
        axes[0][c].set_title(captions[c], fontsize=7)
        for r in range(3):
            axes[r][c].set_xticks([])
            axes[r][c].set_yticks([])
    for r, name in enumerate(("image", "GradCAM", "mask")):
        axes[r][0].set_ylabel(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def tsne_embedding(features: Tensor, seed: int = 0) -> np.ndarray:
    """2-d t-SNE (scikit-learn, PCA init, fixed seed) of ``features [N, D]``."""
    from sklearn.manifold import TSNE

    perplexity = min(30.0, max(2.0, (len(features) - 1) / 3))
    tsne = TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity)
    return tsne.fit_transform(features.detach().float().cpu().numpy())


def save_tsne(
    path: str | PathLike[str],
    embedding: np.ndarray,
    colourings: Sequence[tuple[str, Tensor]],
    title: str = "",
) -> Path:
    """One scatter panel per ``(name, integer attribute [N])`` over the same 2-d embedding."""
    width = 4.2 * len(colourings)
    fig, axes = pyplot().subplots(1, len(colourings), figsize=(width, 4), squeeze=False)
    for ax, (name, values) in zip(axes[0], colourings, strict=True):
        points = ax.scatter(
            embedding[:, 0],
            embedding[:, 1],
            c=values.cpu().numpy(),
            cmap="tab10",
            s=3,
            vmin=-0.5,
            vmax=9.5,
        )
        ax.set_title(f"coloured by {name}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(points, ax=ax, ticks=range(10), fraction=0.046)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def save_training_curves(
    path: str | PathLike[str], history: Sequence[dict], title: str = ""
) -> Path:
    """Loss and training accuracy per epoch from a classifier's training history."""
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(8, 3))
    left.plot(epochs, [h["loss"] for h in history], marker="o")
    left.set_xlabel("epoch")
    left.set_ylabel("training loss")
    right.plot(epochs, [h["train_acc"] for h in history], marker="o")
    right.set_xlabel("epoch")
    right.set_ylabel("training accuracy (%)")
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def to_unit(images: Tensor) -> Tensor:
    """uint8 or [-1, 1] float images -> float in [0, 1]."""
    if images.dtype == torch.uint8:
        return images.float() / 255
    return (images.float() + 1) / 2
