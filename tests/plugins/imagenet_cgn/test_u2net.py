"""U2-Net: public key layout of u2net.pth / u2netp.pth, outputs, strict weight loading, errors.

No downloaded weights: state dicts come from fresh instances. Forward passes run at 32x32
(batch 1), where the full model takes a fraction of a second on one CPU thread.
"""

from __future__ import annotations

import pytest
import torch

from robustbench_cgn.errors import DataNotFoundError, IncompatibleError
from robustbench_cgn_plugins.imagenet_cgn.u2net import (
    U2NET_README_URL,
    U2NET_WEIGHTS_FILE,
    WEIGHTS_ENV,
    U2Net,
    load_u2net_weights,
    prepare_for_u2net,
    resolve_u2net_weights,
)

# Key names and shapes of the public u2net.pth (xuebinqin/U-2-Net model/u2net.py, U2NET(3, 1);
# the same in the CGN authors' imagenet/models/u2net.py).
FULL_KEYS = {
    "stage1.rebnconvin.conv_s1.weight": (64, 3, 3, 3),
    "stage1.rebnconvin.bn_s1.running_mean": (64,),
    "stage1.rebnconv1.conv_s1.weight": (32, 64, 3, 3),
    "stage1.rebnconv7.conv_s1.weight": (32, 32, 3, 3),
    "stage1.rebnconv6d.conv_s1.weight": (32, 64, 3, 3),
    "stage1.rebnconv1d.conv_s1.weight": (64, 64, 3, 3),
    "stage2.rebnconvin.conv_s1.weight": (128, 64, 3, 3),
    "stage2.rebnconv6.conv_s1.weight": (32, 32, 3, 3),
    "stage3.rebnconv5.conv_s1.weight": (64, 64, 3, 3),
    "stage4.rebnconv4.conv_s1.weight": (128, 128, 3, 3),
    "stage5.rebnconv4.conv_s1.weight": (256, 256, 3, 3),
    "stage6.rebnconvin.conv_s1.weight": (512, 512, 3, 3),
    "stage6.rebnconv3d.conv_s1.weight": (256, 512, 3, 3),
    "stage6.rebnconv1d.conv_s1.weight": (512, 512, 3, 3),
    "stage6.rebnconv1d.bn_s1.weight": (512,),
    "stage5d.rebnconvin.conv_s1.weight": (512, 1024, 3, 3),
    "stage4d.rebnconvin.conv_s1.weight": (256, 1024, 3, 3),
    "stage3d.rebnconvin.conv_s1.weight": (128, 512, 3, 3),
    "stage2d.rebnconvin.conv_s1.weight": (64, 256, 3, 3),
    "stage1d.rebnconvin.conv_s1.weight": (64, 128, 3, 3),
    "stage1d.rebnconv6d.conv_s1.weight": (16, 32, 3, 3),
    "stage1d.rebnconv1d.bn_s1.running_var": (64,),
    "side1.weight": (1, 64, 3, 3),
    "side2.weight": (1, 64, 3, 3),
    "side3.weight": (1, 128, 3, 3),
    "side4.weight": (1, 256, 3, 3),
    "side5.weight": (1, 512, 3, 3),
    "side6.weight": (1, 512, 3, 3),
    "side6.bias": (1,),
    "outconv.weight": (1, 6, 1, 1),
    "outconv.bias": (1,),
}
# 112 REBNCONVs x 7 tensors (conv weight/bias, bn weight/bias/mean/var/num_batches_tracked)
# + 6 side convs x 2 + outconv x 2.
FULL_KEY_COUNT = 798
FULL_PARAMS = 44_009_869  # "about 44.0 M"; also the count others record for u2net.pth
SMALL_KEYS = {  # u2netp.pth (U2NETP(3, 1))
    "stage1.rebnconvin.conv_s1.weight": (64, 3, 3, 3),
    "stage1.rebnconv1.conv_s1.weight": (16, 64, 3, 3),
    "stage3.rebnconvin.conv_s1.weight": (64, 64, 3, 3),
    "stage5d.rebnconvin.conv_s1.weight": (64, 128, 3, 3),
    "stage1d.rebnconv1d.conv_s1.weight": (64, 32, 3, 3),
    "side6.weight": (1, 64, 3, 3),
    "outconv.weight": (1, 6, 1, 1),
}
SMALL_PARAMS = 1_131_181
SIZE = 32


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def full() -> U2Net:
    torch.manual_seed(0)
    return U2Net().eval()


def _images(size: int = SIZE, batch: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(batch, 3, size, size, generator=generator) * 2 - 1


def test_public_key_layout_of_the_full_model(full):
    state = full.state_dict()
    assert len(state) == FULL_KEY_COUNT
    assert sum(p.numel() for p in full.parameters()) == FULL_PARAMS
    for key, shape in FULL_KEYS.items():
        assert tuple(state[key].shape) == shape, key
    # every RSU-L block has rebnconvin, rebnconv1..L and rebnconv{L-1}d..1d
    for stage, height in (("stage1", 7), ("stage2", 6), ("stage3", 5), ("stage4", 4)):
        for name in ["rebnconvin", *(f"rebnconv{i}" for i in range(1, height + 1))] + [
            f"rebnconv{i}d" for i in range(1, height)
        ]:
            assert f"{stage}.{name}.conv_s1.bias" in state
            assert f"{stage}.{name}.bn_s1.num_batches_tracked" in state
    assert not any(key.startswith(("pool", "upscore")) for key in state)


def test_public_key_layout_of_the_small_model():
    small = U2Net.small()
    state = small.state_dict()
    assert len(state) == FULL_KEY_COUNT  # same blocks, narrower
    assert sum(p.numel() for p in small.parameters()) == SMALL_PARAMS
    for key, shape in SMALL_KEYS.items():
        assert tuple(state[key].shape) == shape, key


def test_forward_outputs_and_saliency(full):
    x = _images()
    with torch.no_grad():
        outputs = full(x)
        saliency = full.saliency(x)
    assert len(outputs) == 7
    for output in outputs:
        assert output.shape == (1, 1, SIZE, SIZE)
        assert torch.isfinite(output).all()
        assert output.min() >= 0 and output.max() <= 1
    assert saliency.shape == (1, 1, SIZE, SIZE)
    assert saliency.min() >= 0 and saliency.max() <= 1
    torch.testing.assert_close(saliency, outputs[0])


def test_any_input_size_and_gradients_to_the_input():
    torch.manual_seed(0)
    model = U2Net.small(align_corners=True).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    x = _images(SIZE).narrow(2, 0, 27).narrow(3, 0, 21).clone().requires_grad_(True)
    mask = model.saliency(x)
    assert mask.shape == (1, 1, 27, 21)
    mask.mean().backward()  # the CGN trains the premask through the frozen U2-Net
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_strict_round_trip_from_another_instance(full, tmp_path):
    torch.manual_seed(1)
    other = U2Net().eval()
    with torch.no_grad():  # make the BatchNorm statistics matter
        for name, buffer in other.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
    path = tmp_path / U2NET_WEIGHTS_FILE
    torch.save(other.state_dict(), path)
    assert load_u2net_weights(full, path) == path
    loaded = full.state_dict()
    for key, value in other.state_dict().items():
        assert torch.equal(loaded[key], value), key
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(full.saliency(x), other.saliency(x), rtol=0, atol=0)


def test_module_prefix_and_missing_batch_counters(tmp_path):
    torch.manual_seed(2)
    source, target = U2Net.small(), U2Net.small()
    state = {
        f"module.{key}": value
        for key, value in source.state_dict().items()
        if not key.endswith("num_batches_tracked")  # PyTorch 0.4.0 files lack them
    }
    path = tmp_path / "u2netp.pth"
    torch.save(state, path)
    load_u2net_weights(target, path)
    loaded = target.state_dict()
    for key, value in source.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(loaded[key], value), key


def test_wrong_keys_are_one_clear_line(tmp_path):
    model = U2Net.small()
    state = model.state_dict()
    state["side7.weight"] = state.pop("side6.weight")
    path = tmp_path / "renamed.pth"
    torch.save(state, path)
    with pytest.raises(IncompatibleError) as info:
        load_u2net_weights(model, path)
    message = str(info.value)
    assert "\n" not in message
    assert "missing: side6.weight" in message and "unexpected: side7.weight" in message


def test_shape_mismatch_names_the_keys(full, tmp_path):
    path = tmp_path / "u2netp.pth"
    torch.save(U2Net.small().state_dict(), path)
    with pytest.raises(IncompatibleError) as info:
        load_u2net_weights(full, path)
    message = str(info.value)
    assert "\n" not in message
    assert "another shape" in message and "stage1.rebnconv1.conv_s1.weight" in message


def test_missing_file_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    for path in (tmp_path / "nothing.pth", None):
        with pytest.raises(DataNotFoundError) as info:
            load_u2net_weights(U2Net.small(), path)
        message = str(info.value)
        assert "\n" not in message
        assert U2NET_WEIGHTS_FILE in message and WEIGHTS_ENV in message
        assert U2NET_README_URL in message


def test_weights_from_the_environment_variable(tmp_path, monkeypatch):
    path = tmp_path / U2NET_WEIGHTS_FILE
    torch.save(U2Net.small().state_dict(), path)
    monkeypatch.setenv(WEIGHTS_ENV, str(path))
    assert resolve_u2net_weights() == path
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))  # a folder holding u2net.pth
    assert resolve_u2net_weights() == path
    assert resolve_u2net_weights(tmp_path) == path
    assert load_u2net_weights(U2Net.small()) == path


def test_prepare_for_u2net_conventions():
    images = _images(8, batch=2)
    assert prepare_for_u2net(images) is images  # CGN: BigGAN output fed as it is
    white = torch.ones(1, 3, 4, 4)
    prepared = prepare_for_u2net(white, "u2net")
    expected = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(prepared[0, :, 0, 0], expected)
    # each image is divided by its own maximum: a dimmer image maps to the same input
    half = torch.zeros(1, 3, 4, 4)  # 0.5 in [0, 1]
    torch.testing.assert_close(prepare_for_u2net(half, "u2net"), prepared)
    assert torch.isfinite(prepare_for_u2net(-torch.ones(1, 3, 4, 4), "u2net")).all()
    with pytest.raises(ValueError):
        prepare_for_u2net(images, "imagenet")
    with pytest.raises(ValueError):
        prepare_for_u2net(images[:, :1])
