"""CLI commands of the ImageNet CGN: ``train-cgn-imagenet``, ``generate-cgn-imagenet`` and
``ablate-cgn-imagenet`` (registered through the built-in generators plugin's
``register_commands`` hook)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from robustbench_cgn.commands import (
    BadParameter,
    Choice,
    PathType,
    argument,
    comma_floats,
    command,
    option,
    run_with_progress,
    speed_text,
)
from robustbench_cgn.device import resolve_device
from robustbench_cgn.progress import ProgressReporter

from .ablation import ABLATIONS, PUBLISHED, ablation_metrics
from .cgn_model import ARCHITECTURES, U2NET_VARIANTS
from .generation import MODES, write_counterfactual_dataset
from .losses import LOSS_GROUPS, LOSS_TERMS
from .training import EXPORT_FILE, PRESETS, ImageNetCGNTrainer, TrainConfig, export_cgn_weights
from .weights import load_cgn_weights, random_cgn

SHOWN_LOSSES = ("reconstruction", "perceptual", "binary", "mask", "texture", "background")


def _names(_ctx, _param, text: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (text or "").split(",") if v.strip())


@command("train-cgn-imagenet")
@option(
    "--out",
    required=True,
    type=PathType(file_okay=False),
    help="Run folder; training resumes from its latest checkpoint.",
)
@option(
    "--preset",
    type=Choice(tuple(PRESETS)),
    default="faithful",
    show_default=True,
    help="faithful: the reference's effective defaults; paper: the paper's stated values.",
)
@option("--architecture", type=Choice(ARCHITECTURES), default="deep_256")
@option("--biggan-weights", default=None, help="pytorch_model.bin of biggan-deep-<res>.")
@option("--u2net-weights", default=None, help="u2net.pth.")
@option("--vgg-weights", default=None, help="VGG16 features state dict.")
@option(
    "--data-dir",
    default=None,
    type=PathType(file_okay=False),
    help="Also searched for biggan/<name>/, u2net/u2net.pth, vgg16/<file>.",
)
@option(
    "--random-weights",
    is_flag=True,
    help="Seeded random BigGAN/U2-Net/VGG instead of the files (smoke tests only).",
)
@option("--u2net-variant", type=Choice(U2NET_VARIANTS), default="full")
@option("--truncation", type=float, default=1.0, show_default=True)
@option("--batch-size", type=int, default=None, help="Default: the preset's (1).")
@option("--accumulation", type=int, default=None, help="Default: the preset's (4000).")
@option("--episodes", type=int, default=None, help="Optimizer steps; preset: 300.")
@option("--lr-shape", type=float, default=None)
@option("--lr-texture", type=float, default=None)
@option("--lr-background", type=float, default=None)
@option(
    "--perceptual-weights", callback=comma_floats, default=None, help="Four comma-separated values."
)
@option(
    "--without",
    callback=_names,
    default="",
    help=f"Comma-separated losses to switch off: groups {', '.join(LOSS_GROUPS)} or terms "
    f"{', '.join(LOSS_TERMS)} (the loss ablation).",
)
@option("--seed", type=int, default=0, show_default=True)
@option("--device", default="auto", show_default=True)
@option(
    "--precision",
    type=Choice(("fp32", "bf16")),
    default=None,
    help="Default: bf16 on CUDA, fp32 on the CPU.",
)
@option("--threads", type=int, default=None, help="torch.set_num_threads.")
@option("--checkpoint-every", type=int, default=4000, show_default=True)
@option("--keep-checkpoints", type=int, default=1, show_default=True)
@option("--sample-every", type=int, default=4000, show_default=True)
@option("--log-every", type=int, default=100, show_default=True)
@option(
    "--stop-after", type=int, default=None, help="Stop (and checkpoint) after N iterations."
)
@option("--no-export", is_flag=True, help=f"Skip {EXPORT_FILE} at the end.")
def train_cgn_imagenet_command(
    out,
    preset,
    architecture,
    biggan_weights,
    u2net_weights,
    vgg_weights,
    data_dir,
    random_weights,
    u2net_variant,
    truncation,
    batch_size,
    accumulation,
    episodes,
    lr_shape,
    lr_texture,
    lr_background,
    perceptual_weights,
    without,
    seed,
    device,
    precision,
    threads,
    checkpoint_every,
    keep_checkpoints,
    sample_every,
    log_every,
    stop_after,
    no_export,
) -> None:
    """Train the ImageNet CGN (three BigGAN-deep mechanisms, U2-Net masks); rerun the same
    command to resume. Writes checkpoints, sample sheets, train_log.jsonl and, when training is
    finished, cgn_imagenet.pth (+ .json) into --out."""
    console = Console(stderr=True)
    if threads:
        torch.set_num_threads(threads)
    torch_device = resolve_device(device)
    if precision is None:
        precision = "bf16" if torch_device.type == "cuda" else "fp32"
    off = set(without)
    losses = tuple(
        t for t in LOSS_TERMS if t not in off and not any(t in LOSS_GROUPS[g] for g in off)
    )
    unknown = off - set(LOSS_TERMS) - set(LOSS_GROUPS)
    if unknown:
        raise BadParameter(f"unknown losses {sorted(unknown)}", param_hint="--without")
    config = TrainConfig(
        preset=preset,
        architecture=architecture,
        weights="random" if random_weights else "pretrained",
        u2net_variant=u2net_variant,
        truncation=truncation,
        seed=seed,
        precision=precision,
        losses=losses,
        batch_size=batch_size,
        accumulation=accumulation,
        episodes=episodes,
        lr_shape=lr_shape,
        lr_texture=lr_texture,
        lr_background=lr_background,
        perceptual_weights=perceptual_weights,
        checkpoint_every=checkpoint_every,
        keep_checkpoints=keep_checkpoints,
        sample_every=sample_every,
        log_every=log_every,
    )
    trainer = ImageNetCGNTrainer(
        config,
        out,
        biggan_weights=biggan_weights,
        u2net_weights=u2net_weights,
        vgg_weights=vgg_weights,
        data_dir=data_dir,
        device=torch_device,
        command=["cgnbench", *sys.argv[1:]] if sys.argv else None,
    )
    total = trainer.config.iterations

    def status(values: dict[str, float]) -> str:
        shown = " ".join(f"{k[:5]}={values[k]:.3g}" for k in SHOWN_LOSSES if k in values)
        return f"ep {trainer.episode} {shown}"

    summary = run_with_progress(
        trainer,
        console,
        f"CGN {architecture} ({preset})",
        total=total,
        status=status,
        stop_after=stop_after,
    )
    console.print(
        f"iteration {summary['iteration']}/{total} (episode {summary['episode']})"
        f"{speed_text(summary)}; checkpoint {summary['checkpoint']}"
    )
    if summary["finished"] and not no_export:
        exported = export_cgn_weights(trainer, Path(out) / EXPORT_FILE)
        console.print(f"exported {exported} and {exported.with_suffix('.json')}")


@command("generate-cgn-imagenet")
@option("--weights", required=True, help="cgn_imagenet.pth, the authors' cgn.pth, or random.")
@option("--out", required=True, type=PathType(file_okay=False))
@option("--n", "n", type=int, required=True)
@option("--mode", type=Choice(MODES), default="random", show_default=True)
@option("--classes", callback=_names, default="", help="shape,texture,background (fixed).")
@option("--seed", type=int, default=0, show_default=True)
@option("--truncation", type=float, default=1.0, show_default=True)
@option("--batch-size", type=int, default=16, show_default=True)
@option("--image-format", type=Choice(("jpg", "png")), default="jpg")
@option("--quality", type=int, default=95, show_default=True)
@option("--architecture", type=Choice(ARCHITECTURES), default="deep_256")
@option("--device", default="auto", show_default=True)
def generate_cgn_imagenet_command(
    weights,
    out,
    n,
    mode,
    classes,
    seed,
    truncation,
    batch_size,
    image_format,
    quality,
    architecture,
    device,
) -> None:
    """Write a counterfactual dataset (labels.csv + images) for the cgn-ensemble classifier;
    rerun to resume. --weights random --architecture ... makes a random-weights smoke set."""
    console = Console(stderr=True)
    torch_device = resolve_device(device)
    if weights == "random":
        cgn, weights_id = random_cgn(architecture).to(torch_device), f"random:{architecture}:full"
    else:
        cgn, meta = load_cgn_weights(weights, device=torch_device)
        weights_id = meta["weights_sha256"]
    try:
        fixed = [int(c) for c in classes] if classes else None
    except ValueError:
        raise BadParameter("expected integers", param_hint="--classes") from None
    with ProgressReporter(console).task("generating", total=n) as bar:
        write_counterfactual_dataset(
            cgn,
            out,
            n,
            mode=mode,
            classes=fixed,
            seed=seed,
            truncation=truncation,
            batch_size=batch_size,
            image_format=image_format,
            quality=quality,
            precision="bf16" if torch_device.type == "cuda" else "fp32",
            weights_id=weights_id,
            on_progress=bar.update_to,
        )
    console.print(f"{n} images and labels.csv in {out}")


@command("ablate-cgn-imagenet")
@argument("weights", nargs=-1, required=True)
@option("--n", "n", type=int, default=2000, show_default=True)
@option("--seed", type=int, default=0, show_default=True)
@option("--mode", type=Choice(("shared", "random")), default="shared")
@option("--batch-size", type=int, default=16, show_default=True)
@option("--inception-weights", default=None, help="Else $CGNBENCH_INCEPTION_WEIGHTS.")
@option("--no-inception", is_flag=True, help="Only the mean mask.")
@option("--architecture", type=Choice(ARCHITECTURES), default="deep_256")
@option("--device", default="auto", show_default=True)
@option("--json-out", default=None, help="Also write the results as JSON here.")
def ablate_cgn_imagenet_command(
    weights,
    n,
    seed,
    mode,
    batch_size,
    inception_weights,
    no_inception,
    architecture,
    device,
    json_out,
) -> None:
    """Score trained ImageNet CGNs (WEIGHTS: cgn_imagenet.pth files, or random) by mean mask
    and Inception Score, next to the paper's and the reproduction's loss-ablation values.
    Train the ablation points with `train-cgn-imagenet --without <group>` (groups: shape,
    texture, background, reconstruction)."""
    console = Console(stderr=True)
    torch_device = resolve_device(device)
    precision = "bf16" if torch_device.type == "cuda" else "fp32"
    results = {}
    for spec in weights:
        if spec == "random":
            cgn = random_cgn(architecture).to(torch_device)
            label = f"random:{architecture}"
        else:
            cgn, meta = load_cgn_weights(spec, device=torch_device)
            without = _ablation_name(meta)
            label = f"{spec} ({without})" if without else spec
        results[label] = ablation_metrics(
            cgn,
            n,
            seed=seed,
            mode=mode,
            batch_size=batch_size,
            precision=precision,
            inception_weights=inception_weights,
            inception=not no_inception,
        )
        del cgn
    table = Table(title=f"ImageNet CGN loss ablation (n={n}, mode={mode})")
    for column in ("row", "Inception Score", "mu_mask"):
        table.add_column(column)
    for label, r in results.items():
        score = r["inception_score"]
        shown = "-" if score is None else f"{score:.1f} +- {r['inception_score_std']:.1f}"
        table.add_row(label, shown, f"{r['mu_mask']:.3f} +- {r['mu_mask_std']:.3f}")
    for source, rows in PUBLISHED.items():
        for name, (score, mask) in rows.items():
            table.add_row(f"[dim]{source}: {name}", f"[dim]{score}", f"[dim]{mask or '-'}")
    console.print(table)
    errors = {r["inception_error"] for r in results.values() if r["inception_error"]}
    for error in errors:
        if error != "not requested":
            console.print(f"[yellow]Inception Score not computed: {error}")
    if json_out:
        Path(json_out).write_text(json.dumps(results, indent=2) + "\n")


def _ablation_name(meta: dict) -> str:
    """Which ablation an exported CGN was trained as (from its sidecar's loss list)."""
    losses = tuple((meta.get("config") or {}).get("losses") or ())
    if not losses:
        return ""
    from .ablation import ablation_losses

    for name in ABLATIONS:
        if ablation_losses(name) == losses:
            return name
    return "losses " + ",".join(losses)
