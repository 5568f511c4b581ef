"""Entry point ``builtin-classifiers``: the classifiers that ship with cgnbench."""

from __future__ import annotations

from robustbench_cgn import hookimpl

from .imagenet.byo_classifiers import ExportedClassifier, PythonClassifier, TorchScriptClassifier
from .imagenet.cgn_ensemble import CGNEnsemble
from .imagenet.coral_classifier import MobileNetV2Coral
from .imagenet.timm_classifier import TimmClassifier
from .mnist.classifier import MnistCNN


@hookimpl
def register_classifiers(registry) -> None:
    registry.add(MnistCNN)
    registry.add(CGNEnsemble)
    registry.add(MobileNetV2Coral)
    registry.add(TimmClassifier)
    registry.add(TorchScriptClassifier)
    registry.add(ExportedClassifier)
    registry.add(PythonClassifier)


@hookimpl
def register_weights(registry) -> None:
    from .imagenet.coral_classifier import CORAL_WEIGHTS
    from .imagenet.ensemble_weights import RESNET50_WEIGHTS

    registry.add(CORAL_WEIGHTS)
    registry.add(RESNET50_WEIGHTS)
