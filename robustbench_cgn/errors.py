"""Errors the harness raises on purpose.

Every one of them is caught by the CLI and printed as a single clear line (no traceback):
subclass :class:`CGNBenchError` for anything a user can fix by changing their input,
installing a file or picking another name.
"""

from __future__ import annotations


class CGNBenchError(Exception):
    """Base class: a problem the user can act on. The message says how."""


class UnknownNameError(CGNBenchError, KeyError):
    """A generator/classifier/benchmark/weights name that is not registered."""

    def __init__(self, kind: str, name: str, suggestions: list[str], available: list[str]):
        self.kind, self.name, self.suggestions, self.available = kind, name, suggestions, available
        msg = f"unknown {kind} {name!r}"
        if suggestions:
            msg += f"; did you mean {', '.join(repr(s) for s in suggestions)}?"
        elif available:
            shown = ", ".join(available[:12]) + (" ..." if len(available) > 12 else "")
            msg += f"; available: {shown}"
        else:
            msg += f"; no {kind}s are registered (is plugin autoload disabled?)"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class ConfigError(CGNBenchError, ValueError):
    """A config file or ``--set key=value`` that does not fit a component's schema."""


class DataNotFoundError(CGNBenchError, FileNotFoundError):
    """A dataset or weights file that is not available locally and cannot be downloaded."""


class ChecksumError(CGNBenchError):
    """A downloaded or local file whose checksum does not match the published one."""


class IncompatibleError(CGNBenchError):
    """Components that cannot be combined (e.g. a generator that has no data for a task)."""


class StoreError(CGNBenchError):
    """The results store cannot be opened or written (read-only, full, newer schema...)."""


class RunBusyError(CGNBenchError):
    """The same run (same identity) is being run by another live process."""
