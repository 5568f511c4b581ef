"""IN-9, the Backgrounds Challenge (Xiao et al. 2020): how much a classifier relies on image
backgrounds.

Release layout: ``<root>/<variant>/val/<k>_<name>/*.JPEG`` for the variants original,
only_fg, mixed_same, mixed_rand, mixed_next, no_fg, only_bg_b, only_bg_t (whichever are
present are scored). A 1000-way model is scored by the MadryLab protocol: top-1 over all 1000
logits, mapped to the nine superclasses; a prediction outside the 370 mapped classes is wrong.
``BG-gap = acc(mixed_same) - acc(mixed_rand)``.

Protocol ``cgn`` is the CGN repository's variant, named: it scores the ensemble's
``shape+texture`` head where the classifier has one (the classifier's own normalisation is
kept, and the denominator is the true number of images, not batch size x batches).

``source=samples`` builds an IN-9 ``original`` variant from the one-image-per-class ImageNet
samples (``<data-dir>/imagenet_samples_256q90``, the 370 mapped classes) in the release
layout: real images, 370 instead of 4,050, labelled ``in9-samples`` in every result.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from robustbench_cgn import Classifier, MetricResult, MetricSpec, RunContext, Task, bounded
from robustbench_cgn.errors import DataNotFoundError
from robustbench_cgn_plugins.imagenet.tasks.class_maps import imagenet_index, in9_classes, in_to_in9
from robustbench_cgn_plugins.imagenet.tasks.image_files import ImageDataset, list_images
from robustbench_cgn_plugins.imagenet.tasks.image_sources import (
    ImageSourceSpec,
    LocatedSource,
    ReleaseArchive,
    locate,
)
from robustbench_cgn_plugins.imagenet.tasks.metrics import bg_gap, in9_correct

from .imagenet_common import ImageNetBenchmark, LabelledImages, head_key

VARIANTS = (
    "original",
    "only_fg",
    "mixed_same",
    "mixed_rand",
    "mixed_next",
    "no_fg",
    "only_bg_b",
    "only_bg_t",
)
PROTOCOLS = ("madrylab", "cgn")
SAMPLES_SOURCE = "samples"
SAMPLES_FOLDER = "imagenet_samples_256q90"
CGN_HEAD = "shape+texture"


def _is_in9_release(folder: Path) -> bool:
    return any((folder / variant / "val").is_dir() for variant in VARIANTS)


IN9 = ImageSourceSpec(
    "in9",
    ("bg_challenge", "in9", "backgrounds_challenge"),
    _is_in9_release,
    "Download https://github.com/MadryLab/backgrounds_challenge/releases/download/data/"
    "backgrounds_challenge_data.tar.gz and extract it into <data-dir> (-> <data-dir>/"
    "bg_challenge/<variant>/val/<k>_<name>/*.JPEG), or pass --set benchmark.source=PATH; "
    "--set benchmark.source=samples builds the 'original' variant from the ImageNet samples "
    "in <data-dir>/imagenet_samples_256q90.",
    archive=ReleaseArchive(
        "https://github.com/MadryLab/backgrounds_challenge/releases/download/data/"
        "backgrounds_challenge_data.tar.gz",
        "backgrounds_challenge_data.tar.gz",
        # MadryLab publishes no checksum for this archive: download_release records the
        # sha256 of what was fetched in SHA256SUMS next to the extracted folder.
        extracts_to="bg_challenge",
        size="1.6 GB",
    ),
    description="IN-9 (Xiao et al. 2021): 9 classes in 8 background variants, 4,050 images each",
    license="MIT (MadryLab/backgrounds_challenge); images under the ImageNet terms",
    citation="Xiao, Engstrom, Ilyas & Madry, Noise or Signal, ICLR 2021",
)


def build_in9_from_samples(samples: Path, out: Path) -> Path:
    """An IN-9 ``original/val/<k>_<name>/`` tree from ``<wnid>_<name>.jpg`` samples of the
    370 mapped ImageNet classes (files copied once; returns ``out``)."""
    mapping, names, index = in_to_in9(), in9_classes(), imagenet_index()
    done = out / "original" / ".complete"
    if done.is_file():
        return out
    files = sorted(samples.glob("n*_*.jpg")) if samples.is_dir() else []
    if not files:
        raise DataNotFoundError(
            f"no ImageNet samples (<wnid>_<name>.jpg) in {samples}: pass --data-dir with "
            f"{SAMPLES_FOLDER}/ (EliSchwartz/imagenet-sample-images, one image per class)"
        )
    staging = out / "original.partial"
    shutil.rmtree(staging, ignore_errors=True)
    copied = 0
    for path in files:
        wnid = path.name.split("_", 1)[0]
        superclass = mapping[index[wnid]] if wnid in index else -1
        if superclass < 0:
            continue
        folder = staging / "val" / f"{superclass:02d}_{names[superclass].lower()}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / path.name)
        copied += 1
    (staging / ".complete").write_text(f"{copied} images from {samples}\n")
    shutil.rmtree(out / "original", ignore_errors=True)
    staging.rename(out / "original")
    return out


class IN9Backgrounds(ImageNetBenchmark):
    name = "in9"
    description = "IN-9 Backgrounds Challenge: accuracy per background variant and BG-gap"
    source_spec = IN9
    metrics = (
        MetricSpec(
            "mixed_rand_acc",
            True,
            "in9 MadryLab: 1000-way top-1 mapped to 9 classes",
            "acc (%)",
            main=True,
        ),
        *(
            MetricSpec(
                f"{v}_acc", True, "in9 MadryLab: 1000-way top-1 mapped to 9 classes", "acc (%)"
            )
            for v in VARIANTS
            if v != "mixed_rand"
        ),
        MetricSpec("bg_gap", False, "acc(mixed_same) - acc(mixed_rand)", "BG-gap (points)"),
    )
    datasets = (IN9.dataset,)

    @dataclass(frozen=True)
    class Config:
        source: str = "auto"
        batch_size: int = bounded(64, min=1, max=4096)
        protocol: str = "madrylab"
        variants: str = "all"  # or a comma-separated subset

        def __post_init__(self):
            if self.batch_size < 1:
                raise ValueError("batch_size must be >= 1")
            if self.protocol not in PROTOCOLS:
                raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}")
            unknown = set(self.chosen()) - set(VARIANTS)
            if unknown:
                raise ValueError(
                    f"unknown IN-9 variant(s) {', '.join(sorted(unknown))}; "
                    f"known: {', '.join(VARIANTS)}"
                )

        def chosen(self) -> tuple[str, ...]:
            if self.variants == "all":
                return VARIANTS
            return tuple(v.strip() for v in self.variants.split(",") if v.strip())

    def located(self, ctx: RunContext) -> LocatedSource:
        if self.config.source != SAMPLES_SOURCE:
            return super().located(ctx)
        if ctx.data_dir is None:
            raise DataNotFoundError(f"source=samples needs --data-dir with {SAMPLES_FOLDER}/")
        folder = build_in9_from_samples(
            ctx.data_dir / SAMPLES_FOLDER, ctx.cache_dir / "in9-samples"
        )
        return locate(self.source_spec, str(folder), None, ctx.cache_dir)

    def identity(self, task: Task, ctx: RunContext) -> dict:
        identity = super().identity(task, ctx)
        if self.config.source == SAMPLES_SOURCE:
            identity["source"] = identity["source"].replace("in9[", "in9-samples[")
        return identity

    def present_variants(self, root: Path) -> list[str]:
        return [v for v in self.config.chosen() if (root / v / "val").is_dir()]

    def folder_items(self, folder: Path) -> tuple[list[Path], list[int]]:
        paths: list[Path] = []
        targets: list[int] = []
        for class_folder in sorted(p for p in folder.iterdir() if p.is_dir()):
            prefix = class_folder.name.split("_", 1)[0]
            if not prefix.isdigit() or not 0 <= int(prefix) < len(in9_classes()):
                raise DataNotFoundError(
                    f"in9: unexpected class folder {class_folder} (expected <k>_<name>, k 0..8)"
                )
            files = list_images(class_folder)
            paths.extend(files)
            targets.extend([int(prefix)] * len(files))
        return paths, targets

    def evaluate(self, classifier: Classifier, ctx: RunContext) -> Iterator[MetricResult]:
        located = self.located(ctx)
        if located.kind != "folder":
            raise DataNotFoundError("in9 is read from its release folders (no datasets repository)")
        variants = self.present_variants(located.folder)
        if not variants:
            raise DataNotFoundError(
                f"in9: none of the variants {', '.join(self.config.chosen())} in "
                f"{located.folder}. {IN9.how_to_obtain}"
            )
        mapping = in_to_in9()
        accuracy: dict[tuple[str, str], float] = {}
        for variant in variants:
            root = located.folder / variant / "val"
            paths, targets = self.folder_items(root)
            names = [str(p.relative_to(located.folder)) for p in paths]
            data = LabelledImages(
                ImageDataset(paths, self.preprocess_for(classifier), names=names),
                targets,
                names,
                str(root),
            )
            predictions = self.predict(classifier, data, ctx, variant)
            target = torch.as_tensor(targets, dtype=torch.long)[predictions.indices]
            extra = self.common_extra(data, predictions)
            for head, logits in self._heads(predictions.logits).items():
                correct, n = in9_correct(logits, target, mapping)
                value = 100 * correct / n if n else float("nan")
                accuracy[(variant, head)] = value
                yield MetricResult(
                    f"{variant}_acc", value, n, self._protocol(), head_key(head), extra
                )
        for head in {h for _, h in accuracy}:
            same, rand = accuracy.get(("mixed_same", head)), accuracy.get(("mixed_rand", head))
            if same is not None and rand is not None:
                yield MetricResult(
                    "bg_gap",
                    bg_gap(same, rand),
                    0,
                    "acc(mixed_same) - acc(mixed_rand)",
                    head_key(head),
                )

    def _heads(self, logits: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """MadryLab: every head; CGN protocol: the shape+texture head as the main one."""
        if self.config.protocol == "cgn" and CGN_HEAD in logits:
            return {"": logits[CGN_HEAD]}
        return logits

    def _protocol(self) -> str:
        if self.config.protocol == "cgn":
            return "in9 CGN variant: shape+texture head, 1000-way mapped, true denominator"
        return "in9 MadryLab: 1000-way top-1 mapped to 9 classes"


IN9_BENCHMARKS = (IN9Backgrounds,)
