"""The command-line interface (``cgnbench``)."""

from .group import cli, main

__all__ = ["cli", "main"]
