"""The MNIST CGN and DCGAN under the trainable-generator contract (``cgnbench train-generator
-g cgn --task colored-mnist``): their training options and the ``train`` both generators share.

The trainer is :class:`~.training.MnistGeneratorTrainer` (resumable from the checkpoints in the
run folder); the task picks the variant, the run's seed is the training seed, and the exported
``generator.pth`` (+ ``.json``) is what ``--set generator.weights=run:<id>`` loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from robustbench_cgn import RunContext, Task, bounded
from robustbench_cgn.config import options_for
from robustbench_cgn.generator_training import run_trainer

from .tasks import VARIANT_OF_TASK, textures_dir_for
from .training import MnistGeneratorTrainer, TrainConfig, export_generator_weights

SHOWN_LOSSES = ("g_adv", "g_style", "g_binary", "g_edge", "d_total")
EXPORT_FILE = "generator.pth"


@dataclass(frozen=True)
class MnistTraining:
    """Options of an MNIST generator training (see :class:`~.training.TrainConfig`; ``None``
    loss weights take the variant's reference value; ``iterations`` 0: ``epochs`` epochs).
    The CGN-only options are ignored by the DCGAN."""

    iterations: int = bounded(0, min=0, max=10**8)
    epochs: int = bounded(15, min=1, max=10_000)
    batch_size: int = bounded(16, min=1, max=4096)
    mode: Literal["faithful", "improved"] = "faithful"
    data_seed: int = bounded(0, min=0, max=2**31 - 1)
    lambda_binary: float | None = None
    lambda_edge: float | None = None
    lambda_adv: float = bounded(1.0, min=0.0, max=1_000.0)
    style_weights: tuple[float, float, float, float] | None = None
    mask_gradient: Literal["clamp", "straight-through"] = "clamp"
    mechanism_prior: float = bounded(0.0, min=0.0, max=1_000.0)
    mechanism_prior_iterations: int = bounded(2000, min=0, max=10**8)
    texture_init: Literal["default", "data"] = "default"
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: the style loss's VGG (AMX CPUs, CUDA)
    vgg_weights: str = field(default="", metadata={"identity": False})  # its sha256 is logged
    checkpoint_every: int = bounded(1000, min=1, max=10**8, identity=False)
    sample_every: int = bounded(1000, min=1, max=10**8, identity=False)
    log_every: int = bounded(50, min=1, max=10**8, identity=False)


def train_mnist_generator(
    model: Literal["cgn", "dcgan"], task: Task, ctx: RunContext, options: MnistTraining
) -> Path:
    """Train (or resume) in ``ctx.workdir``; export ``generator.pth`` there and return it."""
    config = options_for(
        TrainConfig,
        options,
        model=model,
        variant=VARIANT_OF_TASK[task.name],
        seed=ctx.seed,
        iterations=options.iterations or None,  # 0: `epochs` epochs
    )
    trainer = MnistGeneratorTrainer(
        config,
        ctx.workdir,
        data_dir=ctx.data_dir,
        textures_dir=textures_dir_for(ctx),
        cache_dir=ctx.cache_dir / "mnist",
        vgg_weights=options.vgg_weights or None,
        device=ctx.device,
    )
    summary = run_trainer(
        trainer,
        ctx,
        f"training {model} on {task.name}",
        lambda losses: " ".join(f"{k}={losses[k]:.3f}" for k in SHOWN_LOSSES if k in losses),
    )
    collapse = summary.get("collapse")
    if collapse and collapse.get("any_collapsed"):
        ctx.log(f"warning: mask collapse in classes {collapse['collapsed_classes']}")
    return export_generator_weights(summary["checkpoint"], ctx.workdir / EXPORT_FILE)
