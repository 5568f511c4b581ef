"""The texture loss's target: a grid of object patches cut from the pseudo ground truth.

For each image (cgn-reference.md section 5, ``get_sampled_patches`` in the reference's
``imagenet/losses.py``):

1. upsample the image ``x_gt`` and its mask to ``work_size`` (128) with bicubic interpolation
   (``align_corners=False``);
2. score every ``patch_size`` x ``patch_size`` (15 x 15) window of the mask, at stride 1, by its
   mean mask value (``(128 - 15 + 1)^2 = 12,996`` windows);
3. keep the ``top_k`` (100) windows with the highest scores;
4. draw ``n_side^2`` (36) of them uniformly *with replacement* (``randint``, as the reference);
5. tile the image patches of those windows row by row into an ``n_side`` x ``n_side`` grid
   (90 x 90 px);
6. resize the grid (bicubic) to the output size: the image's own size (256 for BigGAN-deep-256,
   what the reference does) unless ``out_size`` is given.

The result is a texture-only image made of the object's most "foreground" patches, which the
texture mechanism's output is pulled towards with a Gram (style) loss. Everything here runs
without autograd: the grid is a fixed target.

Randomness comes only from the ``generator`` passed in (a CPU :class:`torch.Generator`), so the
same generator state gives the same grid on any device; ties between equal scores are broken
by position (stable sort), unlike the reference's unstable ``argsort``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["PATCH_SIZE", "SAMPLE_SIZE", "GRID_SIDE", "WORK_SIZE", "patch_grid", "top_patches"]

PATCH_SIZE = 15
SAMPLE_SIZE = 100  # the top-k windows the grid's patches are drawn from
GRID_SIDE = 6  # 6 x 6 = 36 patches
WORK_SIZE = 128


def top_patches(mask: Tensor, patch_size: int = PATCH_SIZE, top_k: int = SAMPLE_SIZE) -> Tensor:
    """Flat indices ``[B, k]`` (row-major over the ``(H-p+1) x (W-p+1)`` window positions) of
    the ``k = min(top_k, windows)`` windows with the highest mean of ``mask [B, 1, H, W]``,
    ascending by score (the best last), ties in position order."""
    scores = F.avg_pool2d(mask.float(), patch_size, stride=1).flatten(1)  # [B, windows]
    k = min(top_k, scores.shape[1])
    order = torch.argsort(scores, dim=1, stable=True)
    return order[:, -k:]


@torch.no_grad()
def patch_grid(
    images: Tensor,
    masks: Tensor,
    *,
    generator: torch.Generator | None = None,
    patch_size: int = PATCH_SIZE,
    top_k: int = SAMPLE_SIZE,
    n_side: int = GRID_SIDE,
    work_size: int = WORK_SIZE,
    out_size: int | tuple[int, int] | None = None,
) -> Tensor:
    """Patch grids ``[B, C, *out_size]`` of ``images [B, C, H, W]`` guided by ``masks
    [B, 1, H, W]`` (module docstring). ``out_size`` defaults to ``(H, W)``."""
    if images.dim() != 4 or masks.dim() != 4 or masks.shape[1] != 1:
        raise ValueError(
            f"expected images [B, C, H, W] and masks [B, 1, H, W], got {tuple(images.shape)} "
            f"and {tuple(masks.shape)}"
        )
    if images.shape[0] != masks.shape[0]:
        raise ValueError("images and masks must have the same batch size")
    if not 1 <= patch_size <= work_size:
        raise ValueError(f"patch_size must be in 1..{work_size}")
    if out_size is None:
        out_size = (int(images.shape[-2]), int(images.shape[-1]))
    elif isinstance(out_size, int):
        out_size = (out_size, out_size)
    dtype = images.dtype if images.dtype in (torch.float32, torch.float64) else torch.float32
    work = (work_size, work_size)
    x = F.interpolate(images.to(dtype), work, mode="bicubic", align_corners=False)
    m = F.interpolate(masks.to(dtype), work, mode="bicubic", align_corners=False)
    best = top_patches(m, patch_size, top_k).cpu()  # [B, k]
    positions = work_size - patch_size + 1
    n = n_side * n_side
    draws = torch.randint(best.shape[1], (best.shape[0], n), generator=generator)
    chosen = torch.gather(best, 1, draws)  # [B, n] flat window positions
    rows, cols = (chosen // positions).tolist(), (chosen % positions).tolist()
    grids = []
    for b in range(x.shape[0]):
        patches = [
            x[b, :, r : r + patch_size, c : c + patch_size]
            for r, c in zip(rows[b], cols[b], strict=True)
        ]
        tiles = torch.stack(patches).view(n_side, n_side, x.shape[1], patch_size, patch_size)
        # [row, col, C, p, p] -> [C, row, p, col, p] -> [C, n_side * p, n_side * p]
        grid = tiles.permute(2, 0, 3, 1, 4).reshape(
            x.shape[1], n_side * patch_size, n_side * patch_size
        )
        grids.append(grid)
    out = F.interpolate(torch.stack(grids), out_size, mode="bicubic", align_corners=False)
    return out.to(images.dtype)
