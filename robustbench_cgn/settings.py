"""Where cgnbench keeps its results, run folders and caches."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

HOME_ENV = "CGNBENCH_HOME"
CACHE_ENV = "CGNBENCH_CACHE"
DATA_ENV = "CGNBENCH_DATA"
RESULTS_FILE = "results.sqlite"
RESULTS_ENV = "CGNBENCH_RESULTS"  # what --results says, for code that has no App at hand


def env_flag(name: str) -> bool:
    """Whether environment variable ``name`` is set to a true word (1, true, yes, on)."""
    from .config import TRUE_WORDS

    return os.environ.get(name, "").strip().lower() in TRUE_WORDS


@dataclass(frozen=True)
class Paths:
    """``home`` holds ``results.sqlite`` and ``runs/<run id>/``; caches live in ``cache``."""

    home: Path
    results: Path
    cache: Path
    data: Path | None

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id


def resolve_paths(results: str | Path | None = None, data_dir: str | Path | None = None) -> Paths:
    """``--results`` (a database file or a folder) wins over ``CGNBENCH_HOME``, then the
    user's data directory (e.g. ``~/.local/share/cgnbench``)."""
    home = Path(os.environ.get(HOME_ENV) or platformdirs.user_data_dir("cgnbench"))
    results_path = home / RESULTS_FILE
    results = results if results is not None else (os.environ.get(RESULTS_ENV) or None)
    if results is not None:
        results = Path(results).expanduser()
        if results.suffix in {".sqlite", ".db", ".sqlite3"}:
            results_path, home = results, results.parent
        else:
            results_path, home = results / RESULTS_FILE, results
    cache = Path(os.environ.get(CACHE_ENV) or home / "cache")
    data = data_dir if data_dir is not None else os.environ.get(DATA_ENV)
    return Paths(
        home=home.expanduser(),
        results=results_path,
        cache=cache.expanduser(),
        data=Path(data).expanduser() if data else None,
    )
