"""The CGN's VGG16 Gram-matrix style loss (cgn-reference.md section 1), frozen and offline.

``loss = sum_l w_l^2 * 5000 * L1(G(phi_l(x_gen)), G(phi_l(x_real)))`` over the ReLU outputs
relu1_2, relu2_2, relu3_3, relu4_3 (indices 3, 8, 15, 22 of torchvision's ``vgg16().features``),
with ``G(F) = F F^T / (c h w)`` per sample and ``L1`` the mean absolute difference. Real and
generated batches are unpaired (sample i vs sample i), as in the reference. Only layers up to the
last one with ``w_l != 0`` are built and run (the network stops early); the real batch's features
are computed without autograd.

Weights. The network is ``torchvision.models.vgg16(weights=None).features[:23]`` loaded from a
state dict: ``weights_path`` (a file, URL or registered name), else the registered
``vgg16.caffe-features23`` (``CGNBENCH_VGG16_WEIGHTS`` or ``<data-dir>/vgg16/``), else
``vgg16.tv-in1k`` (torchvision's file, cached or downloaded); without one,
:class:`DataNotFoundError` (never silently random weights). Two files are understood
(``input_convention="auto"`` tells them apart by sha256, key prefix or file name):

* ``vgg16_imagenet_caffe_features23.pth`` (the original Caffe/Keras VGG16, first layer in RGB):
  ``input_convention="caffe"``: expects RGB in 0..255 minus ``[123.68, 116.779, 103.939]``;
* torchvision's ``vgg16-397923af.pth`` (IMAGENET1K_V1, what the CGN authors used; only
  ``features.*`` is read): ``input_convention="torchvision"``: expects ``(x/255 - mean) / std``.

The sha256 of the file used is kept in :attr:`VGGStyleLoss.weights_sha256` for result labels.

Modes (how a CGN image ``x`` in [-1, 1] is fed):

* ``"faithful"`` (the reference's quirk): ``x`` goes in as if it were already ImageNet-normalised
  (no ``(x+1)/2``, no mean/std). With torchvision weights that is literally ``vgg(x)``; with the
  Caffe weights we feed the *same image*, i.e. ``255 * (std * x + mean) - caffe_mean`` (about
  ``57.6 x``), so the Caffe network sees what the authors' network saw.
* ``"improved"``: ``p = (x + 1) / 2`` is converted to the weights' own convention.

Feature scale. The Caffe network works on inputs ~57.6x larger than torchvision's and its
activations are correspondingly larger (a ReLU network is close to positively homogeneous), so
its Gram matrices, and the loss, come out ~57.6^2 = 3300x larger than with the authors' weights,
which would swamp the adversarial and mask terms the lambdas were tuned against.
``feature_scale="auto"`` multiplies Caffe features by ``1 / (255 * mean(std)) = 1 / 57.6`` before
the Gram (torchvision weights: 1). This is an approximation (the two weight sets are different
networks); results are labelled by :attr:`VGGStyleLoss.weights_sha256` anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from robustbench_cgn import WeightsSpec
from robustbench_cgn.data.download import sha256_file as file_sha256
from robustbench_cgn.device import autocast
from robustbench_cgn.errors import CGNBenchError, ConfigError, DataNotFoundError
from robustbench_cgn.resolver import override, resolve_spec, resolve_weights
from robustbench_cgn.weights_file import load_weights_file

__all__ = [
    "CAFFE_MEAN_255",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KNOWN_VGG16_WEIGHTS",
    "STYLE_RELU_INDICES",
    "STYLE_WEIGHTS",
    "VGG16_FILE",
    "VGG16_WEIGHTS_ENV",
    "VGGStyleLoss",
    "gram_matrix",
    "VGG16_CAFFE",
    "VGG16_TORCHVISION",
    "VGG16_WEIGHTS",
    "resolve_vgg16_weights",
]

VGG16_WEIGHTS_ENV = "CGNBENCH_VGG16_WEIGHTS"
VGG16_FILE = "vgg16_imagenet_caffe_features23.pth"
STYLE_RELU_INDICES = (3, 8, 15, 22)  # relu1_2, relu2_2, relu3_3, relu4_3
#: Style weights (relu1_2, relu2_2, relu3_3, relu4_3) per MNIST variant.
STYLE_WEIGHTS: dict[str, tuple[float, float, float, float]] = {
    "colored": (0.05, 0.1, 0.01, 0.0),
    "double_colored": (0.0, 0.05, 0.0, 0.05),
    "wildlife": (0.01, 0.05, 0.0, 0.01),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_255 = (123.68, 116.779, 103.939)
#: sha256 (or its 8-digit prefix, as torchvision names its files) -> input convention.
KNOWN_VGG16_WEIGHTS = {
    "39852ebc68d6370f36a9006c72168720944069f18255303666f6ede1f2ba418a": "caffe",
    "397923af": "torchvision",
}

Convention = Literal["auto", "caffe", "torchvision"]
Mode = Literal["faithful", "improved"]


#: The original Caffe/Keras VGG16 convolutions (conv1_1..conv4_3) as a ``features[:23]`` state
#: dict; no public download address: it is found through an override or under ``--data-dir``.
VGG16_CAFFE = WeightsSpec(
    "vgg16.caffe-features23",
    sha256="39852ebc68d6370f36a9006c72168720944069f18255303666f6ede1f2ba418a",
    filename=VGG16_FILE,
    description="VGG16 conv1_1..conv4_3, original Caffe/Keras ImageNet weights (RGB, 0..255)",
    tags=("style-loss",),
    size=30_548_375,
    license="CC BY 4.0 (Oxford VGG)",
    citation="Simonyan & Zisserman, Very Deep Convolutional Networks, ICLR 2015",
    local=(f"vgg16/{VGG16_FILE}",),
    env=VGG16_WEIGHTS_ENV,
)
#: torchvision's IMAGENET1K_V1 VGG16, what the CGN authors' style loss used.
VGG16_TORCHVISION = WeightsSpec(
    "vgg16.tv-in1k",
    sha256="397923af",  # torchvision publishes the sha256 prefix in the file name
    urls=("https://download.pytorch.org/models/vgg16-397923af.pth",),
    description="torchvision VGG16 IMAGENET1K_V1 (the CGN authors' style-loss network)",
    tags=("style-loss",),
    size=553_433_881,
    license="BSD-3-Clause (torchvision); weights CC BY 4.0",
    citation="Simonyan & Zisserman, Very Deep Convolutional Networks, ICLR 2015",
    local=("vgg16/vgg16-397923af.pth",),
)
VGG16_WEIGHTS = {spec.name: spec for spec in (VGG16_CAFFE, VGG16_TORCHVISION)}


def resolve_vgg16_weights(
    path: str | PathLike[str] | None = None,
    *,
    data_dir: str | PathLike[str] | None = None,
    cache_dir: str | PathLike[str] | None = None,
) -> Path:
    """The VGG16 weights file: ``path`` (a file, a URL or one of :data:`VGG16_WEIGHTS`), else
    the Caffe file (override, ``--data-dir``, cache), else torchvision's file (cache, download).
    Nothing found: one :class:`DataNotFoundError` line naming both and how to provide them."""
    if path is not None:
        return resolve_weights(
            str(path), specs=VGG16_WEIGHTS, data_dir=data_dir, cache_dir=cache_dir,
            what="VGG16 weights",
        ).path  # fmt: skip
    try:
        return resolve_spec(VGG16_CAFFE, data_dir=data_dir, cache_dir=cache_dir).path
    except DataNotFoundError:
        if override(VGG16_CAFFE) is not None:  # the user named a file: no fallback
            raise
    try:
        return resolve_spec(VGG16_TORCHVISION, data_dir=data_dir, cache_dir=cache_dir).path
    except DataNotFoundError as exc:
        raise DataNotFoundError(
            f"the CGN style loss needs ImageNet VGG16 weights and none were found: provide "
            f"{VGG16_FILE} (conv1_1..conv4_3 as a state dict of torchvision's "
            f"vgg16().features[:23]) under <data-dir>/vgg16/ or set {VGG16_WEIGHTS_ENV}=FILE, "
            f"or torchvision's vgg16-397923af.pth ({exc})"
        ) from None


def gram_matrix(f: Tensor) -> Tensor:
    """``G = F F^T / (c h w)`` per sample: ``[B, C, H, W] -> [B, C, C]``."""
    b, c, h, w = f.shape
    flat = f.reshape(b, c, h * w)
    return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def vgg16_features23() -> nn.Sequential:
    """``torchvision.models.vgg16(weights=None).features[:23]`` without building the 138 M
    parameter classifier (same modules, same indices: torchvision's own ``make_layers``)."""
    from torchvision.models import vgg  # lazy: importing torchvision costs ~1 s

    if hasattr(vgg, "make_layers") and hasattr(vgg, "cfgs"):
        return vgg.make_layers(vgg.cfgs["D"], batch_norm=False)[:23]
    return vgg.vgg16(weights=None).features[:23]  # pragma: no cover - older/newer layouts


def _load_features_state(path: Path) -> tuple[dict[str, Tensor], bool]:
    """State dict for ``features[:23]``; second value: it came from a full torchvision VGG16."""
    raw = load_weights_file(path, "VGG16 weights")
    if not isinstance(raw, dict):
        raise CGNBenchError(f"{path} is not a state dict")
    full = any(k.startswith("features.") for k in raw)
    if full:
        raw = {k.removeprefix("features."): v for k, v in raw.items() if k.startswith("features.")}
    state = {k: v for k, v in raw.items() if int(k.split(".")[0]) < 23}
    return state, full


class VGGStyleLoss(nn.Module):
    """Frozen VGG16 Gram style loss: ``forward(x_gen, x_real) -> scalar``.

    Args:
        style_weights: ``w_l`` for relu1_2, relu2_2, relu3_3, relu4_3 (see :data:`STYLE_WEIGHTS`).
        weights_path: VGG16 state dict (else ``$CGNBENCH_VGG16_WEIGHTS``).
        mode: ``"faithful"`` or ``"improved"`` input scaling (module docstring).
        input_convention: what the weights expect: ``"caffe"``, ``"torchvision"`` or ``"auto"``.
        scale: the constant 5000.
        feature_scale: factor applied to VGG features before the Gram; ``"auto"``: 1/57.6 for
            Caffe weights, 1 for torchvision weights (module docstring).
        channels_last: run VGG in channels_last memory format (default; same math, ~10-15 %
            faster per training step on CPU, see ``scripts/bench_mnist_models.py``).
        stop_early: build/run VGG only up to the last weighted ReLU (default). ``False`` runs all
            of ``features[:23]`` (same loss, more time): for benchmarks.
        precision: ``"bf16"`` runs the VGG convolutions under bf16 autocast (fast on AMX /
            AVX-512 BF16 CPUs and CUDA); the Gram matrices and the loss stay fp32.
    """

    def __init__(
        self,
        style_weights: Sequence[float] = STYLE_WEIGHTS["colored"],
        weights_path: str | PathLike[str] | None = None,
        *,
        mode: Mode = "faithful",
        input_convention: Convention = "auto",
        scale: float = 5000.0,
        feature_scale: float | Literal["auto"] = "auto",
        channels_last: bool = True,
        stop_early: bool = True,
        precision: Literal["fp32", "bf16"] = "fp32",
    ):
        super().__init__()
        if precision not in ("fp32", "bf16"):
            raise ConfigError(f"style loss precision must be fp32 or bf16, not {precision!r}")
        self.precision = precision
        if len(style_weights) != len(STYLE_RELU_INDICES):
            raise ConfigError(f"style_weights needs {len(STYLE_RELU_INDICES)} values")
        if mode not in ("faithful", "improved"):
            raise ConfigError(f"mode must be 'faithful' or 'improved', not {mode!r}")
        self.style_weights = tuple(float(w) for w in style_weights)
        self.mode: Mode = mode
        self.scale = float(scale)
        self.channels_last = channels_last
        path = resolve_vgg16_weights(weights_path)
        self.weights_path = str(path)
        self.weights_sha256 = file_sha256(path)
        state, from_full = _load_features_state(path)
        self.input_convention = self._pick_convention(
            input_convention, path, from_full, self.weights_sha256
        )

        if feature_scale == "auto":
            auto = 1.0 / (255.0 * sum(IMAGENET_STD) / 3.0)
            feature_scale = auto if self.input_convention == "caffe" else 1.0
        self.feature_scale = float(feature_scale)
        self._gram_factor = self.feature_scale**2

        features = vgg16_features23()
        try:
            features.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CGNBenchError(
                f"{path.name} is not a VGG16 features[:23] state dict: {exc}"
            ) from exc
        self.active = [i for i, w in enumerate(self.style_weights) if w != 0.0]
        last = STYLE_RELU_INDICES[self.active[-1]] if self.active else -1
        if not stop_early:
            last = STYLE_RELU_INDICES[-1]
        self.vgg = features[: last + 1]  # stop early: nothing past the last weighted ReLU
        for m in self.vgg:
            if isinstance(m, nn.ReLU):
                m.inplace = False  # the tapped activations must survive the next layer
        self.vgg.requires_grad_(False)
        self.vgg.eval()
        if channels_last:
            self.vgg.to(memory_format=torch.channels_last)
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        self.register_buffer("tv_mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("tv_std", std.view(1, 3, 1, 1), persistent=False)
        self.register_buffer(
            "caffe_mean", torch.tensor(CAFFE_MEAN_255).view(1, 3, 1, 1), persistent=False
        )

    @staticmethod
    def _pick_convention(requested: str, path: Path, from_full: bool, digest: str) -> str:
        if requested in ("caffe", "torchvision"):
            return requested
        if requested != "auto":
            raise ConfigError(f"input_convention must be auto, caffe or torchvision: {requested!r}")
        for key, conv in KNOWN_VGG16_WEIGHTS.items():
            if digest.startswith(key):
                return conv
        if from_full or path.name.startswith("vgg16-"):
            return "torchvision"
        if "caffe" in path.name.lower():
            return "caffe"
        raise ConfigError(
            f"cannot tell which input convention {path.name} expects: pass "
            "input_convention='caffe' (RGB 0..255 minus mean) or 'torchvision' ((x/255-mean)/std)"
        )

    def train(self, mode: bool = True) -> VGGStyleLoss:
        super().train(mode)
        self.vgg.eval()  # always frozen
        return self

    def preprocess(self, x: Tensor) -> Tensor:
        """CGN image in [-1, 1] -> VGG input in the weights' convention (see module docstring)."""
        if self.mode == "faithful":
            z = x  # the quirk: [-1, 1] taken as an ImageNet-normalised image
            if self.input_convention == "torchvision":
                return z
            return 255.0 * (z * self.tv_std + self.tv_mean) - self.caffe_mean
        p = (x + 1.0) / 2.0
        if self.input_convention == "torchvision":
            return (p - self.tv_mean) / self.tv_std
        return 255.0 * p - self.caffe_mean

    def grams(self, x: Tensor) -> list[Tensor]:
        """Gram matrices of the weighted ReLU layers (in :attr:`active` order)."""
        h = self.preprocess(x)
        if self.channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        wanted = {STYLE_RELU_INDICES[i] for i in self.active}
        tapped = []
        with autocast(h.device, self.precision):
            for idx, layer in enumerate(self.vgg):
                h = layer(h)
                if idx in wanted:
                    tapped.append(h)
        out = []
        for f in tapped:  # Gram matrices in fp32 whatever the convolutions ran in
            g = gram_matrix(f.float())
            out.append(g * self._gram_factor if self._gram_factor != 1.0 else g)
        return out

    def forward(self, x_gen: Tensor, x_real: Tensor) -> Tensor:
        if not self.active:
            return x_gen.new_zeros(())
        with torch.no_grad():
            g_real = self.grams(x_real)
        g_gen = self.grams(x_gen)
        loss = x_gen.new_zeros(())
        for i, gg, gr in zip(self.active, g_gen, g_real, strict=True):
            w = self.style_weights[i]
            loss = loss + (w * w * self.scale) * torch.nn.functional.l1_loss(gg, gr)
        return loss
