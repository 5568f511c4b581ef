"""Rich progress bars for every long loop, silenced by ``--quiet``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


class ProgressReporter:
    """Creates progress bars on one shared rich console.

    ``track`` wraps an iterable; ``task`` gives a handle for loops that advance by hand and
    want to show live values (e.g. losses) with ``update(advance, status=...)`` or
    ``update_to(completed, status=...)``.
    """

    def __init__(self, console: Console | None = None, *, quiet: bool = False):
        self.console = console or Console(stderr=True)
        self.quiet = quiet

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            transient=False,
            disable=self.quiet,
        )

    def track(self, iterable: Iterable[T], *, total: int | None = None, description: str = ""):
        """Yield from ``iterable`` while advancing a bar."""
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        with self.task(description, total=total) as bar:
            for item in iterable:
                yield item
                bar.update(1)

    def task(self, description: str, *, total: int | None, completed: int = 0) -> ProgressTask:
        return ProgressTask(self._progress(), description, total, completed)

    def log(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message)


class ProgressTask:
    """A context-managed bar that can display a status text next to it."""

    def __init__(self, progress: Progress, description: str, total: int | None, completed: int):
        self._progress = progress
        self._id = progress.add_task(description, total=total, completed=completed, status="")

    def __enter__(self) -> ProgressTask:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def update(self, advance: int = 1, status: str | None = None) -> None:
        fields = {} if status is None else {"status": status}
        self._progress.update(self._id, advance=advance, **fields)

    def update_to(self, completed: int, status: str | None = None) -> None:
        """Set the count to ``completed``: for callbacks that report how far they are (an
        iteration number, images written so far) rather than how much they just did."""
        fields = {} if status is None else {"status": status}
        self._progress.update(self._id, completed=completed, **fields)
