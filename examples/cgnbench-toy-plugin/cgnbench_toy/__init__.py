"""An example third-party cgnbench plugin (see docs/writing-a-plugin.md).

The toy task has a real cause and a spurious cue, like Colored MNIST in miniature:
an 8x8 one-channel image shows a bright square in the quadrant given by its class (the
"shape"); its overall brightness is the spurious cue. In the training data made by the
``toy-blobs`` generator the brightness predicts the class with probability ``spurious``;
in the ``toy-shift`` benchmark's test set it is random. A classifier that learnt the cue
does well in distribution and badly out of distribution.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
from torch.utils.data import TensorDataset

from robustbench_cgn import (
    Benchmark,
    Classifier,
    Generator,
    MetricResult,
    MetricSpec,
    RunContext,
    Task,
    TrainingSet,
    accuracy,
    hookimpl,
    predict_dataset,
)

__version__ = "1.0.0"

TOY_TASK = Task(
    name="toy-shift",
    num_classes=4,
    input_shape=(1, 8, 8),
    family="toy",
    description="quadrant squares with a spurious brightness cue",
)


def make_toy_images(n: int, spurious: float, generator: torch.Generator):
    """``n`` images of the toy task: (images [n,1,8,8], labels [n])."""
    labels = torch.randint(0, 4, (n,), generator=generator)
    images = 0.3 * torch.randn(n, 1, 8, 8, generator=generator)
    rows, cols = (labels // 2) * 4, (labels % 2) * 4
    for offset_r in range(1, 3):
        for offset_c in range(1, 3):
            images[torch.arange(n), 0, rows + offset_r, cols + offset_c] += 1.0
    tied = torch.rand(n, generator=generator) < spurious
    cue_class = torch.where(tied, labels, torch.randint(0, 4, (n,), generator=generator))
    images += (cue_class.float() - 1.5).view(n, 1, 1, 1) * 0.8
    return images, labels


class ToyBlobs(Generator):
    name = "toy-blobs"
    description = "toy training data whose brightness is a spurious cue"
    version = "1.0.0"
    tasks = ("toy-*",)

    @dataclass(frozen=True)
    class Config:
        n: int = 2000
        spurious: float = 1.0

        def __post_init__(self):
            if not 0.0 <= self.spurious <= 1.0:
                raise ValueError("spurious must be within [0, 1]")
            if self.n <= 0:
                raise ValueError("n must be positive")

    def identity(self, task, ctx):
        return {"source": "toy-synthetic"}

    def generate(self, task: Task, ctx: RunContext) -> TrainingSet:
        images, labels = make_toy_images(self.config.n, self.config.spurious, ctx.generator(1))
        return TrainingSet(
            TensorDataset(images, labels),
            task.num_classes,
            {"source": "toy-synthetic", "spurious": self.config.spurious},
        )


class ToyLinear(Classifier):
    name = "toy-linear"
    description = "a linear softmax classifier with per-epoch checkpoints"
    version = "1.0.0"
    tasks = ("toy-*",)

    @dataclass(frozen=True)
    class Config:
        epochs: int = 5
        lr: float = 0.5
        seconds_per_epoch: float = 0.0  # lets tests interrupt a run mid-training

    def build(self, task: Task, ctx: RunContext) -> None:
        torch.manual_seed(ctx.seed)
        self.model = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(64, task.num_classes)
        ).to(ctx.device)

    def fit(self, train_set: TrainingSet, ctx: RunContext) -> None:
        optimizer = torch.optim.SGD(self.model.parameters(), lr=self.config.lr)
        start = 0
        state = ctx.checkpoints.load("toy-linear")
        if state is not None:
            self.model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start = state["epoch"]
            ctx.log(f"resuming training from epoch {start}")
        images, labels = (t.to(ctx.device) for t in train_set.dataset.tensors)
        log = ctx.workdir / "epochs.log"
        # Under torchrun: DDP, each rank takes its part of every batch of 100 and the loss
        # whose all-reduced gradient is the batch mean's. In one process: the model, the
        # whole batch and the plain mean loss.
        dist = ctx.distributed
        model = dist.wrap(self.model)
        with ctx.progress.task(
            "training toy-linear", total=self.config.epochs, completed=start
        ) as bar:
            for epoch in range(start, self.config.epochs):
                for batch in torch.arange(len(labels)).split(100):
                    part = dist.shard_batch(batch)
                    loss = dist.batch_loss(
                        torch.nn.functional.cross_entropy,
                        model(images[part]),
                        labels[part],
                        len(batch),
                    )
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                time.sleep(self.config.seconds_per_epoch)
                ctx.checkpoints.save(
                    "toy-linear",
                    {
                        "model": self.model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "epoch": epoch + 1,
                    },
                )
                if ctx.is_main:  # checkpoints are saved by the main process only, too
                    with log.open("a") as handle:
                        handle.write(f"{epoch + 1}\n")
                bar.update(1, status=f"loss {loss.item():.3f}")

    def predict(self, images: torch.Tensor) -> Mapping[str, torch.Tensor]:
        return {"": self.model(images)}


class ToyShift(Benchmark):
    name = "toy-shift"
    description = "accuracy when the spurious brightness cue is decorrelated"
    version = "1.0.0"
    task = TOY_TASK
    default_classifier = "toy-linear"
    metrics = (
        MetricSpec(
            "ood_acc", True, "toy: brightness random", "accuracy (%) out of distribution", main=True
        ),
        MetricSpec("iid_acc", True, "toy: brightness tied", "accuracy (%) in distribution"),
    )

    @dataclass(frozen=True)
    class Config:
        n_test: int = 1000
        seconds_between_metrics: float = 0.0  # lets tests interrupt a run mid-evaluation

    def identity(self, task, ctx):
        return {"source": "toy-synthetic"}

    def evaluate(self, classifier: Classifier, ctx: RunContext) -> Iterator[MetricResult]:
        protocols = {spec.name: spec.protocol for spec in self.metrics}
        for metric, spurious, stream in (("iid_acc", 1.0, 101), ("ood_acc", 0.0, 102)):
            if (metric, "") in ctx.recorded_metrics:
                continue
            if metric == "ood_acc":
                time.sleep(self.config.seconds_between_metrics)
            images, labels = make_toy_images(
                self.config.n_test, spurious, torch.Generator().manual_seed(stream)
            )
            predictions = predict_dataset(
                classifier, TensorDataset(images, labels), ctx, description=f"toy-shift {metric}"
            )
            yield MetricResult(
                metric,
                100 * accuracy(predictions.logits[""], labels),
                n=len(labels),
                protocol=protocols[metric],
            )


@hookimpl
def register_generators(registry):
    registry.add(ToyBlobs)


@hookimpl
def register_classifiers(registry):
    registry.add(ToyLinear)


@hookimpl
def register_benchmarks(registry):
    registry.add(ToyShift)
