"""Entry point ``builtin-classifiers``: the classifiers that ship with cgnbench."""

from __future__ import annotations

from robustbench_cgn import hookimpl


@hookimpl
def register_classifiers(registry) -> None:
    """Built-in classifiers are added here as they are implemented."""
