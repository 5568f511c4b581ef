"""The ``original`` generator: a task's own training data, unchanged."""

from __future__ import annotations

from robustbench_cgn import Generator, RunContext, Task, TrainingSet

from .mnist.tasks import MNIST_TASK_NAMES, as_dataset, mnist_for, variant_split


class OriginalGenerator(Generator):
    """The training split of the benchmark's dataset (the paper's "Original" row)."""

    name = "original"
    description = "the task's original training data (Table 3 'Original')"
    version = "0.1.0"
    tasks = MNIST_TASK_NAMES

    def identity(self, task: Task, ctx: RunContext) -> dict:
        return {"source": mnist_for(ctx).source}

    def sample_with_masks(self, task: Task, ctx: RunContext, n: int):
        """The first ``n`` training images with their binarised digit masks (the reference
        point of mask statistics: real shapes are perfectly binary)."""
        data = variant_split(task, "train", ctx, seed=ctx.seed)
        return data.images[:n], data.labels[:n], data.masks[:n].float()

    def generate(self, task: Task, ctx: RunContext) -> TrainingSet:
        data = variant_split(task, "train", ctx, seed=ctx.seed)
        provenance = {
            key: data.meta[key]
            for key in ("variant", "split", "seed", "n", "mnist_source", "mnist_range")
        }
        return TrainingSet(
            as_dataset(data), task.num_classes, {"source": data.meta["mnist_source"], **provenance}
        )
