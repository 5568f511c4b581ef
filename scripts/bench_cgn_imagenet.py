"""Speed of the ImageNet CGN: seconds per training iteration and generated images per second.

Random weights (``weights="random"``: same networks and FLOPs as the published files, nothing
read), so it runs offline. One training iteration is what ``train-cgn-imagenet`` repeats
1.2 M times in the faithful preset: a batch through the composer (three BigGAN-deep mechanisms,
the frozen BigGAN, U2-Net on the premask and on the background), the six losses (VGG16 Gram
losses on the composite and on the foreground + patch grid) and the backward pass; the Adam
steps (once per ``accumulation`` iterations) are excluded by a large accumulation. Generation
times :func:`write_counterfactual_dataset` (composer without x_gt, JPEG encoding, labels.csv).
Min and median over the timed repetitions are reported (min: the least contended).

    python scripts/bench_cgn_imagenet.py --architecture deep_128 --threads 2
    python scripts/bench_cgn_imagenet.py --device cuda --precision bf16 --architecture deep_256
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from robustbench_cgn_plugins.imagenet_cgn.generation import write_counterfactual_dataset
from robustbench_cgn_plugins.imagenet_cgn.training import ImageNetCGNTrainer, TrainConfig


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="deep_128")
    parser.add_argument("--u2net-variant", default="full")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed training iterations")
    parser.add_argument("--gen-images", type=int, default=16)
    parser.add_argument("--gen-batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    result: dict = {
        "architecture": args.architecture,
        "u2net_variant": args.u2net_variant,
        "batch_size": args.batch_size,
        "device": str(device),
        "precision": args.precision,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(
            architecture=args.architecture,
            weights="random",
            u2net_variant=args.u2net_variant,
            batch_size=args.batch_size,
            accumulation=10**6,
            episodes=1,
            precision=args.precision,
        )
        t0 = time.perf_counter()
        trainer = ImageNetCGNTrainer(config, Path(tmp) / "train", device=device)
        result["build_seconds"] = time.perf_counter() - t0
        trainer.train_step()  # warm-up
        _sync(device)
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            trainer.train_step()
            _sync(device)
            times.append(time.perf_counter() - t0)
        result["train_seconds_per_iteration"] = {
            "min": min(times),
            "median": statistics.median(times),
            "all": times,
        }
        t0 = time.perf_counter()
        for optimizer in trainer.optimizers.values():
            optimizer.step()
        _sync(device)
        result["adam_step_seconds"] = time.perf_counter() - t0
        cgn = trainer.cgn
        del trainer
        write_counterfactual_dataset(  # warm-up
            cgn, Path(tmp) / "warm", args.gen_batch, batch_size=args.gen_batch
        )
        t0 = time.perf_counter()
        write_counterfactual_dataset(
            cgn,
            Path(tmp) / "data",
            args.gen_images,
            batch_size=args.gen_batch,
            precision=args.precision,
        )
        _sync(device)
        seconds = time.perf_counter() - t0
        result["generation"] = {
            "images": args.gen_images,
            "batch_size": args.gen_batch,
            "seconds": seconds,
            "images_per_second": args.gen_images / seconds,
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
