"""The ImageNet CGN: three trainable BigGAN-deep mechanisms composed through a U2-Net mask.

cgn-reference.md section 5 (the reference's ``imagenet/models/cgn.py``). Given shared noise
``u`` and the classes ``(y_shape, y_texture, y_background)``::

    premask    = f_shape(u, y_shape)                     # an image in [-1, 1]
    mask       = clamp(U2Net(premask), 1e-4, 0.9999)     # [B, 1, H, W]
    foreground = f_text(u, y_texture)
    background = f_bg(u, y_background)
    x_gen      = mask * foreground + (1 - mask) * background
    x_gt       = biggan_gt(u, y_shape)                   # frozen pseudo ground truth

``f_shape``, ``f_text`` and ``f_bg`` are :class:`~.biggan.BigGAN` generators initialised from the
same weights; ``biggan_gt`` (a fourth copy) and ``u2net`` are frozen (``requires_grad=False``,
always in eval mode). Training uses one class for all three; generation may give each
mechanism its own. ``background_mask = U2Net(background)`` (for the background loss) is
computed on request. Gradients reach ``f_shape`` through the frozen U2-Net.

The U2-Net input: ``u2net_input="cgn"`` feeds the BigGAN output in [-1, 1] unchanged, as the
reference does; ``"u2net"`` applies U-2-Net's own preprocessing
(:func:`~.u2net.prepare_for_u2net`). The reference's U2-Net copy upsamples with
``align_corners=True`` (:func:`build_imagenet_cgn`'s default).

Mode: as in the reference, :meth:`ImageNetCGN.train` puts the three mechanisms in training mode
(their spectral norms run a power iteration per forward) and keeps ``biggan_gt`` and ``u2net``
in eval mode. BigGAN's batch norms use fixed statistics in both modes.

State dict keys: ``f_shape.*``, ``f_text.*``, ``f_bg.*``, ``biggan_gt.*``, ``u2net.*``, each in
the published files' layout (pytorch-pretrained-BigGAN, U-2-Net), so the authors' released
``cgn.pth`` (``biggan_GT.*`` and a possible ``module.`` prefix) loads with
:func:`load_cgn_state`.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustbench_cgn.errors import ConfigError, IncompatibleError

from .biggan import BigGAN, BigGANConfig, load_biggan_weights, truncated_noise
from .u2net import U2Net, load_u2net_weights, prepare_for_u2net

__all__ = [
    "ARCHITECTURES",
    "MASK_CLAMP",
    "MECHANISMS",
    "U2NET_VARIANTS",
    "CGNOutput",
    "ImageNetCGN",
    "biggan_config",
    "build_imagenet_cgn",
    "class_vectors",
    "load_cgn_state",
]

MASK_CLAMP = (1e-4, 0.9999)
#: mechanism name -> attribute (the optimizer groups of the trainer)
MECHANISMS = {"shape": "f_shape", "texture": "f_text", "background": "f_bg"}
ARCHITECTURES = ("deep_256", "deep_128", "tiny")
U2NET_VARIANTS = ("full", "small")


def biggan_config(architecture: str) -> BigGANConfig:
    """``deep_256`` (the paper's), ``deep_128`` or ``tiny`` (32 px, tests)."""
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"unknown BigGAN architecture {architecture!r}; use {ARCHITECTURES}")
    return getattr(BigGANConfig, architecture)()


def class_vectors(
    y: Tensor | int, batch: int, num_classes: int, device: torch.device | str
) -> Tensor:
    """One-hot float ``[batch, num_classes]`` from class indices ``[batch]`` (or one int for
    the whole batch); float ``[batch, num_classes]`` vectors pass through."""
    if isinstance(y, int):
        y = torch.full((batch,), y, dtype=torch.long)
    if y.dim() == 2 and y.is_floating_point():
        if y.shape != (batch, num_classes):
            raise ValueError(f"class vectors must be [{batch}, {num_classes}]")
        return y.to(device)
    y = y.reshape(-1).to(device=device, dtype=torch.long)
    if y.shape[0] != batch:
        raise ValueError(f"got {y.shape[0]} classes for a batch of {batch}")
    if bool(((y < 0) | (y >= num_classes)).any()):
        raise ValueError(f"class indices must lie in 0..{num_classes - 1}")
    return F.one_hot(y, num_classes).float()


@dataclass
class CGNOutput:
    """Everything one forward pass produces (all ``[B, C, H, W]``; images in [-1, 1])."""

    premask: Tensor
    mask: Tensor  # [B, 1, H, W] in [1e-4, 0.9999]
    foreground: Tensor
    background: Tensor
    x_gen: Tensor
    x_gt: Tensor | None = None
    background_mask: Tensor | None = None  # U2Net(background), [B, 1, H, W]


class ImageNetCGN(nn.Module):
    """The composer (module docstring). ``biggan`` is the initialisation of every mechanism and
    becomes ``biggan_gt`` itself (not copied); ``u2net`` is frozen in place."""

    def __init__(
        self,
        biggan: BigGAN,
        u2net: U2Net,
        *,
        truncation: float = 1.0,
        u2net_input: str = "cgn",
        mask_clamp: tuple[float, float] = MASK_CLAMP,
    ):
        super().__init__()
        if u2net_input not in ("cgn", "u2net"):
            raise ConfigError(f"u2net_input must be 'cgn' or 'u2net', not {u2net_input!r}")
        if not 0.0 < truncation <= 1.0:
            raise ConfigError(f"truncation must lie in (0, 1], got {truncation}")
        self.truncation = float(truncation)
        self.u2net_input = u2net_input
        self.mask_clamp = (float(mask_clamp[0]), float(mask_clamp[1]))
        self.f_shape = copy.deepcopy(biggan).requires_grad_(True)
        self.f_text = copy.deepcopy(biggan).requires_grad_(True)
        self.f_bg = copy.deepcopy(biggan).requires_grad_(True)
        self.biggan_gt = biggan.requires_grad_(False).eval()
        self.u2net = u2net.requires_grad_(False).eval()

    @property
    def config(self) -> BigGANConfig:
        return self.f_shape.config

    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def resolution(self) -> int:
        return self.config.output_dim

    def mechanisms(self) -> dict[str, BigGAN]:
        """``{"shape": f_shape, "texture": f_text, "background": f_bg}``."""
        return {name: getattr(self, attr) for name, attr in MECHANISMS.items()}

    def train(self, mode: bool = True) -> ImageNetCGN:
        super().train(mode)
        self.biggan_gt.eval()
        self.u2net.eval()
        return self

    def noise(
        self, batch: int, generator: torch.Generator | None = None, truncation: float | None = None
    ) -> Tensor:
        """Truncated noise ``[batch, z_dim]`` (on the generator's device, CPU by default)."""
        t = self.truncation if truncation is None else truncation
        return truncated_noise(batch, self.z_dim, t, generator)

    def saliency(self, images: Tensor) -> Tensor:
        """``U2Net(images)`` in [0, 1], ``[B, 1, H, W]`` (input convention: ``u2net_input``)."""
        return self.u2net.saliency(prepare_for_u2net(images, self.u2net_input))

    def mask_from_premask(self, premask: Tensor) -> Tensor:
        return torch.clamp(self.saliency(premask), *self.mask_clamp)

    @staticmethod
    def compose(mask: Tensor, foreground: Tensor, background: Tensor) -> Tensor:
        return mask * foreground + (1 - mask) * background

    def forward(
        self,
        u: Tensor,
        y_shape: Tensor | int,
        y_texture: Tensor | int | None = None,
        y_background: Tensor | int | None = None,
        *,
        truncation: float | None = None,
        ground_truth: bool = True,
        background_mask: bool = False,
    ) -> CGNOutput:
        """One pass; ``y_texture``/``y_background`` default to ``y_shape``. ``ground_truth``:
        also run ``biggan_gt`` (no autograd); ``background_mask``: also ``U2Net(bg)``."""
        t = self.truncation if truncation is None else float(truncation)
        batch, device = u.shape[0], u.device
        y0 = class_vectors(y_shape, batch, self.num_classes, device)
        y1 = y0 if y_texture is None else class_vectors(y_texture, batch, self.num_classes, device)
        y2 = (
            y0
            if y_background is None
            else class_vectors(y_background, batch, self.num_classes, device)
        )
        premask = self.f_shape(u, y0, t)
        mask = self.mask_from_premask(premask)
        foreground = self.f_text(u, y1, t)
        background = self.f_bg(u, y2, t)
        out = CGNOutput(
            premask=premask,
            mask=mask,
            foreground=foreground,
            background=background,
            x_gen=self.compose(mask, foreground, background),
        )
        if ground_truth:
            with torch.no_grad():
                out.x_gt = self.biggan_gt(u, y0, t)
        if background_mask:
            out.background_mask = self.saliency(background)
        return out


def build_imagenet_cgn(
    architecture: str = "deep_256",
    *,
    biggan_weights: str | os.PathLike[str] | None = None,
    u2net_weights: str | os.PathLike[str] | None = None,
    random_weights: bool = False,
    u2net_variant: str = "full",
    u2net_align_corners: bool = True,
    u2net_input: str = "cgn",
    truncation: float = 1.0,
    seed: int = 0,
) -> ImageNetCGN:
    """An :class:`ImageNetCGN` from the published BigGAN-deep and U2-Net files (paths, or
    ``$CGNBENCH_BIGGAN_WEIGHTS`` / ``$CGNBENCH_U2NET_WEIGHTS``), or, with ``random_weights``,
    from a seeded random initialisation (tests and smoke runs; nothing is read). The random
    init is a pure function of ``(architecture, u2net_variant, seed)``."""
    if u2net_variant not in U2NET_VARIANTS:
        raise ConfigError(f"u2net_variant must be one of {U2NET_VARIANTS}, not {u2net_variant!r}")
    config = biggan_config(architecture)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        biggan = BigGAN(config)
        if u2net_variant == "small":
            u2net = U2Net.small(align_corners=u2net_align_corners)
        else:
            u2net = U2Net(align_corners=u2net_align_corners)
    if not random_weights:
        load_biggan_weights(biggan, biggan_weights)
        load_u2net_weights(u2net, u2net_weights)
    return ImageNetCGN(biggan, u2net, truncation=truncation, u2net_input=u2net_input)


def load_cgn_state(cgn: ImageNetCGN, state: Mapping[str, Any], *, source: str = "") -> set[str]:
    """Load a (partial) CGN state dict strictly for the prefixes it contains.

    Accepts this module's keys and the authors' release (``biggan_GT.*``, ``module.*``). Every
    sub-network present in ``state`` must match exactly; sub-networks absent from it keep their
    weights. Returns the prefixes loaded (e.g. ``{"f_shape", "f_text", "f_bg", "u2net"}``).
    """
    renamed: dict[str, Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("biggan_GT."):
            key = "biggan_gt." + key.removeprefix("biggan_GT.")
        renamed[key] = value
    children = dict(cgn.named_children())
    loaded = set()
    for prefix, module in children.items():
        part = {
            k.removeprefix(prefix + "."): v
            for k, v in renamed.items()
            if k.startswith(prefix + ".")
        }
        if not part:
            continue
        expected = module.state_dict()
        missing = sorted(set(expected) - set(part))
        unexpected = sorted(set(part) - set(expected))
        bad = sorted(k for k in set(expected) & set(part) if expected[k].shape != part[k].shape)
        if missing or unexpected or bad:
            raise IncompatibleError(
                f"{source or 'the CGN weights'}: {prefix} does not fit this CGN "
                f"({len(missing)} missing, {len(unexpected)} unexpected, {len(bad)} of another "
                f"shape; first: {(missing + unexpected + bad)[:2]}); another architecture?"
            )
        module.load_state_dict(part, strict=True)
        loaded.add(prefix)
    stray = sorted({k.split(".")[0] for k in renamed} - set(children))
    if stray:
        raise IncompatibleError(
            f"{source or 'the CGN weights'}: unknown parts {stray} (expected {sorted(children)})"
        )
    return loaded
