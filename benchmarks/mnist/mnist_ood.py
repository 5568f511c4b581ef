"""Colored, Double-colored and Wildlife MNIST: accuracy when the spurious cue is broken.

Table 3 of the CGN paper: the classifier is trained on a generator's data (original,
GAN, CGN, O + GAN, O + CGN via ``--generator``/``--mix``) and tested on a split whose
colours/textures are independent of the digit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import TensorDataset

from robustbench_cgn import (
    Benchmark,
    Classifier,
    MetricResult,
    MetricSpec,
    RunContext,
    Task,
    accuracy,
    bounded,
    predict_dataset,
)
from robustbench_cgn.data.batching import IndexedTensors
from robustbench_cgn_plugins.mnist.tasks import (
    MNIST_DATASET,
    TASKS,
    TEXTURES_DATASET,
    as_dataset,
    variant_split,
)

TEST_PROTOCOL = "cgn-table3: OOD test split, attributes drawn independently of the label"
TRAIN_PROTOCOL = "accuracy on the training data used (a fixed subset of up to train_eval_n)"


class MnistOODBenchmark(Benchmark):
    """Table 3's OOD accuracy on an MNIST variant; registered as the presets ``c-mnist``,
    ``dc-mnist``, ``w-mnist`` (:data:`MNIST_OOD_PRESETS`)."""

    default_classifier = "mnist-cnn"
    metrics = (
        MetricSpec("test_acc", True, TEST_PROTOCOL, "OOD test accuracy (%)", main=True),
        MetricSpec("train_acc", True, TRAIN_PROTOCOL, "accuracy (%) on the training data"),
    )
    datasets = (MNIST_DATASET,)

    @dataclass(frozen=True)
    class Config:
        test_seed: int = bounded(0, min=0, max=2**31 - 1)
        train_eval_n: int = bounded(10_000, min=1, max=10**7)
        batch_size: int = bounded(1_000, min=1, max=65_536)

    def identity(self, task: Task, ctx: RunContext) -> dict:
        # the task's data identity: the MNIST source and, where it is above 1, the version of
        # the variant's build rules (the test split changes with them)
        return {**task.identity(ctx), "test_seed": self.config.test_seed}

    def evaluate(self, classifier: Classifier, ctx: RunContext) -> Iterator[MetricResult]:
        if ("test_acc", "") not in ctx.recorded_metrics:
            test = variant_split(self.task, "test", ctx, seed=self.config.test_seed)
            predictions = predict_dataset(
                classifier,
                as_dataset(test),
                ctx,
                batch_size=self.config.batch_size,
                description=f"{self.name} OOD test",
            )
            logits, targets = predictions.logits[""], predictions.targets
            yield MetricResult(
                "test_acc", 100 * accuracy(logits, targets), n=len(targets), protocol=TEST_PROTOCOL
            )
            for digit in range(self.task.num_classes):
                chosen = targets == digit
                yield MetricResult(
                    "test_acc",
                    100 * accuracy(logits[chosen], targets[chosen]),
                    n=int(chosen.sum()),
                    protocol=TEST_PROTOCOL,
                    key=f"class{digit}",
                )
        if ctx.train_set is not None and ("train_acc", "") not in ctx.recorded_metrics:
            data = IndexedTensors.from_dataset(ctx.train_set.dataset)
            chosen = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
            subset = TensorDataset(*data.gather(chosen[: self.config.train_eval_n].sort().values))
            predictions = predict_dataset(
                classifier,
                subset,
                ctx,
                batch_size=self.config.batch_size,
                description=f"{self.name} train accuracy",
            )
            yield MetricResult(
                "train_acc",
                100 * accuracy(predictions.logits[""], predictions.targets),
                n=len(predictions),
                protocol=TRAIN_PROTOCOL,
            )


WILDLIFE_DATASETS = (MNIST_DATASET, TEXTURES_DATASET)

#: name -> class attributes of each registered preset of the family (benchmarks/__init__.py)
MNIST_OOD_PRESETS = {
    "c-mnist": {"task": TASKS["colored"], "description": "Colored MNIST (Table 3)"},
    "dc-mnist": {"task": TASKS["double-colored"], "description": "Double-colored MNIST (Table 3)"},
    "w-mnist": {
        "task": TASKS["wildlife"],
        "description": "Wildlife MNIST (Table 3)",
        "datasets": WILDLIFE_DATASETS,
    },
}
