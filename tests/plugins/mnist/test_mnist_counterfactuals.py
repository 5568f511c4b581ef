"""Counterfactual generation: labels, mask reuse, determinism, engines, disk round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robustbench_cgn.errors import CGNBenchError, DataNotFoundError
from robustbench_cgn_plugins.mnist.cgn_model import build_cgn, load_cgn_checkpoint
from robustbench_cgn_plugins.mnist.counterfactuals import (
    FORMAT,
    CounterfactualDataset,
    dequantize_images,
    generate_counterfactuals,
    load_counterfactuals,
    quantize_images,
    write_counterfactuals,
)


@pytest.fixture(scope="module")
def cgn(shared_data):
    return load_cgn_checkpoint(shared_data / "cgn_mnist_weights" / "cgn_colored_MNIST.pth")


def collect(batches):
    batches = list(batches)
    return [
        torch.cat([getattr(b, k) for b in batches])
        for k in ("images", "labels", "fg_labels", "bg_labels")
    ]


def test_labels_shapes_and_permutation_groups(cgn):
    batches = list(
        generate_counterfactuals(cgn, 250, no_cfs=3, seed=0, batch_size=40, perm_group=20)
    )
    assert [len(b) for b in batches] == [120] * 2 + [10]  # 40 masks x 3, ..., last one cut
    b = batches[0]
    assert b.images.dtype == torch.uint8 and b.images.shape == (120, 3, 32, 32)
    assert b.labels.dtype == torch.int64
    y = b.labels[:40]
    for k in range(3):  # k-major: every counterfactual of a batch keeps the mask's label
        assert torch.equal(b.labels[40 * k : 40 * (k + 1)], y)
        for lab in (b.fg_labels, b.bg_labels):
            chunk = lab[40 * k : 40 * (k + 1)]
            for g in range(2):  # permuted within groups of perm_group
                grp = slice(20 * g, 20 * (g + 1))
                assert torch.equal(chunk[grp].sort().values, y[grp].sort().values)
    assert not torch.equal(b.fg_labels, b.labels)
    assert not torch.equal(b.fg_labels, b.bg_labels)
    last = batches[-1]
    assert torch.equal(last.labels[:4], last.labels[4:8])  # 4 masks for the last 10 images


def test_mask_is_computed_once_per_batch(cgn, monkeypatch):
    calls = {"shape": 0, "text1": 0, "text2": 0}
    hooks = [
        getattr(cgn, f"f_{name}").register_forward_hook(
            lambda *_, name=name: calls.__setitem__(name, calls[name] + 1)
        )
        for name in calls
    ]
    try:
        collect(generate_counterfactuals(cgn, 200, no_cfs=5, batch_size=20, engine="reference"))
    finally:
        for h in hooks:
            h.remove()
    assert calls == {"shape": 2, "text1": 10, "text2": 10}  # no discarded full forward


def test_deterministic_given_the_seed(cgn):
    a = collect(generate_counterfactuals(cgn, 300, no_cfs=2, seed=7, batch_size=64))
    b = collect(generate_counterfactuals(cgn, 300, no_cfs=2, seed=7, batch_size=64))
    c = collect(generate_counterfactuals(cgn, 300, no_cfs=2, seed=8, batch_size=64))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])


def test_fused_engine_matches_reference_engine(cgn):
    fused = collect(generate_counterfactuals(cgn, 400, no_cfs=2, batch_size=100, chunk_size=64))
    ref = collect(generate_counterfactuals(cgn, 400, no_cfs=2, batch_size=100, engine="reference"))
    for x, y in zip(fused[1:], ref[1:], strict=True):
        assert torch.equal(x, y)
    diff = (fused[0].int() - ref[0].int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-3  # float rounding only


@pytest.mark.parametrize("engine", ["fused", "reference"])
def test_bf16_generation_is_close_to_fp32_with_the_same_labels(cgn, engine):
    kw = dict(no_cfs=2, batch_size=100, engine=engine)
    fp32 = collect(generate_counterfactuals(cgn, 400, **kw))
    bf16 = collect(generate_counterfactuals(cgn, 400, precision="bf16", **kw))
    for x, y in zip(fp32[1:], bf16[1:], strict=True):
        assert torch.equal(x, y)  # the draws do not depend on the precision
    assert bf16[0].dtype == torch.uint8
    diff = (fp32[0].float() - bf16[0].float()).abs()
    assert diff.mean() > 0  # bf16 really ran
    assert diff.mean() < 2.0  # a couple of uint8 levels on average, not other images


def test_reference_engine_matches_cgn_composition(cgn):
    """One counterfactual by hand, with the same draws, through the CGN's own modules."""
    (batch,) = list(generate_counterfactuals(cgn, 8, seed=5, batch_size=8, engine="reference"))
    gen = torch.Generator().manual_seed(5)
    y = torch.randint(10, (8,), generator=gen)
    u_s = torch.randn(8, 32, generator=gen)
    u_fg, u_bg = torch.randn(1, 8, 32, generator=gen), torch.randn(1, 8, 32, generator=gen)
    p_fg = torch.rand(1, 8, generator=gen).argsort(1)
    p_bg = torch.rand(1, 8, generator=gen).argsort(1)
    s_fg = torch.randint(0, 33, (1, 8, 2), generator=gen)
    s_bg = torch.randint(0, 33, (1, 8, 2), generator=gen)
    with torch.no_grad():
        m = cgn.mask(u_s, y)
        fg = cgn.foreground(u_fg[0], y[p_fg[0]], s_fg[0])
        bg = cgn.background(u_bg[0], y[p_bg[0]], s_bg[0])
    assert torch.equal(batch.images, quantize_images(m * fg + (1 - m) * bg))
    assert torch.equal(batch.fg_labels, y[p_fg[0]]) and torch.equal(batch.labels, y)


def test_quantization_round_trip():
    u8 = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(quantize_images(dequantize_images(u8)), u8)
    assert torch.equal(
        quantize_images(torch.tensor([-1.5, -1.0, 1.0, 2.0])),
        torch.tensor([0, 0, 255, 255], dtype=torch.uint8),
    )


def test_write_and_read_round_trip(cgn, tmp_path):
    out = tmp_path / "cf"
    seen = []
    meta_path = write_counterfactuals(
        cgn, out, 300, no_cfs=2, seed=3, batch_size=64, weights_path=None, on_progress=seen.append
    )
    assert meta_path == out / "meta.json" and not (tmp_path / "cf.partial").exists()
    assert seen == sorted(seen) and seen[-1] == 300
    meta = json.loads(meta_path.read_text())
    assert meta["format"] == FORMAT and meta["n"] == 300 and meta["no_cfs"] == 2
    assert meta["seed"] == 3 and meta["files"]["images"]["shape"] == [300, 3, 32, 32]
    assert len(meta["cgn_state_dict_sha256"]) == 64
    data = load_counterfactuals(out)
    expected = collect(generate_counterfactuals(cgn, 300, no_cfs=2, seed=3, batch_size=64))
    for got, want in zip(
        (data.images, data.labels, data.fg_labels, data.bg_labels), expected, strict=True
    ):
        assert torch.equal(got, want)
    assert np.load(out / "images.npy", mmap_mode="r").dtype == np.uint8
    ds = CounterfactualDataset(out)
    x, y = ds[5]
    assert len(ds) == 300 and x.dtype == torch.float32 and x.shape == (3, 32, 32)
    assert x.min() >= -1 and x.max() <= 1 and y == int(expected[1][5])
    with pytest.raises(CGNBenchError, match="already exists"):
        write_counterfactuals(cgn, out, 10)
    write_counterfactuals(cgn, out, 10, overwrite=True)
    assert len(load_counterfactuals(out / "meta.json")) == 10
    with pytest.raises(DataNotFoundError):
        load_counterfactuals(tmp_path / "nothing")


def test_weights_hash_in_metadata(shared_data, tmp_path):
    path = shared_data / "cgn_mnist_weights" / "cgn_wildlife_MNIST.pth"
    meta = json.loads(
        write_counterfactuals(
            load_cgn_checkpoint(path), tmp_path / "w", 5, weights_path=path
        ).read_text()
    )
    assert meta["weights_sha256"].startswith("db5bc3108f7b")


def test_generation_leaves_the_model_and_grad_mode_as_they_were():
    cgn = build_cgn("colored").train()
    for batch in generate_counterfactuals(cgn, 20, batch_size=5):
        # the caller's code between batches runs with autograd as usual
        assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
        assert not batch.images.is_inference()
    assert cgn.training


class _Interrupt(Exception):
    pass


def _read_arrays(folder):
    data = load_counterfactuals(folder)
    return [t.clone() for t in (data.images, data.labels, data.fg_labels, data.bg_labels)]


def test_start_replays_the_draws_of_the_skipped_batches(cgn):
    full = collect(generate_counterfactuals(cgn, 200, no_cfs=2, seed=1, batch_size=30))
    tail = collect(generate_counterfactuals(cgn, 200, no_cfs=2, seed=1, batch_size=30, start=120))
    for got, want in zip(tail, full, strict=True):
        assert torch.equal(got, want[120:])
    with pytest.raises(CGNBenchError, match="batch boundary"):
        list(generate_counterfactuals(cgn, 200, no_cfs=2, seed=1, batch_size=30, start=70))


def test_interrupted_write_resumes_and_equals_an_uninterrupted_one(cgn, tmp_path):
    args = {"no_cfs": 2, "seed": 4, "batch_size": 25}
    write_counterfactuals(cgn, tmp_path / "straight", 300, **args)

    def stop_after_two_batches(done):
        if done >= 100:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        write_counterfactuals(cgn, tmp_path / "cf", 300, on_progress=stop_after_two_batches, **args)
    progress = json.loads((tmp_path / "cf.partial" / "progress.json").read_text())
    assert progress["done"] == 100 and not (tmp_path / "cf").exists()
    seen = []
    meta = json.loads(
        write_counterfactuals(
            cgn, tmp_path / "cf", 300, on_progress=seen.append, **args
        ).read_text()
    )
    assert meta["resumed_from"] == 100 and seen[0] == 100 and seen[-1] == 300
    assert not (tmp_path / "cf" / "progress.json").exists()
    for got, want in zip(
        _read_arrays(tmp_path / "cf"), _read_arrays(tmp_path / "straight"), strict=True
    ):
        assert torch.equal(got, want)


def test_a_partial_write_of_other_settings_is_not_resumed(cgn, tmp_path):
    def stop(done):
        raise _Interrupt

    with pytest.raises(_Interrupt):
        write_counterfactuals(cgn, tmp_path / "cf", 100, seed=1, batch_size=20, on_progress=stop)
    meta = json.loads(
        write_counterfactuals(cgn, tmp_path / "cf", 100, seed=2, batch_size=20).read_text()
    )
    assert meta["resumed_from"] == 0 and meta["seed"] == 2
    write_counterfactuals(cgn, tmp_path / "ref", 100, seed=2, batch_size=20)
    assert torch.equal(_read_arrays(tmp_path / "cf")[0], _read_arrays(tmp_path / "ref")[0])


_KILLABLE_WRITER = """
import sys, time
from robustbench_cgn_plugins.mnist.cgn_model import load_cgn_checkpoint
from robustbench_cgn_plugins.mnist.counterfactuals import write_counterfactuals
cgn = load_cgn_checkpoint(sys.argv[1])
write_counterfactuals(cgn, sys.argv[2], 2000, no_cfs=5, seed=7, batch_size=40,
                      on_progress=lambda done: time.sleep(0.2))
"""


def test_sigkill_during_generation_then_rerun_resumes(shared_data, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    weights = shared_data / "cgn_mnist_weights" / "cgn_colored_MNIST.pth"
    out = tmp_path / "cf"
    progress = tmp_path / "cf.partial" / "progress.json"
    process = subprocess.Popen([sys.executable, "-c", _KILLABLE_WRITER, str(weights), str(out)])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if progress.is_file() and json.loads(progress.read_text())["done"] >= 400:
                break
            time.sleep(0.05)
        assert process.poll() is None, "the writer finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        process.kill()
    killed_at = json.loads(progress.read_text())["done"]
    cgn = load_cgn_checkpoint(weights)
    meta = json.loads(
        write_counterfactuals(cgn, out, 2000, no_cfs=5, seed=7, batch_size=40).read_text()
    )
    assert 400 <= meta["resumed_from"] == killed_at < 2000
    write_counterfactuals(cgn, tmp_path / "straight", 2000, no_cfs=5, seed=7, batch_size=40)
    for got, want in zip(_read_arrays(out), _read_arrays(tmp_path / "straight"), strict=True):
        assert torch.equal(got, want)
