"""Train an MNIST CGN or the conditional DCGAN baseline, resuming from ``--out`` if possible.

Example (the colored CGN, reference settings, 56,250 iterations = 15 epochs of 60k images)::

    python scripts/train_mnist_generator.py --model cgn --variant colored \\
        --data-dir ../shared/data --out runs/cgn-colored --threads 2

Rerunning the same command after an interruption continues from the newest checkpoint in
``--out`` (bitwise identical to an uninterrupted run on CPU with the same thread count). At the
end ``<out>/generator.pth`` (the generator's state dict alone) and ``<out>/generator.json``
(config, data provenance, VGG hash, iterations, reproducing command) are written. See
``robustbench_cgn_plugins.mnist.training`` for the recipe.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from robustbench_cgn.errors import CGNBenchError
from robustbench_cgn_plugins.mnist.training import (
    VARIANTS,
    MnistGeneratorTrainer,
    TrainConfig,
    export_generator_weights,
)

SHOWN = ("g_adv", "g_style", "g_binary", "g_edge", "d_total")


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("cgn", "dcgan"), required=True)
    p.add_argument("--variant", choices=VARIANTS, required=True)
    p.add_argument("--data-dir", required=True, help="MNIST root (torchvision layout)")
    p.add_argument("--out", required=True, help="run folder (resumed if it has a checkpoint)")
    p.add_argument("--iterations", type=int, default=None, help="default: 15 epochs")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--mode", choices=("faithful", "improved"), default="faithful")
    p.add_argument("--vgg-weights", default=None, help="VGG16 features state dict (CGN)")
    p.add_argument("--textures-dir", default=None, help="default: <data-dir>/wmnist_textures")
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--sample-every", type=int, default=1000)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-seed", type=int, default=0, help="seed of the variant's colours")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lambda-binary", type=float, default=None)
    p.add_argument("--lambda-edge", type=float, default=None)
    p.add_argument("--style-weights", type=_floats, default=None, help="4 comma-separated")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-export", action="store_true", help="skip generator.pth at the end")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(
        model=args.model,
        variant=args.variant,
        mode=args.mode,
        iterations=args.iterations,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        data_seed=args.data_seed,
        lambda_binary=args.lambda_binary,
        lambda_edge=args.lambda_edge,
        style_weights=args.style_weights,
        checkpoint_every=args.checkpoint_every,
        sample_every=args.sample_every,
        log_every=args.log_every,
    )
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[losses]}"),
    )
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task(f"{args.model} {args.variant}", total=None, losses="")

            def on_step(iteration: int, losses: dict[str, float]) -> None:
                shown = " ".join(f"{k}={losses[k]:.3f}" for k in SHOWN if k in losses)
                progress.update(task, completed=iteration, losses=shown)

            trainer = MnistGeneratorTrainer(
                config,
                args.out,
                data_dir=args.data_dir,
                textures_dir=args.textures_dir,
                vgg_weights=args.vgg_weights,
                on_step=on_step,
                device=args.device,
            )
            if trainer.resumed_from is not None:
                console.print(f"resuming from {trainer.resumed_from} (it {trainer.iteration})")
            progress.update(task, total=trainer.config.iterations, completed=trainer.iteration)
            summary = trainer.run()
        if not args.no_export:
            out = export_generator_weights(summary["checkpoint"], Path(args.out) / "generator.pth")
            console.print(f"exported {out} and {out.with_suffix('.json')}")
    except CGNBenchError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    per_it = summary["seconds_per_iteration"]
    speed = f", {per_it:.3f} s/iteration" if per_it else ""
    console.print(f"done: {summary['iteration']} iterations{speed}")
    collapse = summary.get("collapse")
    if collapse and collapse["any_collapsed"]:
        console.print(f"[yellow]mask collapse in classes {collapse['collapsed_classes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
