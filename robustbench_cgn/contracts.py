"""What crosses a component boundary is checked there, before the work that depends on it.

* a generator's training set (its first samples) against the task's image contract
  (:attr:`Task.input_shape`, uint8 0..255 or float32 in :attr:`Task.value_range`) and labels
  (integers in ``0..num_classes-1``);
* a classifier's logits (a mapping of head -> ``[batch, num_classes]`` finite floats);
* a benchmark's metrics (declared names, finite values).

A violation is one :class:`ContractError` line naming the component, the field, what was
expected and what came. Without these checks a wrong layout ends, minutes later, in a long
traceback from deep inside a model, and float images in [0, 1] train silently on wrong inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from .components import Task, TrainingSet
from .errors import CGNBenchError

__all__ = [
    "SAMPLES_CHECKED",
    "ContractError",
    "check_logits",
    "check_metric_value",
    "check_training_set",
]

#: How many leading samples of a training set are checked (enough to see a value range).
SAMPLES_CHECKED = 64


class ContractError(CGNBenchError):
    """A component's output does not match the contract of the task or harness."""


def _shape(value: Any) -> str:
    return "[" + ", ".join(str(d) for d in value.shape) + "]"


def check_training_set(train_set: TrainingSet, task: Task, component: str) -> None:
    """Check the first :data:`SAMPLES_CHECKED` samples of ``train_set`` for ``task``."""
    who = f"generator {component!r}"
    n = min(len(train_set), SAMPLES_CHECKED)
    images, labels = [], []
    with torch.random.fork_rng(devices=[]):  # random transforms must not shift training's draws
        samples = [train_set.dataset[i] for i in range(n)]
    for sample in samples:
        if not isinstance(sample, tuple | list) or len(sample) != 2:
            kind = type(sample).__name__
            raise ContractError(f"{who}: a sample must be an (image, label) pair, got {kind}")
        images.append(sample[0])
        labels.append(sample[1])
    for image in images:
        _check_image(image, task, who)
    _check_value_range(images, task, who)
    for label in labels:
        _check_label(label, task, who)


def _check_image(image: Any, task: Task, who: str) -> None:
    if not isinstance(image, torch.Tensor):
        raise ContractError(f"{who}: images must be torch tensors, got {type(image).__name__}")
    expected = tuple(task.input_shape)
    if (
        image.dim() != len(expected)
        or (task.exact_size and tuple(image.shape) != expected)
        or (not task.exact_size and image.shape[0] != expected[0])
    ):
        layout = "C, H, W" if len(expected) == 3 else "the task's layout"
        hint = ""
        if image.dim() == 3 and image.shape[-1] == expected[0] and image.shape[0] != expected[0]:
            hint = " (channels last? images are channels first)"
        wanted = _shape(torch.empty(expected)) if task.exact_size else f"[{expected[0]}, H, W]"
        raise ContractError(
            f"{who}: image shape for task {task.name!r}: expected {wanted} ({layout}), "
            f"got {_shape(image)}{hint}"
        )
    if image.dtype not in (torch.uint8, torch.float32):
        raise ContractError(
            f"{who}: image dtype for task {task.name!r}: expected uint8 (0..255) or float32 "
            f"(in {list(task.value_range)}), got {str(image.dtype).removeprefix('torch.')}"
        )
    if image.dtype == torch.float32 and not bool(torch.isfinite(image).all()):
        raise ContractError(f"{who}: images contain NaN or infinite values")


def _check_value_range(images: list[torch.Tensor], task: Task, who: str) -> None:
    floats = [image for image in images if image.dtype == torch.float32]
    if not floats or task.value_range is None:
        return
    low, high = task.value_range
    lo = min(float(image.min()) for image in floats)
    hi = max(float(image.max()) for image in floats)
    tolerance = 1e-4 * (high - low)
    if lo < low - tolerance or hi > high + tolerance:
        raise ContractError(
            f"{who}: float image values for task {task.name!r}: expected within "
            f"[{low:g}, {high:g}], got [{lo:.4g}, {hi:.4g}]"
        )
    if low < 0 <= lo and len(floats) >= 8:
        # Every value of the first batch non-negative where the task's range reaches below 0:
        # the images are almost surely in [0, 1] (or 0..255 as floats), not [low, high].
        raise ContractError(
            f"{who}: float image values for task {task.name!r}: expected to span "
            f"[{low:g}, {high:g}], got [{lo:.4g}, {hi:.4g}] over the first {len(floats)} images "
            f"(images in [0, 1]? map them with x * {high - low:g} + {low:g}, or give uint8)"
        )


def _check_label(label: Any, task: Task, who: str) -> None:
    """An int, or an integer tensor: one index, or one per head (counterfactual mechanisms)."""
    expected = f"integers in 0..{task.num_classes - 1}"
    if isinstance(label, torch.Tensor):
        if label.dim() > 1 or label.numel() == 0:
            raise ContractError(
                f"{who}: a label must be a class index (or one per head), got a tensor of "
                f"shape {_shape(label)}"
            )
        if label.dtype.is_floating_point or label.dtype == torch.bool:
            raise ContractError(
                f"{who}: labels must be {expected}, got "
                f"{str(label.dtype).removeprefix('torch.')} ({label.flatten()[0].item()!r})"
            )
        values = [int(v) for v in label.flatten().tolist()]
    elif isinstance(label, bool) or not isinstance(label, int):
        raise ContractError(
            f"{who}: labels must be {expected}, got {type(label).__name__} ({label!r})"
        )
    else:
        values = [label]
    for value in values:
        if not 0 <= value < task.num_classes:
            raise ContractError(f"{who}: labels must be {expected}, got {value}")


def check_logits(
    outputs: Any, batch: int, num_classes: int, component: str
) -> Mapping[str, torch.Tensor]:
    """``outputs`` of ``classifier.predict`` on a batch of ``batch`` images: head -> logits."""
    who = f"classifier {component!r}"
    if not isinstance(outputs, Mapping) or not outputs:
        raise ContractError(
            f"{who}: predict() must return a mapping head -> logits (e.g. {{'': logits}}), "
            f"got {type(outputs).__name__}"
        )
    for head, logits in outputs.items():
        name = f"head {head!r}" if head else "the main head"
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (batch, num_classes):
            got = _shape(logits) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ContractError(
                f"{who}: logits of {name}: expected [{batch}, {num_classes}], got {got}"
            )
        dtype = str(logits.dtype).removeprefix("torch.")
        if not logits.dtype.is_floating_point:
            raise ContractError(f"{who}: logits of {name}: expected floats, got {dtype}")
        if not bool(torch.isfinite(logits).all()):
            raise ContractError(f"{who}: logits of {name}: expected finite values, got non-finite")
    return outputs


def check_metric_value(name: str, key: str, value: Any, component: str) -> None:
    """A recorded metric value must be a finite number."""
    label = f"{name}[{key}]" if key else name
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ContractError(
            f"benchmark {component!r}: metric {label}: expected a number, got "
            f"{type(value).__name__}"
        )
    if not math.isfinite(value):
        raise ContractError(
            f"benchmark {component!r}: metric {label}: expected a finite number, got {value}"
        )
