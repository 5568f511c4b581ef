"""The MNIST tasks and where their data comes from, shared by generators and benchmarks."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from robustbench_cgn import RunContext, Task, TrainingSet
from robustbench_cgn_plugins.mnist.tasks.source import MNIST_DATASET as MNIST_DATASET
from robustbench_cgn_plugins.mnist.tasks.source import MnistArrays, resolve_mnist
from robustbench_cgn_plugins.mnist.tasks.variants import (
    RULES_VERSION,
    VariantData,
    build_variant,
    resolve_textures,
    to_float,
)
from robustbench_cgn_plugins.mnist.tasks.variants import (
    TEXTURES_DATASET as TEXTURES_DATASET,
)

DIGITS = tuple(str(d) for d in range(10))
_DESCRIPTIONS = {
    "colored": ("colored-mnist", "Colored MNIST: stroke colour tied to the class in training"),
    "double-colored": (
        "double-colored-mnist",
        "Double-colored MNIST: stroke and background colours tied",
    ),
    "wildlife": ("wildlife-mnist", "Wildlife MNIST: object and background textures tied"),
}


def _textures_ready(ctx: RunContext) -> None:
    resolve_textures(textures_dir_for(ctx), ctx.cache_dir)


def textures_dir_for(ctx: RunContext) -> Path | None:
    """W-MNIST textures next to the data (``<data-dir>/wmnist_textures``), if there."""
    if ctx.data_dir is not None and (ctx.data_dir / "wmnist_textures").is_dir():
        return ctx.data_dir / "wmnist_textures"
    return None


def _data_identity(variant: str, ctx: RunContext) -> dict[str, object]:
    identity: dict[str, object] = {"source": mnist_for(ctx).source}
    if RULES_VERSION[variant] > 1:  # version 1 left out: older identities stay valid
        identity["rules"] = RULES_VERSION[variant]
    return identity


def _task(variant: str) -> Task:
    name, description = _DESCRIPTIONS[variant]
    return Task(
        name,
        10,
        (3, 32, 32),
        "mnist",
        description,
        value_range=(-1.0, 1.0),  # uint8 storage; float inputs are x / 127.5 - 1
        classes=DIGITS,
        splits=("train", "test"),
        loader=lambda split, ctx, seed: load_split(variant, split, ctx, seed),
        data_identity=lambda ctx: _data_identity(variant, ctx),
        prepare=_textures_ready if variant == "wildlife" else None,
    )


TASKS = {variant: _task(variant) for variant in _DESCRIPTIONS}
VARIANT_OF_TASK = {task.name: variant for variant, task in TASKS.items()}
MNIST_TASK_NAMES = tuple(VARIANT_OF_TASK)


def variant_of(task: Task) -> str:
    return VARIANT_OF_TASK[task.name]


def mnist_for(ctx: RunContext) -> MnistArrays:
    """MNIST from ``--data-dir``/``CGNBENCH_DATA``, the cache, a download, or the fallback."""
    return resolve_mnist(ctx.data_dir, ctx.cache_dir / "mnist")


def variant_split(task: Task, split: str, ctx: RunContext, seed: int) -> VariantData:
    mnist = mnist_for(ctx)
    return _cached_variant(
        variant_of(task), split, mnist, seed, textures_dir_for(ctx), ctx.cache_dir
    )


@lru_cache(maxsize=8)
def _cached_variant(variant, split, mnist, seed, textures_dir, cache_dir) -> VariantData:
    return build_variant(
        variant, split, mnist, seed, textures_dir=textures_dir, cache_dir=cache_dir
    )


def as_dataset(data: VariantData) -> TensorDataset:
    """(uint8 image [3, 32, 32], label) pairs; classifiers convert to [-1, 1] per batch."""
    return TensorDataset(data.images, data.labels)


def uint8_to_model_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 storage -> float32 in [-1, 1] (:func:`to_float`); float input is passed through."""
    return to_float(images) if images.dtype == torch.uint8 else images


def load_split(variant: str, split: str, ctx: RunContext, seed: int) -> TrainingSet:
    """A variant's split as a training set (uint8 images [3, 32, 32], int64 labels)."""
    task = TASKS[variant]
    data = variant_split(task, split, ctx, seed=seed)
    provenance = {
        key: data.meta[key]
        for key in ("variant", "split", "seed", "n", "mnist_source", "mnist_range")
    }
    return TrainingSet(
        as_dataset(data), task.num_classes, {"source": data.meta["mnist_source"], **provenance}
    )
