"""Entry point ``builtin-classifiers``: the classifiers that ship with cgnbench."""

from __future__ import annotations

from robustbench_cgn import hookimpl

from .mnist.classifier import MnistCNN


@hookimpl
def register_classifiers(registry) -> None:
    registry.add(MnistCNN)
