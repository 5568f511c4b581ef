"""``cgnbench train-mnist-generator``: train an MNIST CGN or DCGAN into a folder of your choice,
resumably, and export its weights (``cgnbench train-generator -g cgn --task colored-mnist`` does
the same as a run recorded in the results store).

Registered through the ``register_commands`` hook of the built-in generators plugin, the same
way a third-party plugin adds a command.
"""

from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console

from robustbench_cgn.commands import (
    Choice,
    PathType,
    comma_floats,
    command,
    option,
    run_with_progress,
    speed_text,
)

from .training import VARIANTS, MnistGeneratorTrainer, TrainConfig, export_generator_weights

SHOWN_LOSSES = ("g_adv", "g_style", "g_binary", "g_edge", "d_total")


@command("train-mnist-generator")
@option("--model", type=Choice(("cgn", "dcgan")), required=True)
@option("--variant", type=Choice(VARIANTS), required=True)
@option(
    "--data-dir",
    required=True,
    type=PathType(file_okay=False),
    help="MNIST root (torchvision layout <dir>/MNIST/raw).",
)
@option(
    "--out",
    required=True,
    type=PathType(file_okay=False),
    help="Run folder; training resumes from its latest checkpoint.",
)
@option("--iterations", type=int, default=None, help="Default: --epochs epochs.")
@option("--epochs", type=int, default=15, show_default=True)
@option(
    "--mode",
    type=Choice(("faithful", "improved")),
    default="faithful",
    show_default=True,
    help="faithful keeps the reference quirks; see training.py.",
)
@option(
    "--vgg-weights",
    default=None,
    help="VGG16 features state dict (CGN style loss); also $CGNBENCH_VGG16_WEIGHTS.",
)
@option(
    "--textures-dir", default=None, help="W-MNIST textures; default <data-dir>/wmnist_textures."
)
@option("--checkpoint-every", type=int, default=1000, show_default=True)
@option("--sample-every", type=int, default=1000, show_default=True)
@option("--log-every", type=int, default=50, show_default=True)
@option("--seed", type=int, default=0, show_default=True)
@option(
    "--data-seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the variant's colours/textures.",
)
@option("--batch-size", type=int, default=16, show_default=True)
@option("--lambda-binary", type=float, default=None)
@option("--lambda-edge", type=float, default=None)
@option("--lambda-adv", type=float, default=1.0, show_default=True, help="0 ablates the GAN loss.")
@option(
    "--mask-gradient",
    type=Choice(["clamp", "straight-through"]),
    default="clamp",
    show_default=True,
    help="CGN: clamp = the reference (no gradient where the mask is clamped); "
    "straight-through = same masks, gradients pass the clamp (experimental).",
)
@option(
    "--mechanism-prior",
    type=float,
    default=0.0,
    show_default=True,
    help="CGN warm-up against mask collapse: weight (at iteration 0, falling linearly to 0) of "
    "pulling mask, foreground and background towards the real class's mean digit and "
    "colours; 0 = off (the reference).",
)
@option(
    "--mechanism-prior-iterations",
    type=int,
    default=2000,
    show_default=True,
    help="Length of the CGN warm-up in iterations.",
)
@option(
    "--texture-init",
    type=Choice(["default", "data"]),
    default="default",
    show_default=True,
    help="CGN: data = start the texture mechanisms at the real mean digit/background colours "
    "(bias of their last BatchNorm); default = the reference's init.",
)
@option(
    "--precision",
    type=Choice(["fp32", "bf16"]),
    default="fp32",
    show_default=True,
    help="CGN: bf16 runs the style loss's VGG under bf16 autocast (fast on AMX / AVX-512 BF16 "
    "CPUs and CUDA; slow on AVX2-only CPUs).",
)
@option(
    "--style-weights",
    callback=comma_floats,
    default=None,
    help="Four comma-separated weights (relu1_2, 2_2, 3_3, 4_3).",
)
@option("--threads", type=int, default=None, help="torch.set_num_threads.")
@option("--device", default="cpu", show_default=True)
@option("--no-export", is_flag=True, help="Skip generator.pth at the end.")
def train_generator_command(
    model,
    variant,
    data_dir,
    out,
    iterations,
    epochs,
    mode,
    vgg_weights,
    textures_dir,
    checkpoint_every,
    sample_every,
    log_every,
    seed,
    data_seed,
    batch_size,
    lambda_binary,
    lambda_edge,
    lambda_adv,
    mask_gradient,
    mechanism_prior,
    mechanism_prior_iterations,
    texture_init,
    precision,
    style_weights,
    threads,
    device,
    no_export,
) -> None:
    """Train an MNIST CGN or the DCGAN baseline into --out; rerun the same command to resume
    (`train-generator` trains as a recorded run instead).

    Writes checkpoints, sample grids, a loss/mask-collapse log and, at the end,
    generator.pth (+ .json with config, data provenance and this command) into --out.
    """
    console = Console(stderr=True)
    if threads:
        torch.set_num_threads(threads)
    config = TrainConfig(
        model=model,
        variant=variant,
        mode=mode,
        iterations=iterations,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        data_seed=data_seed,
        lambda_binary=lambda_binary,
        lambda_edge=lambda_edge,
        lambda_adv=lambda_adv,
        mask_gradient=mask_gradient,
        mechanism_prior=mechanism_prior,
        mechanism_prior_iterations=mechanism_prior_iterations,
        texture_init=texture_init,
        precision=precision,
        style_weights=style_weights,
        checkpoint_every=checkpoint_every,
        sample_every=sample_every,
        log_every=log_every,
    )
    trainer = MnistGeneratorTrainer(
        config,
        out,
        data_dir=data_dir,
        textures_dir=textures_dir,
        vgg_weights=vgg_weights,
        device=device,
    )

    def status(losses: dict[str, float]) -> str:
        return " ".join(f"{k}={losses[k]:.3f}" for k in SHOWN_LOSSES if k in losses)

    summary = run_with_progress(
        trainer, console, f"{model} {variant}", total=trainer.config.iterations, status=status
    )
    if not no_export:
        exported = export_generator_weights(summary["checkpoint"], Path(out) / "generator.pth")
        console.print(f"exported {exported} and {exported.with_suffix('.json')}")
    console.print(f"done: {summary['iteration']} iterations{speed_text(summary)}")
    collapse = summary.get("collapse")
    if collapse and collapse["any_collapsed"]:
        console.print(f"[yellow]mask collapse in classes {collapse['collapsed_classes']}")
