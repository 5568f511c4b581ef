"""The ImageNet benchmarks on fixtures in each release's exact layout, scored by a classifier
whose every prediction is known (tests/imagenet_fixtures.py)."""

from __future__ import annotations

import hashlib
import tarfile

import datasets
import pytest
import torch
from imagenet_fixtures import (
    ColourCodeClassifier,
    make_context,
    png_bytes,
    write_coded_image,
)

from robustbench_cgn.errors import DataNotFoundError
from robustbench_cgn_benchmarks.imagenet import imagenet_ood
from robustbench_cgn_benchmarks.imagenet.cue_conflict import CueConflictShapeBias
from robustbench_cgn_benchmarks.imagenet.imagenet_ood import (
    ImageNetA,
    ImageNetSketch,
    StylizedImageNet,
)
from robustbench_cgn_benchmarks.imagenet.in9 import IN9Backgrounds, build_in9_from_samples
from robustbench_cgn_plugins.imagenet.tasks.class_maps import (
    cue_conflict_categories,
    imagenet_wnids,
    in9_classes,
    in_to_in9,
    subset_classes,
)
from robustbench_cgn_plugins.imagenet.tasks.image_sources import ReleaseArchive


def results(benchmark, classifier, ctx):
    classifier.build(benchmark.task, ctx)
    return {(r.name, r.key): r for r in benchmark.evaluate(classifier, ctx)}


def _imagenet_a_tree(root, wrong_every: int = 4):
    """One image per IN-A class; every ``wrong_every``-th is painted with a class outside the
    200 (wrong under both protocols), the rest with the true class."""
    wnids, indices = subset_classes("imagenet-a")
    outside = next(i for i in range(1000) if i not in set(indices))
    for position, (wnid, index) in enumerate(zip(wnids, indices, strict=True)):
        painted = outside if position % wrong_every == 0 else index
        write_coded_image(root / wnid / f"{position}.jpg", painted)
    return root


def test_imagenet_a_protocols_on_a_release_folder(tmp_path):
    root = _imagenet_a_tree(tmp_path / "data" / "imagenet-a")
    ctx = make_context(tmp_path, data_dir=tmp_path / "data")
    full = results(ImageNetA(ImageNetA.Config(protocol="full")), ColourCodeClassifier(), ctx)
    assert full[("top1", "")].value == pytest.approx(75.0)
    assert full[("top1", "")].n == 200
    masked = results(ImageNetA(), ColourCodeClassifier(), make_context(tmp_path / "b", root.parent))
    # masked: an outside class's logit is dropped; all 200 kept logits tie at 0 -> argmax 0
    expected = 150 + sum(1 for p in range(0, 200, 4) if p == 0)
    assert masked[("top1", "")].value == pytest.approx(100 * expected / 200)
    assert "masked-200" in masked[("top1", "")].protocol


def test_corrupt_images_are_skipped_and_reported(tmp_path):
    root = _imagenet_a_tree(tmp_path / "imagenet-a", wrong_every=10_000)
    wnid = subset_classes("imagenet-a")[0][0]
    (root / wnid / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    ctx = make_context(tmp_path)
    bench = ImageNetA(ImageNetA.Config(source=str(root)))
    out = results(bench, ColourCodeClassifier(), ctx)
    assert out[("top1", "")].n == 200
    assert out[("top1", "")].value == pytest.approx(100.0)
    assert out[("top1", "")].extra["n_skipped"] == 1
    assert out[("top1", "")].extra["skipped"] == [f"{wnid}/broken.jpg"]


def test_missing_dataset_says_what_to_download(tmp_path):
    ctx = make_context(tmp_path, data_dir=tmp_path)
    with pytest.raises(DataNotFoundError, match="imagenet-a.tar"):
        ImageNetA().identity(ImageNetA.task, ctx)
    with pytest.raises(DataNotFoundError, match="Stylized-ImageNet cannot be redistributed"):
        StylizedImageNet().identity(StylizedImageNet.task, ctx)
    (tmp_path / "imagenet-a" / "n01498041").mkdir(parents=True)  # an incomplete copy
    with pytest.raises(DataNotFoundError, match="release layout"):
        ImageNetA(ImageNetA.Config(source=str(tmp_path / "imagenet-a"))).identity(
            ImageNetA.task, ctx
        )


def test_release_archive_is_downloaded_verified_and_extracted(
    tmp_path, monkeypatch, downloads_allowed
):
    tree = _imagenet_a_tree(tmp_path / "build" / "imagenet-a", wrong_every=10_000)
    archive = tmp_path / "imagenet-a.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tree, arcname="imagenet-a")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
    spec = imagenet_ood.IMAGENET_A
    fake = ReleaseArchive(archive.as_uri(), "imagenet-a.tar", md5=md5, extracts_to="imagenet-a")
    monkeypatch.setattr(ImageNetA, "source_spec", type(spec)(**{**spec.__dict__, "archive": fake}))
    ctx = make_context(tmp_path)
    out = results(ImageNetA(ImageNetA.Config(source="download")), ColourCodeClassifier(), ctx)
    assert out[("top1", "")].value == pytest.approx(100.0)
    assert (ctx.cache_dir / "datasets" / "imagenet-a" / "imagenet-a").is_dir()
    sums = (ctx.cache_dir / "datasets" / "imagenet-a" / "SHA256SUMS").read_text()
    assert sums == f"{sha256}  imagenet-a.tar\n"  # provenance of what was fetched
    assert not (ctx.cache_dir / "datasets" / "imagenet-a" / "imagenet-a.tar").exists()
    # a wrong checksum is refused, and nothing is extracted
    bad = ReleaseArchive(archive.as_uri(), "imagenet-a.tar", md5="0" * 32, extracts_to="imagenet-a")
    monkeypatch.setattr(ImageNetA, "source_spec", type(spec)(**{**spec.__dict__, "archive": bad}))
    ctx2 = make_context(tmp_path / "other")
    with pytest.raises(Exception, match="checksum"):
        ImageNetA(ImageNetA.Config(source="download")).identity(ImageNetA.task, ctx2)
    assert not (ctx2.cache_dir / "datasets" / "imagenet-a" / "imagenet-a").exists()


def _sketch_tree(root, per_class: int = 1):
    for index, wnid in enumerate(imagenet_wnids()):
        for j in range(per_class):
            painted = index if index % 2 == 0 else (index + 1) % 1000  # odd classes wrong
            write_coded_image(root / wnid / f"{j}.JPEG", painted, size=12)
    return root


def test_sketch_top1_top5_and_per_head(tmp_path):
    root = _sketch_tree(tmp_path / "sketch")
    out = results(
        ImageNetSketch(ImageNetSketch.Config(source=str(root), batch_size=250)),
        ColourCodeClassifier(size=8, two_heads=True),
        make_context(tmp_path),
    )
    assert out[("top1", "")].value == pytest.approx(50.0)
    assert out[("top1", "")].n == 1000
    # top-5 = painted class + classes 0..3: the odd classes 1 and 3 are hit as well
    assert out[("top5", "")].value == pytest.approx(50.2)
    # flipped head predicts 999 - painted: right for k = 499 (painted 500) and 999 (painted 0)
    assert out[("top1", "head=flipped")].value == pytest.approx(0.2)


def test_datasets_repository_source(tmp_path):
    """A parquet ``datasets`` repository (the Hugging Face layout), labels as class indices."""
    labels = [0, 1, 2, 3, 4, 5]
    painted = [0, 1, 2, 3, 9, 9]
    table = datasets.Dataset.from_dict(
        {"image": [{"bytes": png_bytes(k), "path": None} for k in painted], "label": labels}
    ).cast_column("image", datasets.Image())
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    table.to_parquet(str(repo / "data" / "test-00000-of-00001.parquet"))
    out = results(
        ImageNetSketch(ImageNetSketch.Config(source=f"hf:{repo}@test")),
        ColourCodeClassifier(),
        make_context(tmp_path),
    )
    assert out[("top1", "")].value == pytest.approx(100 * 4 / 6)
    assert out[("top1", "")].n == 6


def _in9_tree(root, variants):
    """Per variant, 2 images per IN-9 class: painted with a member class of the superclass
    (right), or an unmapped class (wrong) for the given number of classes."""
    mapping = in_to_in9()
    member = {c: mapping.index(c) for c in range(9)}
    unmapped = mapping.index(-1)
    for variant, n_wrong_classes in variants.items():
        for c, name in enumerate(in9_classes()):
            for j in range(2):
                wrong = c < n_wrong_classes and j == 0
                path = root / variant / "val" / f"{c:02d}_{name.lower()}" / f"{j}.JPEG"
                write_coded_image(path, unmapped if wrong else member[c])
    return root


def test_in9_variants_and_bg_gap(tmp_path):
    root = _in9_tree(tmp_path / "bg_challenge", {"original": 0, "mixed_same": 3, "mixed_rand": 6})
    out = results(
        IN9Backgrounds(IN9Backgrounds.Config(source=str(root))),
        ColourCodeClassifier(),
        make_context(tmp_path),
    )
    assert out[("original_acc", "")].value == pytest.approx(100.0)
    assert out[("mixed_same_acc", "")].value == pytest.approx(100 * 15 / 18)
    assert out[("mixed_rand_acc", "")].value == pytest.approx(100 * 12 / 18)
    assert out[("bg_gap", "")].value == pytest.approx(100 * 3 / 18)
    assert out[("original_acc", "")].n == 18
    assert ("only_fg_acc", "") not in out  # absent variants are not scored


def test_in9_from_imagenet_samples_builds_the_release_layout(tmp_path, shared_data):
    out = build_in9_from_samples(shared_data / "imagenet_samples_256q90", tmp_path / "in9")
    files = sorted((out / "original" / "val").rglob("*.jpg"))
    assert len(files) == 370  # the 370 ImageNet classes IN-9 maps
    assert len({f.parent.name for f in files}) == 9
    mapping = in_to_in9()
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    for f in files[::37]:
        assert mapping[index[f.name.split("_")[0]]] == int(f.parent.name[:2])


def _cue_conflict_tree(root):
    """Stimuli named like the real ones; the painted class decides shape, texture or other."""
    categories = cue_conflict_categories()
    names = sorted(categories)
    expected = {"shape": 0, "texture": 0}
    for i, shape in enumerate(names):
        texture = names[(i + 1) % len(names)]
        other = names[(i + 2) % len(names)]
        for j, decided in enumerate((shape, shape, texture, other)):
            write_coded_image(
                root / shape / f"{shape}{j + 1}-{texture}{j + 1}.png", categories[decided][0]
            )
            expected["shape"] += decided == shape
            expected["texture"] += decided == texture
        # a same-category stimulus, dropped by the protocol
        write_coded_image(root / shape / f"{shape}9-{shape}9.png", categories[texture][0])
    return root, expected


def test_cue_conflict_shape_bias_decisions_csv_and_plot(tmp_path):
    root, expected = _cue_conflict_tree(tmp_path / "cue-conflict")
    ctx = make_context(tmp_path)
    out = results(
        CueConflictShapeBias(CueConflictShapeBias.Config(source=str(root))),
        ColourCodeClassifier(),
        ctx,
    )
    bias = expected["shape"] / (expected["shape"] + expected["texture"])
    assert out[("shape_bias", "")].value == pytest.approx(bias)  # 2/3
    assert out[("shape_bias", "")].n == 64  # 16 x 4, the same-category stimuli dropped
    assert out[("shape_fraction", "")].value == pytest.approx(0.5)
    assert out[("texture_fraction", "")].value == pytest.approx(0.25)
    assert out[("shape_bias", "category=dog")].value == pytest.approx(bias)
    decisions = (ctx.artifacts_dir / "decisions.csv").read_text().splitlines()
    assert decisions[0] == "subj,session,trial,rt,object_response,category,condition,imagename"
    assert len(decisions) == 1 + 80
    assert (ctx.artifacts_dir / "shape_bias.png").stat().st_size > 1000


def test_cue_conflict_finds_the_real_stimuli(tmp_path, shared_data):
    bench = CueConflictShapeBias()
    ctx = make_context(tmp_path, data_dir=shared_data)
    located = bench.located(ctx)
    paths, labels = bench.folder_items(located.folder)
    assert len(paths) == 1280
    assert sum(shape != texture for shape, texture in labels) == 1200
    assert bench.identity(bench.task, ctx)["source"] == "cue-conflict[1280 images]"


def test_benchmarks_preprocess_at_the_classifier_size(tmp_path):
    root, _ = _cue_conflict_tree(tmp_path / "cc")
    bench = CueConflictShapeBias(CueConflictShapeBias.Config(source=str(root), preprocessing="cgn"))
    classifier = ColourCodeClassifier(size=24)
    data = bench.items(classifier, make_context(tmp_path))
    image, index = data.dataset[0]
    assert image.shape == (3, 24, 24) and image.dtype == torch.uint8 and index == 0
    assert "resize 24 + centre-crop 24" in data.dataset.preprocess.describe()
