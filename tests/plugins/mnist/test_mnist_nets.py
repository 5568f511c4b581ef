"""Discriminators, the DCGAN generator and the reference classifier CNN."""

from __future__ import annotations

import torch

from robustbench_cgn_plugins.mnist.cgn_model import count_parameters
from robustbench_cgn_plugins.mnist.cnn import CNN
from robustbench_cgn_plugins.mnist.dcgan_model import DCGANGenerator
from robustbench_cgn_plugins.mnist.discriminators import DiscConv, DiscLin


def test_parameter_counts():
    assert count_parameters(DiscLin(ndf=512)) == 2_104_421
    assert count_parameters(DiscConv(ndf=32)) == 413_642
    assert count_parameters(DCGANGenerator()) == 831_460
    assert count_parameters(CNN()) == 67_760


def test_discriminator_and_generator_shapes():
    x, y = torch.randn(5, 3, 32, 32), torch.randint(10, (5,))
    assert DiscLin()(x, y).shape == (5, 1)
    assert DiscConv()(x, y).shape == (5, 1)
    gen = DCGANGenerator()
    out = gen(y, generator=torch.Generator().manual_seed(0))
    assert out.shape == (5, 3, 32, 32) and out.abs().max() <= 1


def test_disc_conv_label_is_a_constant_plane():
    d = DiscConv().eval()
    x = torch.randn(2, 3, 32, 32)
    a, b = d(x, torch.tensor([0, 0])), d(x, torch.tensor([1, 1]))
    assert not torch.allclose(a, b)


def test_cnn_shapes_and_outputs():
    cnn = CNN().eval()
    x = torch.randn(6, 3, 32, 32)
    logp = cnn(x)
    assert logp.shape == (6, 10)
    assert torch.allclose(logp.exp().sum(1), torch.ones(6), atol=1e-5)
    assert cnn.features(x).shape == (6, 64)
    assert cnn.feature_map(x).shape == (6, 64, 8, 8)
    assert cnn.last_conv is cnn.model[8] and isinstance(cnn.last_conv, torch.nn.Conv2d)
    assert torch.allclose(cnn.cls(cnn.features(x)).log_softmax(1), logp)


def test_cnn_avgpool_quirk_ignores_last_row_and_column():
    cnn = CNN().eval()
    fm = cnn.feature_map(torch.randn(2, 3, 32, 32))
    pooled = cnn.model[10](fm).flatten(1)
    fm2 = fm.clone()
    fm2[..., 7, :] += 5.0
    fm2[..., :, 7] += 5.0
    assert torch.equal(cnn.model[10](fm2).flatten(1), pooled)
    assert torch.allclose(pooled, fm[..., :7, :7].mean((2, 3)))
