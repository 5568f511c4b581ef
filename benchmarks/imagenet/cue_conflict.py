"""Cue-conflict shape bias (Geirhos et al. 2019, model-vs-human protocol; metrics.md).

The 1,280 stimuli ``<shape>/<shape><k>-<texture><j>.png`` combine one category's shape with
another's texture. A 1000-way model decides among the 16 categories by the mean softmax
probability over each category's ImageNet indices; ``shape_bias = shape hits / (shape hits +
texture hits)`` over the 1,200 stimuli whose shape and texture differ. Every head of a
multi-head classifier is scored (``head=<name>``), and per shape category
(``category=<name>``: shape bias, shape and texture fractions within the trials whose shape is
that category, as model-vs-human computes them).

Preprocessing: ``model-vs-human`` (default; the 224 px stimuli as they are) or ``cgn``
(Resize 256 + CenterCrop 224, the CGN repository's). The decisions are written in the
model-vs-human raw-data CSV format (``artifacts/decisions*.csv``) next to a per-category
shape-bias plot; ``cgnbench import-decisions`` scores such CSVs (human observers, published
models) onto the same leaderboard.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from robustbench_cgn import Classifier, MetricResult, MetricSpec, RunContext, bounded
from robustbench_cgn.errors import DataNotFoundError
from robustbench_cgn_plugins.imagenet.tasks.class_maps import cue_conflict_categories
from robustbench_cgn_plugins.imagenet.tasks.image_files import list_images
from robustbench_cgn_plugins.imagenet.tasks.image_sources import ImageSourceSpec, ReleaseArchive
from robustbench_cgn_plugins.imagenet.tasks.shape_bias import (
    ShapeBias,
    decide_16,
    metric_results,
    parse_stimulus,
    read_raw_data,
    score_raw_data,
    shape_bias,
    write_raw_data,
)

from .imagenet_common import ImageNetBenchmark, head_key
from .shape_bias_plot import save_shape_bias_plot

HUMAN_FOLDER = "human_cue_conflict"
PREPROCESSINGS = {"model-vs-human": "as-is", "cgn": "resize-crop"}
PROTOCOL = "cue-conflict: 16-class mean-probability decision, shape/(shape+texture), 1,200 stimuli"


def _is_cue_conflict_release(folder: Path) -> bool:
    categories = cue_conflict_categories()
    return sum((folder / c).is_dir() for c in categories) == len(categories)


CUE_CONFLICT = ImageSourceSpec(
    "cue-conflict",
    ("cue-conflict", "cue_conflict", "cue_conflict_jpg95", "style-transfer-preprocessed-512"),
    _is_cue_conflict_release,
    "Get the 1,280 stimuli from https://github.com/rgeirhos/texture-vs-shape "
    "(stimuli/style-transfer-preprocessed-512/<category>/*.png) or model-vs-human's "
    "cue-conflict.tar.gz and put them in <data-dir>/cue-conflict/<category>/, or pass "
    "--set benchmark.source=PATH.",
    archive=ReleaseArchive(
        "https://github.com/bethgelab/model-vs-human/releases/download/v0.1/cue-conflict.tar.gz",
        "cue-conflict.tar.gz",
        extracts_to="cue-conflict",
        size="60 MB",
    ),
    description="the 1,280 cue-conflict stimuli (Geirhos et al. 2019), 16 classes",
    license="CC BY 4.0 (rgeirhos/texture-vs-shape)",
    citation="Geirhos et al., ImageNet-trained CNNs are biased towards texture, ICLR 2019",
)


class CueConflictShapeBias(ImageNetBenchmark):
    name = "cue-conflict"
    description = "Shape bias on the 1,280 cue-conflict stimuli (Geirhos et al. 2019)"
    # 0.2.0: per-category shape bias within the trials of each shape category (model-vs-human's
    # definition), with per-category n and fractions; 0.1.0 mixed two trial sets.
    version = "0.2.0"
    source_spec = CUE_CONFLICT
    metrics = (
        MetricSpec("shape_bias", True, PROTOCOL, "shape / (shape + texture) decisions", main=True),
        MetricSpec("shape_fraction", True, PROTOCOL, "fraction of shape decisions"),
        MetricSpec("texture_fraction", False, PROTOCOL, "fraction of texture decisions"),
    )
    datasets = (CUE_CONFLICT.dataset,)

    @dataclass(frozen=True)
    class Config:
        source: str = "auto"
        batch_size: int = bounded(64, min=1, max=4096)
        preprocessing: str = "model-vs-human"

        def __post_init__(self):
            if self.batch_size < 1:
                raise ValueError("batch_size must be >= 1")
            if self.preprocessing not in PREPROCESSINGS:
                raise ValueError(f"preprocessing must be one of {', '.join(PREPROCESSINGS)}")

    @property
    def preprocessing(self) -> str:  # type: ignore[override]
        return PREPROCESSINGS[self.config.preprocessing]

    def folder_items(self, folder: Path) -> tuple[list[Path], list[tuple[str, str]]]:
        paths = [p for c in cue_conflict_categories() for p in list_images(folder / c)]
        if not paths:
            raise DataNotFoundError(f"cue-conflict: no stimuli in {folder}")
        labels = []
        for path in paths:
            try:
                labels.append(parse_stimulus(path.name))
            except ValueError as exc:
                raise DataNotFoundError(f"cue-conflict: {exc} ({path})") from None
        return paths, labels

    def hf_target(self, label) -> tuple[str, str]:
        return parse_stimulus(str(label))

    def evaluate(self, classifier: Classifier, ctx: RunContext) -> Iterator[MetricResult]:
        if ("shape_bias", "") in ctx.recorded_metrics:
            return
        data = self.items(classifier, ctx)
        predictions = self.predict(classifier, data, ctx, "16-class decisions")
        kept = predictions.indices.tolist()
        shapes = [data.targets[i][0] for i in kept]
        textures = [data.targets[i][1] for i in kept]
        names = [Path(data.names[i]).name for i in kept]
        extra = self.common_extra(data, predictions)
        categories = cue_conflict_categories()
        scores = {}
        for head, logits in predictions.logits.items():
            decisions = decide_16(torch.softmax(logits.float(), dim=1), categories)
            score = shape_bias(decisions, shapes, textures)
            scores[head] = score
            suffix = f"_{head.replace('+', '-')}" if head else ""
            if ctx.is_main:
                write_raw_data(
                    ctx.artifacts_dir / f"decisions{suffix}.csv",
                    f"{classifier.name}{suffix}",
                    names,
                    decisions,
                )
            yield from metric_results(score, PROTOCOL, functools.partial(head_key, head), extra)
        plotted = {(f"{classifier.name} {h}".strip()): s for h, s in scores.items()}
        if not ctx.is_main:
            return
        humans = self._human_scores(ctx)
        if humans is not None:
            plotted["humans"] = humans
        save_shape_bias_plot(ctx.artifacts_dir / "shape_bias.png", plotted)

    @staticmethod
    def _human_scores(ctx: RunContext) -> ShapeBias | None:
        """The human observers' shape bias, for the plot, when their CSVs are local."""
        folder = ctx.data_dir / HUMAN_FOLDER if ctx.data_dir else None
        files = sorted(folder.glob("*.csv")) if folder and folder.is_dir() else []
        return score_raw_data(read_raw_data(files)) if files else None


CUE_CONFLICT_BENCHMARKS = (CueConflictShapeBias,)
