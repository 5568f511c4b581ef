"""GradCAM-vs-mask IoU on the real natural images with masks, with the real MobileNetV2."""

from __future__ import annotations

import pytest
import torch
from imagenet_fixtures import make_context, write_coded_image

from robustbench_cgn.errors import DataNotFoundError
from robustbench_cgn.explain import mask_iou
from robustbench_cgn_benchmarks.imagenet.gradcam_natural import (
    NaturalImageGradCamIoU,
    load_pair,
    read_manifest,
)
from robustbench_cgn_plugins.imagenet.coral_classifier import MobileNetV2Coral


def test_coral_manifest_masks_mark_the_objects(shared_data):
    items = read_manifest(shared_data / "coral")
    assert [i.image.name for i in items] == ["bird_segmentation.png", "dog_segmentation_256.png"]
    for item in items:
        image, mask = load_pair(item, 224)
        assert image.shape == (3, 224, 224) and mask.shape == (224, 224)
        assert 0.05 < mask.float().mean() < 0.8  # an object, not the whole frame


def test_real_classifier_attends_to_the_object_better_than_chance(tmp_path, shared_data):
    ctx = make_context(tmp_path, data_dir=shared_data)
    bench = NaturalImageGradCamIoU()
    classifier = MobileNetV2Coral()
    classifier.build(bench.task, ctx)
    out = {(r.name, r.key): r for r in bench.evaluate(classifier, ctx)}
    fg = out[("fg_iou", "")]
    assert fg.n == 2 and 0.0 <= fg.value <= 1.0
    assert out[("fg_iou", "image=dog_segmentation_256.png")].extra["predicted"] == "Samoyed"
    masks = torch.stack([load_pair(i, 224)[1] for i in read_manifest(shared_data / "coral")])
    chance = mask_iou(torch.rand(2, 224, 224, generator=torch.Generator().manual_seed(0)), masks)
    assert fg.value > chance.foreground.mean().item() + 0.05
    assert (ctx.artifacts_dir / "gradcam_overlays.png").stat().st_size > 1000


def test_a_manifest_folder_and_its_errors(tmp_path):
    write_coded_image(tmp_path / "a.png", 5)
    write_coded_image(tmp_path / "a_mask.png", 1)
    (tmp_path / "masks.csv").write_text("image,mask,object_values\na.png,a_mask.png,0;3\n")
    (item,) = read_manifest(tmp_path)
    assert item.object_values == (0, 3)
    (tmp_path / "masks.csv").write_text("image,mask,object_values\na.png,missing.png,1\n")
    with pytest.raises(DataNotFoundError, match="missing.png does not exist"):
        read_manifest(tmp_path)
    (tmp_path / "masks.csv").write_text("image,mask\na.png,a_mask.png\n")
    with pytest.raises(DataNotFoundError, match="object_values"):
        read_manifest(tmp_path)
    with pytest.raises(DataNotFoundError, match="no masks.csv"):
        read_manifest(tmp_path / "elsewhere")
