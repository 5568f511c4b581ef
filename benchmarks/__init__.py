"""Entry point ``builtin-benchmarks``: the benchmark definitions that ship with cgnbench."""

from __future__ import annotations

from robustbench_cgn import hookimpl


@hookimpl
def register_benchmarks(registry) -> None:
    """Built-in benchmarks are added here as they are implemented."""
