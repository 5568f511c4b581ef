"""BigGAN-deep: config, key layout of the public checkpoints, strict loading, noise, truncation.

Random weights only: the 32 px ``tiny`` config runs forwards; the 256 px model is built once
(layout check and a strict in-memory load) and the 128 px one once (layout), neither is run.
No downloaded weights, no network.
"""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
import torch
import torch.nn.functional as F

from robustbench_cgn import CGNBenchError, ConfigError, DataNotFoundError, IncompatibleError
from robustbench_cgn_plugins.imagenet_cgn.biggan import (
    PRETRAINED,
    WEIGHTS_ENV,
    WEIGHTS_NAME,
    BigGAN,
    BigGANBatchNorm,
    BigGANConfig,
    load_biggan_state,
    load_biggan_weights,
    truncated_noise,
)

# Representative entries of the state dict of the public biggan-deep-256 checkpoint
# (pytorch-pretrained-BigGAN: model.py's BigGAN built from convert_tf_to_pytorch.BigGAN256,
# whose state_dict() the converter saves as pytorch_model.bin). ModuleList index 8 is the
# self-attention layer, inserted before the ninth GenBlock.
DEEP_256_KEYS: dict[str, tuple[int, ...]] = {
    "embeddings.weight": (128, 1000),
    "generator.gen_z.bias": (32768,),
    "generator.gen_z.weight_orig": (32768, 256),
    "generator.gen_z.weight_u": (32768,),
    "generator.gen_z.weight_v": (256,),
    "generator.layers.0.bn_0.running_means": (51, 2048),
    "generator.layers.0.bn_0.running_vars": (51, 2048),
    "generator.layers.0.bn_0.scale.weight_orig": (2048, 256),
    "generator.layers.0.bn_0.scale.weight_u": (2048,),
    "generator.layers.0.bn_0.scale.weight_v": (256,),
    "generator.layers.0.bn_0.offset.weight_orig": (2048, 256),
    "generator.layers.0.conv_0.bias": (512,),
    "generator.layers.0.conv_0.weight_orig": (512, 2048, 1, 1),
    "generator.layers.0.conv_0.weight_v": (2048,),
    "generator.layers.0.bn_1.running_means": (51, 512),
    "generator.layers.0.conv_1.weight_orig": (512, 512, 3, 3),
    "generator.layers.0.conv_1.weight_v": (4608,),
    "generator.layers.0.bn_3.offset.weight_u": (512,),
    "generator.layers.0.conv_3.bias": (2048,),
    "generator.layers.0.conv_3.weight_orig": (2048, 512, 1, 1),
    "generator.layers.5.conv_1.weight_orig": (256, 256, 3, 3),
    "generator.layers.7.conv_3.weight_orig": (512, 256, 1, 1),
    "generator.layers.8.gamma": (1,),
    "generator.layers.8.snconv1x1_theta.weight_orig": (64, 512, 1, 1),
    "generator.layers.8.snconv1x1_theta.weight_u": (64,),
    "generator.layers.8.snconv1x1_theta.weight_v": (512,),
    "generator.layers.8.snconv1x1_phi.weight_orig": (64, 512, 1, 1),
    "generator.layers.8.snconv1x1_g.weight_orig": (256, 512, 1, 1),
    "generator.layers.8.snconv1x1_o_conv.weight_orig": (512, 256, 1, 1),
    "generator.layers.8.snconv1x1_o_conv.weight_u": (512,),
    "generator.layers.9.bn_0.running_means": (51, 512),
    "generator.layers.9.bn_0.scale.weight_orig": (512, 256),
    "generator.layers.12.conv_3.bias": (128,),
    "generator.layers.12.conv_3.weight_orig": (128, 64, 1, 1),
    "generator.bn.weight": (128,),
    "generator.bn.bias": (128,),
    "generator.bn.running_means": (51, 128),
    "generator.bn.running_vars": (51, 128),
    "generator.conv_to_rgb.bias": (128,),
    "generator.conv_to_rgb.weight_orig": (128, 128, 3, 3),
    "generator.conv_to_rgb.weight_u": (128,),
    "generator.conv_to_rgb.weight_v": (1152,),
}
DEEP_256_KEY_COUNT = 602  # 150 spectral norms x 3, 51 biases, 49 x 2 stats, bn weight/bias, gamma
DEEP_128_KEY_COUNT = 506

# sha256 of the public biggan-deep-256-config.json (715 bytes; see biggan.PRETRAINED)
DEEP_256_CONFIG_SHA256 = "edd106f65ff28ee1638491a978cfa6bc50dfa0344aab70749a7b8eb08bbec677"


def _shapes(model: BigGAN) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


@pytest.fixture(scope="module")
def deep_256() -> BigGAN:
    """One randomly initialised 256 px model (~220 MB, built once, never run)."""
    torch.manual_seed(0)
    return BigGAN(BigGANConfig.deep_256(), power_iterations=0)


def _tiny(seed: int = 0) -> BigGAN:
    torch.manual_seed(seed)
    return BigGAN(BigGANConfig.tiny()).eval()


def _one_hot(classes: list[int]) -> torch.Tensor:
    return F.one_hot(torch.tensor(classes), 1000).float()


# ----------------------------------------------------------------------------- config


def test_deep_256_config_is_the_public_config_json():
    text = BigGANConfig.deep_256().to_json()
    assert len(text.encode()) == 715
    assert hashlib.sha256(text.encode()).hexdigest() == DEEP_256_CONFIG_SHA256
    assert PRETRAINED["biggan-deep-256"].config_sha256 == DEEP_256_CONFIG_SHA256


def test_config_json_round_trip_and_errors(tmp_path):
    path = tmp_path / "config.json"
    for config in (BigGANConfig.deep_128(), BigGANConfig.deep_256(), BigGANConfig.tiny()):
        path.write_text(config.to_json())
        assert BigGANConfig.from_json(path) == config
    assert BigGANConfig.from_json(tmp_path) == BigGANConfig.tiny()  # a folder holding one

    data = json.loads(BigGANConfig.deep_128().to_json())
    path.write_text(json.dumps({**data, "extra": 1}))
    with pytest.raises(ConfigError, match="extra"):
        BigGANConfig.from_json(path)
    path.write_text(json.dumps({**data, "output_dim": 256}))
    with pytest.raises(ConfigError, match="output_dim 256"):
        BigGANConfig.from_json(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError):
        BigGANConfig.from_json(path)
    with pytest.raises(DataNotFoundError):
        BigGANConfig.from_json(tmp_path / "absent.json")
    with pytest.raises(ConfigError, match="halve"):
        BigGANConfig(output_dim=8, layers=((True, 16, 4), (False, 4, 1)))


# ----------------------------------------------------------------------------- layout


def test_deep_256_state_dict_matches_the_public_layout(deep_256):
    state = _shapes(deep_256)
    assert len(state) == DEEP_256_KEY_COUNT
    for key, shape in DEEP_256_KEYS.items():
        assert state.get(key) == shape, key
    # spectral norm keeps weight_orig/_u/_v only; attention convs and bn scale/offset: no bias
    assert not any(k.endswith(".weight") for k in state if "conv" in k or "gen_z" in k)
    assert not any(k.startswith("generator.layers.8.") and k.endswith("bias") for k in state)
    assert not any(k.endswith(("scale.bias", "offset.bias")) for k in state)
    assert "generator.layers.13.bn_0.running_means" not in state


def test_deep_128_state_dict_size():
    state = _shapes(BigGAN(BigGANConfig.deep_128(), power_iterations=0))
    assert len(state) == DEEP_128_KEY_COUNT
    assert state["generator.layers.8.snconv1x1_theta.weight_orig"] == (32, 256, 1, 1)
    assert state["generator.layers.10.conv_3.weight_orig"] == (128, 64, 1, 1)


def test_deep_256_loads_a_public_layout_state_dict_strictly(deep_256):
    model = deep_256
    state = {key: torch.full(shape, 0.5) for key, shape in DEEP_256_KEYS.items()}
    for key, value in model.state_dict().items():
        state.setdefault(key, torch.zeros_like(value))
    load_biggan_state(model, state)
    assert torch.equal(model.generator.conv_to_rgb.weight_orig, torch.full((128, 128, 3, 3), 0.5))
    assert model.generator.layers[12].conv_3.weight_u.abs().sum() == 0


# ----------------------------------------------------------------------------- forward


def test_tiny_forward_shape_range_and_embedding():
    model = _tiny()
    z = truncated_noise(3, 128, 0.4, torch.Generator().manual_seed(1))
    soft = torch.softmax(torch.randn(3, 1000), dim=1)
    with torch.no_grad():
        images = model(z, _one_hot([1, 2, 3]), 0.4)
        again = model(z, _one_hot([1, 2, 3]), 0.4)
        from_soft = model(z, soft, 0.4)
        shared = model.from_embedding(z, model.embed(soft), 0.4)
    assert images.shape == (3, 3, 32, 32)
    assert torch.isfinite(images).all() and images.abs().max() <= 1
    assert images.abs().max() < 1  # not all saturated: the spectral norms are settled
    assert torch.equal(images, again)  # eval mode: no power iteration, deterministic
    assert torch.allclose(from_soft, shared)
    with pytest.raises(ValueError, match="truncation"):
        model(z, _one_hot([1, 2, 3]), 0.0)
    with pytest.raises(ValueError, match="class_vector"):
        model(z, torch.zeros(3, 10), 0.4)


def test_rgb_head_equals_full_conv_then_slice():
    model = _tiny()
    h = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        full = torch.tanh(model.generator.conv_to_rgb(h)[:, :3])
        assert torch.allclose(model.generator.to_rgb(h), full, atol=1e-6)


def test_conditional_batch_norm_matches_the_port_formula():
    torch.manual_seed(0)
    bn = BigGANBatchNorm(6, condition_dim=5, n_stats=3).eval()
    bn.running_means.normal_()
    bn.running_vars.uniform_(0.5, 2)
    x, cond = torch.randn(2, 6, 4, 4), torch.randn(2, 5)
    mean, var = bn.running_means[1], bn.running_vars[1]  # truncation 0.5: a grid point
    expected = (x - mean[:, None, None]) / torch.sqrt(var[:, None, None] + bn.eps)
    expected = expected * (1 + bn.scale(cond))[:, :, None, None] + bn.offset(cond)[:, :, None, None]
    assert torch.allclose(bn(x, 0.5, cond), expected, atol=1e-5)


def test_truncation_selects_the_batch_norm_statistics():
    bn = BigGANBatchNorm(2, conditional=False)
    with torch.no_grad():
        bn.running_means.copy_(torch.arange(51.0)[:, None].expand(51, 2))
    assert bn.stats(0.5)[0].tolist() == [25.0, 25.0]
    assert bn.stats(1.0)[0].tolist() == [50.0, 50.0]
    # between grid points the port weights the lower point by the fraction (kept as published)
    mean = bn.stats(0.506)[0]  # 25.3 steps -> 0.3 * stats[25] + 0.7 * stats[26]
    assert torch.allclose(mean, torch.tensor([25.7, 25.7]), atol=1e-4)

    model = _tiny()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, BigGANBatchNorm):
                module.running_means.copy_(torch.linspace(-1, 1, 51)[:, None])
        z = truncated_noise(2, 128, 0.5, torch.Generator().manual_seed(2))
        low = model(z, _one_hot([7, 8]), 0.3)
        high = model(z, _one_hot([7, 8]), 0.9)
    assert (low - high).abs().max() > 1e-3


def test_training_mode_updates_spectral_norm_vectors():
    model = _tiny().train()
    u = model.generator.gen_z.weight_u.clone()
    with torch.no_grad():
        model.generator.gen_z.weight_orig.mul_(-1).add_(0.01)  # move the top singular vector
    model(truncated_noise(1, 128, 1.0), _one_hot([0]), 1.0).sum().backward()
    assert not torch.allclose(model.generator.gen_z.weight_u, u)
    assert model.generator.gen_z.weight_orig.grad is not None


def test_deepcopy_after_a_training_forward():
    model = _tiny().train()
    out = model(truncated_noise(1, 128, 0.5), _one_hot([0]), 0.5)
    twin = copy.deepcopy(model)  # plain torch spectral_norm modules refuse this
    out.sum().backward()  # the pending graph is intact
    assert model.generator.gen_z.weight_orig.grad is not None
    for key, value in model.state_dict().items():
        assert torch.equal(twin.state_dict()[key], value), key
    twin.eval()
    with torch.no_grad():
        assert twin(truncated_noise(1, 128, 0.5), _one_hot([0]), 0.5).shape == (1, 3, 32, 32)


# ----------------------------------------------------------------------------- noise


def test_truncated_noise_bounds_and_seeding():
    noise = truncated_noise(64, 128, 0.5, torch.Generator().manual_seed(3))
    assert noise.shape == (64, 128) and noise.dtype == torch.float32
    assert noise.abs().max() <= 1.0  # 2 x truncation
    assert abs(noise.mean().item()) < 0.02
    assert abs(noise.std().item() / 0.5 - 0.8796) < 0.03  # std of N(0, 1) truncated to (-2, 2)
    same = truncated_noise(64, 128, 0.5, torch.Generator().manual_seed(3))
    other = truncated_noise(64, 128, 0.5, torch.Generator().manual_seed(4))
    assert torch.equal(noise, same) and not torch.equal(noise, other)
    torch.manual_seed(5)
    a = truncated_noise(2, 8, 1.0)
    torch.manual_seed(5)
    assert torch.equal(a, truncated_noise(2, 8, 1.0))  # the global RNG without a generator
    with pytest.raises(ValueError):
        truncated_noise(2, 8, 0.0)


# ----------------------------------------------------------------------------- weights files


def test_weights_file_round_trip_in_the_2019_format(tmp_path):
    source, target = _tiny(1), _tiny(2)
    folder = tmp_path / "biggan-tiny"
    folder.mkdir()
    # the public file predates the zip format: torch.save(..., legacy) reads the same way
    torch.save(source.state_dict(), folder / WEIGHTS_NAME, _use_new_zipfile_serialization=False)
    assert load_biggan_weights(target, folder) is target
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_weights_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "weights.pt"
    torch.save(_tiny(1).state_dict(), path)
    monkeypatch.setenv(WEIGHTS_ENV, str(path))
    model = load_biggan_weights(_tiny(2))
    assert torch.equal(model.embeddings.weight, _tiny(1).embeddings.weight)


def test_missing_weights_name_the_file_its_source_and_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    for path, named in (
        (tmp_path / "nope.bin", "nope.bin"),
        (None, "cgnbench fetch biggan.deep-256"),
    ):
        with pytest.raises(DataNotFoundError) as info:
            load_biggan_weights(_tiny(), path)
        message = str(info.value)
        assert "\n" not in message and named in message
        assert PRETRAINED["biggan-deep-256"].weights_url in message
        assert WEIGHTS_ENV in message and WEIGHTS_NAME in message
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "gone.bin"))
    with pytest.raises(DataNotFoundError, match="gone.bin"):
        load_biggan_weights(_tiny())


def test_incompatible_weights_are_one_clear_line(tmp_path):
    state = _tiny(1).state_dict()
    path = tmp_path / "bad.bin"

    renamed = dict(state)
    renamed["generator.gen_z.weight"] = renamed.pop("generator.gen_z.weight_orig")
    torch.save(renamed, path)
    with pytest.raises(IncompatibleError) as info:
        load_biggan_weights(_tiny(), path)
    message = str(info.value)
    assert "\n" not in message and "bad.bin" in message
    assert "1 missing (generator.gen_z.weight_orig)" in message
    assert "1 unexpected (generator.gen_z.weight)" in message

    # weights of another width: a few keys and both shapes are shown
    wider = BigGAN(BigGANConfig(**{**BigGANConfig.tiny().to_dict(), "channel_width": 8}))
    wider_state = {k: torch.zeros(v.shape) for k, v in wider.state_dict().items()}
    with pytest.raises(IncompatibleError, match=r"\d+ of other shape \(generator\.\S+ \[\d"):
        load_biggan_state(_tiny(), wider_state)

    torch.save({"model": state}, path)
    with pytest.raises(IncompatibleError, match="not a BigGAN state dict"):
        load_biggan_weights(_tiny(), path)
    path.write_bytes(b"not a torch file")
    with pytest.raises(CGNBenchError, match="cannot read BigGAN weights"):
        load_biggan_weights(_tiny(), path)
