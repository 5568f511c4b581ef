"""Seconds per MNIST-CGN training iteration (colored config): the reference's work against
cgnbench's, both measured in this run on this machine, with the hardware they ran on.

Times real ``MnistGeneratorTrainer.train_step()`` calls (data batch, G step, D step, Adam) on
real colored MNIST with the real VGG16 weights, at each ``--batch``:

* ``reference``: what the reference implementation computes per step, the plain way. Its style
  loss runs ``vgg16().features`` through pool5 (conv5 has no weights in our file: random ones,
  same cost), forms the Gram terms of relu1_2, relu2_2, relu3_3 *and* relu4_3 (weight 0 for
  colored) plus a content term (relu4_3 L1, weight 0), and back-propagates all of them; the real
  batch goes through VGG with autograd on; NCHW; the CGN module's own forward; for-loop Adam.
  Differences left: the reference's VGG weights are trainable modules whose gradients it may
  also compute, and it runs its data loader in worker processes; both make it slower, so the
  ratio printed is a lower bound.
* ``optimised``: the trainer's defaults (fp32): VGG only up to relu3_3 (the deepest weighted
  layer for colored), channels_last, real Gram targets without autograd, fused generator
  forward (nearest-upsample + conv3x3 as one transposed conv), ``Adam(fused=True)``.
* ``optimised-bf16``: the same with the style loss's convolutions under bf16 autocast
  (``precision="bf16"``; Gram matrices and losses fp32). Fast where the CPU has AMX / AVX-512
  BF16, slow elsewhere: the hardware record says which this machine is.

The variants alternate iteration by iteration so that load from other processes hits all alike;
min and median are reported (min: the uncontended speed). The JSON (``--json``) holds every
figure, the ratios reference / variant, and the hardware record: CPU model and flags, threads,
and the fp32 / bf16 GEMM peaks measured on the spot, with the fraction of the peak that the VGG
part of each variant reaches. ``--breakdown`` adds component times.

    python scripts/bench_cgn_training.py --data-dir ../shared/data --threads 2 --json out.json

Times of the reference code measured elsewhere are never divided by: another machine's figures
say nothing about this one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from robustbench_cgn.hardware import hardware_record
from robustbench_cgn_plugins.mnist.cgn_model import build_cgn
from robustbench_cgn_plugins.mnist.training import (
    MnistGeneratorTrainer,
    TrainConfig,
    TrainData,
    cgn_train_forward,
    load_train_data,
)
from robustbench_cgn_plugins.shared.style_loss import STYLE_RELU_INDICES, VGGStyleLoss, gram_matrix

KINDS = ("reference", "optimised", "optimised-bf16")


class ReferenceStyleLoss(nn.Module):
    """The style loss as the reference computes it (module docstring): all of
    ``vgg16().features`` through pool5, four Gram terms and a content term, zero weights
    included, real batch with autograd on. Same value as :class:`VGGStyleLoss`."""

    def __init__(self, fast: VGGStyleLoss):
        super().__init__()
        self.fast = fast
        pool5 = [
            nn.MaxPool2d(2, 2),
            nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(),
            nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(),
            nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2, 2),
        ]  # fmt: skip
        full = VGGStyleLoss(fast.style_weights, fast.weights_path, mode=fast.mode, stop_early=False)
        self.vgg = nn.Sequential(*full.vgg, *pool5).requires_grad_(False).eval()
        self.taps = STYLE_RELU_INDICES

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, out = self.fast.preprocess(x), []
        for idx, layer in enumerate(self.vgg):
            h = layer(h)
            if idx in self.taps:
                out.append(h)
        return out

    def forward(self, x_gen: torch.Tensor, x_real: torch.Tensor) -> torch.Tensor:
        f_gen, f_real = self.features(x_gen), self.features(x_real)
        scale = self.fast._gram_factor
        loss = x_gen.new_zeros(())
        for w, a, b in zip(self.fast.style_weights, f_gen, f_real, strict=True):
            ga, gb = gram_matrix(a) * scale, gram_matrix(b) * scale
            loss = loss + (w * w * self.fast.scale) * nn.functional.l1_loss(ga, gb)
        content_weight = 0.0
        return loss + content_weight * nn.functional.l1_loss(f_gen[-1], f_real[-1])


def make_trainer(kind: str, batch: int, data: TrainData, args: argparse.Namespace):
    optimised = kind != "reference"
    config = TrainConfig(
        variant="colored",
        batch_size=batch,
        iterations=10**9,
        channels_last=optimised,
        fused_generator=optimised,
        fused_adam=optimised,
        precision="bf16" if kind == "optimised-bf16" else "fp32",
    )
    trainer = MnistGeneratorTrainer(
        config,
        tempfile.mkdtemp(prefix="cgn-bench-"),  # nothing is written: train_step only
        data=data,
        data_dir=args.data_dir,
        vgg_weights=args.vgg_weights,
        resume=False,
    )
    if not optimised:
        trainer.style = ReferenceStyleLoss(trainer.style)
    return trainer


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def summary(times: list[float]) -> dict[str, float]:
    return {"min": min(times), "median": statistics.median(times), "n": len(times)}


def vgg_macs_per_image(style: nn.Module, size: int = 32) -> int:
    """Multiply-accumulates of one forward pass of a style loss's ``vgg``."""
    macs, h = 0, size
    for layer in style.vgg:
        if isinstance(layer, torch.nn.Conv2d):
            k = layer.kernel_size[0] * layer.kernel_size[1]
            macs += layer.in_channels * layer.out_channels * k * h * h
        elif isinstance(layer, torch.nn.MaxPool2d):
            h //= 2
    return macs


def vgg_share_of_peak(
    kind: str, batch: int, macs_per_image: int, step_s: float, peaks: dict
) -> dict:
    """The VGG multiply-adds of one step (real forward + generated forward + generated
    input-backward ~ one more forward) over the step time, against the GEMM peak of the
    precision the VGG ran in: the fraction of the machine's measured peak that step reaches."""
    flops = 2 * 3 * macs_per_image * batch
    peak = peaks["bf16" if kind == "optimised-bf16" else "fp32"]
    return {
        "vgg_gflop_per_step": flops / 1e9,
        "vgg_tflops_achieved": flops / step_s / 1e12,
        "gemm_peak_tflops": peak,
        "fraction_of_peak": flops / step_s / 1e12 / peak,
    }


def bench_steps(
    batch: int, data: TrainData, args: argparse.Namespace
) -> tuple[dict[str, dict], dict[str, int]]:
    """Step times of each kind, and the multiply-adds per image of each kind's VGG."""
    trainers = {k: make_trainer(k, batch, data, args) for k in args.kinds}
    for t in trainers.values():
        for _ in range(args.warmup):
            t.train_step()
    times: dict[str, list[float]] = {k: [] for k in trainers}
    for _ in range(args.iterations):
        for k, t in trainers.items():
            times[k].append(timed(t.train_step))
    macs = {k: vgg_macs_per_image(t.style) for k, t in trainers.items()}
    return {k: summary(v) for k, v in times.items()}, macs


def bench_components(batch: int, data: TrainData, args: argparse.Namespace) -> dict[str, dict]:
    trainer = make_trainer("optimised", batch, data, args)
    style = trainer.style
    x_real = trainer.real_batch(0)[0]
    x_gen = (torch.rand_like(x_real) * 2 - 1).requires_grad_()
    cgn = build_cgn("colored")
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(10, (batch,), generator=gen)

    def style_fb() -> None:
        style(x_gen, x_real).backward()

    def real_fwd() -> None:
        with torch.no_grad():
            style.grams(x_real)

    def cgn_fb(fused: bool) -> Callable[[], None]:
        def run() -> None:
            x, m = cgn_train_forward(cgn, y, gen, fused=fused)
            (x.square().mean() + m.mean()).backward()

        return run

    parts = {
        "style fwd+bwd (real fwd + gen fwd + gen bwd)": style_fb,
        "VGG real-batch fwd (no grad)": real_fwd,
        "CGN fwd+bwd, fused": cgn_fb(True),
        "CGN fwd+bwd, module forward": cgn_fb(False),
    }
    times: dict[str, list[float]] = {k: [] for k in parts}
    for fn in parts.values():
        for _ in range(args.warmup):
            fn()
    for _ in range(args.iterations):
        for k, fn in parts.items():
            times[k].append(timed(fn))
    return {k: summary(v) for k, v in times.items()}


def markdown(results: dict) -> str:
    """README's table of a run (``--markdown``; ``--from-json`` re-renders a saved one)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from speed_table import training_table

    return training_table(results)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--vgg-weights", default=None)
    p.add_argument("--batch", type=int, nargs="+", default=[16, 64])
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--breakdown", action="store_true")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--markdown", action="store_true", help="print README's table at the end")
    p.add_argument("--from-json", default=None, help="only print the table of a saved run")
    args = p.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            print(markdown(json.load(f)))
        return
    if "reference" not in args.kinds:
        p.error("--kinds needs reference: every ratio is against it")
    torch.set_num_threads(args.threads)
    hardware = hardware_record(measure=True)
    peaks = hardware["gemm_tflops"]["cpu"]
    print(
        f"{hardware['cpu']} ({', '.join(hardware['cpu_flags'])}), {args.threads} threads; "
        f"GEMM peak fp32 {peaks['fp32']:.2f} TFLOP/s, bf16 {peaks['bf16']:.2f} TFLOP/s",
        flush=True,
    )
    data = load_train_data("colored", args.data_dir)
    results: dict[str, object] = {"hardware": hardware, "threads": args.threads}
    for batch in args.batch:
        steps, macs = bench_steps(batch, data, args)
        entry: dict[str, object] = {"seconds_per_step": steps, "reference_over": {}, "vgg": {}}
        for kind, st in steps.items():
            ratio = steps["reference"]["min"] / st["min"]
            share = vgg_share_of_peak(kind, batch, macs[kind], st["min"], peaks)
            entry["reference_over"][kind] = ratio  # type: ignore[index]
            entry["vgg"][kind] = share  # type: ignore[index]
            print(
                f"batch {batch:3d} {kind:15s} min {st['min']:.3f} s  median {st['median']:.3f} s"
                f"  reference/this {ratio:.2f}x  VGG at {100 * share['fraction_of_peak']:.0f} % "
                "of its GEMM peak",
                flush=True,
            )
        if args.breakdown:
            parts = bench_components(batch, data, args)
            entry["components"] = parts
            for name, st in parts.items():
                print(f"    {name:46s} min {st['min']:.3f} s  median {st['median']:.3f} s")
        results[f"batch{batch}"] = entry
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if args.markdown:
        print(markdown(results))


if __name__ == "__main__":
    main()
