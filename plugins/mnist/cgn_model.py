"""The MNIST Counterfactual Generative Network (CGN), as in cgn-reference.md section 1.

Three independent mechanisms turn ``cat[u, emb(y)]`` (``u ~ N(0, I_32)``, ``emb`` a learned
``Embedding(10, 10)`` shared by all three) into a 3x32x32 image in [-1, 1]:

* ``f_shape`` -> the mask ``m`` (one channel, repeated to three),
* ``f_text1`` -> the foreground texture, ``f_text2`` -> the background texture, each followed by
  the *shuffler* (a random cyclic translation per sample),
* the composer ``x = m * fg + (1 - m) * bg``.

The ``nn.Sequential`` indices are chosen so that the authors' released checkpoints load with
``strict=True`` (see :func:`load_cgn_checkpoint`).

Faithful quirks kept on purpose (documented, selectable where a fix exists):

* **No sigmoid on the mask.** The reference clamps the raw ``f_shape`` output (``LeakyReLU`` ->
  ``InstanceNorm``: zero mean, unit variance per sample) to ``[1e-4, 0.9999]``; about half of the
  pixels sit on the lower bound and the gradient is zero wherever the clamp is active. This is
  ``mask_activation="clamp"`` (default, needed for the released weights).
  ``mask_activation="sigmoid"`` (the *improved* option) applies a sigmoid before the same clamp,
  so the mask is a smooth function of the logits; use it only for newly trained models.
* **The shuffler** is the reference's "tile 2x2 then random 32x32 crop", i.e. numerically a
  per-sample ``torch.roll(x, (-dh, -dw))`` with ``dh, dw`` uniform in ``0..32`` (33 values: the
  crop offsets 0 and 32 give the same image, so the zero shift is twice as likely). It is applied
  in training *and* generation. Implemented here vectorised with one ``gather``.
* The label embedding keeps PyTorch's default ``N(0, 1)`` init (the pix2pix init does not touch
  ``nn.Embedding``).
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from robustbench_cgn.errors import CGNBenchError, ConfigError
from robustbench_cgn.weights_file import load_weights_file

__all__ = [
    "CGN",
    "CGNOutput",
    "INIT_BY_DATASET",
    "MaskActivation",
    "Reshape",
    "Shuffler",
    "build_cgn",
    "compose",
    "count_parameters",
    "cyclic_shift",
    "draw_device",
    "init_weights_pix2pix",
    "load_cgn_checkpoint",
    "sample_shifts",
    "shape_layers",
    "texture_layers",
]

MaskActivation = Literal["clamp", "sigmoid"]

#: pix2pix-style init per dataset: (init type, gain), cgn-reference.md section 1.
INIT_BY_DATASET: dict[str, tuple[str, float]] = {
    "colored": ("orthogonal", 0.1),
    "double_colored": ("orthogonal", 0.2),
    "wildlife": ("normal", 0.03),
}

MASK_MIN, MASK_MAX = 1e-4, 1.0 - 1e-4


# ----------------------------------------------------------------------------- building blocks


class Reshape(nn.Module):
    """``x.view(-1, *shape)``: turns the Linear output into a feature map (no parameters)."""

    def __init__(self, *shape: int):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: Tensor) -> Tensor:
        return x.view(-1, *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


def _upsample_block(cin: int, cout: int) -> list[nn.Module]:
    """Nearest x2 upsample -> Conv3x3 (no bias) -> BN -> LeakyReLU(0.2): 4 Sequential slots."""
    return [
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(cin, cout, 3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2),
    ]


def shape_layers(in_dim: int = 42, ngf: int = 32, init_size: int = 8) -> list[nn.Module]:
    """``f_shape``: indices 0 Linear, 4 Conv, 5 BN, 9 Conv, 10 BN carry the checkpoint's weights.

    Linear -> view [2ngf, s, s] -> IN(2ngf) -> [Up, Conv(2ngf->ngf), BN, LReLU] -> IN(ngf) ->
    [Up, Conv(ngf->1), BN, LReLU] -> IN(1). InstanceNorms are ``affine=False`` (no state).
    """
    return [
        nn.Linear(in_dim, 2 * ngf * init_size**2),
        Reshape(2 * ngf, init_size, init_size),
        nn.InstanceNorm2d(2 * ngf),
        *_upsample_block(2 * ngf, ngf),
        nn.InstanceNorm2d(ngf),
        *_upsample_block(ngf, 1),
        nn.InstanceNorm2d(1),
    ]


def texture_layers(in_dim: int = 42, ngf: int = 32, init_size: int = 8) -> list[nn.Module]:
    """``f_text*``: indices 0 Linear, 3 Conv, 4 BN, 7 Conv, 8 BN, 10 Conv(+bias), 11 BN.

    Linear -> view [2ngf, s, s] -> [Up, Conv(2ngf->2ngf), BN, LReLU] -> [Up, Conv(2ngf->ngf), BN,
    LReLU] -> Conv3x3(ngf->3, bias) -> BN(3) -> Tanh.
    """
    return [
        nn.Linear(in_dim, 2 * ngf * init_size**2),
        Reshape(2 * ngf, init_size, init_size),
        *_upsample_block(2 * ngf, 2 * ngf),
        *_upsample_block(2 * ngf, ngf),
        nn.Conv2d(ngf, 3, 3, stride=1, padding=1),
        nn.BatchNorm2d(3),
        nn.Tanh(),
    ]


# ------------------------------------------------------------------------------------ shuffler


def draw_device(
    generator: torch.Generator | None, device: torch.device | str | None
) -> torch.device | str | None:
    """Where to draw random numbers: the generator's device if one is given (a CPU generator
    can then seed a CUDA model: draw on CPU, then move), else ``device``."""
    return generator.device if generator is not None else device


def sample_shifts(
    batch: int,
    size: int = 32,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Per-sample shifts ``[B, 2]`` (dh, dw), each uniform in ``0..size`` inclusive.

    ``size + 1`` values, as the reference's random crop of a 2x2 tiling draws them.
    """
    return torch.randint(0, size + 1, (batch, 2), generator=generator, device=device)


def cyclic_shift(x: Tensor, shifts: Tensor) -> Tensor:
    """Vectorised ``torch.roll(x[i], (-dh_i, -dw_i), dims=(-2, -1))`` for every sample ``i``.

    ``out[b, c, i, j] = x[b, c, (i + dh_b) % H, (j + dw_b) % W]``: one ``gather`` over the
    flattened pixels, exact (a pure copy), differentiable, any dtype/memory format.
    """
    b, c, h, w = x.shape
    shifts = shifts.to(device=x.device, dtype=torch.long)
    rows = (torch.arange(h, device=x.device)[None, :] + shifts[:, :1]) % h  # [B, H]
    cols = (torch.arange(w, device=x.device)[None, :] + shifts[:, 1:]) % w  # [B, W]
    pix = (rows[:, :, None] * w + cols[:, None, :]).view(b, h * w)
    if c > 1 and x.is_contiguous(memory_format=torch.channels_last):  # gather NHWC, no copy
        flat = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
        out = flat.gather(1, pix[:, :, None].expand(b, h * w, c))
        return out.view(b, h, w, c).permute(0, 3, 1, 2)
    return x.reshape(b, c, h * w).gather(2, pix[:, None, :].expand(b, c, h * w)).view(b, c, h, w)


class Shuffler(nn.Module):
    """Random per-sample cyclic translation (the reference's Patch2Image(2) + RandomCrop).

    ``forward(x, shifts=None, generator=None)``: draws shifts with :func:`sample_shifts` unless
    given. No parameters.
    """

    def forward(
        self, x: Tensor, shifts: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        if shifts is None:
            dev = draw_device(generator, x.device)
            shifts = sample_shifts(x.shape[0], x.shape[-1], generator=generator, device=dev)
        return cyclic_shift(x, shifts)


def compose(mask: Tensor, foreground: Tensor, background: Tensor) -> Tensor:
    """The composer: ``x = m * fg + (1 - m) * bg``."""
    return mask * foreground + (1 - mask) * background


# ---------------------------------------------------------------------------------------- init


def init_weights_pix2pix(module: nn.Module, init_type: str = "normal", gain: float = 0.02) -> None:
    """pix2pix ``init_weights``: Conv*/Linear weights ``init_type`` with ``gain``, their biases 0,
    BatchNorm weights ``N(1, gain)`` and biases 0. Other modules (``nn.Embedding``,
    affine-free InstanceNorms) keep PyTorch's defaults, as in the reference.
    """
    if init_type not in {"normal", "xavier", "kaiming", "orthogonal"}:
        raise ConfigError(
            f"unknown init_type {init_type!r}; use normal, xavier, kaiming or orthogonal"
        )

    def init_fn(m: nn.Module) -> None:
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            if init_type == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)

    with torch.no_grad():
        module.apply(init_fn)


# ----------------------------------------------------------------------------------------- CGN


@dataclass(frozen=True)
class CGNOutput:
    """One CGN forward: the composite and its parts, plus the labels each mechanism got."""

    x: Tensor  # [B, 3, H, W] in [-1, 1]
    mask: Tensor  # [B, 3, H, W] in [1e-4, 0.9999]
    foreground: Tensor  # [B, 3, H, W], shuffled
    background: Tensor  # [B, 3, H, W], shuffled
    y_shape: Tensor
    y_foreground: Tensor
    y_background: Tensor


class CGN(nn.Module):
    """The MNIST CGN (659,992 parameters with the defaults).

    Args:
        n_classes: number of labels (Embedding(n_classes, n_classes)).
        latent_dim: size of ``u``.
        ngf: base width; the Linear layers produce ``2 * ngf`` maps of ``img_size // 4``.
        img_size: output side (32).
        init_type, init_gain: pix2pix init (see :data:`INIT_BY_DATASET`); ``init_type=None``
            keeps PyTorch's defaults (e.g. before loading a checkpoint).
        mask_activation: ``"clamp"`` (faithful: clamp the raw output) or ``"sigmoid"``
            (improved: sigmoid, then the same clamp).
    """

    def __init__(
        self,
        n_classes: int = 10,
        latent_dim: int = 32,
        ngf: int = 32,
        img_size: int = 32,
        init_type: str | None = "orthogonal",
        init_gain: float = 0.1,
        mask_activation: MaskActivation = "clamp",
    ):
        super().__init__()
        if mask_activation not in ("clamp", "sigmoid"):
            raise ConfigError(
                f"mask_activation must be 'clamp' or 'sigmoid', not {mask_activation!r}"
            )
        if img_size % 4:
            raise ConfigError(f"img_size must be a multiple of 4, got {img_size}")
        self.n_classes, self.latent_dim, self.ngf, self.img_size = (
            n_classes,
            latent_dim,
            ngf,
            img_size,
        )
        self.mask_activation: MaskActivation = mask_activation
        in_dim, init_size = latent_dim + n_classes, img_size // 4
        self.label_emb = nn.Embedding(n_classes, n_classes)
        self.f_shape = nn.Sequential(*shape_layers(in_dim, ngf, init_size))
        self.f_text1 = nn.Sequential(*texture_layers(in_dim, ngf, init_size))
        self.f_text2 = nn.Sequential(*texture_layers(in_dim, ngf, init_size))
        self.shuffler = Shuffler()
        if init_type is not None:
            init_weights_pix2pix(self, init_type, init_gain)

    # -- pieces (all deterministic given their inputs, so fast paths can be compared) --

    def sample_noise(self, batch: int, generator: torch.Generator | None = None) -> Tensor:
        """``u ~ N(0, I_latent)``, shape ``[B, latent_dim]``."""
        dev = self.label_emb.weight.device
        u = torch.randn(
            batch, self.latent_dim, generator=generator, device=draw_device(generator, dev)
        )
        return u.to(dev)

    def mechanism_input(self, u: Tensor, y: Tensor) -> Tensor:
        """``cat[u, emb(y)]`` (42 dims)."""
        return torch.cat([u, self.label_emb(y)], dim=-1)

    def mask_from_logits(self, out: Tensor) -> Tensor:
        """Raw ``f_shape`` output -> mask in ``[1e-4, 0.9999]`` (see ``mask_activation``)."""
        if self.mask_activation == "sigmoid":
            out = torch.sigmoid(out)
        return torch.clamp(out, MASK_MIN, MASK_MAX)

    def mask(self, u: Tensor, y: Tensor) -> Tensor:
        """The mask, repeated to 3 channels: ``[B, 3, H, W]``."""
        return self.mask_from_logits(self.f_shape(self.mechanism_input(u, y))).repeat(1, 3, 1, 1)

    def foreground(
        self,
        u: Tensor,
        y: Tensor,
        shifts: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``shuffler(f_text1(cat[u, emb(y)]))``."""
        return self.shuffler(self.f_text1(self.mechanism_input(u, y)), shifts, generator)

    def background(
        self,
        u: Tensor,
        y: Tensor,
        shifts: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``shuffler(f_text2(cat[u, emb(y)]))``."""
        return self.shuffler(self.f_text2(self.mechanism_input(u, y)), shifts, generator)

    # -- forwards --

    def forward(
        self,
        y: Tensor,
        counterfactual: bool = False,
        generator: torch.Generator | None = None,
    ) -> CGNOutput:
        """Normal forward (one ``u`` and ``y`` for all mechanisms) or counterfactual forward.

        Counterfactual: independent ``u`` per mechanism; shape gets ``y``, foreground and
        background get ``y[randperm]`` from two independent permutations of the batch labels.
        Random draws, in order: u_shape, (u_fg, u_bg,) [perm_fg, perm_bg,] shifts_fg, shifts_bg.
        """
        b = y.shape[0]
        u_shape = self.sample_noise(b, generator)
        if counterfactual:
            u_fg, u_bg = self.sample_noise(b, generator), self.sample_noise(b, generator)
            where = draw_device(generator, y.device)
            y_fg = y[torch.randperm(b, generator=generator, device=where).to(y.device)]
            y_bg = y[torch.randperm(b, generator=generator, device=where).to(y.device)]
        else:
            u_fg = u_bg = u_shape
            y_fg = y_bg = y
        m = self.mask(u_shape, y)
        fg = self.foreground(u_fg, y_fg, generator=generator)
        bg = self.background(u_bg, y_bg, generator=generator)
        return CGNOutput(compose(m, fg, bg), m, fg, bg, y, y_fg, y_bg)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, counterfactual: bool = False
    ) -> CGNOutput:
        """Convenience: ``n`` samples with uniform random labels (no grad)."""
        dev = self.label_emb.weight.device
        where = draw_device(generator, dev)
        y = torch.randint(self.n_classes, (n,), generator=generator, device=where).to(dev)
        return self(y, counterfactual=counterfactual, generator=generator)


def build_cgn(dataset: str = "colored", *, improved: bool = False, **kwargs: object) -> CGN:
    """A freshly initialised CGN with the dataset's pix2pix init (cgn-reference.md section 1).

    ``dataset``: ``colored``, ``double_colored`` or ``wildlife`` (``_MNIST`` suffix and ``-``
    accepted). ``improved=True`` selects the sigmoid mask (see :class:`CGN`).
    """
    key = dataset.lower().removesuffix("_mnist").replace("-", "_")
    if key not in INIT_BY_DATASET:
        raise ConfigError(
            f"unknown MNIST variant {dataset!r}; use one of {sorted(INIT_BY_DATASET)}"
        )
    init_type, gain = INIT_BY_DATASET[key]
    kwargs.setdefault("mask_activation", "sigmoid" if improved else "clamp")
    return CGN(init_type=init_type, init_gain=gain, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- checkpoints


def _describe_mismatch(model: nn.Module, state: dict[str, Tensor]) -> list[str]:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]

    def show(keys: list[str]) -> str:
        return ", ".join(keys[:8]) + (f" ... (+{len(keys) - 8})" if len(keys) > 8 else "")

    problems = []
    if missing:
        problems.append(f"missing keys: {show(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {show(unexpected)}")
    if wrong:
        problems.append(f"shape mismatches: {show(wrong)}")
    return problems


def _unwrap_state_dict(obj: object) -> object:
    """Accept a flat state dict, or one nested under a common key / with a ``module.`` prefix."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "cgn", "generator"):
            if key in obj and isinstance(obj[key], dict) and "label_emb.weight" not in obj:
                obj = obj[key]
                break
        if obj and all(isinstance(k, str) and k.startswith("module.") for k in obj):
            obj = {k.removeprefix("module."): v for k, v in obj.items()}
    return obj


def load_cgn_checkpoint(
    path: str | PathLike[str],
    *,
    mask_activation: MaskActivation = "clamp",
    map_location: str | torch.device = "cpu",
    eval_mode: bool = True,
) -> CGN:
    """Load a CGN state dict (e.g. the authors' ``cgn_colored_MNIST.pth``) with ``strict=True``.

    Uses ``torch.load(path, weights_only=True)``. Raises :class:`DataNotFoundError` when the file
    is missing and :class:`CGNBenchError` naming the missing/unexpected keys and shape mismatches
    when the file is not a CGN of this architecture. The model is returned in eval mode unless
    ``eval_mode=False``.
    """
    path = Path(path)
    raw = load_weights_file(path, "CGN checkpoint", map_location=map_location)
    state = _unwrap_state_dict(raw)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CGNBenchError(f"{path} is not a state dict of tensors (got {type(raw).__name__})")
    model = CGN(init_type=None, mask_activation=mask_activation)
    problems = _describe_mismatch(model, state)
    if problems:
        raise CGNBenchError(
            f"{path.name} does not fit the MNIST CGN architecture: " + "; ".join(problems)
        )
    model.load_state_dict(state, strict=True)
    model.to(map_location)
    return model.eval() if eval_mode else model


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in module.parameters())
