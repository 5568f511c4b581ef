"""cgn-imagenet: composer, losses, patch grid, training/resume, counterfactual datasets, the
generator plugin feeding cgn-ensemble, the commands.

Everything is tiny and offline: the 32 px BigGAN config (``BigGANConfig.tiny``), the small
U2-Net (U2NETP layout) and a VGG16 with seeded random weights; batches of 1-2.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch
from click.testing import CliRunner

from robustbench_cgn import ConfigError, DataNotFoundError, RunContext
from robustbench_cgn.cli.plugin_commands import to_click
from robustbench_cgn_plugins.imagenet.cgn_ensemble import CGNEnsemble
from robustbench_cgn_plugins.imagenet.counterfactual_folder import CounterfactualImageFolder
from robustbench_cgn_plugins.imagenet.tasks import IMAGENET_TASK
from robustbench_cgn_plugins.imagenet_cgn import generation as generation_module
from robustbench_cgn_plugins.imagenet_cgn.ablation import (
    ABLATIONS,
    ablation_losses,
    ablation_metrics,
)
from robustbench_cgn_plugins.imagenet_cgn.cgn_model import (
    ImageNetCGN,
    build_imagenet_cgn,
    load_cgn_state,
)
from robustbench_cgn_plugins.imagenet_cgn.commands import (
    ablate_cgn_imagenet_command,
    train_cgn_imagenet_command,
)
from robustbench_cgn_plugins.imagenet_cgn.generation import (
    SETTINGS_FILE,
    counterfactual_inputs,
    write_counterfactual_dataset,
)
from robustbench_cgn_plugins.imagenet_cgn.generator import CGNImageNetGenerator
from robustbench_cgn_plugins.imagenet_cgn.losses import (
    LOSS_TERMS,
    CGNLoss,
    LossWeights,
    binary_entropy_loss,
    mask_interval_loss,
    random_vgg16_file,
    resolve_loss_terms,
)
from robustbench_cgn_plugins.imagenet_cgn.patch_grid import patch_grid
from robustbench_cgn_plugins.imagenet_cgn.training import (
    PRESETS,
    ImageNetCGNTrainer,
    TrainConfig,
    load_checkpoint,
)
from robustbench_cgn_plugins.imagenet_cgn.weights import load_cgn_weights

TINY = {"architecture": "tiny", "weights": "random", "u2net_variant": "small"}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny batches gain nothing from threads; one thread keeps CPU results bitwise
    reproducible between interrupted and uninterrupted runs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cgn() -> ImageNetCGN:
    return build_imagenet_cgn("tiny", random_weights=True, u2net_variant="small", seed=1)


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    return random_vgg16_file(tmp_path_factory.mktemp("vgg") / "random_vgg16.pth", seed=0)


def make_loss(vgg_file, **kwargs) -> CGNLoss:
    return CGNLoss(vgg_weights=vgg_file, vgg_input_convention="torchvision", **kwargs)


def tiny_config(**overrides) -> TrainConfig:
    options = {**TINY, "batch_size": 1, "accumulation": 1, "episodes": 2, "sample_classes": (1,)}
    return TrainConfig(**{**options, **overrides})


def params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def make_ctx(tmp_path, name: str = "run", seed: int = 0) -> RunContext:
    return RunContext(
        run_id=name,
        seed=seed,
        device=torch.device("cpu"),
        workdir=tmp_path / name,
        cache_dir=tmp_path / "cache",
    )


# ------------------------------------------------------------------------------ composer


def test_composer_output():
    cgn = build_imagenet_cgn("tiny", random_weights=True, u2net_variant="small", seed=3)
    u = cgn.noise(2, torch.Generator().manual_seed(0))
    cgn.eval()  # in eval mode the untouched mechanisms equal the frozen BigGAN
    out = cgn(u, torch.tensor([3, 7]))
    torch.testing.assert_close(out.premask, out.x_gt)
    assert not out.x_gt.requires_grad
    # per-mechanism classes: only the texture image changes with the texture class
    other = cgn(u, torch.tensor([3, 7]), torch.tensor([500, 600]), ground_truth=False)
    torch.testing.assert_close(other.premask, out.premask)
    torch.testing.assert_close(other.background, out.background)
    assert not torch.allclose(other.foreground, out.foreground)
    assert other.x_gt is None and other.background_mask is None

    cgn.train()
    out = cgn(u, torch.tensor([3, 7]), background_mask=True)
    for image in (out.premask, out.foreground, out.background, out.x_gen, out.x_gt):
        assert image.shape == (2, 3, 32, 32)
        assert image.min() >= -1 and image.max() <= 1
    assert out.mask.shape == (2, 1, 32, 32) and out.background_mask.shape == (2, 1, 32, 32)
    assert out.mask.min() >= 1e-4 and out.mask.max() <= 0.9999
    expected = out.mask * out.foreground + (1 - out.mask) * out.background
    torch.testing.assert_close(out.x_gen, expected)
    assert out.premask.requires_grad and out.mask.requires_grad
    assert not cgn.biggan_gt.training and not cgn.u2net.training and cgn.f_shape.training
    assert not any(p.requires_grad for p in cgn.biggan_gt.parameters())
    assert not any(p.requires_grad for p in cgn.u2net.parameters())
    assert all(p.requires_grad for p in cgn.f_text.parameters())


def test_state_dict_roundtrip_and_authors_prefixes(cgn):
    other = build_imagenet_cgn("tiny", random_weights=True, u2net_variant="small", seed=2)
    state = {
        f"module.{k}".replace("biggan_gt.", "biggan_GT."): v for k, v in cgn.state_dict().items()
    }
    loaded = load_cgn_state(other, state)
    assert loaded == {"f_shape", "f_text", "f_bg", "biggan_gt", "u2net"}
    assert same(params(other), params(cgn))


# -------------------------------------------------------------------------------- losses


def test_each_loss_is_finite_and_reaches_the_right_mechanisms(cgn, vgg_file):
    loss = make_loss(vgg_file)
    assert loss.terms == LOSS_TERMS
    g = torch.Generator().manual_seed(0)
    reaches = {
        "binary": {"f_shape"},
        "texture": {"f_text"},
        "background": {"f_bg"},
        "reconstruction": {"f_shape", "f_text", "f_bg"},
        "perceptual": {"f_shape", "f_text", "f_bg"},
    }
    for term, expected in reaches.items():
        cgn.zero_grad(set_to_none=True)
        # other texture/background classes: with one class fg == bg at initialisation (the
        # mechanisms are copies), and the mask gets no reconstruction gradient
        out = cgn(cgn.noise(1, g), 5, 6, 7, background_mask=True)
        values = loss(out, torch.Generator().manual_seed(1))
        assert set(values) == set(LOSS_TERMS)
        assert all(torch.isfinite(v) and v.dim() == 0 for v in values.values())
        values[term].backward()
        touched = {
            name
            for name, module in cgn.named_children()
            if any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
        }
        assert touched == expected, term
    cgn.zero_grad(set_to_none=True)


def test_losses_are_switchable(cgn, vgg_file):
    only = make_loss(vgg_file, enabled=("texture", "mask"))
    assert only.terms == ("mask", "texture")
    out = cgn(cgn.noise(1, torch.Generator().manual_seed(0)), 4, ground_truth=True)
    assert set(only(out)) == {"mask", "texture"}
    no_vgg = CGNLoss(enabled=("shape", "background"))  # no VGG file needed at all
    assert no_vgg.terms == ("binary", "mask", "background") and not no_vgg.needs_vgg
    zero = make_loss(vgg_file, weights=LossWeights(perceptual=(0, 0, 0, 0), background=0))
    assert "perceptual" not in zero.terms and "background" not in zero.terms
    assert resolve_loss_terms(["reconstruction"]) == ("reconstruction", "perceptual")
    with pytest.raises(ConfigError, match="unknown CGN loss"):
        resolve_loss_terms(["edges"])
    with pytest.raises(ValueError, match="background"):
        make_loss(vgg_file, enabled=("background",))(out)  # no U2Net(bg) computed


def test_loss_formulas():
    half = torch.full((2, 1, 4, 4), 0.5)
    torch.testing.assert_close(binary_entropy_loss(half, 300.0), torch.tensor(300.0))
    low = torch.full((1, 1, 4, 4), 0.05)
    high = torch.full((1, 1, 4, 4), 0.95)
    torch.testing.assert_close(mask_interval_loss(low, 500.0), torch.tensor(25.0))
    torch.testing.assert_close(
        mask_interval_loss(torch.cat([low, high]), 500.0), torch.tensor(25.0)
    )
    assert mask_interval_loss(half, 500.0) == 0


# ---------------------------------------------------------------------------- patch grid


def test_patch_grid_shape_determinism_and_source():
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    masks = torch.zeros(2, 1, 32, 32)
    masks[:, :, 8:24, 8:24] = 1
    a = patch_grid(images, masks, generator=torch.Generator().manual_seed(0))
    b = patch_grid(images, masks, generator=torch.Generator().manual_seed(0))
    c = patch_grid(images, masks, generator=torch.Generator().manual_seed(1))
    assert a.shape == (2, 3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    assert patch_grid(images, masks, out_size=48).shape == (2, 3, 48, 48)
    # patches come from where the mask is: a red object on a blue background gives red grids
    red = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1)
    blue = torch.tensor([-1.0, -1.0, 1.0]).view(1, 3, 1, 1)
    scene = torch.where(masks.bool(), red, blue)
    grid = patch_grid(scene, masks, generator=torch.Generator().manual_seed(0))
    assert (grid[:, 0] > 0.5).all() and (grid[:, 2] < -0.5).all()  # bicubic ringing


# ------------------------------------------------------------------------------ training


def test_presets_and_config():
    faithful, paper = TrainConfig().resolved(), TrainConfig(preset="paper").resolved()
    assert (faithful.batch_size, faithful.accumulation, faithful.episodes) == (1, 4000, 300)
    assert faithful.lr_texture == 3e-5 and paper.lr_texture == 1e-5
    assert faithful.perceptual_weights == (4, 4, 4, 4) and paper.perceptual_weights == (5,) * 4
    assert faithful.iterations == 1_200_000 and set(PRESETS) == {"faithful", "paper"}
    assert TrainConfig(losses=("shape",)).losses == ("binary", "mask")
    with pytest.raises(ConfigError):
        TrainConfig(truncation=0)
    with pytest.raises(ConfigError):
        TrainConfig(precision="fp16")


@pytest.mark.parametrize(
    "losses, trained",
    [
        (("shape",), "f_shape"),
        (("texture",), "f_text"),
        (("background",), "f_bg"),
    ],
)
def test_one_step_changes_only_that_mechanism(tmp_path, losses, trained):
    trainer = ImageNetCGNTrainer(tiny_config(losses=losses), tmp_path)
    before = {name: params(module) for name, module in trainer.cgn.named_children()}
    frozen = {k: v.clone() for k, v in trainer.cgn.state_dict().items() if "f_" not in k[:2]}
    trainer.train_step()
    for name, module in trainer.cgn.named_children():
        assert same(params(module), before[name]) == (name != trained), name
    after = {k: v for k, v in trainer.cgn.state_dict().items() if "f_" not in k[:2]}
    assert all(torch.equal(frozen[k], after[k]) for k in frozen)  # BigGAN GT and U2-Net


def test_full_losses_step_all_mechanisms_after_accumulation(tmp_path):
    trainer = ImageNetCGNTrainer(tiny_config(accumulation=2), tmp_path)
    before = {name: params(module) for name, module in trainer.cgn.named_children()}
    values = trainer.train_step()
    assert set(values) >= set(LOSS_TERMS) and all(map(lambda v: v == v, values.values()))
    assert all(same(params(m), before[n]) for n, m in trainer.cgn.named_children())
    trainer.train_step()  # the accumulation window ends: Adam steps
    for name, module in trainer.cgn.named_children():
        assert same(params(module), before[name]) == (name in ("biggan_gt", "u2net")), name
    assert all(p.grad is None for p in trainer.cgn.parameters())


def test_resume_equals_uninterrupted_run(tmp_path):
    config = tiny_config(accumulation=2, episodes=2, checkpoint_every=100, sample_every=100)
    straight = ImageNetCGNTrainer(config, tmp_path / "straight")
    straight.run()
    first = ImageNetCGNTrainer(config, tmp_path / "resumed")
    summary = first.run(stop_after=3)  # stops inside an accumulation window
    assert summary["iteration"] == 3 and not summary["finished"]
    ckpt = load_checkpoint(summary["checkpoint"])  # weights_only=True
    assert ckpt["pending_grads"]["shape"] and ckpt["iteration"] == 3
    resumed = ImageNetCGNTrainer(config, tmp_path / "resumed")
    assert resumed.resumed_from is not None and resumed.iteration == 3
    assert resumed.run()["finished"]
    for name in ("f_shape", "f_text", "f_bg"):
        a = getattr(straight.cgn, name).state_dict()
        b = getattr(resumed.cgn, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    for name, optimizer in straight.optimizers.items():
        sa, sb = optimizer.state_dict()["state"], resumed.optimizers[name].state_dict()["state"]
        assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    assert torch.equal(straight.rng.get_state(), resumed.rng.get_state())
    assert list((tmp_path / "resumed" / "samples").glob("sheet_*.png"))
    log = (tmp_path / "resumed" / "train_log.jsonl").read_text().splitlines()
    events = [json.loads(line)["event"] for line in log]
    assert events[0] == "start" and "resume" in events
    # another configuration in the same folder is refused
    with pytest.raises(ConfigError, match="different configuration"):
        ImageNetCGNTrainer(tiny_config(accumulation=2, lr_shape=1.0), tmp_path / "resumed")


def test_bf16_autocast_step(tmp_path):
    """The CUDA path's autocast, exercised on the CPU (bf16 autocast works there too)."""
    with pytest.warns(UserWarning, match="bf16"):
        trainer = ImageNetCGNTrainer(tiny_config(precision="bf16"), tmp_path)
    values = trainer.train_step()
    assert all(v == v and abs(v) < float("inf") for v in values.values())
    assert all(p.dtype == torch.float32 for p in trainer.cgn.parameters())
    assert trainer.sample_sheet().shape[0] == 3


def test_missing_pretrained_weights_is_one_line_naming_the_files(tmp_path, monkeypatch):
    for env in ("CGNBENCH_BIGGAN_WEIGHTS", "CGNBENCH_U2NET_WEIGHTS", "CGNBENCH_VGG16_WEIGHTS"):
        monkeypatch.delenv(env, raising=False)
    with pytest.raises(DataNotFoundError) as info:
        ImageNetCGNTrainer(TrainConfig(architecture="deep_128"), tmp_path)
    message = str(info.value)
    assert "\n" not in message
    for name in ("pytorch_model.bin", "u2net.pth", "vgg16_imagenet_caffe_features23.pth"):
        assert name in message
    assert "--random-weights" in message


# --------------------------------------------------------------------- generated datasets


def read_rows(folder) -> list[dict]:
    with open(folder / "labels.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_dataset_layout_modes_and_resume(tmp_path, cgn, monkeypatch):
    full = tmp_path / "full"
    write_counterfactual_dataset(cgn, full, 5, batch_size=2, image_format="png")
    dataset = CounterfactualImageFolder(full)
    assert len(dataset) == 5
    image, labels = dataset[4]
    assert image.shape == (3, 32, 32) and labels.shape == (3,)
    rows = read_rows(full)
    assert list(rows[0]) == ["path", "shape", "texture", "background"]
    assert rows[1]["path"] == "images/0000/0000001.png"
    assert json.loads((full / SETTINGS_FILE).read_text())["complete"] is True

    # interrupted after the first batch, then resumed (with a torn last line): same result
    part = tmp_path / "part"
    calls = []

    def stop(n_done):
        calls.append(n_done)
        if n_done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_counterfactual_dataset(
            cgn, part, 5, batch_size=2, image_format="png", on_progress=stop
        )
    assert len(read_rows(part)) == 2
    with open(part / "labels.csv", "a") as handle:
        handle.write("images/0000/00000")  # a torn row
    write_counterfactual_dataset(cgn, part, 5, batch_size=3, image_format="png")
    assert read_rows(part) == rows
    for row in rows:
        assert (part / row["path"]).read_bytes() == (full / row["path"]).read_bytes()
    with pytest.raises(ConfigError, match="other settings"):
        write_counterfactual_dataset(cgn, part, 5, seed=1, image_format="png")

    # modes: image i's noise does not depend on the mode; fixed and shared labels
    y_random, u_random = counterfactual_inputs(0, 4, mode="random", seed=0, z_dim=8, truncation=1)
    y_shared, u_shared = counterfactual_inputs(0, 4, mode="shared", seed=0, z_dim=8, truncation=1)
    y_fixed, _ = counterfactual_inputs(
        0, 4, mode="fixed", seed=0, z_dim=8, truncation=1, classes=(1, 2, 3)
    )
    assert torch.equal(u_random, u_shared) and (y_shared == y_shared[:, :1]).all()
    assert (y_fixed == torch.tensor([1, 2, 3])).all() and y_random.shape == (4, 3)
    write_counterfactual_dataset(cgn, tmp_path / "fixed", 2, mode="fixed", classes=(1, 2, 3))
    assert [r["texture"] for r in read_rows(tmp_path / "fixed")] == ["2", "2"]
    with pytest.raises(ConfigError, match="three classes"):
        write_counterfactual_dataset(cgn, tmp_path / "bad", 2, mode="fixed")


def test_generator_feeds_cgn_ensemble_and_reuses_its_cache(tmp_path, monkeypatch):
    generator = CGNImageNetGenerator(
        CGNImageNetGenerator.Config(
            weights="random",
            architecture="tiny",
            u2net_variant="small",
            n_counterfactuals=4,
            batch_size=2,
        )
    )
    ctx = make_ctx(tmp_path)
    assert CGNImageNetGenerator.supports(IMAGENET_TASK)
    assert generator.identity(IMAGENET_TASK, ctx)["weights"] == "random:tiny:small"
    train_set = generator.generate(IMAGENET_TASK, ctx)
    assert len(train_set) == 4 and train_set.num_classes == 1000
    assert isinstance(train_set.dataset, CounterfactualImageFolder)
    assert train_set.provenance["source"] == "cgn-imagenet-counterfactuals"

    def no_writing(*args, **kwargs):
        raise AssertionError("the cached set should be reused")

    monkeypatch.setattr(
        "robustbench_cgn_plugins.imagenet_cgn.generator.write_counterfactual_dataset", no_writing
    )
    again = generator.generate(IMAGENET_TASK, make_ctx(tmp_path, "second"))
    assert again.provenance["folder"] == train_set.provenance["folder"]

    classifier = CGNEnsemble(
        CGNEnsemble.Config(
            backbone_weights="random",
            image_size=32,
            batch_size=2,
            epochs=1,
            max_steps_per_epoch=1,
            cf_only=True,
        )
    )
    classifier.build(IMAGENET_TASK, ctx)
    classifier.fit(train_set, ctx)
    assert classifier.history[0]["images"] == 2 and "loss_cf" in classifier.history[0]
    images, labels, masks = generator.sample_with_masks(IMAGENET_TASK, ctx, 3)
    assert images.dtype == torch.uint8 and images.shape == (3, 3, 32, 32)
    assert labels.shape == (3,) and masks.shape == (3, 32, 32)
    assert generation_module.MODES == ("random", "fixed", "shared")


def test_generator_without_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("CGNBENCH_CGN_IMAGENET_WEIGHTS", raising=False)
    with pytest.raises(DataNotFoundError, match="train-cgn-imagenet"):
        CGNImageNetGenerator().identity(IMAGENET_TASK, make_ctx(tmp_path))


# ---------------------------------------------------------------- commands, export, ablation


def test_train_command_exports_and_ablation_scores(tmp_path):
    out = tmp_path / "run"
    args = [
        "--out", str(out), "--random-weights", "--architecture", "tiny", "--u2net-variant",
        "small", "--accumulation", "1", "--episodes", "2", "--device", "cpu",
        "--without", "background",
    ]  # fmt: skip
    result = CliRunner().invoke(to_click(train_cgn_imagenet_command), args)
    assert result.exit_code == 0, result.output
    exported = out / "cgn_imagenet.pth"
    meta = json.loads(exported.with_suffix(".json").read_text())
    assert meta["iterations"] == 2 and "background" not in meta["config"]["losses"]
    cgn, loaded_meta = load_cgn_weights(exported)
    assert loaded_meta["architecture"] == "tiny" and not cgn.training
    assert ablation_losses("no-background") == tuple(meta["config"]["losses"])
    assert set(ABLATIONS) == {
        "full",
        "no-shape",
        "no-texture",
        "no-background",
        "no-reconstruction",
    }
    metrics = ablation_metrics(cgn, 4, batch_size=2, inception=False)
    assert 0 < metrics["mu_mask"] < 1 and metrics["inception_score"] is None
    result = CliRunner().invoke(
        to_click(ablate_cgn_imagenet_command),
        [str(exported), "--n", "4", "--batch-size", "2", "--no-inception", "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
