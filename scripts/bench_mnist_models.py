#!/usr/bin/env python
"""Benchmark the MNIST CGN code on CPU (2 threads): training step, generation, memory.

Measures, in one process with ``torch.set_num_threads(2)``:

(a) one CGN training iteration (colored config: G forward, LSGAN + binary + VGG style loss,
    backward, Adam; then the D step) at batch 16 and 64, three ways: VGG run to relu4_3 (lighter
    than the reference, which runs to pool5: ``scripts/bench_cgn_training.py`` has the faithful
    reference baseline and the ratios), ours (VGG stops at the last weighted layer, relu3_3),
    ours with channels_last VGG;
(b) counterfactual generation images/s with no_cfs = 1 and 10: a re-implementation of the
    reference loop (batch 100, autograd on, a discarded full forward per batch, float tensors
    kept) as the in-run baseline, our modules under inference_mode (``engine="reference"``), and
    the fused engine; plus a bf16 autocast check;
(c) peak RSS of a child process that writes ``--rss-n`` counterfactuals to disk;
(d) the MNIST CNN classifier's throughput in images/s: training (batch 64, Adadelta, NLL,
    forward + backward + step) and evaluation (batch 256, inference mode), on real colored
    MNIST test images.

The development machine is shared, so every timing is the best of several repeats and each
speed-up is against the baseline measured in the same run. Example::

    python scripts/bench_mnist_models.py --data-dir ../shared/data --json bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def data_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("CGNBENCH_TEST_DATA", REPO.parent / "shared" / "data"))


def best_of(fn, repeats: int, warmup: int = 1) -> float:
    return race({"f": fn}, repeats, warmup)["f"]


def race(fns: dict, rounds: int, warmup: int = 1) -> dict[str, float]:
    """Best wall time of each function, run interleaved round by round, so that load from other
    processes on a shared machine hits every contender alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


# ------------------------------------------------------------------------------------ training


def _training_step(cgn, disc, style, binary, batch: int):
    """One G step then one D step of the reference's loop (LSGAN, Adam 2e-4, betas 0.5/0.999)."""
    from robustbench_cgn_plugins.mnist.losses import lsgan_loss

    opt_g = torch.optim.Adam(cgn.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999))
    x_real = torch.rand(batch, 3, 32, 32) * 2 - 1
    y_real = torch.randint(10, (batch,))

    def step() -> None:
        opt_g.zero_grad(set_to_none=True)
        y_gen = torch.randint(10, (batch,))
        out = cgn(y_gen)
        loss_g = lsgan_loss(disc(out.x, y_gen), 1.0) + binary(out.mask) + style(out.x, x_real)
        loss_g.backward()
        opt_g.step()
        opt_d.zero_grad(set_to_none=True)
        fake = lsgan_loss(disc(out.x.detach(), y_gen), 0.0)
        loss_d = (lsgan_loss(disc(x_real, y_real), 1.0) + fake) / 2
        loss_d.backward()
        opt_d.step()

    return step


def bench_training(root: Path, batch: int, repeats: int) -> dict[str, float]:
    from robustbench_cgn_plugins.mnist.cgn_model import build_cgn
    from robustbench_cgn_plugins.mnist.discriminators import DiscLin
    from robustbench_cgn_plugins.mnist.losses import BinaryLoss
    from robustbench_cgn_plugins.shared.style_loss import STYLE_WEIGHTS, VGGStyleLoss

    vgg_file = root / "vgg16" / "vgg16_imagenet_caffe_features23.pth"
    torch.manual_seed(0)
    steps = {
        name: _training_step(
            build_cgn("colored").train(),
            DiscLin().train(),
            VGGStyleLoss(STYLE_WEIGHTS["colored"], vgg_file, **kwargs),
            BinaryLoss(0.1),
            batch,
        )
        for name, kwargs in {
            "reference_like_full_vgg": {"stop_early": False, "channels_last": False},
            "ours_stop_at_relu3_3": {"channels_last": False},
            "ours_stop_early_channels_last": {},  # the VGGStyleLoss defaults
        }.items()
    }
    return race(steps, repeats, warmup=2)


# ---------------------------------------------------------------------------------- generation


def reference_style_generation(cgn, n: int, no_cfs: int, batch: int = 100) -> int:
    """The reference ``generate_cf_dataset`` loop, re-implemented for the in-run baseline: no
    no_grad, a full normal forward per batch for the mask (its textures discarded), a full
    counterfactual forward per counterfactual (its mask discarded), float tensors collected."""
    xs, ys = [], []
    for _ in range(n // batch // no_cfs):
        y = torch.randint(10, (batch,))
        mask = cgn(y).mask
        for _ in range(no_cfs):
            out = cgn(y, counterfactual=True)
            xs.append((mask * out.foreground + (1 - mask) * out.background).detach())
            ys.append(y)
    return sum(len(x) for x in xs)


def bench_generation(root: Path, quick: bool) -> dict[str, object]:
    from robustbench_cgn.hardware import bf16_is_fast
    from robustbench_cgn_plugins.mnist.cgn_fast import FastCGN
    from robustbench_cgn_plugins.mnist.cgn_model import load_cgn_checkpoint
    from robustbench_cgn_plugins.mnist.counterfactuals import generate_counterfactuals

    cgn = load_cgn_checkpoint(root / "cgn_mnist_weights" / "cgn_colored_MNIST.pth")
    reps = 2 if quick else 3
    out: dict[str, object] = {}
    for no_cfs in (1, 10):
        n_base = 1000 if quick else 2000
        n_fast = 5000 if quick else 20000

        def ours(n: int, k: int = no_cfs, **kw):
            def run() -> None:
                for _ in generate_counterfactuals(cgn, n, no_cfs=k, **kw):
                    pass

            return run

        contenders = {
            "reference_loop": (
                n_base,
                lambda m=n_base, k=no_cfs: reference_style_generation(cgn, m, k),
            ),
            "ours_modules_inference_mode": (
                n_base,
                ours(n_base, engine="reference", batch_size=100),
            ),
        }
        for bs, chunk in ((500, 128), (500, 256), (2000, 256)):
            contenders[f"fused_batch{bs}_chunk{chunk}"] = (
                n_fast,
                ours(n_fast, batch_size=bs, chunk_size=chunk),
            )
            contenders[f"fused_bf16_batch{bs}_chunk{chunk}"] = (  # --precision bf16
                n_fast,
                ours(n_fast, batch_size=bs, chunk_size=chunk, precision="bf16"),
            )
        times = race({k: fn for k, (_, fn) in contenders.items()}, reps)
        res: dict[str, float] = {f"{k}_img_s": contenders[k][0] / t for k, t in times.items()}
        base = res["reference_loop_img_s"]
        for prefix in ("fused", "fused_bf16"):
            best = max(
                v for k, v in res.items() if k.startswith(prefix + "_batch")
            )  # fp32 rows start "fused_batch", bf16 rows "fused_bf16_batch"
            res[f"{prefix}_best_img_s"] = best
            res[f"{prefix}_speedup_vs_reference_loop"] = best / base
        res["speedup_vs_reference_loop"] = res["fused_speedup_vs_reference_loop"]
        out[f"no_cfs_{no_cfs}"] = res

    # bf16 autocast on the fused texture net: speed and uint8 agreement
    fast = FastCGN.from_cgn(cgn)
    g = torch.Generator().manual_seed(0)
    u, y = torch.randn(256, 32, generator=g), torch.randint(10, (256,), generator=g)
    with torch.inference_mode():
        t32 = best_of(lambda: fast.f_text1(u, y), 3)

        def bf16():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return fast.f_text1(u, y)

        t16 = best_of(bf16, 2)
        q32 = (fast.f_text1(u, y) * 127.5 + 127.5).round()
        q16 = (bf16().float() * 127.5 + 127.5).round()
    out["bf16_autocast"] = {
        "texture_net_fp32_us_per_img": 1e6 * t32 / 256,
        "texture_net_bf16_us_per_img": 1e6 * t16 / 256,
        "uint8_max_abs_diff": float((q32 - q16).abs().max()),
        "uint8_frac_differing": float((q32 != q16).float().mean()),
        "cpu_has_native_bf16": bf16_is_fast(torch.device("cpu")),
    }
    return out


# --------------------------------------------------------------------------------- classifier


def bench_classifier(root: Path, quick: bool) -> dict[str, float]:
    import torch.nn.functional as F

    from robustbench_cgn_plugins.mnist.cnn import CNN
    from robustbench_cgn_plugins.mnist.tasks.source import load_mnist_dir
    from robustbench_cgn_plugins.mnist.tasks.variants import build_variant

    test = build_variant("colored", "test", load_mnist_dir(root), seed=0)
    x, y = test.float_images(), test.labels
    n = 2048 if quick else 8192
    x, y = x[:n].contiguous(), y[:n]
    torch.manual_seed(0)
    model = CNN()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)

    def train_epoch() -> None:
        model.train()
        for i in range(0, n, 64):
            loss = F.nll_loss(model(x[i : i + 64]), y[i : i + 64])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def evaluate() -> None:
        model.eval()
        with torch.inference_mode():
            for i in range(0, n, 256):
                model(x[i : i + 256])

    times = race({"train": train_epoch, "eval": evaluate}, 2 if quick else 3)
    return {"train_img_s": n / times["train"], "eval_img_s": n / times["eval"], "images": n}


# ---------------------------------------------------------------------------------------- RSS


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(root: Path, n: int, no_cfs: int) -> None:
    torch.set_num_threads(2)
    from robustbench_cgn_plugins.mnist.cgn_model import load_cgn_checkpoint
    from robustbench_cgn_plugins.mnist.counterfactuals import write_counterfactuals

    path = root / "cgn_mnist_weights" / "cgn_colored_MNIST.pth"
    cgn = load_cgn_checkpoint(path)
    before = _peak_rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        write_counterfactuals(cgn, Path(tmp) / "cf", n, no_cfs=no_cfs, weights_path=path)
        secs = time.perf_counter() - t
    print(json.dumps({"rss_before_mb": before, "peak_rss_mb": _peak_rss_mb(), "seconds": secs}))


def bench_rss(root: Path, n: int) -> dict[str, object]:
    out = {}
    for no_cfs in (1, 10):
        cmd = [sys.executable, __file__, "--data-dir", str(root), "--_rss-child", str(n)]
        cmd += ["--_no-cfs", str(no_cfs)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        child = json.loads(res.stdout.strip().splitlines()[-1])
        child["n"] = n
        child["img_s_including_disk"] = n / child["seconds"]
        child["note"] = (
            "measured at 10^6"
            if n >= 1_000_000
            else f"measured at {n}; memory is bounded per batch, so 10^6 needs the same"
        )
        out[f"no_cfs_{no_cfs}"] = child
    return out


# --------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data-dir", help="shared data folder (default $CGNBENCH_TEST_DATA)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats / images")
    ap.add_argument("--rss-n", type=int, default=200_000, help="images for the RSS run")
    ap.add_argument("--skip", nargs="*", default=[], choices=["train", "gen", "rss", "classifier"])
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--_rss-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--_no-cfs", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    root = data_dir(args.data_dir)
    if args._rss_child:
        rss_child(root, args._rss_child, args._no_cfs)
        return
    torch.set_num_threads(2)
    from robustbench_cgn.hardware import hardware_record

    results: dict[str, object] = {
        "hardware": hardware_record(measure=True),  # CPU flags, GEMM peaks measured now
        "threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg(),
    }
    if "train" not in args.skip:
        results["train_s_per_iter"] = {
            f"batch_{b}": bench_training(root, b, 3 if args.quick else 6) for b in (16, 64)
        }
        print(json.dumps(results["train_s_per_iter"], indent=2), flush=True)
    if "gen" not in args.skip:
        results["generation"] = bench_generation(root, args.quick)
        print(json.dumps(results["generation"], indent=2), flush=True)
    if "classifier" not in args.skip:
        results["classifier"] = bench_classifier(root, args.quick)
        print(json.dumps(results["classifier"], indent=2), flush=True)
    if "rss" not in args.skip:
        results["rss"] = bench_rss(root, args.rss_n)
        print(json.dumps(results["rss"], indent=2), flush=True)
    results["load_average_at_end"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    summary = statistics.mean(os.getloadavg())
    print(f"load average during the run ~{summary:.1f} (2 cores; >2 means shared CPU)")


if __name__ == "__main__":
    main()
