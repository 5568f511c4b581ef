"""Entry point ``builtin-generators``: the generators that ship with cgnbench."""

from __future__ import annotations

from robustbench_cgn import hookimpl


@hookimpl
def register_generators(registry) -> None:
    """Built-in generators are added here as they are implemented."""
