"""U^2-Net (Qin et al., Pattern Recognition 2020), the frozen salient-object detector of the
ImageNet CGN: the shape mechanism's "premask" image becomes the mask
``clamp(U2Net(premask), 1e-4, 0.9999)`` and the background mechanism is penalised by
``mean(U2Net(background))``.

Written for this project after reading ``model/u2net.py`` of xuebinqin/U-2-Net and
``imagenet/models/u2net.py`` of autonomousvision/counterfactual_generative_networks. Module
and attribute names are those of the public model, so the published ``u2net.pth`` (and
``u2netp.pth`` for :meth:`U2Net.small`) load with ``strict=True``:

* ``stage1`` .. ``stage6`` (encoder), ``stage5d`` .. ``stage1d`` (decoder), ``side1`` ..
  ``side6`` (3x3 side convolutions to ``out_ch`` maps), ``outconv`` (1x1 fusion of the six);
* inside every RSU block: ``rebnconvin``, ``rebnconv1`` .. ``rebnconvL``, ``rebnconv{L-1}d`` ..
  ``rebnconv1d``, each a :class:`REBNCONV` with ``conv_s1`` (3x3, bias) and ``bn_s1``.

Pooling is ``max_pool2d(2, 2, ceil_mode=True)`` and upsampling is bilinear resizing to the
skip connection's size (``_upsample_like``), so any input size works. The U-2-Net repository
resizes with ``align_corners=False`` (``F.upsample``'s default); the CGN authors' copy uses
``align_corners=True``. Both are offered (``align_corners=``); the difference only changes how
the maps are interpolated, not the weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustbench_cgn.artifacts import WeightsSpec
from robustbench_cgn.checkpoint import load_state_dict_file
from robustbench_cgn.data.download import sha256_file
from robustbench_cgn.errors import ChecksumError, DataNotFoundError, IncompatibleError
from robustbench_cgn.resolver import resolve_spec, resolve_weights

__all__ = [
    "REBNCONV",
    "RSU4",
    "RSU4F",
    "RSU5",
    "RSU6",
    "RSU7",
    "U2NET_README_URL",
    "U2NET_WEIGHTS_FILE",
    "U2NET_WEIGHTS_SHA256",
    "U2NET_WEIGHTS_SIZE",
    "U2NET_WEIGHTS_URL",
    "U2NETP_WEIGHTS_FILE",
    "U2Net",
    "U2NET_WEIGHTS",
    "WEIGHTS_ENV",
    "load_u2net_weights",
    "prepare_for_u2net",
    "resolve_u2net_weights",
]

# --- the published weights -------------------------------------------------------------------
U2NET_WEIGHTS_FILE = "u2net.pth"
# The README states "u2net.pth (176.3 MB)". The exact byte count and the sha256 below are not
# published by the authors; several independent projects pin them for the same Google Drive
# file (id 1ao1ovG1Qtx4b7EoskHXmi2E9rp5CHLcZ), so they are recorded here for information and
# checked only on request (``load_u2net_weights(..., check_sha256=True)``). The CGN authors'
# ``scripts/download_weights.sh`` fetches their own copy from another Drive id.
U2NET_WEIGHTS_SIZE = 176_290_937
U2NET_WEIGHTS_SHA256 = "10025a17f49cd3208afc342b589890e402ee63123d6f2d289a4a0903695cce58"
U2NETP_WEIGHTS_FILE = "u2netp.pth"  # the small model (4.7 MB), for U2Net.small()
U2NET_README_URL = "https://github.com/xuebinqin/U-2-Net#usage-for-salient-object-detection"
U2NET_WEIGHTS_URL = "https://drive.google.com/file/d/1ao1ovG1Qtx4b7EoskHXmi2E9rp5CHLcZ/view"
WEIGHTS_ENV = "CGNBENCH_U2NET_WEIGHTS"
_U2NET_TERMS = dict(
    tags=("imagenet", "cgn-imagenet"),
    license="Apache-2.0 (U-2-Net)",
    citation="Qin et al., U2-Net: Going Deeper with Nested U-Structure, Pattern Recognition 2020",
)
#: ``u2net.full`` (44 M parameters, what the CGN uses) and ``u2net.small`` (U2NETP).
U2NET_WEIGHTS: dict[str, WeightsSpec] = {
    "u2net.full": WeightsSpec(
        "u2net.full",
        filename=U2NET_WEIGHTS_FILE,
        urls=("gdrive:1ao1ovG1Qtx4b7EoskHXmi2E9rp5CHLcZ",),
        sha256=U2NET_WEIGHTS_SHA256,
        size=U2NET_WEIGHTS_SIZE,
        description="U-2-Net salient object detection (the CGN's mask network)",
        local=(f"u2net/{U2NET_WEIGHTS_FILE}",),
        env=WEIGHTS_ENV,
        **_U2NET_TERMS,  # type: ignore[arg-type]
    ),
    "u2net.small": WeightsSpec(
        "u2net.small",
        filename=U2NETP_WEIGHTS_FILE,
        urls=("gdrive:1rbSTGKAE-MTxBYHd-51l2hMOQPT_7EPy",),
        description="U-2-NetP, the 1.1 M-parameter U-2-Net (4.7 MB)",
        local=(f"u2net/{U2NETP_WEIGHTS_FILE}",),
        **_U2NET_TERMS,  # type: ignore[arg-type]
    ),
}

# ImageNet statistics used by U-2-Net's ``ToTensorLab(flag=0)`` (data_loader.py).
_U2NET_MEAN = (0.485, 0.456, 0.406)
_U2NET_STD = (0.229, 0.224, 0.225)


# --- building blocks -------------------------------------------------------------------------
class REBNCONV(nn.Module):
    """3x3 convolution (dilation ``dirate``, same padding) -> BatchNorm -> ReLU."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, dirate: int = 1):
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_ch, out_ch, 3, padding=dirate, dilation=dirate)
        self.bn_s1 = nn.BatchNorm2d(out_ch)
        self.relu_s1 = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu_s1(self.bn_s1(self.conv_s1(x)))


def _upsample_like(src: Tensor, tar: Tensor, align_corners: bool = False) -> Tensor:
    """Bilinear resize of ``src`` to the spatial size of ``tar``."""
    if src.shape[2:] == tar.shape[2:]:
        return src
    return F.interpolate(src, size=tar.shape[2:], mode="bilinear", align_corners=align_corners)


def _pool(x: Tensor) -> Tensor:
    return F.max_pool2d(x, 2, stride=2, ceil_mode=True)


class _RSU(nn.Module):
    """Residual U-block of height ``height`` (RSU-L): an input conv, a small U-Net of ``height``
    levels (the deepest one dilated by 2 instead of pooled), and a residual sum.

    Encoder convs ``rebnconv1 .. rebnconv{height}``, with a 2x2 max-pool after each of the first
    ``height - 2``; decoder convs ``rebnconv{height-1}d .. rebnconv1d`` on the concatenation of
    the upsampled deeper output and the skip connection.
    """

    height: int = 0

    def __init__(
        self, in_ch: int = 3, mid_ch: int = 12, out_ch: int = 3, align_corners: bool = False
    ):
        super().__init__()
        if self.height < 3:
            raise ValueError("an RSU block needs a height of at least 3")
        self.align_corners = align_corners
        h = self.height
        self.rebnconvin = REBNCONV(in_ch, out_ch, dirate=1)
        for level in range(1, h + 1):
            source = out_ch if level == 1 else mid_ch
            self.add_module(
                f"rebnconv{level}", REBNCONV(source, mid_ch, dirate=1 if level < h else 2)
            )
        for level in range(h - 1, 0, -1):
            target = out_ch if level == 1 else mid_ch
            self.add_module(f"rebnconv{level}d", REBNCONV(2 * mid_ch, target, dirate=1))

    def forward(self, x: Tensor) -> Tensor:
        h = self.height
        hxin = self.rebnconvin(x)
        skips: list[Tensor] = []
        hx = hxin
        for level in range(1, h):
            hx = getattr(self, f"rebnconv{level}")(hx)
            skips.append(hx)
            if level < h - 1:
                hx = _pool(hx)
        hx = getattr(self, f"rebnconv{h}")(hx)  # dilated bottom, same size as the last skip
        for level in range(h - 1, 0, -1):
            skip = skips[level - 1]
            hx = _upsample_like(hx, skip, self.align_corners)
            hx = getattr(self, f"rebnconv{level}d")(torch.cat((hx, skip), 1))
        return hx + hxin


class RSU7(_RSU):
    height = 7


class RSU6(_RSU):
    height = 6


class RSU5(_RSU):
    height = 5


class RSU4(_RSU):
    height = 4


class RSU4F(nn.Module):
    """RSU-4 without pooling: dilations 1, 2, 4, 8 keep the resolution (for the low-resolution
    stages 5, 6 and 5d)."""

    def __init__(
        self, in_ch: int = 3, mid_ch: int = 12, out_ch: int = 3, align_corners: bool = False
    ):
        super().__init__()
        self.rebnconvin = REBNCONV(in_ch, out_ch, dirate=1)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch, dirate=1)
        self.rebnconv2 = REBNCONV(mid_ch, mid_ch, dirate=2)
        self.rebnconv3 = REBNCONV(mid_ch, mid_ch, dirate=4)
        self.rebnconv4 = REBNCONV(mid_ch, mid_ch, dirate=8)
        self.rebnconv3d = REBNCONV(2 * mid_ch, mid_ch, dirate=4)
        self.rebnconv2d = REBNCONV(2 * mid_ch, mid_ch, dirate=2)
        self.rebnconv1d = REBNCONV(2 * mid_ch, out_ch, dirate=1)

    def forward(self, x: Tensor) -> Tensor:
        hxin = self.rebnconvin(x)
        hx1 = self.rebnconv1(hxin)
        hx2 = self.rebnconv2(hx1)
        hx3 = self.rebnconv3(hx2)
        hx4 = self.rebnconv4(hx3)
        hx3d = self.rebnconv3d(torch.cat((hx4, hx3), 1))
        hx2d = self.rebnconv2d(torch.cat((hx3d, hx2), 1))
        hx1d = self.rebnconv1d(torch.cat((hx2d, hx1), 1))
        return hx1d + hxin


# --- the network -----------------------------------------------------------------------------
_BLOCKS: tuple[type[nn.Module], ...] = (RSU7, RSU6, RSU5, RSU4, RSU4F, RSU4F)  # stage 1 .. 6
# (mid_ch, out_ch) of encoder stages 1..6, then of decoder stages 5d..1d.
_FULL_WIDTHS = (
    ((32, 64), (32, 128), (64, 256), (128, 512), (256, 512), (256, 512)),
    ((256, 512), (128, 256), (64, 128), (32, 64), (16, 64)),
)
_SMALL_WIDTHS = (((16, 64),) * 6, ((16, 64),) * 5)  # U2NETP / u2netp.pth


class U2Net(nn.Module):
    """U^2-Net: six RSU encoder stages, five RSU decoder stages, six side outputs fused by a
    1x1 convolution.

    ``forward(x)`` returns ``(d0, d1, ..., d6)``, sigmoid maps of shape ``[B, out_ch, H, W]``
    (``d0`` the fused one, ``d1`` .. ``d6`` the side outputs upsampled to the input size), like
    the public model. :meth:`saliency` returns ``d0`` only, which is what the CGN uses.

    ``U2Net()`` matches ``u2net.pth`` (44.0 M parameters); :meth:`small` matches ``u2netp.pth``.
    ``align_corners=True`` reproduces the CGN authors' copy, ``False`` (default) the U-2-Net
    repository's. Inputs: see :func:`prepare_for_u2net`.
    """

    def __init__(
        self,
        in_ch: int = 3,
        out_ch: int = 1,
        *,
        align_corners: bool = False,
        _widths: tuple = _FULL_WIDTHS,
    ):
        super().__init__()
        self.align_corners = align_corners
        encoder, decoder = _widths
        outs = [out for _, out in encoder]
        source = in_ch
        for index, (block, (mid, out)) in enumerate(zip(_BLOCKS, encoder, strict=True), start=1):
            self.add_module(f"stage{index}", block(source, mid, out, align_corners=align_corners))
            source = out
        # Decoder stage kd sees the upsampled output of the stage below and the skip of stage k.
        deeper = outs[5]
        dec_outs = {}
        for k, (mid, out) in zip(range(5, 0, -1), decoder, strict=True):
            block = _BLOCKS[k - 1]
            module = block(deeper + outs[k - 1], mid, out, align_corners=align_corners)
            self.add_module(f"stage{k}d", module)
            dec_outs[k] = deeper = out
        side_in = [dec_outs[1], dec_outs[2], dec_outs[3], dec_outs[4], dec_outs[5], outs[5]]
        for index, channels in enumerate(side_in, start=1):
            self.add_module(f"side{index}", nn.Conv2d(channels, out_ch, 3, padding=1))
        # The public full model writes Conv2d(6, out_ch, 1): identical for out_ch=1, and the only
        # size that fits the six concatenated side maps otherwise.
        self.outconv = nn.Conv2d(6 * out_ch, out_ch, 1)

    @classmethod
    def small(cls, in_ch: int = 3, out_ch: int = 1, *, align_corners: bool = False) -> U2Net:
        """The 1.1 M-parameter U2NETP, the layout of ``u2netp.pth``."""
        return cls(in_ch, out_ch, align_corners=align_corners, _widths=_SMALL_WIDTHS)

    def _up(self, src: Tensor, tar: Tensor) -> Tensor:
        return _upsample_like(src, tar, self.align_corners)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if x.dim() != 4:
            raise ValueError(f"U2Net expects images [B, C, H, W], got shape {tuple(x.shape)}")
        skips: list[Tensor] = []
        hx = x
        for index in range(1, 6):
            hx = getattr(self, f"stage{index}")(hx)
            skips.append(hx)
            hx = _pool(hx)
        hx6 = self.stage6(hx)

        decoded: dict[int, Tensor] = {}
        hx = hx6
        for k in range(5, 0, -1):
            skip = skips[k - 1]
            hx = getattr(self, f"stage{k}d")(torch.cat((self._up(hx, skip), skip), 1))
            decoded[k] = hx

        d1 = self.side1(decoded[1])
        sides = [d1]
        for index, features in ((2, decoded[2]), (3, decoded[3]), (4, decoded[4])):
            sides.append(self._up(getattr(self, f"side{index}")(features), d1))
        sides.append(self._up(self.side5(decoded[5]), d1))
        sides.append(self._up(self.side6(hx6), d1))
        d0 = self.outconv(torch.cat(sides, 1))
        return tuple(torch.sigmoid(d) for d in (d0, *sides))

    def saliency(self, x: Tensor) -> Tensor:
        """The fused saliency map ``d0`` in [0, 1], shape ``[B, out_ch, H, W]``."""
        return self.forward(x)[0]


# --- inputs ----------------------------------------------------------------------------------
def prepare_for_u2net(images: Tensor, convention: str = "cgn") -> Tensor:
    """Turn images in [-1, 1] (BigGAN's tanh output) into U2Net inputs.

    ``convention="cgn"`` (default) returns the images unchanged. That is what the CGN reference
    does: ``imagenet/models/cgn.py`` (autonomousvision/counterfactual_generative_networks) calls
    ``self.u2net(premask)`` and ``self.u2net(background)`` directly on the BigGAN outputs, which
    end in ``tanh`` (``imagenet/models/biggan.py``); there is no rescaling or normalisation
    anywhere in between. Use it to reproduce the paper's masks.

    ``convention="u2net"`` applies the U-2-Net repository's own test-time preprocessing
    (``data_loader.py``, ``ToTensorLab(flag=0)``): map to [0, 1], divide each image by its
    maximum, then normalise the channels with ImageNet mean (0.485, 0.456, 0.406) and std
    (0.229, 0.224, 0.225). (The repository also resizes to 320x320 first; that is left to the
    caller.) An all-black image is divided by a tiny floor instead of zero.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected RGB images [B, 3, H, W], got shape {tuple(images.shape)}")
    if convention == "cgn":
        return images
    if convention != "u2net":
        raise ValueError(f"unknown U2Net input convention {convention!r}; use 'cgn' or 'u2net'")
    unit = (images + 1) / 2
    peak = unit.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)
    mean = images.new_tensor(_U2NET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(_U2NET_STD).view(1, 3, 1, 1)
    return (unit / peak - mean) / std


# --- weights ---------------------------------------------------------------------------------
def _not_found(where: str) -> DataNotFoundError:
    return DataNotFoundError(
        f"U2-Net weights {U2NET_WEIGHTS_FILE} not found ({where}): `cgnbench fetch u2net.full` "
        f"downloads it (176.3 MB, as linked in the U-2-Net README {U2NET_README_URL}), or pass "
        f"its path or set {WEIGHTS_ENV}"
    )


def resolve_u2net_weights(
    path: str | os.PathLike | None = None,
    *,
    small: bool = False,
    data_dir: str | os.PathLike | None = None,
) -> Path:
    """The weights file: ``path`` if given (a folder means ``<folder>/u2net.pth``; a registered
    name or URL also work), else the registered ``u2net.full`` (``u2net.small`` when
    ``small``): ``$CGNBENCH_U2NET_WEIGHTS``, ``<data-dir>/u2net/``, the cache, a download.
    A missing file is a one-line :class:`DataNotFoundError`."""
    name = "u2net.small" if small else "u2net.full"
    try:
        if path is None or str(path).strip() == "":
            return resolve_spec(U2NET_WEIGHTS[name], data_dir=data_dir).path
        candidate = Path(path).expanduser()
        if candidate.is_dir():
            candidate = candidate / U2NET_WEIGHTS_FILE
            if not candidate.is_file():
                raise DataNotFoundError(f"{candidate} does not exist")
        text = str(candidate) if candidate.is_file() else str(path)
        return resolve_weights(text, specs=U2NET_WEIGHTS, what="U2-Net weights").path
    except DataNotFoundError as exc:
        raise _not_found(str(exc).rstrip(".")) from None


def _listed(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_u2net_weights(
    model: nn.Module,
    path: str | os.PathLike | None = None,
    *,
    check_sha256: bool = False,
) -> Path:
    """Load ``u2net.pth`` (or ``u2netp.pth`` into :meth:`U2Net.small`) into ``model``, strictly.

    The file is read with ``torch.load(weights_only=True, map_location="cpu")`` (nothing is
    unpickled); a DataParallel ``module.`` prefix is dropped. BatchNorm ``num_batches_tracked``
    counters absent from old files (PyTorch 0.4.0 did not write them) are filled with 0, as
    PyTorch itself does for such files; they do not affect eval-mode outputs. Any other missing
    or unexpected key, or a shape mismatch, raises a one-line :class:`IncompatibleError`.
    ``check_sha256`` compares the file with :data:`U2NET_WEIGHTS_SHA256`. Returns the path used.
    """
    file = resolve_u2net_weights(path)
    if check_sha256:
        digest = sha256_file(file)
        if digest != U2NET_WEIGHTS_SHA256:
            raise ChecksumError(
                f"{file} has sha256 {digest}, expected {U2NET_WEIGHTS_SHA256} "
                f"(the {U2NET_WEIGHTS_FILE} linked from {U2NET_README_URL})"
            )
    state = dict(load_state_dict_file(file))
    if any(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    expected = model.state_dict()
    for key, value in expected.items():
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mismatched = [
        f"{key} {list(state[key].shape)} vs {list(value.shape)}"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {_listed(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {_listed(unexpected)}")
        if mismatched:
            parts.append(
                f"{len(mismatched)} of another shape (file vs model): {_listed(mismatched)}"
            )
        raise IncompatibleError(f"{file} does not fit {type(model).__name__} ({'; '.join(parts)})")
    model.load_state_dict(state, strict=True)
    return file
