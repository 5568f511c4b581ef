"""Decoded, resized and centre-cropped image batches for the ImageNet benchmarks.

Images are decoded with ``torchvision.io.decode_image`` (libjpeg / libpng straight into uint8
tensors) and resized on tensors, in DataLoader workers. A file that cannot be decoded does not
stop a run: its item comes back flagged (index ``-1 - i``), the evaluation loop drops it and
reports the file and the reason (:func:`predict_images`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from robustbench_cgn.components import Classifier
from robustbench_cgn.context import RunContext
from robustbench_cgn.evaluation import check_same_length, predictor
from robustbench_cgn_plugins.imagenet.tasks import InputConfig

# torchvision 0.29 deprecates its image codecs in favour of torchcodec; they remain the
# fastest tensor decoders installed here, and the warning would fire once per image.
warnings.filterwarnings(
    "ignore", message="The image decoding and encoding capabilities", category=DeprecationWarning
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
PREPROCESSING = ("resize-crop", "as-is")

ImageReader = Callable[[int], torch.Tensor]
"""Returns the raw encoded bytes of item ``i`` as a uint8 tensor (or raises)."""


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted, hidden files skipped."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
    )


def decode_rgb(data: torch.Tensor | str | os.PathLike) -> torch.Tensor:
    """uint8 ``[3, H, W]`` RGB from encoded bytes or a file path (grey and RGBA converted)."""
    from torchvision.io import ImageReadMode, decode_image  # lazy: torchvision costs ~1 s

    if not isinstance(data, torch.Tensor):
        data = torch.frombuffer(bytearray(Path(data).read_bytes()), dtype=torch.uint8)
    return decode_image(data, mode=ImageReadMode.RGB)


@dataclass(frozen=True)
class Preprocess:
    """Resize the short side to ``config.resize_to`` and centre-crop ``config.size``
    (``resize-crop``, the ImageNet evaluation convention), or only make sure the image is
    ``size`` x ``size`` (``as-is``: stimuli that are already model-sized, the model-vs-human
    convention)."""

    config: InputConfig
    mode: str = "resize-crop"

    def __post_init__(self) -> None:
        if self.mode not in PREPROCESSING:
            raise ValueError(f"preprocessing must be one of {', '.join(PREPROCESSING)}")

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms import InterpolationMode  # lazy: torchvision costs ~1 s
        from torchvision.transforms.v2 import functional as TF

        size = self.config.size
        interpolation = InterpolationMode(self.config.interpolation)
        if self.mode == "as-is":
            if tuple(image.shape[-2:]) != (size, size):
                image = TF.resize(image, [size, size], interpolation, antialias=True)
            return image
        image = TF.resize(image, [self.config.resize_to], interpolation, antialias=True)
        return TF.center_crop(image, [size, size])

    def describe(self) -> str:
        c = self.config
        if self.mode == "as-is":
            return f"as-is {c.size}px ({c.interpolation} resize only if needed)"
        return f"resize {c.resize_to} + centre-crop {c.size} ({c.interpolation}, antialias)"


class ImageDataset(Dataset):
    """Items ``(uint8 [3, S, S], i)``; an undecodable item gives ``(zeros, -1 - i)``."""

    def __init__(
        self,
        source: ImageReader | Sequence[Path],
        preprocess: Preprocess,
        n: int = -1,
        names: Sequence[str] | None = None,
    ):
        if callable(source):
            if n < 0:
                raise ValueError("give n with a reader function")
            self._reader, self._paths, self._n = source, None, n
        else:
            self._reader, self._paths = None, list(source)
            self._n = len(self._paths)
        self.names = list(names) if names is not None else None
        self.preprocess = preprocess

    def describe(self, index: int) -> str:
        """The item's file path or name, for messages."""
        if self.names is not None:
            return self.names[index]
        return str(self._paths[index]) if self._paths is not None else f"item {index}"

    def __len__(self) -> int:
        return self._n

    def load(self, index: int) -> torch.Tensor:
        """The preprocessed image (raises on an undecodable file)."""
        data = self._paths[index] if self._paths is not None else self._reader(index)
        return self.preprocess(decode_rgb(data))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        try:
            return self.load(index), index
        except Exception:  # reported by predict_images, which re-reads to get the reason
            size = self.preprocess.config.size
            return torch.zeros(3, size, size, dtype=torch.uint8), -1 - index


@dataclass
class ImagePredictions:
    """Logits per head (float32, CPU) of the decodable items, their item ``indices``, and the
    ``failures`` (item index, reason) that were skipped."""

    logits: dict[str, torch.Tensor]
    indices: torch.Tensor
    failures: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.indices.numel())


def default_workers(ctx: RunContext) -> int:
    """``--workers`` when given, else a quarter of the cores decode while the rest run the
    model (measured: on 2 cores a decoding worker only competes with the model's threads,
    45 vs 47 images/s for MobileNetV2, scripts/bench_imagenet_eval.py)."""
    if ctx.num_workers:
        return ctx.num_workers
    return min(8, (os.cpu_count() or 1) // 4)


@torch.inference_mode()
def predict_images(
    classifier: Classifier,
    dataset: ImageDataset,
    ctx: RunContext,
    *,
    batch_size: int = 64,
    description: str = "evaluating",
    workers: int | None = None,
) -> ImagePredictions:
    """Run ``classifier`` over ``dataset``; undecodable images are skipped and reported.
    ``workers`` decode in parallel (default: :func:`default_workers`; 0 = main process).

    With several processes each rank predicts a contiguous block of whole batches and every
    rank gets all predictions and failures back in dataset order (as
    :func:`~robustbench_cgn.evaluation.predict_dataset`); every rank must call it."""
    dist = ctx.distributed
    items: Dataset = dataset
    if dist.enabled:
        check_same_length(ctx, len(dataset), description)
        items = Subset(dataset, dist.shard_range(len(dataset), batch_size))
    if workers is None:
        workers = default_workers(ctx) if len(items) > batch_size else 0  # type: ignore[arg-type]
    loader = DataLoader(
        items,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=ctx.device.type == "cuda",
        persistent_workers=False,
    )
    per_head: dict[str, list[torch.Tensor]] = {}
    kept: list[torch.Tensor] = []
    failed: list[int] = []
    predict = predictor(classifier, ctx)
    for images, indices in ctx.progress.track(loader, description=description):
        ok = indices >= 0
        failed.extend((-1 - indices[~ok]).tolist())
        if not ok.any():
            continue
        outputs = predict(images[ok].to(ctx.device, non_blocking=True).float().div_(255))
        for head, logits in outputs.items():
            per_head.setdefault(head, []).append(logits.float().cpu())
        kept.append(indices[ok])
    failures = [(i, _failure_reason(dataset, i)) for i in failed]
    if dist.enabled:
        per_head, kept, failures = _merge_image_shards(
            dist.all_gather_object((per_head, kept, failures))
        )
    for index, reason in failures:
        ctx.log(f"skipped unreadable image {dataset.describe(index)}: {reason}")
    return ImagePredictions(
        logits={head: torch.cat(chunks) for head, chunks in per_head.items()},
        indices=torch.cat(kept) if kept else torch.empty(0, dtype=torch.long),
        failures=failures,
    )


def _merge_image_shards(shards: list) -> tuple[dict, list, list]:
    """The ranks' (per-head chunks, kept indices, failures), concatenated in rank order."""
    per_head: dict[str, list[torch.Tensor]] = {}
    kept: list[torch.Tensor] = []
    failures: list[tuple[int, str]] = []
    for shard_heads, shard_kept, shard_failures in shards:
        for head, chunks in shard_heads.items():
            per_head.setdefault(head, []).extend(chunks)
        kept.extend(shard_kept)
        failures.extend(shard_failures)
    return per_head, kept, failures


def _failure_reason(dataset: ImageDataset, index: int) -> str:
    try:
        dataset.load(index)
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return "failed in a worker, decodes fine when retried"
