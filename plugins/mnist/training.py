"""MNIST generator training (CGN and DCGAN): the trainer, its losses and checkpoints.

The design notes (reference behaviour, quirks kept or fixed, measurements) are in
``docs/mnist-generator-training.md``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustbench_cgn.checkpoint import (
    atomic_torch_save,
    atomic_write_text,
    read_checkpoint,
)
from robustbench_cgn.context import derive_seed
from robustbench_cgn.data.download import sha256_file as file_sha256
from robustbench_cgn.errors import CGNBenchError, ConfigError
from robustbench_cgn.provenance import jsonable
from robustbench_cgn.trainer import OnStep, Trainer
from robustbench_cgn.training_log import environment_record
from robustbench_cgn.weights_file import load_weights_file

from ..shared.style_loss import STYLE_WEIGHTS, VGGStyleLoss, resolve_vgg16_weights
from .cgn_fast import upsample_conv_as_conv_transpose
from .cgn_model import CGN, MASK_MAX, MASK_MIN, build_cgn, compose, init_weights_pix2pix
from .counterfactuals import quantize_images
from .dcgan_model import DCGANGenerator
from .discriminators import DiscConv, DiscLin
from .losses import (
    BinaryLoss,
    MechanismPriors,
    class_priors,
    edge_loss,
    lsgan_loss,
    mechanism_prior_loss,
    prior_weight,
)
from .sample_grids import mask_collapse_indicators, save_cgn_grids, save_dcgan_grid

__all__ = [
    "CGN_HPARAMS",
    "CHECKPOINT_FORMAT",
    "EXPORT_FORMAT",
    "MnistGeneratorTrainer",
    "TrainConfig",
    "TrainData",
    "VARIANTS",
    "export_generator_weights",
    "cgn_train_forward",
    "load_checkpoint",
    "load_dcgan_generator",
    "load_train_data",
    "reproduce_command",
    "run_fused",
    "sample_dcgan",
    "tensor_sha256",
    "train_generator",
]

CHECKPOINT_FORMAT = "cgnbench-mnist-generator-train/1"
EXPORT_FORMAT = "cgnbench-mnist-generator-export/1"
VARIANTS = ("colored", "double-colored", "wildlife")
COMMAND = ("cgnbench", "train-mnist-generator")

#: Per-variant CGN hyperparameters (cgn-reference.md section 1). ``lambda_edge`` is the
#: reproduction's, used in improved mode only. Style weights: relu1_2, relu2_2, relu3_3, relu4_3.
CGN_HPARAMS: dict[str, dict[str, Any]] = {
    "colored": {
        "lambda_binary": 0.1,
        "style_weights": STYLE_WEIGHTS["colored"],
        "disc": "linear",
        "lambda_edge": 0.1,
    },
    "double-colored": {
        "lambda_binary": 0.3,
        "style_weights": STYLE_WEIGHTS["double_colored"],
        "disc": "linear",
        "lambda_edge": 0.0,
    },
    "wildlife": {
        "lambda_binary": 0.3,
        "style_weights": STYLE_WEIGHTS["wildlife"],
        "disc": "conv",
        "lambda_edge": 0.1,
    },
}


# ---------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (stored in checkpoints and exports).

    ``None`` hyperparameters take the variant's value from :data:`CGN_HPARAMS` (see
    :meth:`resolved`); ``iterations=None`` means ``epochs * (n_train // batch_size)``.

    * ``model``/``variant``/``mode``: what to train; ``mode`` (faithful/improved) only affects
      the CGN.
    * ``seed``: initialisation, noise/labels/shifts, dropout and batch order; ``data_seed``:
      the variant's colours/crops (``build_variant``).
    * ``lambda_binary``, ``style_weights`` (relu1_2, 2_2, 3_3, 4_3), ``lambda_edge``,
      ``lambda_adv`` (CGN adversarial-loss weight, 1 in the reference), ``disc``
      (``linear``: DiscLin, ``conv``: DiscConv), ``ndf``: the loss/discriminator table.
    * ``mask_gradient`` (CGN, training only): ``clamp`` (the reference: no gradient reaches
      ``f_shape`` where the mask is clamped) or ``straight-through`` (the same mask values,
      but the clamp passes gradients as if it were the identity, so a saturated, wrong mask can
      still move; an experiment against the mask collapse, see the module docstring).
    * ``texture_init`` (``default``: the reference's init; ``data``: texture output biases at
      the real mean colours) and ``mechanism_prior`` / ``mechanism_prior_iterations`` (weight
      at iteration 0 and length of the warm-up towards class-mean digits and colours; 0 = off):
      our remedy for the mask collapse, see the module docstring.
    * ``precision`` (CGN): ``bf16`` runs the style loss's VGG convolutions under bf16 autocast
      (Gram matrices and losses in fp32): about 1.5x faster steps on AMX / AVX-512 BF16 CPUs,
      many times slower on AVX2-only ones. Not bookkeeping: it changes the numbers.
    * speed only, same math up to float rounding: ``channels_last`` (memory format of VGG and
      of the fused generator), ``fused_generator`` (:func:`cgn_train_forward`), ``fused_adam``
      (``torch.optim.Adam(fused=True)``: one kernel instead of a Python loop over parameters;
      ~15 ms less per iteration for DiscLin's 2.1 M parameters on this CPU).
    * bookkeeping, free to change on resume: ``iterations`` (may grow), ``checkpoint_every``,
      ``keep_checkpoints``, ``sample_every``, ``log_every``, ``grid_per_class`` (grid columns),
      ``collapse_per_class`` (samples per class for the collapse indicator). Everything else
      must match the checkpoint's.
    """

    model: Literal["cgn", "dcgan"] = "cgn"
    variant: str = "colored"
    mode: Literal["faithful", "improved"] = "faithful"
    iterations: int | None = None
    epochs: int = 15
    batch_size: int = 16
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    seed: int = 0
    data_seed: int = 0
    lambda_binary: float | None = None
    style_weights: tuple[float, float, float, float] | None = None
    lambda_edge: float | None = None
    lambda_adv: float = 1.0  # weight of the generator's adversarial loss (0: loss ablation)
    mask_gradient: Literal["clamp", "straight-through"] = "clamp"
    mechanism_prior: float = 0.0
    mechanism_prior_iterations: int = 2000
    texture_init: Literal["default", "data"] = "default"
    disc: Literal["linear", "conv"] | None = None
    ndf: int | None = None
    precision: Literal["fp32", "bf16"] = "fp32"
    channels_last: bool = True
    fused_generator: bool = True
    fused_adam: bool = True
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    sample_every: int = 1000
    log_every: int = 50
    grid_per_class: int = 8
    collapse_per_class: int = 32

    def __post_init__(self) -> None:
        if self.model not in ("cgn", "dcgan"):
            raise ConfigError(f"model must be 'cgn' or 'dcgan', not {self.model!r}")
        if self.variant not in VARIANTS:
            raise ConfigError(f"unknown MNIST variant {self.variant!r}; use one of {VARIANTS}")
        if self.mode not in ("faithful", "improved"):
            raise ConfigError(f"mode must be 'faithful' or 'improved', not {self.mode!r}")
        for name in ("epochs", "batch_size", *_PERIODS):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.iterations is not None and self.iterations < 0:
            raise ConfigError("iterations must be >= 0")
        if self.mask_gradient not in ("clamp", "straight-through"):
            raise ConfigError(
                f"mask_gradient must be 'clamp' or 'straight-through', not {self.mask_gradient!r}"
            )
        if self.mechanism_prior < 0 or self.mechanism_prior_iterations < 0:
            raise ConfigError("mechanism_prior and mechanism_prior_iterations must be >= 0")
        if self.texture_init not in ("default", "data"):
            raise ConfigError(
                f"texture_init must be 'default' or 'data', not {self.texture_init!r}"
            )
        if self.disc not in (None, "linear", "conv"):
            raise ConfigError(f"disc must be 'linear' or 'conv', not {self.disc!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"precision must be 'fp32' or 'bf16', not {self.precision!r}")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.style_weights is not None:
            if len(self.style_weights) != 4:
                raise ConfigError("style_weights needs 4 values (relu1_2, 2_2, 3_3, 4_3)")
            object.__setattr__(self, "style_weights", tuple(float(w) for w in self.style_weights))

    def resolved(self, n_train: int | None = None) -> TrainConfig:
        """A copy with every ``None`` filled in (``iterations`` needs ``n_train``)."""
        hp = CGN_HPARAMS[self.variant]
        changes: dict[str, Any] = {}
        if self.model == "cgn":
            changes["lambda_binary"] = _default(self.lambda_binary, hp["lambda_binary"])
            changes["style_weights"] = _default(self.style_weights, hp["style_weights"])
            edge = hp["lambda_edge"] if self.mode == "improved" else 0.0
            changes["lambda_edge"] = _default(self.lambda_edge, edge)
            changes["disc"] = _default(self.disc, hp["disc"])
        else:
            changes["disc"] = _default(self.disc, "linear")
        changes["ndf"] = _default(self.ndf, 512 if changes["disc"] == "linear" else 32)
        if self.iterations is None and n_train is not None:
            changes["iterations"] = self.epochs * self.iterations_per_epoch(n_train)
        return dataclasses.replace(self, **changes)

    def iterations_per_epoch(self, n_train: int) -> int:
        """``n_train // batch_size`` (full batches only)."""
        if n_train < self.batch_size:
            raise ConfigError(f"{n_train} training images < batch size {self.batch_size}")
        return n_train // self.batch_size

    @property
    def mask_activation(self) -> str:
        return "sigmoid" if self.mode == "improved" else "clamp"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# counts and periods of the bookkeeping (each >= 1), free to change on resume like iterations
_PERIODS = (
    "checkpoint_every",
    "keep_checkpoints",
    "sample_every",
    "log_every",
    "grid_per_class",
    "collapse_per_class",
)
_BOOKKEEPING = frozenset({"iterations", *_PERIODS})


def _default(value: Any, fallback: Any) -> Any:
    return fallback if value is None else value


# ------------------------------------------------------------------------------------ data


@dataclass(frozen=True, eq=False)
class TrainData:
    """A variant's train split in memory: uint8 images ``[N, 3, 32, 32]``, int64 labels, and
    (for the shape warm-up) the binarised digits ``masks`` uint8 ``[N, 32, 32]`` they were
    drawn from."""

    images: Tensor
    labels: Tensor
    provenance: dict[str, Any] = field(default_factory=dict)
    masks: Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def tensor_sha256(*tensors: Tensor) -> str:
    """sha256 over the raw bytes of the given tensors (data fingerprint)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_train_data(
    variant: str,
    data_dir: str | PathLike[str] | None,
    *,
    seed: int = 0,
    textures_dir: str | PathLike[str] | None = None,
    cache_dir: str | PathLike[str] | None = None,
) -> TrainData:
    """The variant's TRAIN split built from MNIST (``resolve_mnist(data_dir, cache_dir)``).

    ``textures_dir`` defaults to ``<data_dir>/wmnist_textures`` when that exists. Provenance:
    the variant's metadata without per-image arrays, plus a sha256 of images and labels.
    """
    from robustbench_cgn.settings import resolve_paths
    from robustbench_cgn_plugins.mnist.tasks.source import resolve_mnist
    from robustbench_cgn_plugins.mnist.tasks.variants import build_variant

    cache = Path(cache_dir) if cache_dir is not None else resolve_paths().cache
    mnist = resolve_mnist(data_dir, cache)
    if textures_dir is None and data_dir is not None:
        candidate = Path(data_dir) / "wmnist_textures"
        textures_dir = candidate if candidate.is_dir() else None
    data = build_variant(
        variant,
        "train",
        mnist,
        seed,
        textures_dir=textures_dir,  # type: ignore[arg-type]
        cache_dir=cache,  # the resolved cache: W-MNIST textures live beside MNIST
    )
    provenance = jsonable(data.meta)
    provenance["data_dir"] = str(data_dir) if data_dir is not None else None
    provenance["train_sha256"] = tensor_sha256(data.images, data.labels)
    return TrainData(data.images, data.labels, provenance, masks=data.masks)


def _find_vgg(path: str | PathLike[str] | None, data_dir: str | PathLike[str] | None) -> Path:
    """``path``, else the registered VGG16 weights (override, ``data_dir``, cache, download)."""
    return resolve_vgg16_weights(path, data_dir=data_dir)


# ----------------------------------------------------------------------------- checkpoints


def load_checkpoint(path: str | PathLike[str]) -> dict[str, Any]:
    """Read a training checkpoint with ``weights_only=True`` and check its format."""
    return read_checkpoint(path, CHECKPOINT_FORMAT, "training checkpoint")


def reproduce_command(
    config: TrainConfig, data_dir: Any, out_dir: Any = "OUT", threads: int | None = None
) -> str:
    """The ``cgnbench train-mnist-generator`` command line that re-creates ``config``
    (``threads``: bitwise reproduction on CPU needs the same thread count)."""
    c = config
    opts = {
        "--model": c.model,
        "--variant": c.variant,
        "--data-dir": data_dir,
        "--out": out_dir,
        "--iterations": c.iterations,
        "--seed": c.seed,
        "--data-seed": c.data_seed,
        "--batch-size": c.batch_size,
    }
    if threads is not None:
        opts["--threads"] = threads
    args = [*COMMAND, *(str(x) for kv in opts.items() for x in kv)]
    if c.model == "cgn":
        args += ["--mode", c.mode]
        hp = TrainConfig(model="cgn", variant=c.variant, mode=c.mode).resolved()
        if c.lambda_binary != hp.lambda_binary:
            args += ["--lambda-binary", repr(c.lambda_binary)]
        if c.lambda_edge != hp.lambda_edge:
            args += ["--lambda-edge", repr(c.lambda_edge)]
        if c.style_weights != hp.style_weights:
            args += ["--style-weights", ",".join(repr(w) for w in c.style_weights or ())]
        if c.lambda_adv != hp.lambda_adv:
            args += ["--lambda-adv", repr(c.lambda_adv)]
        if c.mask_gradient != hp.mask_gradient:
            args += ["--mask-gradient", c.mask_gradient]
        if c.texture_init != hp.texture_init:
            args += ["--texture-init", c.texture_init]
        if c.precision != hp.precision:
            args += ["--precision", c.precision]
        if c.mechanism_prior:
            args += ["--mechanism-prior", repr(c.mechanism_prior)]
            args += ["--mechanism-prior-iterations", str(c.mechanism_prior_iterations)]
    return shlex.join(args)


# ------------------------------------------------------------------------------- builders


def _build_discriminator(config: TrainConfig) -> nn.Module:
    if config.disc == "conv":
        return DiscConv(ndf=config.ndf or 32)
    return DiscLin(ndf=config.ndf or 512)


def _build_generator(config: TrainConfig) -> nn.Module:
    if config.model == "cgn":
        return build_cgn(config.variant, improved=config.mode == "improved")
    gen = DCGANGenerator()
    init_weights_pix2pix(gen, "normal", 0.02)  # the DCGAN paper's init
    return gen


# ------------------------------------------------------------------ fused CGN training forward


def _is_upsample_conv(up: nn.Module, conv: nn.Module) -> bool:
    """``nearest x2 Upsample`` followed by a plain ``Conv3x3(stride 1, padding 1)``?"""
    return (
        isinstance(up, nn.Upsample)
        and up.mode == "nearest"
        and up.size is None
        and up.scale_factor in (2, (2, 2))
        and isinstance(conv, nn.Conv2d)
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def run_fused(seq: nn.Sequential, h: Tensor, channels_last: bool = False) -> Tensor:
    """``seq(h)`` with every ``nearest x2 Upsample -> Conv3x3(pad 1)`` pair evaluated as the
    equivalent ``conv_transpose2d(stride 2, padding 1)`` whose 4x4 kernel sums the 3x3 taps
    (:func:`~.cgn_fast.upsample_conv_as_conv_transpose`, recomputed from the live weight every
    call, so gradients reach the Conv2d's weight). The same function up to float rounding, with
    2.25x fewer multiply-adds and no upsampled intermediate. Every other module (BatchNorm in
    train mode included, so running statistics update as usual) is called as is."""
    mods = list(seq)
    i = 0
    while i < len(mods):
        if i + 1 < len(mods) and _is_upsample_conv(mods[i], mods[i + 1]):
            conv = mods[i + 1]
            w = upsample_conv_as_conv_transpose(conv.weight)
            if channels_last:
                w = w.contiguous(memory_format=torch.channels_last)
            h = F.conv_transpose2d(h, w, conv.bias, stride=2, padding=1)
            i += 2
            continue
        h = mods[i](h)
        if channels_last and h.dim() == 4:
            h = h.contiguous(memory_format=torch.channels_last)
        i += 1
    return h


class _StraightThroughClamp(torch.autograd.Function):
    """``x.clamp(lo, hi)`` forward; the identity's gradient backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, lo: float, hi: float) -> Tensor:
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        return grad, None, None


def cgn_train_forward(
    cgn: CGN,
    y: Tensor,
    generator: torch.Generator,
    *,
    fused: bool = True,
    channels_last: bool = False,
    straight_through: bool = False,
    with_textures: bool = False,
) -> tuple[Tensor, ...]:
    """The CGN's normal forward for training: ``(x_gen, mask)``, or with ``with_textures``
    ``(x_gen, mask, foreground, background)`` (the shuffled textures).

    ``fused=False`` is literally ``cgn(y, generator=generator)``. ``fused=True`` computes the same
    thing through :func:`run_fused` (same random draws in the same order: ``u``, foreground
    shifts, background shifts), roughly halving the generator's forward + backward time.
    ``straight_through`` (fused only) keeps the mask's values and lets gradients pass the clamp.
    """
    if not fused:
        if straight_through:
            raise ConfigError("mask_gradient='straight-through' needs the fused generator")
        out = cgn(y, generator=generator)
        if with_textures:
            return out.x, out.mask, out.foreground, out.background
        return out.x, out.mask
    b = y.shape[0]
    z = cgn.mechanism_input(cgn.sample_noise(b, generator), y)
    raw = run_fused(cgn.f_shape, z, channels_last)
    if straight_through:
        pre = torch.sigmoid(raw) if cgn.mask_activation == "sigmoid" else raw
        mask = _StraightThroughClamp.apply(pre, MASK_MIN, MASK_MAX)
    else:
        mask = cgn.mask_from_logits(raw)
    mask = mask.repeat(1, 3, 1, 1)
    fg = cgn.shuffler(run_fused(cgn.f_text1, z, channels_last), generator=generator)
    bg = cgn.shuffler(run_fused(cgn.f_text2, z, channels_last), generator=generator)
    if with_textures:
        return compose(mask, fg, bg), mask, fg, bg
    return compose(mask, fg, bg), mask


def init_texture_bias(cgn: CGN, priors: MechanismPriors) -> None:
    """Data-dependent init: the bias of each texture mechanism's last BatchNorm (just before
    the Tanh) becomes ``atanh`` of the real images' mean colour (over all classes) of the digit
    pixels (``f_text1``) and of the other pixels (``f_text2``), so the mechanisms start out
    drawing those colours instead of mid-grey. Why: with Adam at lr 2e-4 a bias moves at most
    ~2e-4 per step, and a black background needs about -2.6 (the authors' colored checkpoint has
    -4.4): thousands of iterations during which some classes' masks settle inverted."""
    for seq, colours in ((cgn.f_text1, priors.foreground), (cgn.f_text2, priors.background)):
        bn = [m for m in seq if isinstance(m, nn.BatchNorm2d)][-1]
        mean = colours.mean(0).clamp(-0.99, 0.99).to(bn.bias.device, bn.bias.dtype)
        with torch.no_grad():
            bn.bias.copy_(torch.atanh(mean))


# --------------------------------------------------------------------------------- trainer


class MnistGeneratorTrainer(Trainer):
    """One resumable training run in ``out_dir`` (see the module docstring; the loop,
    checkpoints and log are :class:`~robustbench_cgn.trainer.Trainer`'s).

    Args:
        config: the run's :class:`TrainConfig`.
        out_dir: checkpoints, log, samples and export go here.
        data: the train split (else built with :func:`load_train_data` from ``data_dir``).
        data_dir: MNIST root (``resolve_mnist``), also searched for the VGG file and textures.
        vgg_weights: VGG16 state dict for the CGN style loss (else ``$CGNBENCH_VGG16_WEIGHTS``,
            else ``<data_dir>/vgg16/vgg16_imagenet_caffe_features23.pth``).
        resume: continue from the newest checkpoint in ``out_dir`` when there is one.
        on_step: ``on_step(iteration, losses)`` after every iteration.
        device: torch device (bitwise resume is guaranteed on CPU).
    """

    checkpoint_format = CHECKPOINT_FORMAT
    bookkeeping = _BOOKKEEPING

    def __init__(
        self,
        config: TrainConfig,
        out_dir: str | PathLike[str],
        *,
        data: TrainData | None = None,
        data_dir: str | PathLike[str] | None = None,
        textures_dir: str | PathLike[str] | None = None,
        cache_dir: str | PathLike[str] | None = None,
        vgg_weights: str | PathLike[str] | None = None,
        resume: bool = True,
        on_step: OnStep | None = None,
        device: str | torch.device = "cpu",
    ):
        self.device = torch.device(device)
        if data is None:
            data = load_train_data(
                config.variant,
                data_dir,
                seed=config.data_seed,
                textures_dir=textures_dir,
                cache_dir=cache_dir,
            )
        self.data = data
        self.config = config.resolved(len(data))
        super().__init__(out_dir, on_step=on_step)
        self.data_dir = data_dir
        self._perm_epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(cfg.seed, "init"))
            self.generator = _build_generator(cfg).to(self.device)
            self.discriminator = _build_discriminator(cfg).to(self.device)
            torch.manual_seed(derive_seed(cfg.seed, "global"))
            self._rng_global = torch.get_rng_state()
        self.rng = torch.Generator(device=self.device).manual_seed(derive_seed(cfg.seed, "model"))
        adam = {"lr": cfg.lr, "betas": cfg.betas, "fused": cfg.fused_adam or None}
        self.opt_g = torch.optim.Adam(self.generator.parameters(), **adam)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), **adam)

        self.style: VGGStyleLoss | None = None
        self.vgg_info: dict[str, Any] | None = None
        if cfg.model == "cgn":
            path = _find_vgg(vgg_weights, data_dir)
            self.style = VGGStyleLoss(
                cfg.style_weights or (0, 0, 0, 0),
                path,
                mode=cfg.mode,
                channels_last=cfg.channels_last,
                precision=cfg.precision,
            ).to(self.device)
            self.vgg_info = {
                "path": str(path),
                "sha256": self.style.weights_sha256,
                "input_convention": self.style.input_convention,
                "feature_scale": self.style.feature_scale,
                "vgg_mode": self.style.mode,
            }
            self.binary = BinaryLoss(cfg.lambda_binary or 0.0)
        self.priors: MechanismPriors | None = None
        wants_priors = cfg.mechanism_prior > 0 or cfg.texture_init == "data"
        if cfg.model == "cgn" and wants_priors:
            if data.masks is None:
                raise ConfigError(
                    "mechanism_prior needs the binarised digits of the train split "
                    "(TrainData.masks)"
                )
            try:
                self.priors = class_priors(data.images, data.masks, data.labels).to(self.device)
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
            if cfg.texture_init == "data":
                init_texture_bias(self.generator, self.priors)
        self.images = data.images
        self.labels = data.labels.to(torch.long)
        self.resume(resume)

    @property
    def command(self) -> str:
        """The command line that reproduces this run (see :func:`reproduce_command`)."""
        data_dir = self.data_dir if self.data_dir is not None else "DATA"
        return reproduce_command(self.config, data_dir, self.out_dir, torch.get_num_threads())

    # -- data --

    @property
    def iterations_per_epoch(self) -> int:
        return self.config.iterations_per_epoch(len(self.data))

    def batch_indices(self, iteration: int) -> Tensor:
        """Train-set indices of the real batch of ``iteration`` (0-based): a function of
        ``(seed, iteration)`` only."""
        b = self.config.batch_size
        epoch, pos = divmod(iteration, self.iterations_per_epoch)
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(derive_seed(self.config.seed, "epoch", epoch))
            self._perm, self._perm_epoch = torch.randperm(len(self.data), generator=g), epoch
        return self._perm[pos * b : (pos + 1) * b]

    def real_batch(self, iteration: int) -> tuple[Tensor, Tensor]:
        idx = self.batch_indices(iteration)
        x = self.images[idx].to(self.device).to(torch.float32).div_(127.5).sub_(1.0)
        return x, self.labels[idx].to(self.device)

    # -- one iteration --

    def train_step(self) -> dict[str, float]:
        """One G step then one D step on the batch of ``self.iteration``; returns losses."""
        x_real, y_real = self.real_batch(self.iteration)
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._rng_global)
            if self.config.model == "cgn":
                losses = self._cgn_step(x_real, y_real)
            else:
                losses = self._dcgan_step(x_real, y_real)
            self._rng_global = torch.get_rng_state()
        self.iteration += 1
        return losses

    def _d_step(
        self,
        x_real: Tensor,
        y_real: Tensor,
        x_gen: Tensor,
        y_gen: Tensor,
        loss_fn: Callable[[Tensor, float], Tensor],
    ) -> dict[str, Tensor]:
        d = self.discriminator
        d.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        d_real = loss_fn(d(x_real, y_real), 1.0)
        d_fake = loss_fn(d(x_gen.detach(), y_gen), 0.0)
        d_total = (d_real + d_fake) / 2
        d_total.backward()
        self.opt_d.step()
        return {"d_real": d_real, "d_fake": d_fake, "d_total": d_total}

    def _cgn_step(self, x_real: Tensor, y_real: Tensor) -> dict[str, float]:
        cfg, cgn, d = self.config, self.generator, self.discriminator
        assert self.style is not None
        b = x_real.shape[0]
        self.opt_g.zero_grad(set_to_none=True)
        y_gen = torch.randint(cgn.n_classes, (b,), generator=self.rng, device=self.device)
        x_gen, mask, fg, bg = cgn_train_forward(
            cgn,
            y_gen,
            self.rng,
            fused=cfg.fused_generator,
            channels_last=cfg.channels_last,
            straight_through=cfg.mask_gradient == "straight-through",
            with_textures=True,
        )
        d.requires_grad_(False)  # G step: D's weight gradients are not needed
        g: dict[str, Tensor] = {"g_adv": cfg.lambda_adv * lsgan_loss(d(x_gen, y_gen), 1.0)}
        g["g_binary"] = self.binary(mask)
        g["g_style"] = self.style(x_gen, x_real)
        if cfg.lambda_edge:
            g["g_edge"] = edge_loss(mask, cfg.lambda_edge)
        if self.priors is not None and cfg.mechanism_prior > 0:
            w = prior_weight(cfg.mechanism_prior, self.iteration, cfg.mechanism_prior_iterations)
            g["g_prior"] = mechanism_prior_loss(mask, fg, bg, y_gen, self.priors, w)
        g["g_total"] = sum(g.values())  # type: ignore[assignment]
        g["g_total"].backward()
        self.opt_g.step()
        losses = {**g, **self._d_step(x_real, y_real, x_gen, y_gen, lsgan_loss)}
        return {k: float(v.detach()) for k, v in losses.items()}

    def _dcgan_step(self, x_real: Tensor, y_real: Tensor) -> dict[str, float]:
        gen, d = self.generator, self.discriminator
        b = x_real.shape[0]
        self.opt_g.zero_grad(set_to_none=True)
        y_gen = torch.randint(gen.n_classes, (b,), generator=self.rng, device=self.device)
        x_gen = gen(y_gen, generator=self.rng)
        d.requires_grad_(False)
        g_adv = _bce_loss(d(x_gen, y_gen), 1.0)
        g_adv.backward()
        self.opt_g.step()
        losses = {"g_adv": g_adv, **self._d_step(x_real, y_real, x_gen, y_gen, _bce_loss)}
        return {k: float(v.detach()) for k, v in losses.items()}

    # -- the loop --

    def target_iterations(self, iterations: int | None) -> int:
        """``iterations`` (when given) becomes the run's: the log and checkpoints record it."""
        if iterations is not None and iterations != self.config.iterations:
            self.config = dataclasses.replace(self.config, iterations=iterations)
        return int(self.config.iterations)

    def start_record(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "vgg": self.vgg_info, "command": self.command}

    def final_samples_when_idle(self) -> bool:
        return True  # the collapse indicator of the weights that are exported

    def summary_fields(self, samples: dict[str, Any] | None) -> dict[str, Any]:
        return {"collapse": (samples or {}).get("collapse")}

    # -- logging, sampling --

    def sample(self, prefix: str, *, final: bool = False) -> dict[str, Any]:
        """Write the sample grids (and, for the CGN, log the collapse indicator)."""
        cfg, folder = self.config, self.out_dir / "samples"
        seed = derive_seed(cfg.seed, "samples")
        if cfg.model == "dcgan":
            paths = save_dcgan_grid(self.generator, folder, prefix, cfg.grid_per_class, seed)
            return {"paths": [str(p) for p in paths]}
        paths = save_cgn_grids(self.generator, folder, prefix, cfg.grid_per_class, seed)
        collapse = mask_collapse_indicators(self.generator, cfg.collapse_per_class, seed)
        self.log.write({"event": "collapse", "iteration": self.iteration, **collapse})
        return {"paths": [str(p) for p in paths], "collapse": collapse}

    # -- checkpoints --

    def state(self) -> dict[str, Any]:
        """The checkpoint dictionary (see the module docstring)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.config.model,
            "iteration": self.iteration,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": {"model": self.rng.get_state(), "torch_global": self._rng_global.clone()},
            "config": self.config.to_dict(),
            "mode": self.config.mode,
            "mask_activation": self.config.mask_activation if self.config.model == "cgn" else None,
            "data": self.data.provenance,
            "vgg": self.vgg_info,
            "command": self.command,
            "environment": environment_record(self.device),
        }

    def load_state(self, ckpt: dict[str, Any]) -> None:
        """Restore a checkpoint; refuses one from a different configuration or VGG file."""
        self.check_resumable(TrainConfig.from_dict(ckpt["config"]).to_dict(), self.config.to_dict())
        theirs_vgg = (ckpt.get("vgg") or {}).get("sha256")
        if self.vgg_info is not None and theirs_vgg not in (None, self.vgg_info["sha256"]):
            raise ConfigError(
                f"the checkpoint was trained with VGG weights sha256 {theirs_vgg}, now "
                f"{self.vgg_info['sha256']}: pass the same --vgg-weights"
            )
        sha = (ckpt.get("data") or {}).get("train_sha256")
        if sha and sha != self.data.provenance.get("train_sha256"):
            raise ConfigError("the checkpoint was trained on different data (train_sha256)")
        self.generator.load_state_dict(ckpt["generator"])
        self.discriminator.load_state_dict(ckpt["discriminator"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.opt_d.load_state_dict(ckpt["opt_d"])
        self.rng.set_state(ckpt["rng"]["model"])
        self._rng_global = ckpt["rng"]["torch_global"].clone()
        self.iteration = int(ckpt["iteration"])


def _bce_loss(logits: Tensor, target: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def train_generator(
    config: TrainConfig,
    out_dir: str | PathLike[str],
    *,
    data_dir: str | PathLike[str] | None = None,
    export: bool = True,
    **kwargs: Any,
) -> dict[str, Any]:
    """Train (resuming when ``out_dir`` has a checkpoint) and export ``generator.pth``.

    ``kwargs`` go to :class:`MnistGeneratorTrainer` (``data``, ``vgg_weights``, ``on_step``...).
    """
    trainer = MnistGeneratorTrainer(config, out_dir, data_dir=data_dir, **kwargs)
    summary = trainer.run()
    if export:
        out = Path(out_dir) / "generator.pth"
        export_generator_weights(summary["checkpoint"], out)
        summary["export"] = str(out)
    return summary


# ---------------------------------------------------------------------------------- export


def export_generator_weights(
    checkpoint: str | PathLike[str] | dict[str, Any], out_path: str | PathLike[str]
) -> Path:
    """Write the generator's state dict alone to ``out_path`` and a sidecar ``.json``.

    For the CGN the keys are exactly the authors' flat layout (``label_emb.weight``,
    ``f_shape.*``, ``f_text1.*``, ``f_text2.*``), so ``load_cgn_checkpoint(out_path,
    mask_activation=<sidecar's mask_activation>)`` loads it with ``strict=True``. The sidecar
    has the training config, data provenance, VGG hash, iterations, the reproducing command and
    the sha256 of the weights file. Returns ``out_path``.
    """
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    out = Path(out_path)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in ckpt["generator"].items()}
    atomic_torch_save(state, out)
    config = ckpt["config"]
    arch = (
        "CGN (plugins/mnist/cgn_model.py; load_cgn_checkpoint)"
        if ckpt["model"] == "cgn"
        else "DCGANGenerator(n_classes=10, latent_dim=32, ngf=64) (plugins/mnist/dcgan_model.py)"
    )
    sidecar = {
        "format": EXPORT_FORMAT,
        "model": ckpt["model"],
        "architecture": arch,
        "variant": config["variant"],
        "mode": ckpt.get("mode") if ckpt["model"] == "cgn" else None,
        "mask_activation": ckpt.get("mask_activation"),
        "iterations": int(ckpt["iteration"]),
        "config": config,
        "data": ckpt.get("data"),
        "vgg": ckpt.get("vgg"),
        "command": ckpt.get("command"),
        "environment": ckpt.get("environment"),
        "weights_file": out.name,
        "weights_sha256": file_sha256(out),
        "source_checkpoint": None if isinstance(checkpoint, dict) else str(checkpoint),
    }
    atomic_write_text(json.dumps(jsonable(sidecar), indent=2) + "\n", out.with_suffix(".json"))
    return out


def load_dcgan_generator(path: str | PathLike[str], map_location: str = "cpu") -> DCGANGenerator:
    """An exported DCGAN generator (``weights_only=True``, strict), in eval mode."""
    path = Path(path)
    state = load_weights_file(path, "DCGAN weights", map_location=map_location)
    gen = DCGANGenerator()
    try:
        gen.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CGNBenchError(f"{path.name} is not a DCGAN generator state dict: {exc}") from exc
    return gen.eval()


_NOISE_BLOCK = 1024


def _dcgan_noise(seed: int, start: int, stop: int, latent_dim: int) -> Tensor:
    """Noise of images ``start..stop-1``: drawn per block of 1024 images from a generator seeded
    by ``(seed, block)``, so image ``i`` gets the same noise whatever the batch size."""
    parts = []
    for block in range(start // _NOISE_BLOCK, (stop - 1) // _NOISE_BLOCK + 1):
        g = torch.Generator().manual_seed(derive_seed(seed, "dcgan-noise", block))
        u = torch.randn(_NOISE_BLOCK, latent_dim, generator=g)
        lo = max(start - block * _NOISE_BLOCK, 0)
        hi = min(stop - block * _NOISE_BLOCK, _NOISE_BLOCK)
        parts.append(u[lo:hi])
    return torch.cat(parts)


@torch.no_grad()
def sample_dcgan(
    generator: nn.Module, n: int, seed: int = 0, batch_size: int = 500, start: int = 0
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(uint8 images [b, 3, 32, 32], int64 labels [b])`` batches, ``n`` images in all.

    Labels are class balanced (``arange(n) % n_classes``, shuffled): every class gets
    ``n // n_classes`` or one more. The generator runs in eval mode (restored afterwards);
    images are ``round((x + 1) * 127.5)``. Deterministic given the weights and ``seed``, and
    independent of ``batch_size`` (up to float rounding of batched convolutions). ``start``
    skips the images before it (resuming an interrupted write).
    """
    if n < 0 or batch_size < 1:
        raise ConfigError("n must be >= 0 and batch_size >= 1")
    dev = generator.label_emb.weight.device
    g = torch.Generator().manual_seed(derive_seed(seed, "dcgan-labels"))
    labels = (torch.arange(n) % generator.n_classes)[torch.randperm(n, generator=g)]
    was_training = generator.training
    generator.eval()
    try:
        for lo in range(start, n, batch_size):
            hi = min(lo + batch_size, n)
            u = _dcgan_noise(seed, lo, hi, generator.latent_dim).to(dev)
            x = generator(labels[lo:hi].to(dev), u=u)
            yield quantize_images(x).cpu(), labels[lo:hi].clone()
    finally:
        generator.train(was_training)
