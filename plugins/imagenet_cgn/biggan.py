"""BigGAN-deep generator in the layout of the ``pytorch-pretrained-BigGAN`` port.

The ImageNet CGN (Sauer & Geiger, 2021) trains three BigGAN-deep-256 generators (shape, texture,
background mechanisms) next to a frozen one, all initialised from the PyTorch port of the TF Hub
BigGAN-deep models published by Hugging Face (``pytorch-pretrained-BigGAN``, files
``pytorch_model.bin`` + ``config.json``; the CGN reference code loads that very file as
``biggan256.pth``). This module is written for this project, but its module tree and therefore
its ``state_dict`` keys and shapes are those of the port, so the public file loads with
``strict=True`` (see :func:`load_biggan_weights`).

Forward semantics follow the port: the condition vector is ``cat(z, embeddings(class_vector))``;
``gen_z`` maps it to a 4x4 map in TF (NHWC) order; a stack of bottleneck ``GenBlock`` s (with one
self-attention layer) doubles the resolution at every ``up`` layer; every batch norm uses frozen
statistics precomputed for 51 truncation values and picked by the ``truncation`` argument; the
image is ``tanh`` of the first three channels of ``conv_to_rgb``.

Noise: :func:`truncated_noise` draws a normal truncated to [-2, 2] (scaled by ``truncation``)
from torch's RNG. The port and the CGN code draw it with ``scipy.stats.truncnorm`` and numpy
seeds, so the same integer seed gives other (identically distributed) vectors here.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.spectral_norm import SpectralNorm, spectral_norm

from robustbench_cgn.artifacts import RemoteFile, WeightsSpec
from robustbench_cgn.errors import ConfigError, DataNotFoundError, IncompatibleError
from robustbench_cgn.resolver import resolve_spec, resolve_weights
from robustbench_cgn.weights_file import load_weights_file

__all__ = [
    "BIGGAN_WEIGHTS",
    "CONFIG_NAME",
    "PRETRAINED",
    "WEIGHTS_ENV",
    "WEIGHTS_NAME",
    "BigGAN",
    "BigGANBatchNorm",
    "BigGANConfig",
    "GenBlock",
    "Generator",
    "PretrainedFiles",
    "SelfAttn",
    "load_biggan_state",
    "load_biggan_weights",
    "resolve_biggan_weights",
    "truncated_noise",
]

LayerSpec = tuple[bool, int, int]

# ----------------------------------------------------------------------------- published files

WEIGHTS_ENV = "CGNBENCH_BIGGAN_WEIGHTS"
WEIGHTS_NAME = "pytorch_model.bin"  # the port's file names inside a model folder
CONFIG_NAME = "config.json"


@dataclass(frozen=True)
class PretrainedFiles:
    """Where the port's files for one model come from (its ``PRETRAINED_*_ARCHIVE_MAP``)."""

    name: str
    weights_url: str
    config_url: str
    weights_sha256: str | None
    config_sha256: str | None
    weights_bytes: int | None


_S3 = "https://s3.amazonaws.com/models.huggingface.co/biggan"

# Checksums: Hugging Face publishes none for these files. The biggan-deep-256 values below are
# the pins of a third-party installer catalog found in public code (a Go "modelinstall" package,
# catalog "bundle-b-2026-08-07"), not the publisher's. Its config.json pin is corroborated: the
# port's converter (convert_tf_to_pytorch.BigGAN256.to_json_string()) reproduces a 715-byte file
# with exactly that sha256, as does BigGANConfig.deep_256().to_json(). The weights pin is not
# verified here (no network) and is informational only: nothing enforces it, because re-saved
# copies of the same tensors (the CGN repository's ``biggan256.pth``, a Hub mirror) have other
# bytes. No checksum is known for the 128 files.
PRETRAINED: dict[str, PretrainedFiles] = {
    "biggan-deep-256": PretrainedFiles(
        name="biggan-deep-256",
        weights_url=f"{_S3}/biggan-deep-256-pytorch_model.bin",
        config_url=f"{_S3}/biggan-deep-256-config.json",
        weights_sha256="5900ef4065047e3aa0d1b66197b7f2664dceb59b27080e414ad57e203c485bc5",
        config_sha256="edd106f65ff28ee1638491a978cfa6bc50dfa0344aab70749a7b8eb08bbec677",
        weights_bytes=234_411_737,
    ),
    "biggan-deep-128": PretrainedFiles(
        name="biggan-deep-128",
        weights_url=f"{_S3}/biggan-deep-128-pytorch_model.bin",
        config_url=f"{_S3}/biggan-deep-128-config.json",
        weights_sha256=None,
        config_sha256=None,
        weights_bytes=None,
    ),
}


def _weights_spec(files: PretrainedFiles) -> WeightsSpec:
    config = RemoteFile(CONFIG_NAME, (files.config_url,), sha256=files.config_sha256)
    return WeightsSpec(
        files.name.replace("biggan-", "biggan."),
        filename=WEIGHTS_NAME,
        urls=(files.weights_url,),
        # the weights pin is a third party's (see above): informational, not enforced
        provenance={"sha256_third_party_pin": files.weights_sha256},
        size=files.weights_bytes,
        description=f"{files.name} generator (pytorch-pretrained-BigGAN port, ImageNet)",
        tags=("imagenet", "cgn-imagenet"),
        license="Apache-2.0 (BigGAN TF Hub module, pytorch-pretrained-BigGAN)",
        citation="Brock, Donahue & Simonyan, Large Scale GAN Training, ICLR 2019",
        local=(f"biggan/{files.name}/{WEIGHTS_NAME}",),
        env=WEIGHTS_ENV,
        companions=(config,),
    )


#: ``biggan.deep-256``, ``biggan.deep-128``: the port's files, fetched with their config.json.
BIGGAN_WEIGHTS: dict[str, WeightsSpec] = {
    spec.name: spec for spec in (_weights_spec(files) for files in PRETRAINED.values())
}
SPEC_OF_RESOLUTION = {256: "biggan.deep-256", 128: "biggan.deep-128"}

# ----------------------------------------------------------------------------- configuration

_DEEP_128_LAYERS: tuple[LayerSpec, ...] = (
    (False, 16, 16),
    (True, 16, 16),
    (False, 16, 16),
    (True, 16, 8),
    (False, 8, 8),
    (True, 8, 4),
    (False, 4, 4),
    (True, 4, 2),
    (False, 2, 2),
    (True, 2, 1),
)
_DEEP_256_LAYERS: tuple[LayerSpec, ...] = (
    (False, 16, 16),
    (True, 16, 16),
    (False, 16, 16),
    (True, 16, 8),
    (False, 8, 8),
    (True, 8, 8),
    (False, 8, 8),
    (True, 8, 4),
    (False, 4, 4),
    (True, 4, 2),
    (False, 2, 2),
    (True, 2, 1),
)


@dataclass(frozen=True, kw_only=True)
class BigGANConfig:
    """The fields of the port's ``config.json``.

    ``layers`` are ``(up, in_mult, out_mult)``: a GenBlock from ``channel_width * in_mult`` to
    ``channel_width * out_mult`` channels that doubles the resolution when ``up``. The
    self-attention layer sits before GenBlock number ``attention_layer_position``. ``eps`` is the
    epsilon of the batch norms and of the spectral norms; ``n_stats`` the number of truncation
    values (evenly spaced over [0, 1]) with precomputed batch-norm statistics.

    The port ignores ``class_embed_dim`` (its embedding has ``z_dim`` outputs); here the embedding
    has ``class_embed_dim`` outputs, which is the same for every published config (both 128).
    """

    output_dim: int
    layers: tuple[LayerSpec, ...]
    z_dim: int = 128
    class_embed_dim: int = 128
    channel_width: int = 128
    num_classes: int = 1000
    attention_layer_position: int = 8
    eps: float = 1e-4
    n_stats: int = 51

    def __post_init__(self) -> None:
        try:
            layers = tuple((bool(up), int(i), int(o)) for up, i, o in self.layers)
        except (TypeError, ValueError):
            raise ConfigError(
                f"BigGAN layers must be (up, in_mult, out_mult) triples, got {self.layers!r}"
            ) from None
        object.__setattr__(self, "layers", layers)
        self._validate()

    def _validate(self) -> None:
        def bad(msg: str) -> ConfigError:
            return ConfigError(f"invalid BigGAN config: {msg}")

        for name in ("output_dim", "z_dim", "class_embed_dim", "channel_width", "num_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.n_stats, int) or self.n_stats < 2:
            raise bad(f"n_stats must be an integer >= 2, got {self.n_stats!r}")
        if not (isinstance(self.eps, int | float) and self.eps > 0):
            raise bad(f"eps must be a positive number, got {self.eps!r}")
        layers, ch = self.layers, self.channel_width
        if not layers:
            raise bad("layers is empty")
        if layers[0][1] != 16:
            raise bad(
                f"the first layer must start at in_mult 16 (gen_z makes 16 x channel_width "
                f"channels), got {layers[0][1]}"
            )
        for k, (_, in_mult, out_mult) in enumerate(layers):
            if k and in_mult != layers[k - 1][2]:
                raise bad(
                    f"layer {k} starts at in_mult {in_mult} but layer {k - 1} ends at "
                    f"{layers[k - 1][2]}"
                )
            if (ch * in_mult) // 4 < 1:
                raise bad(f"layer {k} has no bottleneck channels (channel_width too small)")
            if out_mult != in_mult and ch * out_mult * 2 != ch * in_mult:
                raise bad(
                    f"layer {k} goes from in_mult {in_mult} to {out_mult}; a block can "
                    "only keep or halve its channels"
                )
        if layers[-1][2] != 1:
            raise bad(f"the last layer must end at out_mult 1, got {layers[-1][2]}")
        if not 0 <= self.attention_layer_position < len(layers):
            raise bad(
                f"attention_layer_position {self.attention_layer_position} is not a "
                f"layer index (0..{len(layers) - 1})"
            )
        if (ch * layers[self.attention_layer_position][1]) % 8:
            raise bad("the attention layer needs a channel count divisible by 8")
        expected = 4 * 2 ** sum(up for up, _, _ in layers)
        if self.output_dim != expected:
            raise bad(
                f"output_dim {self.output_dim} does not match the layers, which make "
                f"{expected} px images"
            )

    # -- the published configs, and a tiny one for tests

    @classmethod
    def deep_256(cls) -> BigGANConfig:
        """``biggan-deep-256`` (the CGN paper's generator)."""
        return cls(output_dim=256, layers=_DEEP_256_LAYERS)

    @classmethod
    def deep_128(cls) -> BigGANConfig:
        """``biggan-deep-128``."""
        return cls(output_dim=128, layers=_DEEP_128_LAYERS)

    @classmethod
    def tiny(cls) -> BigGANConfig:
        """A 32 px, 4-block, low-channel config (1000 classes, z_dim 128) for fast tests."""
        return cls(
            output_dim=32,
            channel_width=4,
            layers=((True, 16, 8), (False, 8, 4), (True, 4, 2), (True, 2, 1)),
            attention_layer_position=2,
        )

    # -- the port's config.json

    def to_dict(self) -> dict[str, Any]:
        """The port's ``config.json`` fields (``layers`` as lists)."""
        return {
            "output_dim": self.output_dim,
            "z_dim": self.z_dim,
            "class_embed_dim": self.class_embed_dim,
            "channel_width": self.channel_width,
            "num_classes": self.num_classes,
            "layers": [list(layer) for layer in self.layers],
            "attention_layer_position": self.attention_layer_position,
            "eps": self.eps,
            "n_stats": self.n_stats,
        }

    def to_json(self) -> str:
        """``config.json`` text, formatted as the port writes it (indent 2, sorted keys)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BigGANConfig:
        """From the port's config fields; unknown fields are a :class:`ConfigError`."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a BigGAN config must be a JSON object, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown BigGAN config field(s): {', '.join(unknown)}")
        missing = sorted({"output_dim", "layers"} - set(data))
        if missing:
            raise ConfigError(f"BigGAN config lacks {', '.join(missing)}")
        return cls(**dict(data))

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> BigGANConfig:
        """Read the port's ``config.json`` (a folder is taken to contain one)."""
        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_NAME
        if not path.is_file():
            raise DataNotFoundError(f"BigGAN config file {path} does not exist")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read BigGAN config {path}: {exc}") from None
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None


# ----------------------------------------------------------------------------- layers


def _sn_conv(c_in: int, c_out: int, kernel: int, eps: float, bias: bool = True) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=bias)
    return spectral_norm(conv, eps=eps)  # keys weight_orig / weight_u / weight_v, as in the port


def _sn_linear(c_in: int, c_out: int, eps: float, bias: bool = True) -> nn.Linear:
    return spectral_norm(nn.Linear(c_in, c_out, bias=bias), eps=eps)


def _spectral_weight(module: nn.Module) -> Tensor:
    """The spectrally normalised weight that ``module``'s next forward would use.

    Runs the spectral-norm pre-hook (a power iteration in training mode, as a forward would);
    without spectral norm (removed by ``remove_spectral_norm``) the plain weight.
    """
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, SpectralNorm):
            hook(module, ())
    return module.weight


@torch.no_grad()
def _settle_spectral_norms(model: nn.Module, iterations: int) -> None:
    """Run ``iterations`` power iterations in every spectral norm of ``model``.

    ``torch.nn.utils.spectral_norm`` starts from random ``u`` / ``v`` and only iterates in
    training-mode forwards, so a freshly built model used in eval mode would divide by a random
    (possibly tiny or negative) ``u^T W v``. Loaded weights replace ``u`` / ``v`` anyway.
    """
    for module in model.modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, SpectralNorm):
                for _ in range(iterations):
                    hook.compute_weight(module, do_power_iteration=True)


class SelfAttn(nn.Module):
    """SAGAN self-attention with 2x2 max-pooled keys/values and a zero-initialised ``gamma``."""

    def __init__(self, channels: int, eps: float = 1e-4):
        super().__init__()
        self.in_channels = channels
        self.snconv1x1_theta = _sn_conv(channels, channels // 8, 1, eps, bias=False)
        self.snconv1x1_phi = _sn_conv(channels, channels // 8, 1, eps, bias=False)
        self.snconv1x1_g = _sn_conv(channels, channels // 2, 1, eps, bias=False)
        self.snconv1x1_o_conv = _sn_conv(channels // 2, channels, 1, eps, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        query = self.snconv1x1_theta(x).flatten(2)  # [B, C/8, HW]
        key = F.max_pool2d(self.snconv1x1_phi(x), 2).flatten(2)  # [B, C/8, HW/4]
        value = F.max_pool2d(self.snconv1x1_g(x), 2).flatten(2)  # [B, C/2, HW/4]
        attention = torch.softmax(query.transpose(1, 2) @ key, dim=-1)  # [B, HW, HW/4]
        attended = (value @ attention.transpose(1, 2)).view(b, c // 2, h, w)
        return x + self.gamma * self.snconv1x1_o_conv(attended)


class BigGANBatchNorm(nn.Module):
    """Batch norm with frozen statistics chosen by the truncation value.

    ``running_means`` / ``running_vars`` ``[n_stats, C]`` hold statistics for truncation
    ``0, 1/(n_stats-1), ..., 1``; between grid points they are blended exactly as the port does
    (see :meth:`stats`). Statistics are never updated, in training mode either. Conditional
    (in the GenBlocks): per-sample gain ``1 + scale(cond)`` and bias ``offset(cond)``, both
    spectrally normalised linear maps without bias; otherwise a learnt ``weight`` / ``bias``.
    """

    def __init__(
        self,
        num_features: int,
        condition_dim: int | None = None,
        n_stats: int = 51,
        eps: float = 1e-4,
        conditional: bool = True,
    ):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.conditional = conditional
        self.register_buffer("running_means", torch.zeros(n_stats, num_features))
        self.register_buffer("running_vars", torch.ones(n_stats, num_features))
        self.step_size = 1.0 / (n_stats - 1)
        if conditional:
            if condition_dim is None:
                raise ValueError("a conditional BigGANBatchNorm needs condition_dim")
            self.scale = _sn_linear(condition_dim, num_features, eps, bias=False)
            self.offset = _sn_linear(condition_dim, num_features, eps, bias=False)
        else:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))

    def stats(self, truncation: float) -> tuple[Tensor, Tensor]:
        """Mean and variance ``[C]`` used at ``truncation`` (in [0, 1]).

        With ``truncation / step = k + f`` (``0 < f < 1``) the port returns
        ``f * stats[k] + (1 - f) * stats[k + 1]``: the weights are the reverse of a linear
        interpolation. That is what the published model and the CGN reference code run, so it
        is kept; on grid points (``f == 0``, e.g. truncation 0.5 or 1.0) it is exact.
        """
        if not 0.0 <= truncation <= 1.0:
            raise ValueError(f"truncation must lie in [0, 1], got {truncation}")
        frac, whole = math.modf(truncation / self.step_size)
        index = int(whole)
        if frac == 0.0:
            return self.running_means[index], self.running_vars[index]
        mean = self.running_means[index] * frac + self.running_means[index + 1] * (1 - frac)
        var = self.running_vars[index] * frac + self.running_vars[index + 1] * (1 - frac)
        return mean, var

    def forward(self, x: Tensor, truncation: float, condition: Tensor | None = None) -> Tensor:
        mean, var = self.stats(truncation)
        if not self.conditional:
            return F.batch_norm(x, mean, var, self.weight, self.bias, False, 0.0, self.eps)
        if condition is None:
            raise ValueError("a conditional BigGANBatchNorm needs the condition vector")
        # (x - mean) / sqrt(var + eps) * (1 + scale) + offset, as one multiply-add over x
        gain = (1 + self.scale(condition)) * torch.rsqrt(var + self.eps)  # [B, C]
        shift = self.offset(condition) - mean * gain
        return torch.addcmul(shift[:, :, None, None], x, gain[:, :, None, None])


class GenBlock(nn.Module):
    """BigGAN-deep residual bottleneck block: 1x1 down to ``in/4``, two 3x3, 1x1 up.

    The skip path keeps the first ``out`` channels (the block halves them or keeps them) and is
    upsampled (nearest) alongside the residual path when ``up_sample``.
    """

    def __init__(
        self,
        in_size: int,
        out_size: int,
        condition_dim: int,
        reduction_factor: int = 4,
        up_sample: bool = False,
        n_stats: int = 51,
        eps: float = 1e-4,
    ):
        super().__init__()
        self.up_sample = up_sample
        self.drop_channels = in_size != out_size
        middle = in_size // reduction_factor

        def bn(c: int) -> BigGANBatchNorm:
            return BigGANBatchNorm(c, condition_dim, n_stats=n_stats, eps=eps, conditional=True)

        self.bn_0 = bn(in_size)
        self.conv_0 = _sn_conv(in_size, middle, 1, eps)
        self.bn_1 = bn(middle)
        self.conv_1 = _sn_conv(middle, middle, 3, eps)
        self.bn_2 = bn(middle)
        self.conv_2 = _sn_conv(middle, middle, 3, eps)
        self.bn_3 = bn(middle)
        self.conv_3 = _sn_conv(middle, out_size, 1, eps)

    def forward(self, x: Tensor, condition: Tensor, truncation: float) -> Tensor:
        h = self.conv_0(F.relu(self.bn_0(x, truncation, condition)))
        h = F.relu(self.bn_1(h, truncation, condition))
        if self.up_sample:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.conv_1(h)
        h = self.conv_2(F.relu(self.bn_2(h, truncation, condition)))
        h = self.conv_3(F.relu(self.bn_3(h, truncation, condition)))
        skip = x[:, : x.shape[1] // 2] if self.drop_channels else x
        if self.up_sample:
            skip = F.interpolate(skip, scale_factor=2, mode="nearest")
        return h + skip


class Generator(nn.Module):
    """``gen_z`` -> GenBlocks (+ self-attention) -> ``bn`` -> ReLU -> ``conv_to_rgb`` -> tanh."""

    def __init__(self, config: BigGANConfig):
        super().__init__()
        self.config = config
        ch = config.channel_width
        condition_dim = config.z_dim + config.class_embed_dim
        self.gen_z = _sn_linear(condition_dim, 4 * 4 * 16 * ch, config.eps)
        layers: list[nn.Module] = []
        for index, (up, in_mult, out_mult) in enumerate(config.layers):
            if index == config.attention_layer_position:
                layers.append(SelfAttn(ch * in_mult, eps=config.eps))
            layers.append(
                GenBlock(
                    ch * in_mult,
                    ch * out_mult,
                    condition_dim,
                    up_sample=up,
                    n_stats=config.n_stats,
                    eps=config.eps,
                )
            )
        self.layers = nn.ModuleList(layers)
        self.bn = BigGANBatchNorm(ch, n_stats=config.n_stats, eps=config.eps, conditional=False)
        self.conv_to_rgb = _sn_conv(ch, ch, 3, config.eps)

    def forward(self, condition: Tensor, truncation: float) -> Tensor:
        ch = self.config.channel_width
        # gen_z's output is in TF's [B, H, W, C] order (the weights come from TF Hub)
        h = self.gen_z(condition).view(-1, 4, 4, 16 * ch).permute(0, 3, 1, 2).contiguous()
        for layer in self.layers:
            h = layer(h, condition, truncation) if isinstance(layer, GenBlock) else layer(h)
        h = F.relu(self.bn(h, truncation))
        return self.to_rgb(h)

    def to_rgb(self, h: Tensor) -> Tensor:
        """``tanh(conv_to_rgb(h)[:, :3])``, computing only the three channels that are kept.

        ``conv_to_rgb`` has ``channel_width`` outputs (TF Hub's layout) of which the image uses
        three; at 256 px the discarded 125 would be the largest convolution of the network. The
        spectral norm still normalises the whole weight, so values and gradients are those of
        the full convolution followed by the slice.
        """
        weight = _spectral_weight(self.conv_to_rgb)
        bias = self.conv_to_rgb.bias
        out = F.conv2d(h, weight[:3], None if bias is None else bias[:3], padding=1)
        return torch.tanh(out)


class BigGAN(nn.Module):
    """BigGAN-deep generator; ``state_dict`` keys and shapes match the port's checkpoints.

    Randomly initialised (as ``torch.nn`` layers are), with ``power_iterations`` already run in
    every spectral norm: from one on, ``u^T W v = |W v| > 0``, so a fresh model is usable in
    eval mode (0 skips them, e.g. when weights will be loaded at once). Load the published
    weights with :func:`load_biggan_weights`.
    """

    def __init__(self, config: BigGANConfig, *, power_iterations: int = 1):
        super().__init__()
        self.config = config
        self.embeddings = nn.Linear(config.num_classes, config.class_embed_dim, bias=False)
        self.generator = Generator(config)
        _settle_spectral_norms(self, power_iterations)

    def __deepcopy__(self, memo: dict[int, Any]) -> BigGAN:
        """``copy.deepcopy`` that also works after a forward with autograd on.

        ``torch.nn.utils.spectral_norm`` caches the normalised weight as a plain attribute;
        after a forward with grad it is a non-leaf tensor, which ``deepcopy`` refuses. The cache
        is recomputed by every forward, so it is detached first (the autograd graph of a
        pending backward keeps its own reference). Otherwise the usual module copy.
        """
        for module in self.modules():
            if any(isinstance(h, SpectralNorm) for h in module._forward_pre_hooks.values()):
                cached = module.__dict__.get("weight")
                if isinstance(cached, Tensor) and not cached.is_leaf:
                    module.__dict__["weight"] = cached.detach()
        duplicate = type(self).__new__(type(self))
        memo[id(self)] = duplicate
        for key, value in self.__dict__.items():
            duplicate.__dict__[key] = copy.deepcopy(value, memo)
        return duplicate

    def embed(self, class_vector: Tensor) -> Tensor:
        """Class embedding ``[B, class_embed_dim]`` of one-hot or soft ``[B, num_classes]``."""
        if class_vector.dim() != 2 or class_vector.shape[1] != self.config.num_classes:
            raise ValueError(
                f"class_vector must be [B, {self.config.num_classes}], "
                f"got {list(class_vector.shape)}"
            )
        return self.embeddings(class_vector)

    def from_embedding(self, z: Tensor, embedding: Tensor, truncation: float) -> Tensor:
        """Images from noise ``z`` and an embedding from :meth:`embed` (shareable by callers)."""
        _check_truncation(truncation)
        if z.dim() != 2 or z.shape[1] != self.config.z_dim:
            raise ValueError(f"z must be [B, {self.config.z_dim}], got {list(z.shape)}")
        if embedding.shape != (z.shape[0], self.config.class_embed_dim):
            raise ValueError(
                f"embedding must be [{z.shape[0]}, {self.config.class_embed_dim}], "
                f"got {list(embedding.shape)}"
            )
        return self.generator(torch.cat((z, embedding), dim=1), truncation)

    def forward(self, z: Tensor, class_vector: Tensor, truncation: float) -> Tensor:
        """Images ``[B, 3, R, R]`` in [-1, 1] from noise ``[B, z_dim]`` (see
        :func:`truncated_noise`), class vectors ``[B, num_classes]`` and ``truncation`` in
        (0, 1], which must be the truncation the noise was drawn with."""
        return self.from_embedding(z, self.embed(class_vector), truncation)


def _check_truncation(truncation: float) -> None:
    if not (isinstance(truncation, int | float) and 0.0 < truncation <= 1.0):
        raise ValueError(f"truncation must lie in (0, 1], got {truncation!r}")


# ----------------------------------------------------------------------------- noise


def truncated_noise(
    batch: int,
    z_dim: int,
    truncation: float,
    generator: torch.Generator | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``[batch, z_dim]`` standard normal truncated to [-2, 2], times ``truncation``.

    Drawn from ``generator`` (a seeded :class:`torch.Generator`), else from torch's global RNG;
    the tensor is created on the generator's device and then moved to ``device``.
    """
    if batch < 0 or z_dim < 1:
        raise ValueError(f"need batch >= 0 and z_dim >= 1, got {batch} and {z_dim}")
    if not truncation > 0:
        raise ValueError(f"truncation must be positive, got {truncation!r}")
    where = generator.device if generator is not None else (device or "cpu")
    noise = torch.empty(batch, z_dim, dtype=dtype, device=where)
    nn.init.trunc_normal_(noise, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=generator)
    noise.mul_(truncation)
    return noise if device is None else noise.to(device)


# ----------------------------------------------------------------------------- weights


def _not_found(what: str, name: str = "biggan.deep-256") -> DataNotFoundError:
    files = PRETRAINED[name.replace("biggan.", "biggan-")]
    return DataNotFoundError(
        f"{what}: BigGAN-deep weights are the pytorch-pretrained-BigGAN file {WEIGHTS_NAME} "
        f"({name}: {files.weights_url}, config {files.config_url}); `cgnbench fetch {name}` "
        f"downloads both, or pass its path (or its folder) or set {WEIGHTS_ENV}"
    )


def resolve_biggan_weights(
    path: str | os.PathLike[str] | None = None,
    *,
    name: str = "biggan.deep-256",
    data_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The weights file: ``path`` (a folder means ``<folder>/pytorch_model.bin``; a registered
    name or a URL also work), else the registered ``name`` (``$CGNBENCH_BIGGAN_WEIGHTS``,
    ``<data-dir>/biggan/``, the cache, a download). A missing file is a
    :class:`DataNotFoundError` that says where the file comes from."""
    try:
        if path is None:
            return resolve_spec(BIGGAN_WEIGHTS[name], data_dir=data_dir).path
        candidate = Path(path).expanduser()
        if candidate.is_dir():
            candidate = candidate / WEIGHTS_NAME
            if not candidate.is_file():
                raise DataNotFoundError(f"BigGAN weights file {candidate} does not exist")
        return resolve_weights(str(candidate) if candidate.is_file() else str(path),
                               specs=BIGGAN_WEIGHTS, what="BigGAN weights").path  # fmt: skip
    except DataNotFoundError as exc:
        raise _not_found(str(exc).rstrip("."), name) from None


def _shape(shape: torch.Size | tuple[int, ...]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _few(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" ... (+{len(keys) - limit})" if len(keys) > limit else "")


def load_biggan_state(model: BigGAN, state: Mapping[str, Any], source: str = "state dict") -> None:
    """Load a port-layout state dict strictly; any difference is a one-line
    :class:`IncompatibleError` naming a few missing / unexpected / mis-shaped keys."""
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise IncompatibleError(f"{source} is not a BigGAN state dict (expected name -> tensor)")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        key for key in set(expected) & set(state) if state[key].shape != expected[key].shape
    )
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_few(unexpected)})")
        if mismatched:
            shown = [
                f"{k} {_shape(state[k].shape)} vs {_shape(expected[k].shape)}"
                for k in mismatched[:3]
            ]
            more = f" ... (+{len(mismatched) - 3})" if len(mismatched) > 3 else ""
            parts.append(f"{len(mismatched)} of other shape ({', '.join(shown)}{more})")
        cfg = model.config
        raise IncompatibleError(
            f"{source} does not fit BigGAN(output_dim={cfg.output_dim}, "
            f"channel_width={cfg.channel_width}, {len(cfg.layers)} blocks): "
            + "; ".join(parts)
            + " (weights of another resolution? build the model from their config.json)"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied
        first = (str(exc).strip().splitlines() or [""])[0]
        raise IncompatibleError(f"{source} does not load into BigGAN: {first}") from None


def load_biggan_weights(model: BigGAN, path: str | os.PathLike[str] | None = None) -> BigGAN:
    """Load the port's ``pytorch_model.bin`` (or any file with its layout) into ``model``.

    ``torch.load(weights_only=True, map_location="cpu")`` (nothing is unpickled as code), then a
    strict load (:func:`load_biggan_state`). ``path`` as in :func:`resolve_biggan_weights`.
    Returns ``model``.
    """
    file = resolve_biggan_weights(
        path, name=SPEC_OF_RESOLUTION.get(model.config.output_dim, "biggan.deep-256")
    )
    state = load_weights_file(file, "BigGAN weights")
    load_biggan_state(model, state, source=str(file))
    return model
