"""The ImageNet CGN under the trainable-generator contract (``cgnbench train-generator -g cgn
--task imagenet``): its training options and ``train``, on :class:`~.training.ImageNetCGNTrainer`.

The pretrained inputs (BigGAN-deep, U2-Net, VGG16) are found by the resolver unless a file is
named; ``weights=random`` trains seeded random networks (plumbing tests, no files). The export
``cgn_imagenet.pth`` (+ ``.json``) is what ``--set generator.weights=run:<id>`` loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from robustbench_cgn import CGNBenchError, RunContext, Task, bounded
from robustbench_cgn.config import options_for
from robustbench_cgn.generator_training import run_trainer

from .training import EXPORT_FILE, ImageNetCGNTrainer, TrainConfig, export_cgn_weights

SHOWN_LOSSES = ("shape", "texture", "background", "reconstruction")


@dataclass(frozen=True)
class ImageNetTraining:
    """Options of an ImageNet CGN training (:class:`~.training.TrainConfig`); the counts 0
    take the preset's value (``faithful``: the authors' code; ``paper``: the paper's)."""

    preset: Literal["faithful", "paper"] = "faithful"
    architecture: Literal["deep_256", "deep_128", "tiny"] = "deep_256"
    weights: Literal["pretrained", "random"] = "pretrained"
    u2net_variant: Literal["full", "small"] = "full"
    truncation: float = bounded(1.0, above=0.0, max=1.0)
    precision: Literal["fp32", "bf16"] = "fp32"
    batch_size: int = bounded(0, min=0, max=4096)
    accumulation: int = bounded(0, min=0, max=10**6)
    episodes: int = bounded(0, min=0, max=10**7)
    biggan_weights: str = field(default="", metadata={"identity": False})  # hashes are logged
    u2net_weights: str = field(default="", metadata={"identity": False})
    vgg_weights: str = field(default="", metadata={"identity": False})
    checkpoint_every: int = bounded(4000, min=1, max=10**9, identity=False)
    keep_checkpoints: int = bounded(1, min=1, max=1000, identity=False)
    sample_every: int = bounded(4000, min=1, max=10**9, identity=False)
    log_every: int = bounded(100, min=1, max=10**9, identity=False)


def train_imagenet_cgn(task: Task, ctx: RunContext, options: ImageNetTraining) -> Path:
    """Train (or resume) in ``ctx.workdir``; export ``cgn_imagenet.pth`` and return it."""
    presets = {k: getattr(options, k) or None for k in ("batch_size", "accumulation", "episodes")}
    config = options_for(TrainConfig, options, seed=ctx.seed, **presets)  # 0: the preset's
    trainer = ImageNetCGNTrainer(
        config,
        ctx.workdir,
        biggan_weights=options.biggan_weights or None,
        u2net_weights=options.u2net_weights or None,
        vgg_weights=options.vgg_weights or None,
        data_dir=ctx.data_dir,
        device=ctx.device,
        command=["cgnbench", "train-generator", "-g", "cgn-imagenet", "--task", task.name],
    )
    summary = run_trainer(
        trainer,
        ctx,
        f"training cgn-imagenet ({options.architecture})",
        lambda losses: " ".join(f"{k[:5]}={losses[k]:.3g}" for k in SHOWN_LOSSES if k in losses),
    )
    if not summary["finished"]:
        raise CGNBenchError(f"the training stopped at iteration {summary['iteration']}")
    return export_cgn_weights(trainer, ctx.workdir / EXPORT_FILE)
