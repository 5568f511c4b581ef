"""ImageNet CGN training: the trainer, its losses and checkpoints.

The design notes (reference behaviour, quirks kept or fixed, measurements) are in
``docs/imagenet-cgn-training.md``.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from robustbench_cgn.checkpoint import (
    atomic_torch_save,
    atomic_write_text,
    read_checkpoint,
)
from robustbench_cgn.context import derive_seed
from robustbench_cgn.data.download import sha256_file
from robustbench_cgn.device import autocast
from robustbench_cgn.errors import ConfigError, DataNotFoundError
from robustbench_cgn.provenance import jsonable
from robustbench_cgn.trainer import OnStep, Trainer
from robustbench_cgn.training_log import environment_record
from robustbench_cgn_plugins.shared.style_loss import (
    VGG16_FILE,
    VGG16_WEIGHTS_ENV,
    resolve_vgg16_weights,
)

from .biggan import WEIGHTS_NAME, resolve_biggan_weights
from .cgn_model import ARCHITECTURES, U2NET_VARIANTS, ImageNetCGN, build_imagenet_cgn
from .losses import LOSS_TERMS, CGNLoss, LossWeights, random_vgg16_file, resolve_loss_terms
from .u2net import U2NET_WEIGHTS_FILE, resolve_u2net_weights

__all__ = [
    "CHECKPOINT_FORMAT",
    "EXPORT_FORMAT",
    "PRESETS",
    "SAMPLE_CLASSES",
    "ImageNetCGNTrainer",
    "TrainConfig",
    "export_cgn_weights",
    "load_checkpoint",
    "resolve_training_files",
]

CHECKPOINT_FORMAT = "cgnbench-imagenet-cgn-train/1"
CHECKPOINT_WHAT = "ImageNet CGN checkpoint"
EXPORT_FORMAT = "cgnbench-imagenet-cgn-export/1"
EXPORT_FILE = "cgn_imagenet.pth"
#: The reference's sample-sheet classes (goldfish, ..., toilet tissue).
SAMPLE_CLASSES = (15, 251, 330, 382, 385, 483, 559, 751, 938, 947, 999)

PRESETS: dict[str, dict[str, Any]] = {
    "faithful": {
        "batch_size": 1,
        "accumulation": 4000,
        "episodes": 300,
        "lr_shape": 8e-6,
        "lr_texture": 3e-5,
        "lr_background": 1e-5,
        "lambda_reconstruction": 100.0,
        "perceptual_weights": (4.0, 4.0, 4.0, 4.0),
        "lambda_binary": 300.0,
        "lambda_mask": 500.0,
        "texture_weights": (0.0, 5.0, 5.0, 0.0),
        "lambda_background": 2000.0,
    },
}
PRESETS["paper"] = {
    **PRESETS["faithful"],
    "lr_texture": 1e-5,
    "perceptual_weights": (5.0, 5.0, 5.0, 5.0),
}


# ---------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run (stored in checkpoints and exports).

    ``None`` fields take the preset's value (:meth:`resolved`). ``losses``: the enabled loss
    terms or paper groups (``shape``, ``texture``, ``background``, ``reconstruction``); the
    loss ablation turns groups off. ``weights``: ``pretrained`` (the BigGAN-deep / U2-Net /
    VGG16 files) or ``random`` (seeded random networks; no files). ``u2net_variant="small"``
    (U2NETP) only for tests. Bookkeeping fields (:data:`_BOOKKEEPING`) may change on resume;
    everything else must match the checkpoint's.
    """

    preset: Literal["faithful", "paper"] = "faithful"
    architecture: str = "deep_256"
    weights: Literal["pretrained", "random"] = "pretrained"
    u2net_variant: str = "full"
    u2net_input: Literal["cgn", "u2net"] = "cgn"
    u2net_align_corners: bool = True
    vgg_mode: Literal["faithful", "improved"] = "faithful"
    truncation: float = 1.0
    seed: int = 0
    precision: Literal["fp32", "bf16"] = "fp32"
    losses: tuple[str, ...] = LOSS_TERMS
    batch_size: int | None = None
    accumulation: int | None = None
    episodes: int | None = None
    lr_shape: float | None = None
    lr_texture: float | None = None
    lr_background: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    lambda_reconstruction: float | None = None
    perceptual_weights: tuple[float, float, float, float] | None = None
    lambda_binary: float | None = None
    lambda_mask: float | None = None
    texture_weights: tuple[float, float, float, float] | None = None
    lambda_background: float | None = None
    checkpoint_every: int = 4000
    keep_checkpoints: int = 1
    sample_every: int = 4000
    log_every: int = 100
    sample_classes: tuple[int, ...] = SAMPLE_CLASSES

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"preset must be one of {tuple(PRESETS)}, not {self.preset!r}")
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"architecture must be one of {ARCHITECTURES}")
        if self.weights not in ("pretrained", "random"):
            raise ConfigError("weights must be 'pretrained' or 'random'")
        if self.u2net_variant not in U2NET_VARIANTS:
            raise ConfigError(f"u2net_variant must be one of {U2NET_VARIANTS}")
        if self.u2net_input not in ("cgn", "u2net"):
            raise ConfigError("u2net_input must be 'cgn' or 'u2net'")
        if self.vgg_mode not in ("faithful", "improved"):
            raise ConfigError("vgg_mode must be 'faithful' or 'improved'")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError("precision must be 'fp32' or 'bf16' (fp16 would need loss scaling)")
        if not 0.0 < self.truncation <= 1.0:
            raise ConfigError(f"truncation must lie in (0, 1], got {self.truncation}")
        object.__setattr__(self, "losses", resolve_loss_terms(self.losses))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        object.__setattr__(self, "sample_classes", tuple(int(c) for c in self.sample_classes))
        for name in ("perceptual_weights", "texture_weights"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(float(v) for v in value))
        for name in ("batch_size", "accumulation", "episodes"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1")
        for name in ("checkpoint_every", "keep_checkpoints", "sample_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if any(not 0 <= c < 1000 for c in self.sample_classes):
            raise ConfigError("sample_classes must be ImageNet class indices 0..999")

    def resolved(self) -> TrainConfig:
        """A copy with every ``None`` filled in from the preset."""
        preset = PRESETS[self.preset]
        changes = {k: v for k, v in preset.items() if getattr(self, k) is None}
        return dataclasses.replace(self, **changes)

    @property
    def iterations(self) -> int:
        """Forward/backward passes in all: ``episodes * accumulation``."""
        cfg = self.resolved()
        return int(cfg.episodes) * int(cfg.accumulation)  # type: ignore[arg-type]

    def loss_weights(self) -> LossWeights:
        cfg = self.resolved()
        return LossWeights(
            reconstruction=cfg.lambda_reconstruction,  # type: ignore[arg-type]
            perceptual=cfg.perceptual_weights,  # type: ignore[arg-type]
            binary=cfg.lambda_binary,  # type: ignore[arg-type]
            mask=cfg.lambda_mask,  # type: ignore[arg-type]
            texture=cfg.texture_weights,  # type: ignore[arg-type]
            background=cfg.lambda_background,  # type: ignore[arg-type]
        )

    def learning_rates(self) -> dict[str, float]:
        cfg = self.resolved()
        return {
            "shape": float(cfg.lr_shape),  # type: ignore[arg-type]
            "texture": float(cfg.lr_texture),  # type: ignore[arg-type]
            "background": float(cfg.lr_background),  # type: ignore[arg-type]
        }

    @property
    def needs_vgg(self) -> bool:
        return "perceptual" in self.losses or "texture" in self.losses

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


_BOOKKEEPING = frozenset(
    {
        "episodes",
        "checkpoint_every",
        "keep_checkpoints",
        "sample_every",
        "log_every",
        "sample_classes",
    }
)


# ------------------------------------------------------------------------------- the files


def resolve_training_files(
    config: TrainConfig,
    *,
    biggan_weights: str | PathLike[str] | None = None,
    u2net_weights: str | PathLike[str] | None = None,
    vgg_weights: str | PathLike[str] | None = None,
    data_dir: str | PathLike[str] | None = None,
) -> dict[str, Path | None]:
    """The local weight files a pretrained run needs (``biggan``, ``u2net``, ``vgg``; ``vgg``
    is ``None`` when no VGG loss is on): as given, else the registered weights through the
    resolver (override, ``data_dir``'s ``biggan/``, ``u2net/``, ``vgg16/``, the cache, a
    download). All missing files are named in one one-line :class:`DataNotFoundError`."""
    found: dict[str, Path | None] = {"biggan": None, "u2net": None, "vgg": None}
    missing: list[str] = []
    name = {"deep_256": "biggan.deep-256", "deep_128": "biggan.deep-128"}.get(config.architecture)
    if name is None:
        missing.append(f"BigGAN: architecture {config.architecture!r} has no published weights")
    else:
        try:
            found["biggan"] = resolve_biggan_weights(biggan_weights, name=name, data_dir=data_dir)
        except DataNotFoundError:
            missing.append(f"{name} {WEIGHTS_NAME} (--biggan-weights, or `cgnbench fetch {name}`)")
    try:
        found["u2net"] = resolve_u2net_weights(u2net_weights, data_dir=data_dir)
    except DataNotFoundError:
        missing.append(
            f"U2-Net {U2NET_WEIGHTS_FILE} (--u2net-weights, or `cgnbench fetch u2net.full`)"
        )
    if config.needs_vgg:
        try:
            found["vgg"] = resolve_vgg16_weights(vgg_weights, data_dir=data_dir)
        except DataNotFoundError:
            missing.append(
                f"VGG16 {VGG16_FILE} (--vgg-weights or ${VGG16_WEIGHTS_ENV}, or "
                "`cgnbench fetch vgg16.tv-in1k`)"
            )
    if missing:
        raise DataNotFoundError(
            "the ImageNet CGN needs pretrained weights that are not here: "
            + "; ".join(missing)
            + " (use --random-weights / weights='random' for a smoke test)"
        )
    return found


# ----------------------------------------------------------------------------- checkpoints


def load_checkpoint(path: str | PathLike[str]) -> dict[str, Any]:
    """A training checkpoint, read with ``weights_only=True``, format checked."""
    return read_checkpoint(path, CHECKPOINT_FORMAT, CHECKPOINT_WHAT)


# ---------------------------------------------------------------------------------- trainer


class ImageNetCGNTrainer(Trainer):
    """One resumable training run in ``out_dir`` (module docstring; the loop, checkpoints and
    log are :class:`~robustbench_cgn.trainer.Trainer`'s).

    Args:
        config: the run's :class:`TrainConfig`.
        out_dir: checkpoints, log, samples, export.
        biggan_weights, u2net_weights, vgg_weights, data_dir: where the pretrained files are
            (:func:`resolve_training_files`); ignored with ``weights="random"``.
        device: ``cpu`` or ``cuda`` (bf16 autocast on CUDA with ``precision="bf16"``).
        resume: continue from the newest checkpoint in ``out_dir``.
        on_step: ``on_step(iteration, losses)`` after every iteration.
        command: the command line that started the run (recorded).
    """

    checkpoint_format = CHECKPOINT_FORMAT
    checkpoint_what = CHECKPOINT_WHAT
    bookkeeping = _BOOKKEEPING

    def __init__(
        self,
        config: TrainConfig,
        out_dir: str | PathLike[str],
        *,
        biggan_weights: str | PathLike[str] | None = None,
        u2net_weights: str | PathLike[str] | None = None,
        vgg_weights: str | PathLike[str] | None = None,
        data_dir: str | PathLike[str] | None = None,
        device: str | torch.device = "cpu",
        resume: bool = True,
        on_step: OnStep | None = None,
        command: list[str] | None = None,
    ):
        self.config = cfg = config.resolved()
        super().__init__(out_dir, on_step=on_step)
        self.device = torch.device(device)
        self.command = command
        if cfg.precision == "bf16" and self.device.type == "cpu":
            warnings.warn("bf16 autocast on the CPU is slow; use fp32 there", stacklevel=2)
        random = cfg.weights == "random"
        if random:
            files: dict[str, Path | None] = {"biggan": None, "u2net": None, "vgg": None}
            if cfg.needs_vgg:
                seed = derive_seed(cfg.seed, "vgg")
                files["vgg"] = random_vgg16_file(self.out_dir / "random_vgg16.pth", seed)
        else:
            files = resolve_training_files(
                cfg,
                biggan_weights=biggan_weights,
                u2net_weights=u2net_weights,
                vgg_weights=vgg_weights,
                data_dir=data_dir,
            )
        self.files = {
            key: None if path is None else {"file": path.name, "sha256": sha256_file(path)}
            for key, path in files.items()
        }
        self.cgn: ImageNetCGN = build_imagenet_cgn(
            cfg.architecture,
            biggan_weights=files["biggan"],
            u2net_weights=files["u2net"],
            random_weights=random,
            u2net_variant=cfg.u2net_variant,
            u2net_align_corners=cfg.u2net_align_corners,
            u2net_input=cfg.u2net_input,
            truncation=cfg.truncation,
            seed=derive_seed(cfg.seed, "init"),
        ).to(self.device)
        self.cgn.train()
        self.loss = CGNLoss(
            cfg.loss_weights(),
            enabled=cfg.losses,
            vgg_weights=files["vgg"],
            vgg_mode=cfg.vgg_mode,
            vgg_input_convention="torchvision" if random else "auto",
        ).to(self.device)
        lrs = cfg.learning_rates()
        self.optimizers = {
            name: torch.optim.Adam(module.parameters(), lr=lrs[name], betas=cfg.betas)
            for name, module in self.cgn.mechanisms().items()
        }
        self.rng = torch.Generator().manual_seed(derive_seed(cfg.seed, "train"))
        self.resume(resume)

    # -- one iteration --

    @property
    def episode(self) -> int:
        return self.iteration // int(self.config.accumulation)  # type: ignore[arg-type]

    def train_step(self) -> dict[str, float]:
        """One forward/backward pass; an optimizer step when an accumulation window ends."""
        cfg, cgn = self.config, self.cgn
        batch = int(cfg.batch_size)  # type: ignore[arg-type]
        y = torch.randint(cgn.num_classes, (batch,), generator=self.rng)
        u = cgn.noise(batch, self.rng).to(self.device)
        needs_gt = any(t in self.loss.terms for t in ("reconstruction", "perceptual", "texture"))
        with autocast(self.device, cfg.precision):
            out = cgn(
                u,
                y.to(self.device),
                ground_truth=needs_gt,
                background_mask=self.loss.needs_background_mask,
            )
            losses = self.loss(out, self.rng)
        total = sum(losses.values(), torch.zeros((), device=self.device))
        if total.requires_grad:
            total.backward()
        self.iteration += 1
        if self.iteration % int(cfg.accumulation) == 0:  # type: ignore[arg-type]
            for optimizer in self.optimizers.values():
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        values = {k: float(v.detach()) for k, v in losses.items()}
        values["total"] = float(total.detach())
        values["mask_mean"] = float(out.mask.detach().float().mean())
        return values

    def start_record(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "files": self.files, "command": self.command}

    def log_fields(self) -> dict[str, Any]:
        return {"episode": self.episode}

    def sample(self, label: str, *, final: bool) -> dict[str, Any]:
        return {"sheet": self.save_samples()}

    def summary_fields(self, samples: dict[str, Any] | None) -> dict[str, Any]:
        sheet = None if samples is None else str(samples["sheet"])
        return {"episode": self.episode, "samples": sheet}

    # -- logging, samples --

    @torch.no_grad()
    def sample_sheet(self, classes: tuple[int, ...] | None = None, chunk: int = 4) -> Tensor:
        """The sample sheet as a ``[3, H, W]`` image in [0, 1]: one row per class with
        premask, mask, foreground, background, composite and x_gt, all from one fixed noise
        vector, in eval mode (the training mode is restored)."""
        cgn, cfg = self.cgn, self.config
        classes = tuple(classes or cfg.sample_classes)
        g = torch.Generator().manual_seed(derive_seed(cfg.seed, "samples"))
        u_fixed = cgn.noise(1, g).to(self.device)
        was_training = cgn.training
        cgn.eval()
        rows = []
        try:
            for start in range(0, len(classes), chunk):
                ys = torch.tensor(classes[start : start + chunk])
                u = u_fixed.expand(len(ys), -1)
                with autocast(self.device, cfg.precision):
                    out = cgn(u, ys.to(self.device))
                unit = [
                    (t.float().clamp(-1, 1) + 1) / 2
                    for t in (out.premask, out.foreground, out.background, out.x_gen, out.x_gt)
                ]
                mask = out.mask.float().expand(-1, 3, -1, -1)
                for i in range(len(ys)):
                    rows += [unit[0][i], mask[i], unit[1][i], unit[2][i], unit[3][i], unit[4][i]]
        finally:
            cgn.train(was_training)
        import torchvision  # lazy: importing torchvision costs ~1 s

        return torchvision.utils.make_grid(torch.stack(rows).cpu(), nrow=6, padding=2)

    def save_samples(self) -> Path:
        path = self.out_dir / "samples" / f"sheet_{self.iteration:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        import torchvision  # lazy: importing torchvision costs ~1 s

        torchvision.utils.save_image(self.sample_sheet(), path)
        return path

    # -- checkpoints --

    def state(self) -> dict[str, Any]:
        """The checkpoint dictionary (module docstring)."""
        pending = {}
        if self.iteration % int(self.config.accumulation):  # type: ignore[arg-type]
            for name, module in self.cgn.mechanisms().items():
                pending[name] = {
                    key: p.grad.detach().cpu().clone()
                    for key, p in module.named_parameters()
                    if p.grad is not None
                }
        return {
            "format": CHECKPOINT_FORMAT,
            "iteration": self.iteration,
            "episode": self.episode,
            "mechanisms": {
                name: module.state_dict() for name, module in self.cgn.mechanisms().items()
            },
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "pending_grads": pending,
            "rng": self.rng.get_state(),
            "config": jsonable(self.config.to_dict()),
            "files": self.files,
            "command": self.command,
            "environment": environment_record(self.device),
        }

    def load_state(self, ckpt: dict[str, Any]) -> None:
        """Restore a checkpoint; refuses one from another configuration or other input files."""
        theirs = TrainConfig.from_dict(ckpt["config"]).resolved().to_dict()
        self.check_resumable(theirs, self.config.to_dict())
        for key, mine_file in self.files.items():
            theirs_file = (ckpt.get("files") or {}).get(key)
            if (theirs_file or {}).get("sha256") != (mine_file or {}).get("sha256"):
                raise ConfigError(
                    f"the checkpoint in {self.out_dir} was trained with other {key} weights "
                    f"({theirs_file} vs now {mine_file}); pass the same files"
                )
        for name, module in self.cgn.mechanisms().items():
            module.load_state_dict(ckpt["mechanisms"][name])
            self.optimizers[name].load_state_dict(ckpt["optimizers"][name])
            grads = (ckpt.get("pending_grads") or {}).get(name) or {}
            for key, p in module.named_parameters():
                p.grad = grads[key].to(p.device).clone() if key in grads else None
        self.rng.set_state(ckpt["rng"])
        self.iteration = int(ckpt["iteration"])


# ---------------------------------------------------------------------------------- export


def export_cgn_weights(trainer: ImageNetCGNTrainer, out_path: str | PathLike[str]) -> Path:
    """Write the trainer's current generation weights (``f_shape.*``, ``f_text.*``, ``f_bg.*``,
    ``u2net.*``; the frozen BigGAN is not needed to generate) to ``out_path``, and a JSON
    sidecar next to it (architecture, U2-Net settings, truncation, training config, input-file
    hashes, iterations, sha256 of the weights file) that :func:`~.weights.load_cgn_weights`
    reads. Returns ``out_path``."""
    cgn, config = trainer.cgn, trainer.config
    state: dict[str, Tensor] = {
        key: value.detach().cpu().contiguous().clone()
        for key, value in cgn.state_dict().items()
        if not key.startswith("biggan_gt.")
    }
    out = Path(out_path)
    atomic_torch_save(state, out)
    sidecar = {
        "format": EXPORT_FORMAT,
        "architecture": config.architecture,
        "u2net_variant": config.u2net_variant,
        "u2net_input": config.u2net_input,
        "u2net_align_corners": config.u2net_align_corners,
        "truncation": config.truncation,
        "weights": config.weights,
        "iterations": trainer.iteration,
        "episodes": trainer.episode,
        "config": config.to_dict(),
        "files": trainer.files,
        "command": trainer.command,
        "weights_file": out.name,
        "weights_sha256": sha256_file(out),
    }
    atomic_write_text(json.dumps(jsonable(sidecar), indent=2) + "\n", out.with_suffix(".json"))
    return out
