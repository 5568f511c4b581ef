"""Entry point ``builtin-benchmarks``: the benchmark definitions that ship with cgnbench, one
folder per domain (``mnist/``, ``imagenet/``)."""

from __future__ import annotations

from robustbench_cgn import hookimpl

from .imagenet.cue_conflict import CUE_CONFLICT_BENCHMARKS
from .imagenet.gradcam_natural import GRADCAM_NATURAL_BENCHMARKS
from .imagenet.imagenet_ood import IMAGENET_OOD_BENCHMARKS
from .imagenet.in9 import IN9_BENCHMARKS
from .mnist.generator_quality import QUALITY_PRESETS, MnistGeneratorQuality
from .mnist.gradcam_iou import GRADCAM_PRESETS, MnistGradCamIoU
from .mnist.mnist_ood import MNIST_OOD_PRESETS, MnistOODBenchmark

PRESET_FAMILIES = (
    (MnistOODBenchmark, MNIST_OOD_PRESETS),
    (MnistGradCamIoU, GRADCAM_PRESETS),
    (MnistGeneratorQuality, QUALITY_PRESETS),
)
BENCHMARKS = (
    *GRADCAM_NATURAL_BENCHMARKS,
    *CUE_CONFLICT_BENCHMARKS,
    *IN9_BENCHMARKS,
    *IMAGENET_OOD_BENCHMARKS,
)


@hookimpl
def register_benchmarks(registry) -> None:
    for family, presets in PRESET_FAMILIES:
        for name, attributes in presets.items():
            registry.add_preset(family, name, **attributes)
    for benchmark in BENCHMARKS:
        registry.add(benchmark)


@hookimpl
def register_datasets(registry) -> None:
    """Every dataset the benchmarks above declare, once (``cgnbench fetch NAME``)."""
    declared = [
        *(spec for family, _ in PRESET_FAMILIES for spec in family.datasets),
        *(spec for presets in (p for _, p in PRESET_FAMILIES) for a in presets.values()
          for spec in a.get("datasets", ())),
        *(spec for benchmark in BENCHMARKS for spec in benchmark.datasets),
    ]  # fmt: skip
    seen: set[str] = set()
    for spec in declared:
        if spec.name not in seen:
            seen.add(spec.name)
            registry.add(spec)
