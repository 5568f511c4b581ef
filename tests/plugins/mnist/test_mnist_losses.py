"""Style loss (real VGG16 weights), its missing-weights error, binary entropy and edge loss."""

from __future__ import annotations

import math

import pytest
import torch

from robustbench_cgn.errors import ConfigError, DataNotFoundError
from robustbench_cgn_plugins.mnist.losses import (
    BinaryLoss,
    binary_entropy_bits,
    class_priors,
    edge_loss,
    lsgan_loss,
    mechanism_prior_loss,
    prior_weight,
)
from robustbench_cgn_plugins.shared.style_loss import (
    CAFFE_MEAN_255,
    IMAGENET_MEAN,
    IMAGENET_STD,
    STYLE_WEIGHTS,
    VGG16_WEIGHTS_ENV,
    VGGStyleLoss,
    gram_matrix,
)


@pytest.fixture(scope="module")
def vgg_file(shared_data):
    return shared_data / "vgg16" / "vgg16_imagenet_caffe_features23.pth"


@pytest.fixture(scope="module")
def colored_loss(vgg_file):
    return VGGStyleLoss(STYLE_WEIGHTS["colored"], vgg_file)


def test_style_loss_values_and_gradient(colored_loss):
    g = torch.Generator().manual_seed(0)
    real = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    fake = (torch.rand(4, 3, 32, 32, generator=g) * 2 - 1).requires_grad_(True)
    loss = colored_loss(fake, real)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0
    assert colored_loss(real, real).item() == 0.0
    assert all(not p.requires_grad for p in colored_loss.parameters())
    assert not colored_loss.train().vgg.training


def test_style_loss_metadata_and_early_stop(colored_loss, vgg_file):
    assert colored_loss.input_convention == "caffe"
    assert colored_loss.weights_sha256.startswith("39852ebc68d6")
    assert colored_loss.weights_path == str(vgg_file)
    assert len(colored_loss.vgg) == 16  # colored: relu4_3 has weight 0 -> stops at relu3_3
    dc = VGGStyleLoss(STYLE_WEIGHTS["double_colored"], vgg_file)
    assert len(dc.vgg) == 23 and dc.active == [1, 3]
    off = VGGStyleLoss((0, 0, 0, 0), vgg_file)
    assert off(torch.zeros(1, 3, 32, 32), torch.ones(1, 3, 32, 32)).item() == 0.0


def test_style_loss_is_the_weighted_gram_l1(colored_loss):
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    ga, gb = colored_loss.grams(a), colored_loss.grams(b)
    expected = sum(
        w * w * 5000 * (x - y).abs().mean()
        for w, x, y in zip((0.05, 0.1, 0.01), ga, gb, strict=True)
    )
    assert torch.allclose(colored_loss(a, b), expected)


def test_style_loss_in_bf16_is_close_to_fp32_and_its_grams_stay_fp32(colored_loss, vgg_file):
    bf16 = VGGStyleLoss(STYLE_WEIGHTS["colored"], vgg_file, precision="bf16")
    g = torch.Generator().manual_seed(2)
    real = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1
    fake = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1
    grads, losses = [], []
    for loss_fn in (colored_loss, bf16):
        x = fake.clone().requires_grad_(True)
        loss = loss_fn(x, real)
        loss.backward()
        losses.append(loss.item())
        grads.append(x.grad.flatten())
    assert all(gram.dtype == torch.float32 for gram in bf16.grams(real))
    assert losses[1] != losses[0]  # bf16 really ran
    assert abs(losses[1] - losses[0]) < 0.01 * losses[0]
    assert torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0) > 0.99
    with pytest.raises(ConfigError, match="precision must be fp32 or bf16"):
        VGGStyleLoss(STYLE_WEIGHTS["colored"], vgg_file, precision="fp16")


def test_gram_matrix():
    f = torch.randn(2, 4, 3, 5)
    flat = f.reshape(2, 4, 15)
    assert torch.allclose(gram_matrix(f), flat @ flat.transpose(1, 2) / 60)


def test_input_conventions(vgg_file, tmp_path):
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD)
    x = torch.rand(1, 3, 4, 4) * 2 - 1
    faithful = VGGStyleLoss(STYLE_WEIGHTS["colored"], vgg_file)
    caffe_mean = torch.tensor(CAFFE_MEAN_255).view(1, 3, 1, 1)
    expected = 255 * (x * std.view(1, 3, 1, 1) + mean) - caffe_mean
    assert torch.allclose(faithful.preprocess(x), expected, atol=1e-4)
    improved = VGGStyleLoss(STYLE_WEIGHTS["colored"], vgg_file, mode="improved")
    assert torch.allclose(improved.preprocess(x), 255 * (x + 1) / 2 - caffe_mean, atol=1e-4)
    # a torchvision-style checkpoint (features.* keys) is recognised and fed torchvision's way
    state = torch.load(vgg_file, weights_only=True)
    tv = tmp_path / "vgg16-test.pth"
    torch.save({f"features.{k}": v for k, v in state.items()} | {"classifier.0.bias": 0}, tv)
    tv_loss = VGGStyleLoss(STYLE_WEIGHTS["colored"], tv)
    assert tv_loss.input_convention == "torchvision" and tv_loss.feature_scale == 1.0
    assert torch.equal(tv_loss.preprocess(x), x)  # the faithful quirk: no normalisation
    tv_improved = VGGStyleLoss(STYLE_WEIGHTS["colored"], tv, mode="improved")
    assert torch.allclose(tv_improved.preprocess(x), ((x + 1) / 2 - mean) / std.view(1, 3, 1, 1))
    unknown = tmp_path / "weights.pth"
    torch.save(state, unknown)
    with pytest.raises(ConfigError, match="input_convention"):
        VGGStyleLoss(STYLE_WEIGHTS["colored"], unknown)
    assert VGGStyleLoss(STYLE_WEIGHTS["colored"], unknown, input_convention="caffe")


def test_missing_vgg_weights_is_a_clear_error(monkeypatch, tmp_path, vgg_file):
    monkeypatch.delenv(VGG16_WEIGHTS_ENV, raising=False)
    with pytest.raises(DataNotFoundError) as err:
        VGGStyleLoss()
    assert "vgg16_imagenet_caffe_features23.pth" in str(err.value)
    assert VGG16_WEIGHTS_ENV in str(err.value)
    monkeypatch.setenv(VGG16_WEIGHTS_ENV, str(tmp_path / "missing.pth"))
    with pytest.raises(DataNotFoundError, match="missing.pth"):
        VGGStyleLoss()
    monkeypatch.setenv(VGG16_WEIGHTS_ENV, str(vgg_file))
    assert VGGStyleLoss().weights_path == str(vgg_file)


def test_binary_entropy_in_bits():
    assert math.isclose(binary_entropy_bits(torch.full((2, 3), 0.5)).item(), 1.0, rel_tol=1e-6)
    sharp = torch.tensor([1e-4, 1 - 1e-4])
    assert binary_entropy_bits(sharp).item() < 2e-3
    assert torch.isfinite(binary_entropy_bits(torch.tensor([0.0, 1.0])))
    assert math.isclose(BinaryLoss(0.3)(torch.full((4,), 0.5)).item(), 0.3, rel_tol=1e-6)


def test_class_priors_and_mechanism_prior_loss():
    masks = torch.zeros(4, 2, 2, dtype=torch.uint8)
    masks[0, 0, 0] = masks[1, 0, 0] = masks[1, 1, 1] = masks[2, 1, 1] = 1
    labels = torch.tensor([0, 0, 1, 1])
    images = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)  # black (-1) backgrounds ...
    images[:, 0] = masks * 255  # ... and red (1, -1, -1) digits
    priors = class_priors(images, masks, labels, n_classes=2, chunk=3)  # two chunks
    assert torch.equal(
        priors.shape, torch.tensor([[[1.0, 0.0], [0.0, 0.5]], [[0.0, 0.0], [0.0, 0.5]]])
    )
    assert torch.equal(priors.foreground, torch.tensor([[1.0, -1, -1], [1, -1, -1]]))
    assert torch.equal(priors.background, torch.full((2, 3), -1.0))
    with pytest.raises(ValueError, match=r"class\(es\) \[2\]"):
        class_priors(images, masks, labels, n_classes=3)
    # weight: linear from w at 0 to 0 at n, never negative
    assert [prior_weight(2.0, t, 4) for t in (0, 1, 4, 9)] == [2.0, 1.5, 0.0, 0.0]
    assert prior_weight(0.0, 0, 4) == prior_weight(1.0, 0, 0) == 0.0
    # loss: channel 0 of a [B, 3, H, W] mask against the shape of each sample's class, textures
    # against flat class colours
    mask = priors.shape[[1, 0]].unsqueeze(1).repeat(1, 3, 1, 1)  # sample 0 is a 1, sample 1 a 0
    fg = torch.tensor([1.0, -1, -1]).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    bg = torch.full((2, 3, 2, 2), -1.0)
    y = torch.tensor([1, 0])
    assert mechanism_prior_loss(mask, fg, bg, y, priors, 3.0).item() == 0.0
    swapped = mechanism_prior_loss(mask, fg, bg, y.flip(0), priors, 3.0).item()
    assert math.isclose(swapped, 3.0 * (1.0 + 1.0) / 8, rel_tol=1e-6)  # two pixels off by 1
    white_bg = mechanism_prior_loss(mask, fg, -bg, y, priors, 1.0).item()
    assert math.isclose(white_bg, 4.0, rel_tol=1e-6)  # every background value off by 2


def test_edge_loss():
    ones = torch.ones(2, 1, 32, 32)
    # center [6:-6] is 20x20 = 400 of 1024 pixels
    assert math.isclose(edge_loss(ones, 0.1).item(), 0.1 * (1024 - 800) / 1024, rel_tol=1e-6)
    center_only = torch.zeros(2, 1, 32, 32)
    center_only[:, :, 6:26, 6:26] = 1
    assert edge_loss(center_only, 0.1).item() < 0
    three = edge_loss(ones.repeat(1, 3, 1, 1), 0.1).item()
    assert math.isclose(three, 3 * edge_loss(ones, 0.1).item(), rel_tol=1e-6)
    border = torch.zeros(1, 1, 32, 32)
    border[..., :3, :] = 1
    assert math.isclose(
        edge_loss(border, 1.0, border=3).item(), 96 / (1024 - 26 * 26), rel_tol=1e-6
    )


def test_lsgan_loss():
    pred = torch.tensor([[1.0], [0.0]])
    assert lsgan_loss(pred, 1.0).item() == 0.5


def test_channels_last_and_full_vgg_give_the_same_loss(colored_loss, vgg_file):
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, torch.rand(2, 3, 32, 32, generator=g)
    assert colored_loss.channels_last
    nchw = VGGStyleLoss(STYLE_WEIGHTS["colored"], vgg_file, channels_last=False)
    full = VGGStyleLoss(STYLE_WEIGHTS["colored"], vgg_file, stop_early=False)
    assert len(full.vgg) == 23
    ref = nchw(a, b)
    assert torch.allclose(colored_loss(a, b), ref, rtol=1e-4)
    assert torch.allclose(full(a, b), ref, rtol=1e-4)
