"""The ``original`` generator: a task's own training split, unchanged, for every registered
task that declares one (``Task.splits`` with ``"train"``)."""

from __future__ import annotations

from robustbench_cgn import Generator, RunContext, Task, TrainingSet
from robustbench_cgn.errors import IncompatibleError


class OriginalGenerator(Generator):
    """The training split of the benchmark's task (the paper's "Original" row)."""

    name = "original"
    description = "the task's original training data (Table 3 'Original')"
    version = "0.1.0"
    tasks = ("any task with a train split",)

    @classmethod
    def supports(cls, task: Task) -> bool:
        return "train" in task.splits and task.loader is not None

    def identity(self, task: Task, ctx: RunContext) -> dict:
        return task.identity(ctx)

    def sample_with_masks(self, task: Task, ctx: RunContext, n: int):
        """The first ``n`` training images with their binarised digit masks (the reference
        point of mask statistics: real shapes are perfectly binary). MNIST tasks only."""
        from .mnist.tasks import VARIANT_OF_TASK, variant_split

        if task.name not in VARIANT_OF_TASK:
            raise IncompatibleError(f"original: task {task.name!r} has no digit masks")
        data = variant_split(task, "train", ctx, seed=ctx.seed)
        return data.images[:n], data.labels[:n], data.masks[:n].float()

    def generate(self, task: Task, ctx: RunContext) -> TrainingSet:
        return task.load("train", ctx, seed=ctx.seed)
