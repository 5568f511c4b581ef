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


@hookimpl
def register_benchmarks(registry) -> None:
    for family, presets in (
        (MnistOODBenchmark, MNIST_OOD_PRESETS),
        (MnistGradCamIoU, GRADCAM_PRESETS),
        (MnistGeneratorQuality, QUALITY_PRESETS),
    ):
        for name, attributes in presets.items():
            registry.add_preset(family, name, **attributes)
    for benchmark in (
        *GRADCAM_NATURAL_BENCHMARKS,
        *CUE_CONFLICT_BENCHMARKS,
        *IN9_BENCHMARKS,
        *IMAGENET_OOD_BENCHMARKS,
    ):
        registry.add(benchmark)
