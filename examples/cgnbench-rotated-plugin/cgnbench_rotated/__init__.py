"""Rotated Colored MNIST: a new task, a generator and a benchmark, written with the names that
``robustbench_cgn`` exports and nothing else.

* task ``rotated-colored-mnist``: Colored MNIST (read through ``get_task``) turned 90 degrees;
* generator ``gaussian-noise``: any task's own training split plus Gaussian pixel noise;
* benchmark ``c-mnist-rotated``: accuracy on the rotated test split (the colours there are
  drawn at random, as in Colored MNIST's test split).

    cgnbench list rotated*
    cgnbench run -g gaussian-noise -b c-mnist-rotated --set classifier.epochs=1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import TensorDataset

from robustbench_cgn import (
    Benchmark,
    Generator,
    MetricResult,
    MetricSpec,
    RunContext,
    Task,
    TrainingSet,
    accuracy,
    get_task,
    hookimpl,
    predict_dataset,
)

__version__ = "1.0.0"


def _tensors(data: TrainingSet) -> tuple[torch.Tensor, torch.Tensor]:
    """All (images, labels) of a training set as two tensors."""
    images, labels = zip(*(data.dataset[i] for i in range(len(data))), strict=True)
    return torch.stack(images), torch.as_tensor([int(y) for y in labels])


def _load_rotated(split: str, ctx: RunContext, seed: int) -> TrainingSet:
    base = get_task("colored-mnist", ctx).load(split, ctx, seed)
    images, labels = _tensors(base)
    rotated = torch.rot90(images, k=1, dims=(-2, -1)).contiguous()
    provenance = {**base.provenance, "rotation_degrees": 90}
    return TrainingSet(TensorDataset(rotated, labels), base.num_classes, provenance)


def _rotated_identity(ctx: RunContext) -> dict:
    return {**get_task("colored-mnist", ctx).identity(ctx), "rotation_degrees": 90}


ROTATED = Task(
    "rotated-colored-mnist",
    10,
    (3, 32, 32),
    family="mnist",
    description="Colored MNIST turned 90 degrees (colour tied to the class in training)",
    value_range=(-1.0, 1.0),
    classes=tuple(str(d) for d in range(10)),
    splits=("train", "test"),
    loader=_load_rotated,
    data_identity=_rotated_identity,
)


class GaussianNoise(Generator):
    """A task's own training split with N(0, sigma^2) noise on the [-1, 1] pixel values."""

    name = "gaussian-noise"
    description = "the task's training split plus Gaussian pixel noise"
    version = __version__
    tasks = ("any task with a train split and a [-1, 1] float range",)

    @dataclass(frozen=True)
    class Config:
        sigma: float = 0.2

        def __post_init__(self):
            if not 0.0 <= self.sigma <= 2.0:
                raise ValueError("sigma must be within [0, 2]")

    @classmethod
    def supports(cls, task: Task) -> bool:
        return "train" in task.splits and task.value_range == (-1.0, 1.0)

    def identity(self, task: Task, ctx: RunContext) -> dict:
        return task.identity(ctx)

    def generate(self, task: Task, ctx: RunContext) -> TrainingSet:
        base = task.load("train", ctx, ctx.seed)
        images, labels = _tensors(base)
        if images.dtype == torch.uint8:
            images = images.float() / 127.5 - 1  # the task's float convention
        noise = torch.randn(images.shape, generator=ctx.generator(7)) * self.config.sigma
        noisy = (images + noise).clamp(-1.0, 1.0)
        provenance = {**base.provenance, "noise_sigma": self.config.sigma}
        return TrainingSet(TensorDataset(noisy, labels), task.num_classes, provenance)


class RotatedColoredMNIST(Benchmark):
    name = "c-mnist-rotated"
    description = "Colored MNIST turned 90 degrees: accuracy on the test split (random colours)"
    version = __version__
    task = ROTATED
    default_classifier = "mnist-cnn"
    metrics = (MetricSpec("test_acc", True, "rotated C-MNIST test split, top-1", main=True),)

    @dataclass(frozen=True)
    class Config:
        batch_size: int = 1000

    def identity(self, task: Task, ctx: RunContext) -> dict:
        return task.identity(ctx)

    def evaluate(self, classifier, ctx: RunContext):
        test = self.task.load("test", ctx, seed=0)
        predictions = predict_dataset(
            classifier, test.dataset, ctx, batch_size=self.config.batch_size
        )
        targets = predictions.targets
        yield MetricResult(
            "test_acc", 100 * accuracy(predictions.logits[""], targets), n=len(targets)
        )


@hookimpl
def register_tasks(registry):
    registry.add(ROTATED)


@hookimpl
def register_generators(registry):
    registry.add(GaussianNoise)


@hookimpl
def register_benchmarks(registry):
    registry.add(RotatedColoredMNIST)
