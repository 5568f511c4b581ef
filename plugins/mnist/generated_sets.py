"""Generated MNIST training sets, cached on disk by everything that determines their pixels.

Both generators (``cgn``, ``dcgan``) stream their images into the same uint8 format
(:mod:`.counterfactuals`), keyed by weights hash and sampling settings, so a second run with the
same settings reuses the file instead of generating again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from robustbench_cgn import RunContext

from .counterfactuals import CounterfactualData, load_counterfactuals

Writer = Callable[[Path, Callable[[int], None]], object]


def cached_image_set(
    ctx: RunContext, key: str, total: int, description: str, write: Writer
) -> CounterfactualData:
    """Load the generated set ``key`` from the run's cache, calling ``write(folder, advance)``
    first when it is not there yet; ``advance(n_done)`` drives a progress bar of ``total``."""
    folder = ctx.cache_dir / "counterfactuals" / key
    if not (folder / "meta.json").is_file():
        with ctx.progress.task(description, total=total) as bar:
            done = [0]

            def advance(n_done: int) -> None:
                bar.update(n_done - done[0])
                done[0] = n_done

            write(folder, advance)
    return load_counterfactuals(folder)
