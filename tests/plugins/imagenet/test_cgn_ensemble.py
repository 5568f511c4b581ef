"""cgn-ensemble: data layouts, heads, one training step, per-head CF loss, resume, errors.

Everything runs on tiny fixtures written into tmp_path (64 px, batches of 2, random
backbone): no ImageNet, no downloaded weights, no network.
"""

from __future__ import annotations

import csv

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset
from torchvision.io import encode_jpeg, write_file, write_png

from robustbench_cgn import (
    CGNBenchError,
    ConfigError,
    DataNotFoundError,
    IncompatibleError,
    RunContext,
    TrainingSet,
)
from robustbench_cgn.data.download import sha256_file
from robustbench_cgn_plugins.imagenet import cgn_ensemble
from robustbench_cgn_plugins.imagenet.cgn_ensemble import CHECKPOINT, CGNEnsemble
from robustbench_cgn_plugins.imagenet.counterfactual_folder import (
    CounterfactualImageFolder,
    RealImageFolder,
    eval_transform,
    train_transform,
)
from robustbench_cgn_plugins.imagenet.ensemble_model import (
    HEADS,
    OUTPUTS,
    InvariantEnsemble,
    cf_loss,
    real_loss,
)
from robustbench_cgn_plugins.imagenet.ensemble_weights import (
    RESNET50_FILE,
    RESNET50_URL,
    WEIGHTS_ENV,
)
from robustbench_cgn_plugins.imagenet.tasks import IMAGENET_TASK
from robustbench_cgn_plugins.imagenet.tasks.class_maps import imagenet_wnids

SIZE = 64
REAL_CLASSES = (0, 5)  # indices of the two WNIDs in the real fixture


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny batches gain nothing from threads; one thread also keeps CPU results bitwise
    reproducible between the interrupted and the uninterrupted run."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_image(seed: int, height: int = 72, width: int = 80) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)


def cf_rows(n: int = 8) -> list[tuple[str, int, int, int]]:
    """Shape, texture and background classes all differ, so a head fed the wrong column
    gets a different target."""
    return [(f"images/{i:03d}.png", i, 100 + i, 500 + i) for i in range(n)]


def write_labels(root, rows, header=("path", "shape", "texture", "background")) -> None:
    with open(root / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def cf_folder(tmp_path):
    root = tmp_path / "cf"
    (root / "images").mkdir(parents=True)
    rows = cf_rows()
    for i, (path, *_labels) in enumerate(rows):
        write_png(random_image(i), str(root / path))
    write_labels(root, rows)
    return root


@pytest.fixture
def real_folder(tmp_path):
    root = tmp_path / "real"
    wnids = imagenet_wnids()
    for k, cls in enumerate(REAL_CLASSES):
        folder = root / wnids[cls]
        folder.mkdir(parents=True)
        for i in range(3):
            data = encode_jpeg(random_image(100 + 10 * k + i, 70, 90))
            write_file(str(folder / f"{wnids[cls]}_{i}.JPEG"), data)
    return root


def make_ctx(tmp_path, name: str = "run", seed: int = 0) -> RunContext:
    return RunContext(
        run_id=name,
        seed=seed,
        device=torch.device("cpu"),
        workdir=tmp_path / name,
        cache_dir=tmp_path / "cache",
    )


def make_classifier(**overrides) -> CGNEnsemble:
    options = {
        "backbone_weights": "random",
        "image_size": SIZE,
        "batch_size": 2,
        "epochs": 1,
        "max_steps_per_epoch": 1,
        **overrides,
    }
    return CGNEnsemble(CGNEnsemble.Config(**options))


def mixed_set(cf_folder, real_folder) -> TrainingSet:
    dataset = ConcatDataset([RealImageFolder(real_folder), CounterfactualImageFolder(cf_folder)])
    return TrainingSet(dataset, 1000, {"source": "fixture"})


# ------------------------------------------------------------------------- data layouts


def test_counterfactual_folder_yields_images_and_three_labels(cf_folder):
    dataset = CounterfactualImageFolder(cf_folder)
    assert CounterfactualImageFolder.counterfactual is True
    assert len(dataset) == 8
    image, labels = dataset[3]
    assert image.dtype == torch.float32 and image.shape == (3, 72, 80)
    assert image.min() >= 0 and image.max() <= 1
    assert torch.equal(image, random_image(3).float() / 255)  # PNG is lossless
    assert labels.dtype == torch.long and labels.tolist() == [3, 103, 503]

    cropped = dataset.with_transform(eval_transform(SIZE))
    assert cropped[0][0].shape == (3, SIZE, SIZE)
    assert dataset.transform is None  # the original is untouched
    assert train_transform(SIZE)(random_image(0)).shape == (3, SIZE, SIZE)


def test_real_folder_labels_are_imagenet_indices(real_folder):
    dataset = RealImageFolder(real_folder, eval_transform(SIZE))
    assert RealImageFolder.counterfactual is False
    assert len(dataset) == 6
    assert sorted(set(dataset.targets.tolist())) == list(REAL_CLASSES)
    image, label = dataset[5]
    assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32
    assert isinstance(label, int) and label == REAL_CLASSES[1]
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and list(wnids) == sorted(wnids)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ("missing column", CGNBenchError, "missing column(s) background"),
        ("out of range", CGNBenchError, "line 4: texture class 1000 is out of range 0..999"),
        ("not an integer", CGNBenchError, "line 2: shape class 'dog' is not an integer"),
        ("missing file", DataNotFoundError, "line 3: image images/gone.png does not exist"),
        ("escaping path", CGNBenchError, "must be a file path relative to the folder"),
        ("no rows", DataNotFoundError, "lists no images"),
        ("no labels.csv", DataNotFoundError, "has no labels.csv"),
    ],
)
def test_bad_labels_csv_is_one_clear_line(cf_folder, change, error, message):
    rows = cf_rows()
    if change == "missing column":
        write_labels(cf_folder, [row[:3] for row in rows], ("path", "shape", "texture"))
    elif change == "out of range":
        rows[2] = (rows[2][0], 2, 1000, 502)
        write_labels(cf_folder, rows)
    elif change == "not an integer":
        rows[0] = (rows[0][0], "dog", 100, 500)
        write_labels(cf_folder, rows)
    elif change == "missing file":
        rows[1] = ("images/gone.png", 1, 101, 501)
        write_labels(cf_folder, rows)
    elif change == "escaping path":
        rows[0] = ("../elsewhere.png", 0, 100, 500)
        write_labels(cf_folder, rows)
    elif change == "no rows":
        write_labels(cf_folder, [])
    else:
        (cf_folder / "labels.csv").unlink()
    with pytest.raises(error) as caught:
        CounterfactualImageFolder(cf_folder)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_bad_image_folders(tmp_path, real_folder):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        CounterfactualImageFolder(tmp_path / "nowhere")
    with pytest.raises(DataNotFoundError, match="does not exist"):
        RealImageFolder(tmp_path / "nowhere")
    (tmp_path / "empty" / imagenet_wnids()[1]).mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match="holds no images"):
        RealImageFolder(tmp_path / "empty")
    (real_folder / "cats").mkdir()
    with pytest.raises(CGNBenchError, match="'cats' is not an ImageNet-1k WNID"):
        RealImageFolder(real_folder)


# ------------------------------------------------------------------------- model


def test_ensemble_heads_and_outputs(tmp_path):
    classifier = make_classifier()
    classifier.build(IMAGENET_TASK, make_ctx(tmp_path))
    model = classifier.model
    assert isinstance(model, InvariantEnsemble)
    assert set(model.heads) == set(HEADS)
    for head in model.heads.values():
        assert (head.in_features, head.out_features) == (2048, 1000)
    assert isinstance(model.backbone.fc, torch.nn.Identity)

    images = classifier.prepare(torch.rand(2, 3, SIZE, SIZE))
    with torch.no_grad():
        outputs = classifier.predict(images)
        features = classifier.embed(images)
    assert tuple(outputs) == OUTPUTS
    assert all(logits.shape == (2, 1000) for logits in outputs.values())
    mean = (outputs["shape"] + outputs["texture"] + outputs["background"]) / 3
    torch.testing.assert_close(outputs[""], mean)
    torch.testing.assert_close(
        outputs["shape+texture"], (outputs["shape"] + outputs["texture"]) / 2
    )
    assert features.shape == (2, 2048)
    torch.testing.assert_close(model.heads["texture"](features), outputs["texture"])

    target, layer = classifier.gradcam_target("background")
    assert layer is model.backbone.layer4
    with torch.no_grad():
        torch.testing.assert_close(target(images), outputs["background"])
    with pytest.raises(CGNBenchError, match="no head 'color'"):
        classifier.gradcam_target("color")
    config = classifier.input_config()
    assert config.size == SIZE and config.mean == (0.485, 0.456, 0.406)


def test_config_validation():
    with pytest.raises(ValueError, match="cf_only needs cf_ratio"):
        CGNEnsemble.Config(cf_only=True, cf_ratio=0)
    with pytest.raises(ValueError, match="image_size"):
        CGNEnsemble.Config(image_size=16)


# ------------------------------------------------------------------------- training


def test_one_step_trains_heads_and_keeps_batchnorm_frozen(tmp_path, cf_folder, real_folder):
    ctx = make_ctx(tmp_path)
    classifier = make_classifier()
    classifier.build(IMAGENET_TASK, ctx)
    model = classifier.model
    heads_before = {name: p.detach().clone() for name, p in model.heads.named_parameters()}
    conv_before = model.backbone.conv1.weight.detach().clone()
    buffers_before = {name: b.clone() for name, b in model.named_buffers()}
    assert any("running_mean" in name for name in buffers_before)

    classifier.fit(mixed_set(cf_folder, real_folder), ctx)

    for name, param in model.heads.named_parameters():
        assert not torch.equal(param, heads_before[name]), name
    assert not torch.equal(model.backbone.conv1.weight, conv_before)
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, buffers_before[name]), name  # incl. num_batches_tracked
    assert not model.training
    state = ctx.checkpoints.load(CHECKPOINT)
    assert state is not None and state["epoch"] == 1
    [epoch] = classifier.history
    assert epoch["images"] == 4  # one step: 2 real + 2 counterfactual
    assert {"loss_real", "loss_cf", "acc_shape_cf", "lr"} <= set(epoch)
    assert (ctx.artifacts_dir / "training_history.json").is_file()


def test_unfrozen_batchnorm_updates_running_stats(tmp_path, cf_folder, real_folder):
    """For from-scratch training (random backbone) BatchNorm can learn its statistics."""
    ctx = make_ctx(tmp_path)
    classifier = make_classifier(freeze_bn=False)
    classifier.build(IMAGENET_TASK, ctx)
    bn = classifier.model.backbone.bn1
    before = bn.running_mean.clone()
    classifier.fit(mixed_set(cf_folder, real_folder), ctx)
    assert not torch.equal(bn.running_mean, before)
    assert int(bn.num_batches_tracked) == 2  # the real and the counterfactual forward
    assert all(torch.isfinite(torch.tensor(v)) for v in classifier.history[0].values())


def test_cf_loss_trains_each_head_on_its_own_label():
    torch.manual_seed(0)
    outputs = {head: torch.randn(4, 1000, requires_grad=True) for head in HEADS}
    labels = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]])
    cf_loss(outputs, labels).backward()
    for column, head in enumerate(HEADS):
        expected = (
            outputs[head].detach().softmax(1) - F.one_hot(labels[:, column], 1000).float()
        ) / 4
        torch.testing.assert_close(outputs[head].grad, expected)

    # a head that puts all its mass on its own column's class costs (almost) nothing
    perfect = {head: 50.0 * F.one_hot(labels[:, c], 1000).float() for c, head in enumerate(HEADS)}
    assert cf_loss(perfect, labels) < 1e-6
    swapped = {
        "shape": perfect["texture"],
        "texture": perfect["shape"],
        "background": perfect["background"],
    }
    assert cf_loss(swapped, labels) > 50

    real = {"": 50.0 * F.one_hot(labels[:, 0], 1000).float()}
    assert real_loss(real, labels[:, 0]) < 1e-6


def test_fit_feeds_the_labels_csv_columns_to_the_cf_loss(tmp_path, cf_folder, monkeypatch):
    seen = []

    def spy(outputs, labels):
        seen.append(labels.clone())
        return cf_ensemble_loss(outputs, labels)

    cf_ensemble_loss = cgn_ensemble.cf_loss
    monkeypatch.setattr(cgn_ensemble, "cf_loss", spy)
    ctx = make_ctx(tmp_path)
    classifier = make_classifier(cf_only=True, max_steps_per_epoch=2)
    classifier.build(IMAGENET_TASK, ctx)
    train_set = TrainingSet(CounterfactualImageFolder(cf_folder), 1000)
    classifier.fit(train_set, ctx)
    rows = {tuple(row[1:]) for row in cf_rows()}
    assert len(seen) == 2
    for labels in seen:
        assert labels.shape == (2, 3)
        assert {tuple(row) for row in labels.tolist()} <= rows


def test_resume_continues_at_next_epoch_and_matches_uninterrupted(
    tmp_path, cf_folder, real_folder, monkeypatch
):
    """Real images from ``real_data``, counterfactuals from the training set; the run is
    killed at the start of epoch 2 and restarted."""
    train_set = TrainingSet(CounterfactualImageFolder(cf_folder), 1000)

    def run(ctx, global_seed):
        torch.manual_seed(global_seed)  # a new process: only the run seed may matter
        classifier = make_classifier(epochs=2, max_steps_per_epoch=2, real_data=str(real_folder))
        classifier.build(IMAGENET_TASK, ctx)
        classifier.fit(train_set, ctx)
        return classifier

    whole = run(make_ctx(tmp_path, "whole"), 1)

    original = CGNEnsemble._train_epoch
    epochs_run = []

    def killed_in_epoch_two(self, epoch, *args, **kwargs):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch, *args, **kwargs)

    def counting(self, epoch, *args, **kwargs):
        epochs_run.append(epoch)
        return original(self, epoch, *args, **kwargs)

    ctx = make_ctx(tmp_path, "interrupted")
    monkeypatch.setattr(CGNEnsemble, "_train_epoch", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        run(ctx, 2)
    assert ctx.checkpoints.load(CHECKPOINT)["epoch"] == 1

    monkeypatch.setattr(CGNEnsemble, "_train_epoch", counting)
    resumed = run(ctx, 3)
    assert epochs_run == [1]
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    expected = whole.model.state_dict()
    for name, value in resumed.model.state_dict().items():
        assert torch.equal(value, expected[name]), name
    for got, want in zip(resumed.history, whole.history, strict=True):
        got, want = dict(got), dict(want)
        del got["images_per_s"], want["images_per_s"]  # timing, not training
        assert got == want


def test_training_data_errors(tmp_path, cf_folder, real_folder):
    ctx = make_ctx(tmp_path)
    classifier = make_classifier()
    classifier.build(IMAGENET_TASK, ctx)
    only_real = TrainingSet(RealImageFolder(real_folder), 1000)
    with pytest.raises(IncompatibleError, match="has none"):
        classifier.fit(only_real, ctx)
    only_cf = TrainingSet(CounterfactualImageFolder(cf_folder), 1000)
    with pytest.raises(ConfigError, match="set real_data="):
        classifier.fit(only_cf, ctx)
    twice = make_classifier(real_data=str(real_folder))
    twice.build(IMAGENET_TASK, ctx)
    with pytest.raises(ConfigError, match="real images twice"):
        twice.fit(mixed_set(cf_folder, real_folder), ctx)


def test_trained_weights_are_evaluated_as_is(tmp_path, cf_folder, real_folder):
    ctx = make_ctx(tmp_path)
    trained = make_classifier()
    trained.build(IMAGENET_TASK, ctx)
    trained.fit(mixed_set(cf_folder, real_folder), ctx)
    checkpoint = ctx.checkpoints.path(CHECKPOINT)

    loaded = make_classifier(weights=str(checkpoint), backbone_weights="auto")
    identity = loaded.identity(IMAGENET_TASK, ctx)  # needs no backbone file
    assert identity == {"weights_sha256": sha256_file(checkpoint)}
    loaded.build(IMAGENET_TASK, make_ctx(tmp_path, "eval", seed=1))
    images = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = trained.predict(trained.prepare(images))
        actual = loaded.predict(loaded.prepare(images))
    for head in OUTPUTS:
        torch.testing.assert_close(actual[head], expected[head])
    with pytest.raises(IncompatibleError, match="evaluated as is"):
        loaded.fit(mixed_set(cf_folder, real_folder), ctx)
    with pytest.raises(DataNotFoundError, match="does not exist"):
        make_classifier(weights=str(tmp_path / "none.pt")).build(IMAGENET_TASK, ctx)


# ------------------------------------------------------------------------- backbone weights


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """An empty torch hub dir and no env override: nothing to find, nothing downloaded."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    return tmp_path / "torch_home" / "hub" / "checkpoints" / RESNET50_FILE


def test_missing_backbone_weights_is_a_clear_error(tmp_path, no_weights, monkeypatch):
    ctx = make_ctx(tmp_path)
    classifier = make_classifier(backbone_weights="auto")
    with pytest.raises(DataNotFoundError) as caught:
        classifier.build(IMAGENET_TASK, ctx)
    message = str(caught.value)
    assert RESNET50_URL in message and str(no_weights) in message and "\n" not in message
    with pytest.raises(DataNotFoundError):
        classifier.identity(IMAGENET_TASK, ctx)

    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "missing.pth"))
    with pytest.raises(DataNotFoundError, match=f"{WEIGHTS_ENV}=.*missing.pth does not name"):
        classifier.build(IMAGENET_TASK, ctx)
    with pytest.raises(DataNotFoundError, match="backbone_weights file .* does not exist"):
        make_classifier(backbone_weights=str(tmp_path / "x.pth")).build(IMAGENET_TASK, ctx)


def test_backbone_weights_found_in_torch_hub_cache(tmp_path, no_weights, monkeypatch):
    import torchvision

    torch.manual_seed(123)
    reference = torchvision.models.resnet50(weights=None)
    no_weights.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), no_weights)  # with fc.*, as torchvision ships it

    ctx = make_ctx(tmp_path)
    classifier = make_classifier(backbone_weights="auto")
    assert classifier.identity(IMAGENET_TASK, ctx) == {"backbone_sha256": sha256_file(no_weights)}
    classifier.build(IMAGENET_TASK, ctx)
    assert torch.equal(classifier.model.backbone.conv1.weight, reference.conv1.weight)
    assert torch.equal(
        classifier.model.backbone.layer4[2].bn3.running_var, reference.layer4[2].bn3.running_var
    )

    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, wrong)
    monkeypatch.setenv(WEIGHTS_ENV, str(wrong))
    with pytest.raises(CGNBenchError, match="is not a ResNet-50 state dict"):
        classifier.build(IMAGENET_TASK, ctx)


def test_registered_as_builtin_classifier():
    from robustbench_cgn.plugin_manager import load_plugins

    assert "cgn-ensemble" in load_plugins().registries.classifiers


def test_out_of_memory_steps_are_redone_in_halves_with_the_same_gradients(
    tmp_path, cf_folder, real_folder
):
    """A model that 'runs out of memory' above one image per forward trains, after one
    warning, to the weights of an unconstrained run (frozen BatchNorm: chunks of a batch
    accumulate exactly the batch's gradient)."""
    train_set = TrainingSet(CounterfactualImageFolder(cf_folder), 1000)

    def train(ctx, limit=None):
        torch.manual_seed(0)
        classifier = make_classifier(max_steps_per_epoch=2, real_data=str(real_folder))
        classifier.build(IMAGENET_TASK, ctx)
        if limit is not None:
            forward = classifier.model.forward

            def limited(images):
                if images.shape[0] > limit:
                    raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
                return forward(images)

            classifier.model.forward = limited
        classifier.fit(train_set, ctx)
        return classifier

    free = train(make_ctx(tmp_path, "free"))
    with pytest.warns(RuntimeWarning, match="retrying with batches of 1"):
        chunked = train(make_ctx(tmp_path, "chunked"), limit=1)
    assert chunked._halving.chunk == 1
    expected = free.model.state_dict()
    torch.manual_seed(0)
    untrained = make_classifier()
    untrained.build(IMAGENET_TASK, make_ctx(tmp_path, "untrained"))
    initial = untrained.model.state_dict()
    moved = max((expected[k] - initial[k]).abs().max().item() for k in expected)
    apart = max((v - expected[k]).abs().max().item() for k, v in chunked.model.state_dict().items())
    assert moved > 1e-2 and apart < 1e-4, (moved, apart)  # float summation order only
    got, want = dict(chunked.history[0]), dict(free.history[0])
    del got["images_per_s"], want["images_per_s"]
    assert got.keys() == want.keys()
    assert all(abs(got[k] - want[k]) < 1e-4 for k in got)
