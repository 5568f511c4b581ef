"""Counterfactual MNIST data from a trained CGN (cgn-reference.md section 3), streamed to disk.

Per batch of ``batch_size`` shape labels ``y``: the mask is computed **once** from ``(u, y)``;
then ``no_cfs`` counterfactuals reuse it, each with fresh noise for foreground and background
and labels ``y[perm]`` from two independent permutations; the stored label is the shape label.
Images are stored ``k``-major within a batch (all masks' first counterfactual, then the
second, ...), as the reference appends them.

Differences from the reference ``generate_data.py`` (same distribution, less work):

* no discarded full forward per batch (the reference calls the CGN ``1 + no_cfs`` times per batch
  and ignores parts of each output); shape runs once per batch, the textures once per image;
* runs under ``torch.inference_mode`` (the reference keeps autograd on);
* ``engine="fused"`` (default) uses :class:`~.cgn_fast.FastCGN`: identical math up to float32
  rounding (stored uint8 pixels agree with ``engine="reference"`` except for rare +-1 at rounding
  boundaries), several times faster;
* the compute batch is independent of the label-permutation group: permutations are drawn within
  groups of ``perm_group`` (default 100, the reference's batch size), so the fg/bg label
  statistics match the reference whatever ``batch_size`` is;
* the output is deterministic given ``(seed, n, no_cfs, batch_size, perm_group)`` (one CPU
  ``torch.Generator`` drives every draw) and is written as uint8, not float32.

On-disk format (a directory, see :data:`FORMAT`): ``images.npy`` uint8 ``[N, 3, 32, 32]``
(NCHW, ``x = u8 / 127.5 - 1``), ``labels.npy`` int64 ``[N]`` (shape labels),
``fg_labels.npy`` / ``bg_labels.npy`` int64 ``[N]``, and ``meta.json``. Files are written in
chunks through ``numpy.lib.format.open_memmap`` (re-opened per chunk, so resident memory stays
bounded), into ``<dir>.partial`` that is renamed when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from robustbench_cgn.checkpoint import atomic_write_text
from robustbench_cgn.data.download import sha256_file as file_sha256
from robustbench_cgn.device import autocast
from robustbench_cgn.errors import CGNBenchError, ConfigError, DataNotFoundError

from .cgn_fast import FastCGN
from .cgn_model import CGN
from .hashing import state_dict_sha256

__all__ = [
    "FORMAT",
    "CounterfactualBatch",
    "CounterfactualData",
    "CounterfactualDataset",
    "generate_counterfactuals",
    "load_counterfactuals",
    "quantize_images",
    "state_dict_sha256",
    "dequantize_images",
    "write_counterfactuals",
    "write_image_batches",
]

FORMAT = "cgnbench-mnist-counterfactuals/1"
Engine = Literal["fused", "reference"]


@dataclass(frozen=True)
class CounterfactualBatch:
    """One generated batch: uint8 images ``[n, 3, H, W]`` and int64 labels ``[n]``."""

    images: Tensor
    labels: Tensor  # shape labels (what the classifier is trained on)
    fg_labels: Tensor
    bg_labels: Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]


# --------------------------------------------------------------------------------- conversions


def quantize_images(x: Tensor) -> Tensor:
    """[-1, 1] float -> uint8 ``round((x + 1) * 127.5)`` (clamped)."""
    return x.mul(127.5).add_(127.5).round_().clamp_(0, 255).to(torch.uint8)


def dequantize_images(x: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 -> [-1, 1] float ``u8 / 127.5 - 1``."""
    return x.to(dtype).div_(127.5).sub_(1.0)


# --------------------------------------------------------------------------------- generation


def _grouped_permutations(k: int, b: int, group: int, generator: torch.Generator) -> Tensor:
    """``[k, b]`` indices: an independent random permutation inside each block of ``group``."""
    out = torch.empty(k, b, dtype=torch.long)
    for start in range(0, b, group):
        size = min(group, b - start)
        out[:, start : start + size] = torch.rand(k, size, generator=generator).argsort(1) + start
    return out


def generate_counterfactuals(
    cgn: CGN,
    n: int,
    *,
    no_cfs: int = 1,
    seed: int = 0,
    batch_size: int = 500,
    perm_group: int = 100,
    engine: Engine = "fused",
    chunk_size: int = 256,
    start: int = 0,
    precision: str = "fp32",
) -> Iterator[CounterfactualBatch]:
    """Yield ``n`` counterfactual images in batches of ``batch_size * no_cfs`` (last one shorter).

    Args:
        cgn: a trained CGN (used in eval mode; its state is not modified).
        n: number of images in total.
        no_cfs: counterfactuals per mask.
        seed: seeds the one CPU generator that draws labels, noise, permutations and shifts.
        batch_size: masks per batch (the reference uses 100).
        perm_group: fg/bg labels are permuted within groups of this many masks (reference: 100).
        engine: ``"fused"`` (:class:`FastCGN`) or ``"reference"`` (the CGN modules themselves).
        chunk_size: compute sub-batch for the fused engine (cache friendly; no effect on values
            beyond float rounding).
        start: resume point: the batches before image ``start`` have their random draws
            replayed (cheap) but are neither computed nor yielded, so the remaining batches are
            exactly those of an uninterrupted run. Must be a batch boundary.
        precision: ``"bf16"`` computes the mechanisms under bf16 autocast (the run's
            ``--precision``; fast on AMX / AVX-512 BF16 CPUs and CUDA); the composition and the
            uint8 quantisation stay fp32. Images then differ from fp32 ones by a few levels.

    Draw order per batch (all on CPU): ``y``, ``u_shape``, ``u_fg[k]``, ``u_bg[k]``,
    ``perm_fg[k]``, ``perm_bg[k]``, ``shifts_fg[k]``, ``shifts_bg[k]``.
    """
    if n < 0 or no_cfs < 1 or batch_size < 1 or perm_group < 1:
        raise ConfigError("need n >= 0, no_cfs >= 1, batch_size >= 1 and perm_group >= 1")
    if engine not in ("fused", "reference"):
        raise ConfigError(f"engine must be 'fused' or 'reference', not {engine!r}")
    if not 0 <= start <= n:
        raise ConfigError(f"start must be in 0..{n}, got {start}")
    was_training = cgn.training
    cgn.eval()
    try:
        device = cgn.label_emb.weight.device
        model: CGN | FastCGN = FastCGN.from_cgn(cgn) if engine == "fused" else cgn
        gen = torch.Generator().manual_seed(seed)
        size, latent, n_cls = cgn.img_size, cgn.latent_dim, cgn.n_classes
        done = 0
        while done < n:
            masks = min(batch_size, -(-(n - done) // no_cfs))
            y = torch.randint(n_cls, (masks,), generator=gen)
            u_shape = torch.randn(masks, latent, generator=gen)
            u_fg = torch.randn(no_cfs, masks, latent, generator=gen)
            u_bg = torch.randn(no_cfs, masks, latent, generator=gen)
            perm_fg = _grouped_permutations(no_cfs, masks, perm_group, gen)
            perm_bg = _grouped_permutations(no_cfs, masks, perm_group, gen)
            sh_fg = torch.randint(0, size + 1, (no_cfs, masks, 2), generator=gen)
            sh_bg = torch.randint(0, size + 1, (no_cfs, masks, 2), generator=gen)
            take = min(n - done, masks * no_cfs)
            if done < start:
                if done + take > start:
                    raise ConfigError(f"start={start} is not a batch boundary")
                done += take
                continue
            images = torch.empty(no_cfs * masks, 3, size, size, dtype=torch.uint8)
            step = chunk_size if engine == "fused" else masks
            # inference mode only around the compute: a generator must not leave it switched on
            # in the caller's thread while suspended at ``yield``
            with torch.inference_mode(), autocast(device, precision):
                for lo in range(0, masks, step):
                    sl = slice(lo, min(lo + step, masks))
                    mask = model.mask(u_shape[sl].to(device), y[sl].to(device))
                    for k in range(no_cfs):
                        if k * masks + sl.start >= take:
                            break
                        y_fg, y_bg = y[perm_fg[k, sl]].to(device), y[perm_bg[k, sl]].to(device)
                        fg = model.foreground(u_fg[k, sl].to(device), y_fg, sh_fg[k, sl])
                        bg = model.background(u_bg[k, sl].to(device), y_bg, sh_bg[k, sl])
                        if precision != "fp32":  # compose and quantise in fp32
                            mask, fg, bg = mask.float(), fg.float(), bg.float()
                        if engine == "fused":  # mask [b, 1, H, W], broadcast
                            x = torch.lerp(bg, fg, mask)
                        else:  # the CGN's own composer, mask repeated to [b, 3, H, W]
                            x = mask * fg + (1 - mask) * bg
                        # quantise in place; the copy into the uint8 NCHW buffer casts exactly
                        images[k * masks + sl.start : k * masks + sl.stop].copy_(
                            x.mul_(127.5).add_(127.5).round_().clamp_(0, 255)
                        )
            labels = y.repeat(no_cfs)
            fg_lab = torch.cat([y[perm_fg[k]] for k in range(no_cfs)])
            bg_lab = torch.cat([y[perm_bg[k]] for k in range(no_cfs)])
            yield CounterfactualBatch(images[:take], labels[:take], fg_lab[:take], bg_lab[:take])
            done += take
    finally:
        cgn.train(was_training)


# ----------------------------------------------------------------------------------- writing

_ARRAYS = {
    "images": ("images.npy", np.uint8),
    "labels": ("labels.npy", np.int64),
    "fg_labels": ("fg_labels.npy", np.int64),
    "bg_labels": ("bg_labels.npy", np.int64),
}


def write_counterfactuals(
    cgn: CGN,
    out_dir: str | PathLike[str],
    n: int,
    *,
    no_cfs: int = 1,
    seed: int = 0,
    batch_size: int = 500,
    perm_group: int = 100,
    engine: Engine = "fused",
    weights_path: str | PathLike[str] | None = None,
    extra_meta: dict[str, Any] | None = None,
    overwrite: bool = False,
    on_progress: Callable[[int], None] | None = None,
    precision: str = "fp32",
) -> Path:
    """Generate ``n`` counterfactuals into the directory ``out_dir``; return its ``meta.json``.

    Memory stays bounded (one batch plus the memmap pages of one chunk) whatever ``n`` is.
    ``on_progress(n_done)`` is called after every written batch. ``weights_path`` (the CGN
    checkpoint) is hashed into the metadata; the state dict hash is always recorded. An
    interrupted call (even SIGKILL) resumes where it stopped when called again with the same
    arguments; the result is byte-identical to an uninterrupted one.
    """
    if n < 1:
        raise ConfigError(f"need at least one image to write, got n={n}")

    def batches(start: int) -> Iterator[CounterfactualBatch]:
        return generate_counterfactuals(
            cgn,
            n,
            no_cfs=no_cfs,
            seed=seed,
            batch_size=batch_size,
            perm_group=perm_group,
            engine=engine,
            start=start,
            precision=precision,
        )

    meta: dict[str, Any] = {
        "generator": "cgn",
        "no_cfs": no_cfs,
        "seed": seed,
        "batch_size": batch_size,
        "perm_group": perm_group,
        "engine": engine,
        "precision": precision,
        "mask_activation": cgn.mask_activation,
        "label": "shape label (fg_labels / bg_labels: the texture labels)",
        "cgn_state_dict_sha256": state_dict_sha256(cgn),
    }
    return write_image_batches(
        batches,
        out_dir,
        n,
        image_size=cgn.img_size,
        meta=meta,
        weights_path=weights_path,
        extra_meta=extra_meta,
        overwrite=overwrite,
        on_progress=on_progress,
    )


BatchSource = Callable[[int], Iterable[CounterfactualBatch]]
PROGRESS_FILE = "progress.json"


def _resume_point(part: Path, fingerprint: str, n: int) -> int:
    """Images already written into ``part`` by an interrupted call with the same
    ``fingerprint`` (0 when there is nothing usable to resume)."""
    try:
        progress = json.loads((part / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return 0
    done = progress.get("done") if isinstance(progress, dict) else None
    if progress.get("fingerprint") != fingerprint or not isinstance(done, int):
        return 0
    if not all((part / fname).is_file() for fname, _ in _ARRAYS.values()):
        return 0
    return done if 0 < done <= n else 0


def write_image_batches(
    batches: BatchSource,
    out_dir: str | PathLike[str],
    n: int,
    *,
    image_size: int,
    meta: dict[str, Any],
    weights_path: str | PathLike[str] | None = None,
    extra_meta: dict[str, Any] | None = None,
    overwrite: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> Path:
    """Stream ``n`` generated images (any generator's batches) into ``out_dir`` in the
    :data:`FORMAT` layout; return its ``meta.json``.

    Arrays are written chunk by chunk through re-opened memmaps into ``<out_dir>.partial``,
    renamed when complete, so memory stays bounded and an interrupted write leaves nothing
    that looks finished. ``meta`` (generator facts) is merged into the file's metadata.

    Resuming: ``batches(start)`` returns the batches from image ``start`` on (a batch
    boundary); a ``progress.json`` (images flushed so far, and a fingerprint of ``n``, the sizes
    and ``meta``) is updated after every batch, and a later call with the same fingerprint
    continues from there instead of starting again.
    """
    if n < 1:
        raise ConfigError(f"need at least one image to write, got n={n}")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise CGNBenchError(f"{out} already exists; pass overwrite=True or choose another folder")
    part = out.with_name(out.name + ".partial")
    shapes = {
        "images": (n, 3, image_size, image_size),
        "labels": (n,),
        "fg_labels": (n,),
        "bg_labels": (n,),
    }
    fingerprint = hashlib.sha256(
        json.dumps(
            {"n": n, "shapes": shapes, "meta": meta, "weights": str(weights_path)},
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()
    done = _resume_point(part, fingerprint, n)
    if done == 0:
        if part.exists():
            shutil.rmtree(part)
        part.mkdir(parents=True)
        for key, (fname, dtype) in _ARRAYS.items():
            mm = np.lib.format.open_memmap(part / fname, mode="w+", dtype=dtype, shape=shapes[key])
            del mm  # creates the (sparse) file with its header
    resumed_from = done
    if on_progress is not None and done:
        on_progress(done)
    t0 = time.perf_counter()
    for batch in batches(done):
        stop = done + len(batch)
        if stop > n:
            raise CGNBenchError(f"the generator yielded more than the {n} images asked for")
        for key, (fname, _) in _ARRAYS.items():
            mm = np.lib.format.open_memmap(part / fname, mode="r+")
            mm[done:stop] = getattr(batch, key).numpy()
            mm.flush()
            del mm  # unmap: the written pages leave this process's resident set
        done = stop
        # after the flush: a kill in between only redoes this batch
        progress = json.dumps({"done": done, "fingerprint": fingerprint})
        atomic_write_text(progress, part / PROGRESS_FILE)
        if on_progress is not None:
            on_progress(done)
    if done != n:
        raise CGNBenchError(f"the generator yielded {done} images, {n} were asked for")
    full_meta: dict[str, Any] = {
        "format": FORMAT,
        "n": n,
        **meta,
        "image_size": [3, image_size, image_size],
        "files": {
            key: {"file": fname, "dtype": np.dtype(dtype).name, "shape": list(shapes[key])}
            for key, (fname, dtype) in _ARRAYS.items()
        },
        "layout": "NCHW",
        "value_mapping": "x = uint8 / 127.5 - 1 (stored as round((x + 1) * 127.5))",
        "weights_file": str(weights_path) if weights_path is not None else None,
        "weights_sha256": file_sha256(weights_path) if weights_path is not None else None,
        "torch_version": torch.__version__,
        "seconds": round(time.perf_counter() - t0, 3),
        "resumed_from": resumed_from,
        "complete": True,
    }
    if extra_meta:
        full_meta["extra"] = extra_meta
    (part / PROGRESS_FILE).unlink(missing_ok=True)
    (part / "meta.json").write_text(json.dumps(full_meta, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(part, out)
    return out / "meta.json"


# ----------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class CounterfactualData:
    """A counterfactual dataset on disk, as (memory-mapped) tensors."""

    images: Tensor  # uint8 [N, 3, H, W]
    labels: Tensor  # int64 [N], shape labels
    fg_labels: Tensor
    bg_labels: Tensor
    meta: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None  # where it was loaded from

    def __len__(self) -> int:
        return self.labels.shape[0]


def load_counterfactuals(path: str | PathLike[str], *, mmap: bool = True) -> CounterfactualData:
    """Read a directory written by :func:`write_counterfactuals` (or its ``meta.json``).

    With ``mmap=True`` the arrays are mapped copy-on-write: nothing is read until used.
    """
    root = Path(path)
    if root.name == "meta.json":
        root = root.parent
    meta_file = root / "meta.json"
    if not meta_file.is_file():
        raise DataNotFoundError(f"no counterfactual dataset at {root} (meta.json missing)")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != FORMAT or not meta.get("complete"):
        raise CGNBenchError(f"{root} is not a complete {FORMAT} dataset")
    arrays = {}
    for key, spec in meta["files"].items():
        arr = np.load(root / spec["file"], mmap_mode="c" if mmap else None)
        if list(arr.shape) != spec["shape"] or arr.dtype.name != spec["dtype"]:
            raise CGNBenchError(f"{root / spec['file']} does not match meta.json")
        arrays[key] = torch.from_numpy(arr)
    return CounterfactualData(**arrays, meta=meta, folder=root)


class CounterfactualDataset(Dataset):
    """``(image, label)`` pairs: image float ``[3, H, W]`` in [-1, 1] (or uint8), shape label."""

    def __init__(self, data: CounterfactualData | str | PathLike[str], *, as_float: bool = True):
        self.data = data if isinstance(data, CounterfactualData) else load_counterfactuals(data)
        self.as_float = as_float

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        img = self.data.images[i]
        if self.as_float:
            img = dequantize_images(img)
        return img, int(self.data.labels[i])
