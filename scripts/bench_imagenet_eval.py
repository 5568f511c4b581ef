#!/usr/bin/env python
"""ImageNet evaluation speed: ResNet-50 and MobileNetV2 on this machine.

For each model it measures images/s of

* ``plain``: the textbook loop (fp32, NCHW, ``torch.no_grad``);
* ``channels_last``: NHWC memory format under ``torch.inference_mode`` (what the benchmarks
  use when the classifier asks for it);
* ``bf16``: the same under bf16 autocast (worth it only with AVX512-BF16 / AMX; the CPU
  capability torch reports is printed);

and relates the best to the machine's measured fp32 matmul peak: ``fraction = images/s x
FLOPs per image / peak FLOP/s`` (FLOPs counted by ``torch.utils.flop_counter``). Finally it
times the benchmark pipeline itself (``predict_images``: decoding in DataLoader workers +
the model) on the 1,000 ImageNet samples against the same pipeline with decoding in the main
process. Weights do not change speed: ResNet-50 uses random weights (none are available
offline), MobileNetV2 the real converted Coral weights. Example::

    python scripts/bench_imagenet_eval.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

from robustbench_cgn.context import RunContext
from robustbench_cgn.progress import ProgressReporter
from robustbench_cgn_plugins.imagenet.coral_classifier import MobileNetV2Coral
from robustbench_cgn_plugins.imagenet.tasks import IMAGENET_TASK
from robustbench_cgn_plugins.imagenet.tasks.image_files import (
    ImageDataset,
    Preprocess,
    predict_images,
)

REPO = Path(__file__).resolve().parents[1]


def matmul_peak(size: int = 2048, repeats: int = 10) -> float:
    """Best fp32 GEMM FLOP/s over ``repeats`` multiplications of ``size`` x ``size``."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def flops_per_image(model: torch.nn.Module, size: int) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, 3, size, size))
    return float(counter.get_total_flops())


def images_per_second(model, batch: torch.Tensor, mode: str, seconds: float) -> float:
    """Throughput of ``model`` on ``batch`` in one of the modes (warm-up excluded)."""
    if mode == "plain":
        model = model.to(memory_format=torch.contiguous_format)
        context, dtype = torch.no_grad, None
    else:
        model = model.to(memory_format=torch.channels_last)
        batch = batch.contiguous(memory_format=torch.channels_last)
        context, dtype = torch.inference_mode, (torch.bfloat16 if mode == "bf16" else None)
    with context(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        model(batch)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            model(batch)
            done += len(batch)
        return done / (time.perf_counter() - start)


def context_for(cache: Path, data_dir: Path) -> RunContext:
    return RunContext(
        run_id="bench",
        seed=0,
        device=torch.device("cpu"),
        workdir=cache / "run",
        cache_dir=cache,
        data_dir=data_dir,
        progress=ProgressReporter(quiet=True),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("CGNBENCH_TEST_DATA", REPO.parent / "shared" / "data")),
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per mode")
    parser.add_argument("--pipeline-images", type=int, default=1000)
    args = parser.parse_args()

    threads = torch.get_num_threads()
    peak = matmul_peak()
    print(
        f"torch {torch.__version__}, {threads} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}; fp32 matmul peak {peak / 1e9:.1f} GFLOP/s"
    )

    cache = Path(tempfile.mkdtemp(prefix="cgnbench-bench-"))
    ctx = context_for(cache, args.data_dir)
    coral = MobileNetV2Coral(MobileNetV2Coral.Config(channels_last=False))
    coral.build(IMAGENET_TASK, ctx)
    models = {
        "resnet50": timm.create_model("resnet50", pretrained=False).eval(),
        "mobilenet_v2-coral": coral.model.eval(),
    }
    batch = torch.rand(args.batch_size, 3, 224, 224)
    print(
        f"\n{'model':20s} {'GFLOP/img':>9s} {'plain':>8s} {'ch_last':>8s} {'bf16':>8s}"
        f" {'best/plain':>10s} {'% of peak':>9s}"
    )
    for name, model in models.items():
        flops = flops_per_image(model, 224)
        speeds = {
            m: images_per_second(model, batch, m, args.seconds)
            for m in ("plain", "channels_last", "bf16")
        }
        best = max(speeds.values())
        print(
            f"{name:20s} {flops / 1e9:9.2f} {speeds['plain']:8.1f} "
            f"{speeds['channels_last']:8.1f} {speeds['bf16']:8.1f} "
            f"{best / speeds['plain']:9.2f}x {100 * best * flops / peak:8.1f}%"
        )

    samples = sorted((args.data_dir / "imagenet_samples_256q90").glob("n*.jpg"))
    samples = samples[: args.pipeline_images]
    if not samples:
        print(f"\n(no ImageNet samples in {args.data_dir}: pipeline timing skipped)")
        return
    coral_cl = MobileNetV2Coral(MobileNetV2Coral.Config(channels_last=True))
    coral_cl.build(IMAGENET_TASK, ctx)
    dataset = ImageDataset(samples, Preprocess(coral_cl.input_config()))
    print(
        f"\npipeline on {len(samples)} ImageNet samples (decode + resize 256 + crop 224 + "
        "mobilenet_v2-coral, channels_last):"
    )
    cores = os.cpu_count() or 1
    for label, workers in (
        ("decode in the main process", 0),
        ("decode in 1 DataLoader worker", 1),
        (f"decode in {max(1, cores // 4)} worker(s) (a quarter of the cores)", max(1, cores // 4)),
    ):
        start = time.perf_counter()
        predictions = predict_images(
            coral_cl, dataset, ctx, batch_size=args.batch_size, workers=workers
        )
        elapsed = time.perf_counter() - start
        print(f"  {label:48s} {len(predictions) / elapsed:7.1f} images/s")


if __name__ == "__main__":
    main()
