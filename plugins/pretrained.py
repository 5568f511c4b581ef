"""The ``pretrained`` generator: no training data, the classifier is evaluated as it comes.

ImageNet benchmarks score classifiers with pretrained weights (``mobilenet_v2-coral``,
``timm:<name>``, a trained ``cgn-ensemble`` checkpoint); this generator says so explicitly, so a
run's identity and leaderboard row read "pretrained" rather than pretending to train.
"""

from __future__ import annotations

from robustbench_cgn import Generator, RunContext, Task
from robustbench_cgn_plugins.imagenet.tasks import IMAGENET_TASK


class PretrainedGenerator(Generator):
    name = "pretrained"
    description = "no training data: evaluate the classifier's pretrained weights as they are"
    version = "0.1.0"
    tasks = (IMAGENET_TASK.name,)

    def generate(self, task: Task, ctx: RunContext) -> None:
        return None
