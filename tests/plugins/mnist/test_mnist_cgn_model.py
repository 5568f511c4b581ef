"""The MNIST CGN: architecture, the authors' checkpoints, shuffler, forwards, init, fused path."""

from __future__ import annotations

import pytest
import torch

from robustbench_cgn.errors import CGNBenchError, ConfigError, DataNotFoundError
from robustbench_cgn_plugins.mnist.cgn_fast import (
    FastCGN,
    upsample_conv_as_conv_transpose,
    upsample_conv_as_phase_conv,
)
from robustbench_cgn_plugins.mnist.cgn_model import (
    CGN,
    build_cgn,
    compose,
    count_parameters,
    cyclic_shift,
    load_cgn_checkpoint,
    sample_shifts,
)

VARIANTS = ["colored", "double_colored", "wildlife"]


def checkpoint(shared_data, name: str):
    return shared_data / "cgn_mnist_weights" / f"cgn_{name}_MNIST.pth"


def test_parameter_counts():
    cgn = build_cgn("colored")
    assert count_parameters(cgn.f_shape) == 194_914
    assert count_parameters(cgn.f_text1) == 232_489
    assert count_parameters(cgn.f_text2) == 232_489
    assert count_parameters(cgn.label_emb) == 100
    assert count_parameters(cgn) == 659_992


def test_state_dict_uses_the_release_indices():
    keys = CGN().state_dict().keys()
    prefixes = {k.rsplit(".", 1)[0] for k in keys}
    assert prefixes == (
        {"label_emb"}
        | {f"f_shape.{i}" for i in (0, 4, 5, 9, 10)}
        | {f"f_text{t}.{i}" for t in (1, 2) for i in (0, 3, 4, 7, 8, 10, 11)}
    )


@pytest.mark.parametrize("name", VARIANTS)
def test_authors_checkpoints_load_strict(shared_data, name):
    path = checkpoint(shared_data, name)
    state = torch.load(path, weights_only=True, map_location="cpu")
    CGN(init_type=None).load_state_dict(state, strict=True)  # raises on any mismatch
    cgn = load_cgn_checkpoint(path)
    assert not cgn.training
    out = cgn.sample(8, torch.Generator().manual_seed(0), counterfactual=True)
    assert out.x.shape == (8, 3, 32, 32) and torch.isfinite(out.x).all()
    assert out.x.min() >= -1 and out.x.max() <= 1
    assert out.mask.min() >= 1e-4 and out.mask.max() <= 1 - 1e-4
    # a trained mask is mostly binary and covers a digit-sized part of the image
    assert 0.05 < (out.mask > 0.5).float().mean() < 0.35


def test_wrong_checkpoint_names_the_problem(tmp_path, shared_data):
    state = torch.load(checkpoint(shared_data, "colored"), weights_only=True, map_location="cpu")
    del state["f_text2.0.bias"]
    state["f_extra.weight"] = torch.zeros(3)
    state["f_shape.4.weight"] = torch.zeros(16, 64, 3, 3)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(CGNBenchError) as err:
        load_cgn_checkpoint(bad)
    msg = str(err.value)
    assert "bad.pth" in msg
    assert "missing keys: f_text2.0.bias" in msg
    assert "unexpected keys: f_extra.weight" in msg
    assert "f_shape.4.weight: file (16, 64, 3, 3) vs model (32, 64, 3, 3)" in msg

    with pytest.raises(DataNotFoundError):
        load_cgn_checkpoint(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CGNBenchError, match="cannot read"):
        load_cgn_checkpoint(junk)


def test_shuffler_is_a_per_sample_roll():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, 32, 32, generator=g)
    shifts = sample_shifts(40, generator=g)
    shifts[0] = torch.tensor([0, 0])
    shifts[1] = torch.tensor([32, 32])
    shifts[2] = torch.tensor([31, 1])
    expected = torch.stack(
        [torch.roll(x[i], (-int(dh), -int(dw)), dims=(-2, -1)) for i, (dh, dw) in enumerate(shifts)]
    )
    assert torch.equal(cyclic_shift(x, shifts), expected)
    cl = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(cyclic_shift(cl, shifts), expected)
    many = sample_shifts(5000, generator=g)
    assert many.min() == 0 and many.max() == 32  # 33 crop offsets, as the reference draws them


def test_counterfactual_forward_labels_and_composition():
    cgn = build_cgn("colored").eval()
    g = torch.Generator().manual_seed(1)
    y = torch.randint(10, (64,), generator=g)
    out = cgn(y, counterfactual=True, generator=g)
    assert torch.equal(out.y_shape, y)
    for other in (out.y_foreground, out.y_background):
        assert torch.equal(other.sort().values, y.sort().values)  # a permutation of the batch
    assert not torch.equal(out.y_foreground, out.y_background)
    assert torch.allclose(out.x, compose(out.mask, out.foreground, out.background))
    normal = cgn(y, generator=g)
    assert torch.equal(normal.y_foreground, y) and torch.equal(normal.y_background, y)
    assert torch.equal(normal.mask[:, 0], normal.mask[:, 2])  # one channel, repeated


def test_counterfactual_forward_is_seeded():
    cgn = build_cgn("wildlife").eval()
    y = torch.arange(10)
    a = cgn(y, counterfactual=True, generator=torch.Generator().manual_seed(3))
    b = cgn(y, counterfactual=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.x, b.x) and torch.equal(a.y_foreground, b.y_foreground)


def test_pix2pix_init_per_dataset():
    torch.manual_seed(0)
    ortho = build_cgn("double_colored")
    w = ortho.f_text1[0].weight  # [4096, 42]: orthogonal columns scaled by the gain
    assert torch.allclose(w.T @ w, 0.2**2 * torch.eye(42), atol=1e-5)
    assert ortho.f_text1[0].bias.abs().max() == 0
    bn = ortho.f_text1[4]
    assert bn.bias.abs().max() == 0 and abs(bn.weight.mean() - 1) < 0.1
    assert 0.7 < ortho.label_emb.weight.std() < 1.3  # default N(0, 1), not re-initialised
    normal = build_cgn("wildlife")
    assert abs(normal.f_text1[3].weight.std() - 0.03) < 0.002
    w_shape = build_cgn("colored").f_shape[0].weight
    assert torch.allclose(w_shape.T @ w_shape, 0.1**2 * torch.eye(42), atol=1e-5)
    with pytest.raises(ConfigError):
        build_cgn("fashion")


def test_mask_activation_flag():
    torch.manual_seed(0)
    faithful = build_cgn("colored").eval()
    improved = build_cgn("colored", improved=True).eval()
    improved.load_state_dict(faithful.state_dict())
    u, y = faithful.sample_noise(16), torch.arange(16) % 10
    m_f, m_i = faithful.mask(u, y), improved.mask(u, y)
    raw = faithful.f_shape(faithful.mechanism_input(u, y))
    assert torch.equal(m_f[:, :1], raw.clamp(1e-4, 1 - 1e-4))
    assert torch.allclose(m_i[:, :1], torch.sigmoid(raw).clamp(1e-4, 1 - 1e-4))
    assert (m_f == 1e-4).float().mean() > 0.2  # the quirk: many pixels stuck on the clamp
    with pytest.raises(ConfigError):
        CGN(mask_activation="softmax")


def test_upsample_conv_equals_conv_transpose():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 8, 5, 7, generator=g, dtype=torch.float64)
    w = torch.randn(4, 8, 3, 3, generator=g, dtype=torch.float64)
    up = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    ref = torch.nn.functional.conv2d(up, w, padding=1)
    fast = torch.nn.functional.conv_transpose2d(
        x, upsample_conv_as_conv_transpose(w), stride=2, padding=1
    )
    assert torch.allclose(ref, fast, atol=1e-12)
    phase = torch.nn.functional.conv2d(x, upsample_conv_as_phase_conv(w), padding=1)
    assert torch.allclose(ref, torch.nn.functional.pixel_shuffle(phase, 2), atol=1e-12)


@pytest.mark.parametrize("improved", [False, True])
def test_fused_cgn_matches_the_modules(shared_data, improved):
    cgn = load_cgn_checkpoint(checkpoint(shared_data, "wildlife"))
    if improved:
        cgn.mask_activation = "sigmoid"
    fast = FastCGN.from_cgn(cgn)
    g = torch.Generator().manual_seed(0)
    u, y, s = torch.randn(64, 32, generator=g), torch.randint(10, (64,), generator=g), None
    s = sample_shifts(64, generator=g)
    with torch.inference_mode():
        assert torch.allclose(fast.mask(u, y), cgn.mask(u, y)[:, :1], atol=1e-4)
        assert torch.allclose(fast.foreground(u, y, s), cgn.foreground(u, y, s), atol=1e-4)
        assert torch.allclose(fast.background(u, y, s), cgn.background(u, y, s), atol=1e-4)
