"""Writing counterfactual ImageNet datasets with a trained CGN, resumably and in bounded memory.

Layout (what :class:`~robustbench_cgn_plugins.imagenet.counterfactual_folder.
CounterfactualImageFolder` and so the ``cgn-ensemble`` classifier read)::

    <folder>/labels.csv              header path,shape,texture,background
    <folder>/images/0000/0000000.jpg ...  (1,000 images per sub-folder)
    <folder>/generation.json         the settings, and whether the set is complete

Modes (:data:`MODES`): ``random``: shape, texture and background classes drawn independently and
uniformly from the 1000 ImageNet classes (the reference's ``generate_data.py --mode random``);
``fixed``: the given ``(shape, texture, background)`` for every image; ``shared``: one random
class for all three (no counterfactual: the CGN's reconstruction of BigGAN).

Determinism. Image ``i``'s classes and noise depend only on ``(seed, i)``: they are drawn per
block of 1024 images from a generator seeded by ``(seed, block)``, whatever the batch size and
wherever a run was interrupted. Images are the composite ``x_gen`` in eval mode, mapped from
[-1, 1] to 0..255 by ``round((x + 1) * 127.5)`` (the reference's ``save_image(normalize=True)``
min-max stretches each batch instead; at batch 1 that is per image).

Resume. Rows are appended to ``labels.csv`` (and flushed to disk) per finished batch, after
the batch's image files have been written, so every listed image exists. A rerun with the same
settings continues after the last listed row (a torn last line is dropped; images written
after it are overwritten with the same pixels). A folder written with other settings is
refused. Memory is one batch of images at a time.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from robustbench_cgn.checkpoint import atomic_write_text
from robustbench_cgn.context import derive_seed
from robustbench_cgn.device import autocast
from robustbench_cgn.errors import CGNBenchError, ConfigError
from robustbench_cgn_plugins.imagenet.counterfactual_folder import COLUMNS, LABELS_FILE

from .biggan import truncated_noise
from .cgn_model import ImageNetCGN

__all__ = [
    "DATASET_FORMAT",
    "MODES",
    "SETTINGS_FILE",
    "counterfactual_inputs",
    "dataset_status",
    "image_path",
    "quantize",
    "write_counterfactual_dataset",
]

DATASET_FORMAT = "cgnbench-cgn-imagenet-counterfactuals/1"
SETTINGS_FILE = "generation.json"
MODES = ("random", "fixed", "shared")
BLOCK = 1024
PER_FOLDER = 1000
FORMATS = {"jpg": "jpg", "jpeg": "jpg", "png": "png"}


def image_path(index: int, image_format: str = "jpg") -> str:
    """``images/<index // 1000 as 4 digits>/<index as 7 digits>.<format>``."""
    return f"images/{index // PER_FOLDER:04d}/{index:07d}.{FORMATS[image_format]}"


def quantize(images: Tensor) -> Tensor:
    """[-1, 1] float -> uint8 ``round((x + 1) * 127.5)``, on the CPU."""
    x = images.detach().float().clamp(-1, 1)
    return ((x + 1) * 127.5).round().to(torch.uint8).cpu()


def _block_draws(seed: int, block: int, z_dim: int, truncation: float) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(derive_seed(seed, "cgn-imagenet-data", block))
    classes = torch.randint(1000, (BLOCK, 3), generator=g)
    noise = truncated_noise(BLOCK, z_dim, truncation, g)
    return classes, noise


def counterfactual_inputs(
    start: int,
    stop: int,
    *,
    mode: str,
    seed: int,
    z_dim: int,
    truncation: float,
    classes: Sequence[int] | None = None,
    _cache: dict[int, tuple[Tensor, Tensor]] | None = None,
) -> tuple[Tensor, Tensor]:
    """Classes ``[n, 3]`` (shape, texture, background) and noise ``[n, z_dim]`` of images
    ``start..stop-1`` (module docstring)."""
    ys, us = [], []
    for block in range(start // BLOCK, (stop - 1) // BLOCK + 1):
        if _cache is not None and block in _cache:
            drawn = _cache[block]
        else:
            drawn = _block_draws(seed, block, z_dim, truncation)
            if _cache is not None:
                _cache.clear()
                _cache[block] = drawn
        lo, hi = max(start - block * BLOCK, 0), min(stop - block * BLOCK, BLOCK)
        ys.append(drawn[0][lo:hi])
        us.append(drawn[1][lo:hi])
    y, u = torch.cat(ys), torch.cat(us)
    if mode == "shared":
        y = y[:, :1].expand(-1, 3).clone()
    elif mode == "fixed":
        assert classes is not None
        y = torch.tensor([list(classes)], dtype=torch.long).expand(len(y), 3).clone()
    return y, u


def _check_settings(mode: str, classes: Sequence[int] | None) -> tuple[int, int, int] | None:
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES}, not {mode!r}")
    if mode == "fixed":
        if classes is None or len(classes) != 3:
            raise ConfigError("mode 'fixed' needs three classes: shape, texture, background")
        fixed = tuple(int(c) for c in classes)
        if any(not 0 <= c < 1000 for c in fixed):
            raise ConfigError("classes must be ImageNet class indices 0..999")
        return fixed  # type: ignore[return-value]
    return None


def _read_settings(folder: Path) -> dict[str, Any] | None:
    path = folder / SETTINGS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CGNBenchError(f"cannot read {path}: {exc}") from None


def _rows_done(labels: Path, image_format: str) -> int:
    """Complete rows already in ``labels.csv`` (repairing a torn last line); each must name
    the image of its index."""
    data = labels.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(labels, "r+b") as handle:
            handle.truncate(cut)
        data = data[:cut]
    lines = data.decode("utf-8").splitlines()
    if not lines or lines[0].strip() != ",".join(COLUMNS):
        raise CGNBenchError(f"{labels} does not start with the header {','.join(COLUMNS)}")
    for index, line in enumerate(lines[1:]):
        if line.split(",", 1)[0] != image_path(index, image_format):
            raise CGNBenchError(
                f"{labels} line {index + 2} is not image {index} ({line!r}); not a dataset "
                "written by this generator"
            )
    return len(lines) - 1


def dataset_status(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The settings of the dataset in ``folder`` (``complete``, ``n``...), or ``None``."""
    return _read_settings(Path(folder))


def write_counterfactual_dataset(
    cgn: ImageNetCGN,
    folder: str | os.PathLike[str],
    n: int,
    *,
    mode: str = "random",
    classes: Sequence[int] | None = None,
    seed: int = 0,
    truncation: float | None = None,
    batch_size: int = 16,
    image_format: str = "jpg",
    quality: int = 95,
    precision: str = "fp32",
    weights_id: str = "",
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write (or finish) ``n`` counterfactual images and ``labels.csv`` in ``folder``.

    ``truncation`` defaults to the CGN's; ``weights_id`` (e.g. the weights' sha256) is part of
    the settings a resumed folder must match. ``on_progress(n_done)`` after every batch.
    Returns the settings written to ``generation.json`` (``complete: true``).
    """
    from torchvision.io import encode_jpeg, encode_png, write_file  # lazy: ~1 s at start-up

    fixed = _check_settings(mode, classes)
    if n < 1 or batch_size < 1:
        raise ConfigError("n and batch_size must be >= 1")
    if image_format not in FORMATS:
        raise ConfigError(f"image_format must be one of {tuple(FORMATS)}")
    image_format = FORMATS[image_format]
    t = cgn.truncation if truncation is None else float(truncation)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "format": DATASET_FORMAT,
        "mode": mode,
        "classes": list(fixed) if fixed else None,
        "seed": int(seed),
        "truncation": t,
        "image_format": image_format,
        "quality": int(quality) if image_format == "jpg" else None,
        "weights": weights_id,
        "resolution": cgn.resolution,
        "u2net_input": cgn.u2net_input,
    }
    previous = _read_settings(folder)
    if previous is not None:
        differs = {k: (previous.get(k), v) for k, v in settings.items() if previous.get(k) != v}
        if differs:
            raise ConfigError(
                f"{folder} holds a counterfactual set with other settings (there vs now: "
                f"{differs}); choose another folder"
            )
    labels = folder / LABELS_FILE
    done = _rows_done(labels, image_format) if labels.is_file() else 0
    if done > n:
        raise ConfigError(f"{folder} already holds {done} images, more than n={n}")
    atomic_write_text(
        json.dumps({**settings, "n": n, "complete": False}, indent=2) + "\n",
        folder / SETTINGS_FILE,
    )
    if not labels.is_file():
        with open(labels, "w", newline="") as handle:
            handle.write(",".join(COLUMNS) + "\n")
    if on_progress is not None:
        on_progress(done)

    device = next(cgn.parameters()).device
    was_training = cgn.training
    cgn.eval()
    cache: dict[int, tuple[Tensor, Tensor]] = {}
    try:
        with open(labels, "a", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            for start in range(done, n, batch_size):
                stop = min(start + batch_size, n)
                y, u = counterfactual_inputs(
                    start,
                    stop,
                    mode=mode,
                    seed=seed,
                    z_dim=cgn.z_dim,
                    truncation=t,
                    classes=fixed,
                    _cache=cache,
                )
                with torch.no_grad(), autocast(device, precision):
                    y_dev = y.to(device)
                    out = cgn(
                        u.to(device),
                        y_dev[:, 0],
                        y_dev[:, 1],
                        y_dev[:, 2],
                        truncation=t,
                        ground_truth=False,
                    )
                images = quantize(out.x_gen)
                rows = []
                for offset, image in enumerate(images):
                    index = start + offset
                    relative = image_path(index, image_format)
                    target = folder / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if image_format == "jpg":
                        data = encode_jpeg(image, quality=quality)
                    else:
                        data = encode_png(image)
                    write_file(str(target), data)
                    rows.append([relative, *(int(c) for c in y[offset])])
                writer.writerows(rows)
                handle.flush()
                os.fsync(handle.fileno())
                if on_progress is not None:
                    on_progress(stop)
    finally:
        cgn.train(was_training)
    final = {**settings, "n": n, "complete": True}
    atomic_write_text(json.dumps(final, indent=2) + "\n", folder / SETTINGS_FILE)
    return final
