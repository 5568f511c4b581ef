#!/usr/bin/env python
"""Top-1/top-5 and speed of the ``mobilenet_v2-coral`` classifier on the ImageNet samples.

Runs the classifier exactly as a benchmark does (its ``input_config``: short side 256 with
bilinear antialiasing, centre crop 224, ``[0, 1]`` floats; then ``prepare`` and ``predict``)
over ``<data dir>/imagenet_samples_256q90`` (one real ImageNet validation-style image per
class, ``<wnid>_<name>.jpg``, label = index of the WNID in sorted order). Reports accuracy and
the model's images/s (forward passes only, best of ``--repeats`` timed passes over the whole
set after one warm-up; decoding is timed separately). Example::

    OMP_NUM_THREADS=2 python scripts/validate_coral_mobilenet.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF
from torchvision.io import ImageReadMode, decode_image

from robustbench_cgn import RunContext
from robustbench_cgn_plugins.imagenet.coral_classifier import MobileNetV2Coral
from robustbench_cgn_plugins.imagenet.tasks import IMAGENET_TASK, InputConfig

REPO = Path(__file__).resolve().parents[1]
SAMPLES = "imagenet_samples_256q90"


def load_samples(folder: Path, config: InputConfig, limit: int | None = None):
    """``(images [N, 3, size, size] in [0, 1], labels [N], file names)``, sorted by name."""
    files = sorted(folder.glob("n*_*.jpg"))
    if not files:
        raise SystemExit(f"no <wnid>_<name>.jpg images in {folder}")
    wnids = sorted({f.name.split("_", 1)[0] for f in files})
    if len(wnids) != 1000:
        raise SystemExit(f"expected the 1000 ImageNet classes in {folder}, found {len(wnids)}")
    index = {w: i for i, w in enumerate(wnids)}
    files = files[:limit] if limit else files
    interpolation = TF.InterpolationMode(config.interpolation)
    images = []
    for f in files:
        image = decode_image(str(f), mode=ImageReadMode.RGB)
        image = TF.resize(image, config.resize_to, interpolation=interpolation, antialias=True)
        images.append(TF.center_crop(image, config.size).float() / 255)
    labels = torch.tensor([index[f.name.split("_", 1)[0]] for f in files])
    return torch.stack(images), labels, [f.name for f in files]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("CGNBENCH_TEST_DATA", REPO.parent / "shared" / "data")),
    )
    parser.add_argument("--weights", default="auto", help="'auto' or a .tflite file")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        ctx = RunContext(
            run_id="validate",
            seed=0,
            device=torch.device(args.device),
            workdir=Path(tmp),
            cache_dir=Path(tmp) / "cache",
            data_dir=args.data_dir,
        )
        classifier = MobileNetV2Coral(
            MobileNetV2Coral.Config(weights=args.weights, channels_last=args.channels_last)
        )
        started = time.perf_counter()
        classifier.build(IMAGENET_TASK, ctx)
        build_s = time.perf_counter() - started

    started = time.perf_counter()
    images, labels, _ = load_samples(args.data_dir / SAMPLES, classifier.input_config(), args.limit)
    decode_s = time.perf_counter() - started

    def run() -> torch.Tensor:
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), args.batch_size):
                batch = images[start : start + args.batch_size].to(ctx.device)
                out.append(classifier.predict(classifier.prepare(batch))[""].float().cpu())
        if ctx.device.type == "cuda":
            torch.cuda.synchronize()
        return torch.cat(out)

    logits = run()  # warm-up, and the predictions scored below
    best = float("inf")
    for _ in range(args.repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)

    top5 = logits.topk(5, dim=1).indices
    top1_acc = 100.0 * (top5[:, 0] == labels).float().mean().item()
    top5_acc = 100.0 * (top5 == labels[:, None]).any(1).float().mean().item()
    print(f"weights:   {classifier.weights_path}")
    print(f"images:    {len(labels)} ({SAMPLES})")
    print(f"top-1:     {top1_acc:.1f} %")
    print(f"top-5:     {top5_acc:.1f} %")
    print(
        f"speed:     {len(labels) / best:.1f} images/s (forward, batch {args.batch_size}, "
        f"{args.device}, {torch.get_num_threads()} threads, channels_last={args.channels_last})"
    )
    print(f"decode:    {len(labels) / decode_s:.1f} images/s; build (convert) {build_s:.2f} s")


if __name__ == "__main__":
    main()
